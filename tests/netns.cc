#include "tests/netns.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <random>
#include <regex>
#include <sstream>

namespace ferry::testing {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string Join(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

// Removes the namespaces of NetLabs whose process is gone (killed mid-test).
void RemoveStale() {
  std::string out;
  if (Sh({"ip", "netns", "list"}, &out) != 0) return;
  std::regex name("^(ferryt([0-9]+)a[0-9]+b[0-9]+)");
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (!std::regex_search(line, m, name)) continue;
    pid_t pid = static_cast<pid_t>(std::stol(m[2].str()));
    if (kill(pid, 0) != 0 && errno == ESRCH) Sh({"ip", "netns", "del", m[1].str()});
  }
}

}  // namespace

int Sh(const std::vector<std::string>& argv, std::string* out) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    dup2(p[1], 1);
    dup2(p[1], 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(p[1]);
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) text.append(buf, static_cast<size_t>(n));
  }
  close(p[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (out) *out = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// ---- DelayRelay ----

DelayRelay::DelayRelay(const std::string& listen_addr, const std::string& target_addr,
                       int target_port, int delay_ms, int jitter_ms)
    : target_addr_(target_addr),
      target_port_(target_port),
      delay_ms_(delay_ms),
      jitter_ms_(jitter_ms) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, listen_addr.c_str(), &a.sin_addr);
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 128) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    return;
  }
  listen_fd_ = fd;
  port_ = ntohs(a.sin_port);
  thread_ = std::thread([this] { Loop(); });
}

DelayRelay::~DelayRelay() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
}

void DelayRelay::Loop() {
  struct Chunk {
    int64_t due;
    std::string data;
    size_t off = 0;
  };
  struct Pipe {  // one direction
    int from, to;
    std::deque<Chunk> q;
    int64_t last_due = 0;
  };
  struct Conn {
    Pipe up, down;  // client -> target, target -> client
    bool dead = false;
  };
  std::vector<std::unique_ptr<Conn>> conns;
  std::mt19937 rng(static_cast<unsigned>(port_));
  std::uniform_int_distribution<int> jitter(-jitter_ms_, jitter_ms_);
  char buf[65536];
  while (!stop_) {
    const int64_t now = NowMs();
    std::vector<pollfd> fds = {{listen_fd_, POLLIN, 0}};
    int64_t next = now + 50;
    for (auto& c : conns) {
      for (Pipe* p : {&c->up, &c->down}) {
        short ev = POLLIN;
        if (!p->q.empty()) {
          if (p->q.front().due <= now) ev |= POLLOUT;
          next = std::min(next, p->q.front().due);
        }
        fds.push_back({p->from, POLLIN, 0});
        fds.push_back({p->to, static_cast<short>(ev & POLLOUT), 0});
      }
    }
    poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(0, next - now)));
    if (fds[0].revents & POLLIN) {
      int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (client >= 0 && cut_) {
        close(client);
      } else if (client >= 0) {
        int up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in t{};
        t.sin_family = AF_INET;
        t.sin_port = htons(static_cast<uint16_t>(target_port_));
        inet_pton(AF_INET, target_addr_.c_str(), &t.sin_addr);
        if (connect(up, reinterpret_cast<sockaddr*>(&t), sizeof t) != 0) {
          close(up);
          close(client);
        } else {
          fcntl(up, F_SETFL, fcntl(up, F_GETFL) | O_NONBLOCK);
          int one = 1;
          setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          auto c = std::make_unique<Conn>();
          c->up.from = client, c->up.to = up;
          c->down.from = up, c->down.to = client;
          conns.push_back(std::move(c));
        }
      }
    }
    const int64_t t = NowMs();
    for (auto& c : conns) {
      if (cut_) {
        c->dead = true;
        continue;
      }
      for (Pipe* p : {&c->up, &c->down}) {
        ssize_t n = recv(p->from, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
          int64_t due = std::max(t + delay_ms_ + jitter(rng), p->last_due);
          p->last_due = due;
          p->q.push_back(Chunk{due, std::string(buf, static_cast<size_t>(n))});
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
          c->dead = true;  // either side closed: close both (ZeroMQ reconnects)
        }
        while (!p->q.empty() && p->q.front().due <= t) {
          Chunk& ch = p->q.front();
          ssize_t w = send(p->to, ch.data.data() + ch.off, ch.data.size() - ch.off,
                           MSG_DONTWAIT | MSG_NOSIGNAL);
          if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) c->dead = true;
            break;
          }
          bytes_ += static_cast<uint64_t>(w);
          ch.off += static_cast<size_t>(w);
          if (ch.off < ch.data.size()) break;
          p->q.pop_front();
        }
      }
    }
    for (auto& c : conns) {
      if (c->dead) close(c->up.from), close(c->up.to);
    }
    conns.erase(std::remove_if(conns.begin(), conns.end(), [](auto& c) { return c->dead; }),
                conns.end());
  }
  for (auto& c : conns) close(c->up.from), close(c->up.to);
}

