#include "common/file_checks.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace ferry {
namespace {

constexpr char kSqliteHeader[16] = "SQLite format 3";  // with its trailing '\0': 16 bytes

std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status Bad(std::string_view flag, const std::string& path, const std::string& what) {
  return InvalidArgument(fmt::format("{} {}: {}", flag, path, what));
}

// The directory a file is (to be) created in exists and is writable.
Status CheckDirWritable(std::string_view flag, const std::string& path, const char* creates) {
  const std::string dir = DirOf(path);
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    return Bad(flag, path,
               fmt::format("the directory {} does not exist ({}); create it or choose another path",
                           dir, std::strerror(errno)));
  }
  if (!S_ISDIR(st.st_mode)) {
    return Bad(flag, path, fmt::format("{} is not a directory; choose another path", dir));
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return Bad(flag, path,
               fmt::format("the directory {} is not writable by this user ({}), and {} there; "
                           "fix its permissions or choose another directory",
                           dir, std::strerror(errno), creates));
  }
  return Status::Ok();
}

}  // namespace

Status CheckSqliteFile(std::string_view flag, const std::string& path, FileUse use) {
  if (path.empty()) return InvalidArgument(fmt::format("{}: empty path; give a file path", flag));
  struct stat st;
  const bool exists = ::stat(path.c_str(), &st) == 0;
  if (!exists && errno != ENOENT && errno != ENOTDIR) {
    return Bad(flag, path,
               fmt::format("cannot look at it ({}); check the path", std::strerror(errno)));
  }
  if (exists && S_ISDIR(st.st_mode)) {
    return Bad(flag, path,
               fmt::format("is a directory; give the path of a SQLite file (e.g. {}/{})", path,
                           flag == "--state" ? "state.db" : "data.db"));
  }
  if (!exists && use == FileUse::kRead) {
    return Bad(flag, path, "no such file; check the path");
  }
  if (exists) {
    if (::access(path.c_str(), R_OK) != 0) {
      return Bad(flag, path,
                 fmt::format("cannot be read by this user ({}); check its permissions",
                             std::strerror(errno)));
    }
    if (use == FileUse::kReadWrite && ::access(path.c_str(), W_OK) != 0) {
      return Bad(flag, path,
                 fmt::format("is not writable by this user ({}); check its permissions",
                             std::strerror(errno)));
    }
    if (st.st_size > 0) {
      char head[sizeof kSqliteHeader] = {};
      std::ifstream f(path, std::ios::binary);
      f.read(head, sizeof head);
      if (f.gcount() != static_cast<std::streamsize>(sizeof head) ||
          std::memcmp(head, kSqliteHeader, sizeof head) != 0) {
        return Bad(flag, path,
                   use == FileUse::kRead
                       ? fmt::format("is not a SQLite database (it does not start with the SQLite "
                                     "header); point {} at a SQLite database file",
                                     flag)
                       : fmt::format("is not a SQLite database (it does not start with the SQLite "
                                     "header); point {} at a SQLite file, or at a path that does "
                                     "not exist yet to create one",
                                     flag));
      }
    }
  }
  if (use == FileUse::kReadWrite) {
    return CheckDirWritable(flag, path, "SQLite keeps the file's -wal and -shm files");
  }
  return Status::Ok();
}

Status CheckOutputFile(std::string_view flag, const std::string& path) {
  if (path.empty()) return InvalidArgument(fmt::format("{}: empty path; give a file path", flag));
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return Bad(flag, path, "is a directory; give the path of a file");
  }
  return CheckDirWritable(flag, path, "the file is written");
}

Status CheckInputFile(std::string_view flag, const std::string& path) {
  if (path.empty()) return InvalidArgument(fmt::format("{}: empty path; give a file path", flag));
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return Bad(flag, path,
               fmt::format("cannot be found ({}); check the path", std::strerror(errno)));
  }
  if (S_ISDIR(st.st_mode)) return Bad(flag, path, "is a directory; give the path of a file");
  if (::access(path.c_str(), R_OK) != 0) {
    return Bad(flag, path,
               fmt::format("cannot be read by this user ({}); check its permissions",
                           std::strerror(errno)));
  }
  return Status::Ok();
}

std::optional<std::string> SqlitePathOf(const std::string& uri) {
  if (uri.rfind("sqlite:", 0) != 0) return std::nullopt;
  std::string path = uri.substr(7);
  if (path.rfind("//", 0) == 0) path = path.substr(2);  // sqlite:///abs/path
  return path;
}

}  // namespace ferry
