// A secondary index in the neutral schema model (see stores/column_type.h):
// what an engine needs to recreate another engine's index without reading
// that engine's DDL. The source engine parses its own CREATE INDEX text into
// it when it lists a table; a target of another engine writes its own DDL
// from it. Column references are exact column names; expressions and the
// partial-index predicate stay text in the source's dialect (a target passes
// them through and the target engine accepts or rejects them).
//
// Pure values; thread-safe.
#pragma once

#include <string>
#include <vector>

namespace ferry {

struct IndexDef {
  struct Part {
    std::string column;      // a plain column reference: the column's exact name; or
    std::string expression;  // an expression, as the source wrote it (column empty)
    bool descending = false;
  };

  std::string name;
  bool unique = false;
  std::vector<Part> parts;
  std::string where;  // partial-index predicate without WHERE, source dialect; empty = none
  // Why another engine cannot recreate this index from the model (a
  // definition the source's parser does not understand, an access method
  // other than an ordered b-tree, clauses beyond columns and WHERE); empty
  // when it can. The source engine itself still recreates it from its DDL.
  std::string unsupported;
};

}  // namespace ferry
