// CURVE keys for the worker endpoint (ZeroMQ's CurveZMQ: encryption plus
// authentication of both ends by long-term key pairs).
//
// Keys travel as Z85 text, 40 characters for 32 bytes (Z85 uses shell and
// systemd specials such as `$`, `%`, `&`: keys live in files, never on
// command lines). A key file holds one key on its first key line; lines
// starting with `#` are comments (no Z85 key starts with `#`). An allow file lists the public keys
// of the workers the coordinator accepts, one per line. `ferryctl keygen FILE` writes a new secret
// key to FILE and its public key to FILE.pub.
//
// Thread safety: pure functions.
#pragma once

#include <set>
#include <string>

#include "common/status.h"

namespace ferry {

struct CurveKeyPair {
  std::string public_z85;
  std::string secret_z85;
};

// A CURVE client's keys (Z85): empty server_key = no CURVE.
struct CurveClientKeys {
  std::string server_key;  // the server's public key
  std::string public_key;  // this client's
  std::string secret_key;

  bool on() const { return !server_key.empty(); }
};

// The client keys from a server public key file and this client's secret
// key file (both or neither; `server_flag` and `secret_flag` name the flags
// for errors). Both empty: CURVE off.
Result<CurveClientKeys> LoadCurveClientKeys(const std::string& server_key_file,
                                            const std::string& secret_key_file,
                                            const std::string& server_flag,
                                            const std::string& secret_flag);

// A fresh key pair (libzmq's zmq_curve_keypair). kInternal if libzmq was
// built without CURVE support.
Result<CurveKeyPair> NewCurveKeyPair();

// True for 40 characters of valid Z85.
bool IsCurveKey(const std::string& z85);

// Makes a new pair, writes its secret key to a new file at `path` (mode
// 0600) and its public key to `path`.pub (0644); existing files are never
// overwritten. kInvalidArgument naming the path if one exists or cannot be
// written (then neither is left behind).
Result<CurveKeyPair> WriteNewCurveSecretKey(const std::string& path);

// Reads the secret key at `path` and derives its public key.
// kInvalidArgument naming `flag` and the path for a missing or unreadable
// file or a malformed key.
Result<CurveKeyPair> LoadCurveSecretKey(const std::string& path, const std::string& flag);

// Reads the public key at `path` (a FILE.pub written by keygen).
Result<std::string> LoadCurvePublicKey(const std::string& path, const std::string& flag);

// Reads an allow file. kInvalidArgument naming `flag`, the path and the line
// for a malformed key, or for a file with no key at all.
Result<std::set<std::string>> LoadCurveAllowList(const std::string& path, const std::string& flag);

}  // namespace ferry
