// A connection end that can be held: while held, it refuses every post (not_connected, as
// an unconnected end does) but stays connected, so the peer's operations toward it still
// land. Everything else is the wrapped end's.
//
// Why: a paired reset of a link (both replicas reset their ends toward each other and
// connect them again, from the packet sequence numbers their cards name) is only in step
// if the end reset first posts nothing until the other has reset too; otherwise its
// packets meet the other end's old stream and are refused or, worse on RDMA, acknowledged
// and dropped (scripts/rdma-vm/README.md). The first one holds its posting ends until the
// peer says it has reset (mu/member.ts).
#pragma once

#include <memory>

#include "fabric/fabric.hpp"

namespace mu::engine {

class HoldableConnection final : public fabric::Connection {
 public:
  explicit HoldableConnection(std::unique_ptr<fabric::Connection> end) : end_(std::move(end)) {}

  void hold(bool held) { held_ = held; }
  bool held() const { return held_; }

  std::uint32_t id() const override { return end_->id(); }
  fabric::EndpointInfo local_endpoint() const override { return end_->local_endpoint(); }
  void connect(const fabric::EndpointInfo& remote, fabric::AccessFlags access) override { end_->connect(remote, access); }
  const fabric::EndpointInfo& remote_endpoint() const override { return end_->remote_endpoint(); }
  fabric::ConnectionState state() const override { return end_->state(); }
  void reset() override { end_->reset(); }

  fabric::PostStatus post_write(const fabric::WriteRequest& request) override {
    return held_ ? fabric::PostStatus::not_connected : end_->post_write(request);
  }
  fabric::PostStatus post_read(const fabric::ReadRequest& request) override {
    return held_ ? fabric::PostStatus::not_connected : end_->post_read(request);
  }

  fabric::AccessFlags access() const override { return end_->access(); }
  fabric::ChangeStatus change_access(fabric::AccessFlags access, fabric::AccessPath path) override {
    return end_->change_access(access, path);
  }
  bool access_change_settled() override { return end_->access_change_settled(); }
  std::uint32_t max_outstanding_operations() const override { return end_->max_outstanding_operations(); }

 private:
  std::unique_ptr<fabric::Connection> end_;
  bool held_ = false;
};

}  // namespace mu::engine
