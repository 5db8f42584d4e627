// Network namespaces for network-fault tests and `ferry-chaos --netem`
// (root only). A NetLab makes N namespaces, each joined to the root
// namespace by its own veth pair on a /30 of a randomly picked, unused
// 10.231.X.0/24 (host end .4i+1, namespace end .4i+2), and removes them
// again on destruction — also after a failed assertion, and the next NetLab
// removes the leftovers of a process that died without cleaning up.
//
// Faults:
// - Impair(i, …): delay ± jitter and loss on both directions of link i with
//   `tc netem` where the kernel has sch_netem. A kernel without it (e.g.
//   CONFIG_NET_SCH_NETEM unset, as on Firecracker VMs) gets the same from
//   what it has: nftables drops `loss` of the packets in the namespace
//   (numgen random), and a DelayRelay in the root namespace listening on the
//   link's host address holds every chunk of each TCP stream for
//   delay ± jitter (order kept) before passing it on; workers connect to
//   Endpoint(i, coordinator_port), which names the relay or the coordinator.
//   ImpairMode() says which ("netem" or "nft-loss+relay-delay").
// - Partition(i, true/false): takes link i down (ip link set … down) / up.
//
// Thread safety: a NetLab belongs to one thread (relays run their own).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace ferry::testing {

// Forwards TCP connections accepted on listen_addr:(picked port) to
// target_addr:target_port, each direction delayed by delay_ms ± jitter_ms
// (uniform), keeping each stream's byte order. Runs one thread.
class DelayRelay {
 public:
  DelayRelay(const std::string& listen_addr, const std::string& target_addr, int target_port,
             int delay_ms, int jitter_ms);
  ~DelayRelay();
  int port() const { return port_; }
  bool ok() const { return listen_fd_ >= 0; }
  uint64_t bytes_forwarded() const { return bytes_.load(); }
  // While cut, every relayed connection is closed and new ones are closed
  // as soon as they are accepted: the target is gone for the client.
  void Cut(bool cut) { cut_ = cut; }

 private:
  void Loop();
  int listen_fd_ = -1, port_ = 0;
  std::string target_addr_;
  int target_port_, delay_ms_, jitter_ms_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> cut_{false};
  std::atomic<uint64_t> bytes_{0};
  std::thread thread_;
};

class NetLab {
 public:
  struct Link {
    std::string ns, host_if, ns_if, host_addr, ns_addr;
  };

  // Null (and *why says why: not root, no `ip netns`, …) if the lab cannot
  // be built; tests then skip with that message.
  static std::unique_ptr<NetLab> Create(int namespaces, std::string* why);
  ~NetLab();
  NetLab(const NetLab&) = delete;
  NetLab& operator=(const NetLab&) = delete;

  const Link& link(int i) const { return links_.at(static_cast<size_t>(i)); }
  int size() const { return static_cast<int>(links_.size()); }
  // The address the coordinator listens on: the host end of link 0 (every
  // namespace routes to it through its own link).
  const std::string& coordinator_addr() const { return links_[0].host_addr; }
  // `argv` run inside namespace i (ip netns exec).
  std::vector<std::string> InNamespace(int i, const std::vector<std::string>& argv) const;

  // delay ± jitter (ms) and loss (percent) on link i, both directions.
  // False (and *why) on failure.
  bool Impair(int i, int delay_ms, int jitter_ms, double loss_pct, int coordinator_port,
              std::string* why);
  std::string ImpairMode() const { return netem_ ? "netem" : "nft-loss+relay-delay"; }
  // tcp://ADDR:PORT a worker in namespace i connects to (the relay when one
  // delays link i, else the coordinator).
  std::string Endpoint(int i, int coordinator_port) const;
  // Bytes the delay relay of link i has passed on (0 without a relay).
  uint64_t RelayedBytes(int i) const;
  // Packets dropped on link i so far by the loss rule (netem or nft), -1 if unknown.
  int64_t Dropped(int i) const;

  bool Partition(int i, bool down, std::string* why);

 private:
  NetLab() = default;
  std::vector<Link> links_;
  std::vector<std::unique_ptr<DelayRelay>> relays_;  // per link; null: none
  bool netem_ = false;
  std::string prefix_;
};

// Runs argv (no shell), returns its exit status; output (stdout+stderr) to *out.
int Sh(const std::vector<std::string>& argv, std::string* out = nullptr);

}  // namespace ferry::testing
