// Internals shared by the files that implement PgStore
// (stores/postgresql/pg_store.h): the transaction guard and the binary wire
// helpers. Not for use outside stores/postgresql/.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <string>

#include "common/pg_util.h"
#include "common/value.h"

namespace ferry {
namespace pg_wire {

// Big-endian integer of `n` bytes at `p` (binary result format).
uint64_t ReadBe(const char* p, int n);

// Appends `v` as `n` big-endian bytes (binary COPY format).
void PutBe(std::string* out, uint64_t v, int n);

// `d` as text: shortest round-trip digits, NaN / Infinity / -Infinity;
// `point_zero` appends ".0" to an integral value (how a real reads as text
// on the other stores, e.g. into a text column).
std::string DoubleText(double d, bool point_zero);

// Whole-string parses; false if `s` is not entirely a number.
bool ParseInt(const std::string& s, int64_t* out);
bool ParseDouble(const std::string& s, double* out);

// "integer", "real", "text", "blob" or "null": the kind of a Value, for messages.
const char* KindName(const Value& v);

}  // namespace pg_wire

// BEGIN on Started(); ROLLBACK on destruction unless Done() was called.
class PgTxn {
 public:
  // Holds the owner's pointer, which a lost connection resets.
  explicit PgTxn(const PgConnPtr& conn) : conn_(conn) {}
  ~PgTxn() {
    if (active_ && conn_ && PQstatus(conn_.get()) == CONNECTION_OK) {
      PgResult(PQexec(conn_.get(), "ROLLBACK"));
    }
  }
  PgTxn(const PgTxn&) = delete;
  PgTxn& operator=(const PgTxn&) = delete;
  void Started() { active_ = true; }
  void Done() { active_ = false; }

 private:
  const PgConnPtr& conn_;
  bool active_ = false;
};

}  // namespace ferry