// ---- NetLab ----

std::unique_ptr<NetLab> NetLab::Create(int namespaces, std::string* why) {
  if (geteuid() != 0) {
    *why = "not root: network namespaces need CAP_NET_ADMIN (run the tests as root)";
    return nullptr;
  }
  std::string out;
  if (Sh({"ip", "netns", "list"}, &out) != 0) {
    *why = "`ip netns list` failed (is iproute2 installed?): " + out;
    return nullptr;
  }
  RemoveStale();
  static int seq = 0;
  std::unique_ptr<NetLab> lab(new NetLab());
  lab->prefix_ = fmt::format("{}a{}b", getpid(), ++seq);
  // A 10.231.X.0/24 no interface of this namespace uses yet.
  std::string addrs;
  Sh({"ip", "-o", "-4", "addr", "show"}, &addrs);
  std::random_device rd;
  int x = -1;
  for (int attempt = 0; attempt < 64 && x < 0; ++attempt) {
    int c = static_cast<int>(rd() % 256);
    if (addrs.find(fmt::format("10.231.{}.", c)) == std::string::npos) x = c;
  }
  if (x < 0) {
    *why = "no free 10.231.X.0/24 subnet";
    return nullptr;
  }
  for (int i = 0; i < namespaces; ++i) {
    Link l;
    l.ns = "ferryt" + lab->prefix_ + std::to_string(i);
    l.host_if = "fh" + lab->prefix_ + std::to_string(i);
    l.ns_if = "fn" + lab->prefix_ + std::to_string(i);
    l.host_addr = fmt::format("10.231.{}.{}", x, 4 * i + 1);
    l.ns_addr = fmt::format("10.231.{}.{}", x, 4 * i + 2);
    if (l.host_if.size() > 15) {
      *why = "interface name too long: " + l.host_if;
      return nullptr;
    }
    lab->links_.push_back(l);
    const std::vector<std::vector<std::string>> steps = {
        {"ip", "netns", "add", l.ns},
        {"ip", "link", "add", l.host_if, "type", "veth", "peer", "name", l.ns_if, "netns", l.ns},
        {"ip", "addr", "add", l.host_addr + "/30", "dev", l.host_if},
        {"ip", "link", "set", l.host_if, "up"},
        {"ip", "-n", l.ns, "addr", "add", l.ns_addr + "/30", "dev", l.ns_if},
        {"ip", "-n", l.ns, "link", "set", l.ns_if, "up"},
        {"ip", "-n", l.ns, "link", "set", "lo", "up"},
        {"ip", "-n", l.ns, "route", "add", "default", "via", l.host_addr},
    };
    for (const auto& s : steps) {
      if (Sh(s, &out) != 0) {
        *why = "`" + Join(s) + "` failed: " + out;
        return nullptr;  // the destructor removes what was made
      }
    }
  }
  return lab;
}

NetLab::~NetLab() {
  relays_.clear();
  for (const Link& l : links_) {
    Sh({"ip", "netns", "del", l.ns});  // takes the veth pair with it
    Sh({"ip", "link", "del", l.host_if});
  }
}

std::vector<std::string> NetLab::InNamespace(int i, const std::vector<std::string>& argv) const {
  // An absolute path: Process (tests/process_util.h) execs without a PATH search.
  std::string ip = "ip";
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(p, X_OK) == 0) {
      ip = p;
      break;
    }
  }
  std::vector<std::string> out = {ip, "netns", "exec", link(i).ns};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

