// The pull-score failure detector (paper section 5.1). Every replica bumps a heartbeat
// counter in its own memory; every other replica READs it at a fixed interval and keeps a
// score per peer: up by one when the counter moved, down by one when it did not (or the
// read failed), clamped to [0, max_score]. A peer is declared failed when its score falls
// to failure_threshold and alive again only when it climbs back to recovery_threshold:
// the gap is hysteresis, so a peer on the edge does not flap.
//
// Detection time for a peer that stops: from max_score down to failure_threshold takes
// (max_score - failure_threshold) reads, plus at most one interval of phase. The defaults
// (100 us reads, 8 - 2 = 6 steps) detect a stopped leader in about 0.6 ms, while a peer
// must miss six reads in a row (600 us without one heartbeat) to be suspected at all.
// Why not faster: a parked thread sleeps at least ~35 us on these VMs (nanosleep(1 us)
// measured at 35 us), so an idle replica beats every 40-80 us; reads must be spaced well
// beyond that or a healthy idle peer looks stopped.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "engine/replication/leader_agent.hpp"  // max_replicas
#include "fabric/endpoint.hpp"

namespace mu::engine {

struct DetectorConfig {
  std::uint64_t heartbeat_interval_ns = 20'000;  // the owner bumps its counter this often
  std::uint64_t read_interval_ns = 100'000;      // each peer's counter is read this often
  std::uint32_t max_score = 8;
  std::uint32_t failure_threshold = 2;
  std::uint32_t recovery_threshold = 5;
};

class FailureDetector {
 public:
  // Throws std::invalid_argument unless failure_threshold < recovery_threshold <= max_score
  // and the heartbeat is faster than the reads.
  FailureDetector(const DetectorConfig& config, std::uint32_t replica_count, fabric::NodeId self);

  // One read of `peer`'s counter; nullopt when the read failed.
  void observe(fabric::NodeId peer, std::optional<std::uint64_t> counter);
  // Every replica starts out alive, so a fresh cluster elects replica 0 at once; a peer
  // that is really down is found out within the detection time.
  bool alive(fabric::NodeId peer) const;
  std::uint32_t score(fabric::NodeId peer) const { return peers_[peer].score; }

 private:
  struct Peer {
    std::uint32_t score = 0;
    bool alive = true;
    std::optional<std::uint64_t> last_counter;
  };
  DetectorConfig config_;
  std::uint32_t replica_count_;
  fabric::NodeId self_;
  std::array<Peer, max_replicas> peers_{};
};

}  // namespace mu::engine
