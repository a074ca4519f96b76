#include "engine/background/failure_detector.hpp"

#include <cassert>
#include <stdexcept>

namespace mu::engine {

FailureDetector::FailureDetector(const DetectorConfig& config, std::uint32_t replica_count, fabric::NodeId self)
    : config_(config), replica_count_(replica_count), self_(self) {
  if (!(config.failure_threshold < config.recovery_threshold && config.recovery_threshold <= config.max_score)) {
    throw std::invalid_argument("failure detector: need failure_threshold < recovery_threshold <= max_score");
  }
  if (config.heartbeat_interval_ns == 0 || config.heartbeat_interval_ns >= config.read_interval_ns) {
    throw std::invalid_argument("failure detector: the heartbeat must be faster than the reads");
  }
  if (replica_count == 0 || replica_count > max_replicas || self >= replica_count) {
    throw std::invalid_argument("failure detector: bad replica count or id");
  }
  for (Peer& peer : peers_) peer.score = config.recovery_threshold;
}

void FailureDetector::observe(fabric::NodeId peer_id, std::optional<std::uint64_t> counter) {
  assert(peer_id < replica_count_ && peer_id != self_);
  Peer& peer = peers_[peer_id];
  const bool moved = counter && peer.last_counter && *counter != *peer.last_counter;
  if (counter) peer.last_counter = counter;
  if (moved) {
    if (peer.score < config_.max_score) ++peer.score;
  } else if (peer.score > 0) {
    --peer.score;
  }
  if (peer.alive && peer.score <= config_.failure_threshold) peer.alive = false;
  if (!peer.alive && peer.score >= config_.recovery_threshold) peer.alive = true;
}

bool FailureDetector::alive(fabric::NodeId peer) const { return peer == self_ || peers_[peer].alive; }

}  // namespace mu::engine
