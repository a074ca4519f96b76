#include "engine/replica.hpp"

#include <array>
#include <cstring>
#include <stdexcept>

#include "engine/background/background_layout.hpp"
#include "engine/log_layout.hpp"

namespace mu::engine {
namespace {

class Writer {
 public:
  void put_bytes(std::span<const std::byte> bytes) {
    const std::size_t start = out_.size();
    out_.resize(start + bytes.size());
    std::memcpy(out_.data() + start, bytes.data(), bytes.size());
  }
  void put_u16(std::uint16_t value) {
    std::array<std::byte, 2> bytes;
    std::memcpy(bytes.data(), &value, 2);
    put_bytes(bytes);
  }
  std::vector<std::byte> take() { return std::move(out_); }

 private:
  std::vector<std::byte> out_;
};

class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) : in_(in) {}
  std::span<const std::byte> take(std::size_t count) {
    if (in_.size() - offset_ < count) throw std::invalid_argument("replica card: truncated");
    const auto bytes = in_.subspan(offset_, count);
    offset_ += count;
    return bytes;
  }
  std::uint16_t u16() {
    std::uint16_t value = 0;
    std::memcpy(&value, take(2).data(), 2);
    return value;
  }
  bool done() const { return offset_ == in_.size(); }

 private:
  std::span<const std::byte> in_;
  std::size_t offset_ = 0;
};

}  // namespace

std::vector<std::byte> ReplicaCard::encode() const {
  Writer writer;
  writer.put_u16(node_id);
  writer.put_u16(static_cast<std::uint16_t>(to_log.size()));
  writer.put_bytes(log.encode());
  writer.put_bytes(background.encode());
  for (const auto* ends : {&to_log, &from_leader, &to_background, &from_background}) {
    if (ends->size() != to_log.size()) throw std::invalid_argument("replica card: endpoint lists differ in length");
    for (const auto& end : *ends) writer.put_bytes(end.encode());
  }
  return writer.take();
}

ReplicaCard ReplicaCard::decode(std::span<const std::byte> bytes) {
  Reader reader(bytes);
  ReplicaCard card;
  card.node_id = reader.u16();
  const std::uint16_t count = reader.u16();
  if (count == 0 || count > max_replicas || card.node_id >= count) throw std::invalid_argument("replica card: bad counts");
  card.log = fabric::RegionDescriptor::decode(reader.take(fabric::RegionDescriptor::encoded_bytes));
  card.background = fabric::RegionDescriptor::decode(reader.take(fabric::RegionDescriptor::encoded_bytes));
  for (auto* ends : {&card.to_log, &card.from_leader, &card.to_background, &card.from_background}) {
    for (std::uint16_t i = 0; i < count; ++i) {
      ends->push_back(fabric::EndpointInfo::decode(reader.take(fabric::EndpointInfo::encoded_bytes)));
    }
  }
  if (!reader.done()) throw std::invalid_argument("replica card: trailing bytes");
  return card;
}

Replica::Replica(const ReplicaConfig& config, std::shared_ptr<fabric::Fabric> fabric, ApplyAgent::ApplyEntry apply,
                 const Clock& clock)
    : config_(config), fabric_(std::move(fabric)), apply_entry_(std::move(apply)), clock_(clock) {
  const std::uint32_t n = config_.leader.replica_count;
  if (n == 0 || n > max_replicas || config_.leader.self >= n) throw std::invalid_argument("replica: bad id or count");
  config_.background.self = config_.leader.self;
  config_.background.replica_count = n;
  log_region_ = fabric_->register_region(log_layout::region_bytes(config_.leader.log_area_bytes));
  background_region_ = fabric_->register_region(background_layout::region_bytes);
  log_ = std::make_unique<ReplicaLog>(std::span(log_region_->data(), log_region_->size_bytes()),
                                      config_.leader.max_payload_bytes);
  leader_queue_ = fabric_->create_completion_queue(config_.leader_queue_depth);
  background_queue_ = fabric_->create_completion_queue(config_.background_queue_depth);
  passive_queue_ = fabric_->create_completion_queue(16);
  for (std::uint32_t peer = 0; peer < n; ++peer) {
    to_log_.push_back(fabric_->create_connection(leader_queue_));
    from_leader_.push_back(fabric_->create_connection(passive_queue_));
    to_background_.push_back(fabric_->create_connection(background_queue_));
    held_cards_.emplace_back();
    from_background_.push_back(fabric_->create_connection(passive_queue_));
  }
}

