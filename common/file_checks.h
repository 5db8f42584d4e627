// file_checks: one clear line for a file named on the command line that
// cannot be used, checked before anything opens or creates it.
//
// Each check returns Ok or kInvalidArgument (exit code 2) whose message
// starts with the flag and the path as given ("--state notes.txt: ...") and
// ends with what to do. The checks only look (stat, access, the first 16
// bytes of a file); they create and change nothing. Running as root,
// access() grants writes a mount may still refuse (a read-only file system):
// the later open reports those.
//
// Thread safety: free functions without shared state.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace ferry {

enum class FileUse {
  kRead,       // must exist and be readable
  kReadWrite,  // read and written; created (with its -wal/-shm files) when missing
};

// A SQLite database file. A directory is refused; so is a non-empty file
// that does not start with the SQLite header ("SQLite format 3\0"). kRead:
// it must exist and be readable. kReadWrite: if it exists it must be
// readable and writable, and either way its directory must exist and be
// writable (SQLite creates the file there, and in WAL mode the -wal and -shm
// files beside it).
Status CheckSqliteFile(std::string_view flag, const std::string& path, FileUse use);

// A file the program creates or replaces (e.g. --endpoints-file): not a
// directory, and its directory exists and is writable.
Status CheckOutputFile(std::string_view flag, const std::string& path);

// A file the program reads (a key file, an allow list): it exists, is a
// regular file and is readable.
Status CheckInputFile(std::string_view flag, const std::string& path);

// The path of a `sqlite:PATH` / `sqlite:///abs/path` store URI; nullopt for
// any other scheme.
std::optional<std::string> SqlitePathOf(const std::string& uri);

}  // namespace ferry
