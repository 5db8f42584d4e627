#include "common/curve.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "common/file_checks.h"

namespace ferry {
namespace {

// Trimmed lines that are neither empty nor comments, with their line
// numbers. No Z85 key starts with '#' (or '$'): a 5-character group
// starting with either would exceed 2^32.
Result<std::vector<std::pair<int, std::string>>> KeyLines(const std::string& path,
                                                          const std::string& flag) {
  FERRY_RETURN_IF_ERROR(CheckInputFile(flag, path));  // missing, a directory, unreadable
  std::ifstream in(path);
  if (!in) {
    return InvalidArgument(fmt::format(
        "{} {}: cannot read the file (check the path and its permissions)", flag, path));
  }
  std::vector<std::pair<int, std::string>> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    size_t b = line.find_first_not_of(" \t\r");
    size_t e = line.find_last_not_of(" \t\r");
    if (b == std::string::npos) continue;
    if (line[b] == '#') continue;
    out.emplace_back(n, line.substr(b, e - b + 1));
  }
  return out;
}

// Creates `path` with `mode` (never overwriting) holding `text`, synced.
Status WriteNewFile(const std::string& path, const std::string& text, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    return InvalidArgument(
        fmt::format("{}: cannot create the key file: {}{}", path, std::strerror(errno),
                    errno == EEXIST ? " (never overwritten; pick a new path)" : ""));
  }
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    return InvalidArgument(
        fmt::format("{}: cannot write the key file: {}", path, std::strerror(err)));
  }
  return Status::Ok();
}

// The key on the first key line of the file at `path`, or kInvalidArgument
// saying that `expected` was expected there.
Result<std::string> FirstKey(const std::string& path, const std::string& flag,
                             const char* expected) {
  FERRY_ASSIGN_OR_RETURN(auto lines, KeyLines(path, flag));
  if (lines.empty() || !IsCurveKey(lines[0].second)) {
    return InvalidArgument(fmt::format("{} {}: expected {}", flag, path, expected));
  }
  return lines[0].second;
}

}  // namespace

Result<CurveKeyPair> NewCurveKeyPair() {
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0) {
    return Internal(fmt::format("cannot make a CURVE key pair: {} (libzmq without CURVE?)",
                                zmq_strerror(zmq_errno())));
  }
  return CurveKeyPair{pub, sec};
}

Result<CurveKeyPair> WriteNewCurveSecretKey(const std::string& path) {
  FERRY_ASSIGN_OR_RETURN(CurveKeyPair pair, NewCurveKeyPair());
  const std::string pub = path + ".pub";
  struct stat st;
  if (::stat(pub.c_str(), &st) == 0) {
    return InvalidArgument(
        fmt::format("{}: the file exists (never overwritten; pick a new path)", pub));
  }
  FERRY_RETURN_IF_ERROR(WriteNewFile(
      path, "# ferry CURVE secret key (public key in " + pub + ")\n" + pair.secret_z85 + "\n",
      0600));
  Status s = WriteNewFile(pub, "# ferry CURVE public key\n" + pair.public_z85 + "\n", 0644);
  if (!s.ok()) {
    ::unlink(path.c_str());
    return s;
  }
  return pair;
}

bool IsCurveKey(const std::string& z85) {
  if (z85.size() != 40) return false;
  uint8_t bin[32];
  return zmq_z85_decode(bin, z85.c_str()) != nullptr;
}

Result<CurveKeyPair> LoadCurveSecretKey(const std::string& path, const std::string& flag) {
  FERRY_ASSIGN_OR_RETURN(
      std::string secret,
      FirstKey(path, flag,
               "a CURVE secret key (40 characters of Z85) on the first line; make one with "
               "`ferryctl keygen`"));
  char pub[41];
  if (zmq_curve_public(pub, secret.c_str()) != 0) {
    return InvalidArgument(fmt::format("{} {}: not a usable CURVE secret key ({})", flag, path,
                                       zmq_strerror(zmq_errno())));
  }
  return CurveKeyPair{pub, secret};
}

Result<std::string> LoadCurvePublicKey(const std::string& path, const std::string& flag) {
  return FirstKey(path, flag,
                  "a CURVE public key (40 characters of Z85; the FILE.pub `ferryctl keygen FILE` "
                  "wrote)");
}

Result<std::set<std::string>> LoadCurveAllowList(const std::string& path, const std::string& flag) {
  FERRY_ASSIGN_OR_RETURN(auto lines, KeyLines(path, flag));
  std::set<std::string> keys;
  for (const auto& [n, key] : lines) {
    if (!IsCurveKey(key)) {
      return InvalidArgument(fmt::format(
          "{} {}: line {} is not a CURVE public key (40 characters of Z85)", flag, path, n));
    }
    keys.insert(key);
  }
  if (keys.empty()) {
    return InvalidArgument(
        fmt::format("{} {}: no public key in the file; list the workers' public keys, one per line",
                    flag, path));
  }
  return keys;
}

Result<CurveClientKeys> LoadCurveClientKeys(const std::string& server_key_file,
                                            const std::string& secret_key_file,
                                            const std::string& server_flag,
                                            const std::string& secret_flag) {
  if (server_key_file.empty() != secret_key_file.empty()) {
    return InvalidArgument(fmt::format("{} and {} go together", server_flag, secret_flag));
  }
  CurveClientKeys keys;
  if (server_key_file.empty()) return keys;
  FERRY_ASSIGN_OR_RETURN(keys.server_key, LoadCurvePublicKey(server_key_file, server_flag));
  FERRY_ASSIGN_OR_RETURN(CurveKeyPair mine, LoadCurveSecretKey(secret_key_file, secret_flag));
  keys.public_key = mine.public_z85;
  keys.secret_key = mine.secret_z85;
  return keys;
}

}  // namespace ferry