Replica::~Replica() {
  // Agents before the connections and regions they use.
  background_.reset();
  leader_.reset();
  apply_.reset();
}

ReplicaCard Replica::card() const {
  ReplicaCard card;
  card.node_id = node_id();
  card.log = log_region_->descriptor();
  card.background = background_region_->descriptor();
  for (std::size_t peer = 0; peer < to_log_.size(); ++peer) {
    card.to_log.push_back(to_log_[peer]->local_endpoint());
    card.from_leader.push_back(from_leader_[peer]->local_endpoint());
    card.to_background.push_back(to_background_[peer]->local_endpoint());
    card.from_background.push_back(from_background_[peer]->local_endpoint());
  }
  return card;
}

namespace {

// Where an absent peer's regions will be: nothing is ever posted toward them (the
// connection ends to that peer stay unconnected, so a post fails before it looks at the
// region), and reconnect_peer() replaces them with the peer's real regions.
class AbsentRegion final : public fabric::RemoteRegion {
 public:
  explicit AbsentRegion(fabric::NodeId peer) { descriptor_.node_id = peer; }
  const fabric::RegionDescriptor& descriptor() const override { return descriptor_; }

 private:
  fabric::RegionDescriptor descriptor_{};
};

}  // namespace

void Replica::connect(std::span<const ReplicaCard> cards) {
  std::vector<std::optional<ReplicaCard>> present(cards.begin(), cards.end());
  connect(std::span<const std::optional<ReplicaCard>>(present));
}

void Replica::connect(std::span<const std::optional<ReplicaCard>> cards) {
  const std::uint32_t n = config_.leader.replica_count;
  const fabric::NodeId self = node_id();
  if (cards.size() != n) throw std::invalid_argument("replica: need one card (or its absence) per replica");
  if (leader_) throw std::logic_error("replica: connect() called twice");
  std::uint32_t present = 0;
  for (const auto& card : cards) present += card.has_value() ? 1 : 0;
  if (!cards[self].has_value() || present < n / 2 + 1) {
    throw std::invalid_argument("replica: connect() needs the cards of a majority, this replica's included");
  }
  for (fabric::NodeId peer = 0; peer < n; ++peer) {
    if (!cards[peer].has_value()) {
      remote_logs_.push_back(std::make_unique<AbsentRegion>(peer));
      remote_backgrounds_.push_back(std::make_unique<AbsentRegion>(peer));
      continue;
    }
    const ReplicaCard& card = *cards[peer];
    if (card.node_id != peer || card.to_log.size() != n) throw std::invalid_argument("replica: cards out of order");
    connect_ends(peer, card);
    remote_logs_.push_back(fabric_->attach_remote_region(card.log, fabric::Fabric::AttachTiming::at_startup));
    remote_backgrounds_.push_back(fabric_->attach_remote_region(card.background, fabric::Fabric::AttachTiming::at_startup));
  }
  std::vector<AcceptorLink> acceptors;
  std::vector<BackgroundLink> background_links;
  std::vector<fabric::Connection*> log_access;
  for (fabric::NodeId peer = 0; peer < n; ++peer) {
    acceptors.push_back(AcceptorLink{peer, to_log_[peer].get(), remote_logs_[peer].get()});
    background_links.push_back(BackgroundLink{peer, to_background_[peer].get(), remote_backgrounds_[peer].get()});
    log_access.push_back(from_leader_[peer].get());
  }
  apply_ = std::make_unique<ApplyAgent>(*log_, apply_entry_);
  leader_ = std::make_unique<LeaderAgent>(config_.leader, *fabric_, leader_queue_, std::move(acceptors), *log_region_,
                                          clock_);
  // Only while it leads does this replica's leader agent know a commit point; as a
  // follower, its last one is stale but still true (commit points only grow).
  apply_->set_local_commit_hint([leader = leader_.get()] { return leader->first_uncommitted_index(); });
  background_ = std::make_unique<BackgroundAgent>(config_.background, *fabric_, background_queue_,
                                                  std::move(background_links), *background_region_,
                                                  std::move(log_access), *leader_, *apply_, clock_);
  std::vector<fabric::Connection*> background_access;
  for (auto& end : from_background_) background_access.push_back(end.get());
  background_->set_background_access(std::move(background_access));
  for (fabric::NodeId peer = 0; peer < n; ++peer) {
    if (!cards[peer].has_value()) background_->peer_absent(peer);
  }
}