bool NetLab::Impair(int i, int delay_ms, int jitter_ms, double loss_pct, int coordinator_port,
                    std::string* why) {
  const Link& l = link(i);
  const std::vector<std::string> netem = {"netem",
                                          "delay",
                                          std::to_string(delay_ms) + "ms",
                                          std::to_string(jitter_ms) + "ms",
                                          "loss",
                                          fmt::format("{}%", loss_pct)};
  std::string out;
  std::vector<std::string> host = {"tc", "qdisc", "add", "dev", l.host_if, "root"};
  host.insert(host.end(), netem.begin(), netem.end());
  if (Sh(host, &out) == 0) {
    netem_ = true;
    std::vector<std::string> inside = {"ip",    "netns", "exec", l.ns,    "tc",
                                       "qdisc", "add",   "dev",  l.ns_if, "root"};
    inside.insert(inside.end(), netem.begin(), netem.end());
    if (Sh(inside, &out) != 0) {
      *why = "`" + Join(inside) + "` failed: " + out;
      return false;
    }
    return true;
  }
  if (out.find("unknown") == std::string::npos) {
    *why = "`" + Join(host) + "` failed: " + out;
    return false;
  }
  // No sch_netem in this kernel: loss with nftables in the namespace, delay
  // with a relay on the host end.
  netem_ = false;
  const int per_10000 = static_cast<int>(loss_pct * 100 + 0.5);
  const std::string t = "ferry_loss";
  const std::vector<std::vector<std::string>> rules = {
      {"nft", "add", "table", "inet", t},
      {"nft", "add", "chain", "inet", t, "loss_in", "{ type filter hook input priority 0 ; }"},
      {"nft", "add", "chain", "inet", t, "loss_out", "{ type filter hook output priority 0 ; }"},
      {"nft", "add", "rule", "inet", t, "loss_in", "meta", "l4proto", "tcp", "numgen", "random",
       "mod", "10000", "<", std::to_string(per_10000), "counter", "drop"},
      {"nft", "add", "rule", "inet", t, "loss_out", "meta", "l4proto", "tcp", "numgen", "random",
       "mod", "10000", "<", std::to_string(per_10000), "counter", "drop"},
  };
  for (const auto& r : rules) {
    if (Sh(InNamespace(i, r), &out) != 0) {
      *why = "`" + Join(r) + "` in " + l.ns + " failed: " + out;
      return false;
    }
  }
  if (relays_.size() < links_.size()) relays_.resize(links_.size());
  relays_[static_cast<size_t>(i)] = std::make_unique<DelayRelay>(
      l.host_addr, coordinator_addr(), coordinator_port, delay_ms, jitter_ms);
  if (!relays_[static_cast<size_t>(i)]->ok()) {
    *why = "cannot listen on " + l.host_addr + " for the delay relay";
    return false;
  }
  return true;
}

std::string NetLab::Endpoint(int i, int coordinator_port) const {
  const size_t k = static_cast<size_t>(i);
  if (k < relays_.size() && relays_[k]) {
    return fmt::format("tcp://{}:{}", link(i).host_addr, relays_[k]->port());
  }
  return fmt::format("tcp://{}:{}", coordinator_addr(), coordinator_port);
}

uint64_t NetLab::RelayedBytes(int i) const {
  const size_t k = static_cast<size_t>(i);
  return k < relays_.size() && relays_[k] ? relays_[k]->bytes_forwarded() : 0;
}

int64_t NetLab::Dropped(int i) const {
  std::string out, all;
  if (netem_) {
    Sh({"tc", "-s", "qdisc", "show", "dev", link(i).host_if}, &out);
    all += out;
    Sh(InNamespace(i, {"tc", "-s", "qdisc", "show", "dev", link(i).ns_if}), &out);
    all += out;
  } else if (Sh(InNamespace(i, {"nft", "list", "table", "inet", "ferry_loss"}), &all) != 0) {
    return -1;
  }
  std::regex re(netem_ ? "dropped ([0-9]+)" : "packets ([0-9]+)");
  int64_t total = 0;
  for (std::sregex_iterator it(all.begin(), all.end(), re), end; it != end; ++it) {
    total += std::stoll((*it)[1].str());
  }
  return total;
}

bool NetLab::Partition(int i, bool down, std::string* why) {
  std::string out;
  std::vector<std::string> cmd = {"ip",  "link",          "set",
                                  "dev", link(i).host_if, down ? "down" : "up"};
  if (Sh(cmd, &out) != 0) {
    *why = "`" + Join(cmd) + "` failed: " + out;
    return false;
  }
  return true;
}

}  // namespace ferry::testing