void Replica::reconnect_peer(const ReplicaCard& card, bool hold) {
  const std::uint32_t n = config_.leader.replica_count;
  const fabric::NodeId self = node_id();
  const fabric::NodeId peer = card.node_id;
  if (!leader_) throw std::logic_error("replica: reconnect_peer() before connect()");
  if (peer >= n || peer == self || card.to_log.size() != n) {
    throw std::invalid_argument("replica: a restarted peer's card must name another replica of this cluster");
  }
  // Attach first: a card whose regions cannot be attached changes nothing.
  // On the engine thread, while it runs: the attach must not stall it (see AttachTiming).
  auto log = fabric_->attach_remote_region(card.log, fabric::Fabric::AttachTiming::while_running);
  auto background = fabric_->attach_remote_region(card.background, fabric::Fabric::AttachTiming::while_running);
  held_cards_[peer].reset();
  if (hold) {
    reset_ends(peer);
    held_cards_[peer] = card;
  } else {
    connect_ends(peer, card);
  }
  retired_regions_.push_back(std::move(remote_logs_[peer]));
  retired_regions_.push_back(std::move(remote_backgrounds_[peer]));
  remote_logs_[peer] = std::move(log);
  remote_backgrounds_[peer] = std::move(background);
  leader_->acceptor_restarted(peer, remote_logs_[peer].get());
  background_->peer_restarted(peer, remote_backgrounds_[peer].get());
  background_->hold_link(peer, hold);
}

void Replica::release_link(fabric::NodeId peer) {
  if (!leader_) throw std::logic_error("replica: release_link() before connect()");
  if (peer >= config_.leader.replica_count || peer == node_id()) {
    throw std::invalid_argument("replica: release_link() names another replica of this cluster");
  }
  if (!held_cards_[peer]) return;  // not held (a later reconnect_peer() connected it)
  const ReplicaCard card = std::move(*held_cards_[peer]);
  held_cards_[peer].reset();
  connect_ends(peer, card);  // throws, leaving the ends unconnected, when the peer cannot be reached
  background_->hold_link(peer, false);
}

void Replica::reset_ends(fabric::NodeId peer) {
  from_leader_[peer]->reset();
  to_log_[peer]->reset();
  from_background_[peer]->reset();
  to_background_[peer]->reset();
}

void Replica::connect_ends(fabric::NodeId peer, const ReplicaCard& card) {
  const fabric::NodeId self = node_id();
  try {
    reset_ends(peer);
    // Nobody writes this log until the permission manager grants it; background regions
    // are always open to every replica.
    from_leader_[peer]->connect(card.to_log[self], fabric::access_none);
    to_log_[peer]->connect(card.from_leader[self], fabric::access_none);
    from_background_[peer]->connect(card.to_background[self], fabric::access_remote_all);
    to_background_[peer]->connect(card.from_background[self], fabric::access_none);
  } catch (...) {
    // All four ends or none: left unconnected, posts toward the peer fail as they would
    // toward a dead one, and the caller tries the card again.
    reset_ends(peer);
    throw;
  }
}

}  // namespace mu::engine
