// The fabric contract (native/fabric/fabric.hpp), checked against every backend a run
// selects (MU_FABRIC_BACKENDS): shm and sim natively, verbs inside the Soft-RoCE VM
// (scripts/rdma-vm). Two Fabric objects in one process play an initiator node and a
// target node connected by one reliable connection.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <numeric>
#include <thread>

#include "fabric_test_support.hpp"

namespace mu::fabric {
namespace {

using testing::wait_for_completion;
using testing::wait_until_settled;

constexpr std::size_t region_bytes = 64 * 1024;

class Conformance : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    const std::string cluster = testing::unique_cluster_name("conformance");
    initiator_ = testing::create_test_fabric(GetParam(), 0, cluster);
    target_ = testing::create_test_fabric(GetParam(), 1, cluster);
    initiator_queue_ = initiator_->create_completion_queue(1024);
    target_queue_ = target_->create_completion_queue(1024);
    to_target_ = initiator_->create_connection(initiator_queue_);
    from_initiator_ = target_->create_connection(target_queue_);
    source_ = initiator_->register_region(region_bytes);
    memory_ = target_->register_region(region_bytes);
    remote_memory_ = initiator_->attach_remote_region(memory_->descriptor(), Fabric::AttachTiming::at_startup);
    connect(access_remote_all);
  }

  void TearDown() override {
    // Connections before the queues they post to.
    to_target_.reset();
    from_initiator_.reset();
  }

  void connect(AccessFlags target_grants) {
    from_initiator_->connect(to_target_->local_endpoint(), target_grants);
    to_target_->connect(from_initiator_->local_endpoint(), access_none);
  }

  PostStatus write_from_source(std::uint64_t work_id, std::uint64_t remote_offset, std::uint64_t source_offset,
                               std::uint32_t length, bool signaled = true) {
    WriteRequest request;
    request.work_id = work_id;
    request.remote = remote_memory_.get();
    request.remote_offset = remote_offset;
    request.local_region = source_.get();
    request.local_offset = source_offset;
    request.length = length;
    request.signaled = signaled;
    return to_target_->post_write(request);
  }

  PostStatus write_inline(std::uint64_t work_id, std::uint64_t remote_offset, std::span<const std::byte> payload,
                          bool signaled = true) {
    WriteRequest request;
    request.work_id = work_id;
    request.remote = remote_memory_.get();
    request.remote_offset = remote_offset;
    request.inline_payload = payload;
    request.signaled = signaled;
    return to_target_->post_write(request);
  }

  PostStatus read_into_source(std::uint64_t work_id, std::uint64_t remote_offset, std::uint64_t source_offset,
                              std::uint32_t length) {
    ReadRequest request;
    request.work_id = work_id;
    request.remote = remote_memory_.get();
    request.remote_offset = remote_offset;
    request.local_region = source_.get();
    request.local_offset = source_offset;
    request.length = length;
    return to_target_->post_read(request);
  }

  Completion expect_completion(std::uint64_t work_id) {
    const auto completion = wait_for_completion(*initiator_queue_);
    EXPECT_TRUE(completion.has_value()) << "no completion for work " << work_id;
    if (!completion) return Completion{work_id, 0, Opcode::write, CompletionStatus::local_error};
    EXPECT_EQ(completion->work_id, work_id);
    EXPECT_EQ(completion->connection_id, to_target_->id());
    return *completion;
  }

  void expect_success(std::uint64_t work_id) {
    const Completion completion = expect_completion(work_id);
    EXPECT_EQ(completion.status, CompletionStatus::success) << completion_status_name(completion.status);
  }

  void fill_source(std::uint64_t offset, std::size_t length, std::uint8_t seed) {
    for (std::size_t i = 0; i < length; ++i) {
      source_->data()[offset + i] = static_cast<std::byte>(static_cast<std::uint8_t>(seed + i * 31));
    }
  }

  std::vector<std::byte> target_snapshot() const {
    return std::vector<std::byte>(memory_->data(), memory_->data() + memory_->size_bytes());
  }

  std::shared_ptr<Fabric> initiator_;
  std::shared_ptr<Fabric> target_;
  std::shared_ptr<CompletionQueue> initiator_queue_;
  std::shared_ptr<CompletionQueue> target_queue_;
  std::unique_ptr<Connection> to_target_;
  std::unique_ptr<Connection> from_initiator_;
  std::unique_ptr<LocalRegion> source_;
  std::unique_ptr<LocalRegion> memory_;
  std::unique_ptr<RemoteRegion> remote_memory_;
};

TEST_P(Conformance, ConnectedPairReportsItsEndpoints) {
  EXPECT_EQ(to_target_->state(), ConnectionState::connected);
  EXPECT_EQ(from_initiator_->state(), ConnectionState::connected);
  EXPECT_EQ(to_target_->remote_endpoint(), from_initiator_->local_endpoint());
  EXPECT_EQ(from_initiator_->access(), access_remote_all);
  EXPECT_EQ(memory_->descriptor().length_bytes, region_bytes);
  EXPECT_EQ(memory_->descriptor().node_id, 1);
  EXPECT_GE(initiator_->max_inline_bytes(), 64u);
}

TEST_P(Conformance, WriteThenReadRoundTripsAtSeveralSizes) {
  std::uint64_t work_id = 1;
  for (const std::uint32_t length : {1u, 8u, 64u, 256u, 1000u, 4096u, 32768u}) {
    fill_source(0, length, static_cast<std::uint8_t>(length));
    ASSERT_EQ(write_from_source(work_id, 128, 0, length), PostStatus::posted);
    expect_success(work_id++);
    EXPECT_EQ(std::memcmp(memory_->data() + 128, source_->data(), length), 0) << "length " << length;

    std::memset(source_->data() + region_bytes / 2, 0, length);
    ASSERT_EQ(read_into_source(work_id, 128, region_bytes / 2, length), PostStatus::posted);
    const Completion read = expect_completion(work_id++);
    EXPECT_EQ(read.status, CompletionStatus::success);
    EXPECT_EQ(read.opcode, Opcode::read);
    EXPECT_EQ(std::memcmp(source_->data() + region_bytes / 2, source_->data(), length), 0) << "length " << length;
  }
}

TEST_P(Conformance, WriteReachesTheLastByteOfTheRegion) {
  fill_source(0, 16, 9);
  ASSERT_EQ(write_from_source(1, region_bytes - 16, 0, 16), PostStatus::posted);
  expect_success(1);
  EXPECT_EQ(std::memcmp(memory_->data() + region_bytes - 16, source_->data(), 16), 0);
}

TEST_P(Conformance, InlinePayloadIsCopiedAtPostTime) {
  std::array<std::byte, 48> payload;
  payload.fill(std::byte{0x5a});
  ASSERT_EQ(write_inline(7, 512, payload), PostStatus::posted);
  payload.fill(std::byte{0x00});  // the caller may reuse it at once
  expect_success(7);
  for (std::size_t i = 0; i < payload.size(); ++i) ASSERT_EQ(memory_->data()[512 + i], std::byte{0x5a});
}

TEST_P(Conformance, InlinePayloadLongerThanTheLimitIsRejectedAtPost) {
  std::vector<std::byte> payload(initiator_->max_inline_bytes() + 1, std::byte{1});
  EXPECT_EQ(write_inline(1, 0, payload), PostStatus::invalid_request);
  EXPECT_EQ(to_target_->state(), ConnectionState::connected);
}

// RC order: operations on one connection take effect in posting order, so a READ posted
// after a WRITE sees it, and the last of many unsignaled writes to one word wins.
TEST_P(Conformance, OperationsOnOneConnectionTakeEffectInPostingOrder) {
  std::uint64_t work_id = 100;
  for (std::uint64_t value = 1; value <= 64; ++value) {
    std::array<std::byte, 8> word;
    std::memcpy(word.data(), &value, sizeof value);
    ASSERT_EQ(write_inline(work_id++, 64, word, /*signaled=*/false), PostStatus::posted);
    ASSERT_EQ(read_into_source(work_id, 64, 1024, 8), PostStatus::posted);
    expect_success(work_id++);
    std::uint64_t seen = 0;
    std::memcpy(&seen, source_->data() + 1024, sizeof seen);
    ASSERT_EQ(seen, value);
  }
  for (std::uint64_t value = 1; value <= 200; ++value) {
    std::array<std::byte, 8> word;
    std::memcpy(word.data(), &value, sizeof value);
    ASSERT_EQ(write_inline(work_id++, 0, word, /*signaled=*/value == 200), PostStatus::posted);
  }
  expect_success(work_id - 1);
  std::uint64_t last = 0;
  std::memcpy(&last, memory_->data(), sizeof last);
  EXPECT_EQ(last, 200u);
}

TEST_P(Conformance, OutOfBoundsWriteIsRefusedAndChangesNothing) {
  const auto before = target_snapshot();
  fill_source(0, 64, 3);
  ASSERT_EQ(write_from_source(1, region_bytes - 8, 0, 16), PostStatus::posted);
  const Completion completion = expect_completion(1);
  EXPECT_TRUE(is_remote_rejection(completion.status)) << completion_status_name(completion.status);
  EXPECT_EQ(target_snapshot(), before);
  EXPECT_EQ(to_target_->state(), ConnectionState::error);
}

TEST_P(Conformance, WriteFarOutsideTheRegionIsRefused) {
  const auto before = target_snapshot();
  ASSERT_EQ(write_from_source(1, region_bytes * 4, 0, 8), PostStatus::posted);
  EXPECT_TRUE(is_remote_rejection(expect_completion(1).status));
  EXPECT_EQ(target_snapshot(), before);
}

TEST_P(Conformance, OutOfBoundsReadIsRefused) {
  ASSERT_EQ(read_into_source(1, region_bytes - 4, 0, 8), PostStatus::posted);
  EXPECT_TRUE(is_remote_rejection(expect_completion(1).status));
}

TEST_P(Conformance, LocalRangeOutsideTheLocalRegionIsRejectedAtPost) {
  EXPECT_EQ(write_from_source(1, 0, region_bytes - 4, 8), PostStatus::invalid_request);
  EXPECT_EQ(read_into_source(1, 0, region_bytes, 1), PostStatus::invalid_request);
}

TEST_P(Conformance, RemoteRegionOfAnotherNodeIsRejectedAtPost) {
  auto own_region = initiator_->attach_remote_region(source_->descriptor(), Fabric::AttachTiming::at_startup);
  WriteRequest request;
  request.remote = own_region.get();
  request.local_region = source_.get();
  request.length = 8;
  EXPECT_EQ(to_target_->post_write(request), PostStatus::invalid_request);
}

TEST_P(Conformance, PostBeforeConnectIsRejected) {
  auto fresh = initiator_->create_connection(initiator_queue_);
  WriteRequest request;
  request.remote = remote_memory_.get();
  request.local_region = source_.get();
  request.length = 8;
  EXPECT_EQ(fresh->post_write(request), PostStatus::not_connected);
  EXPECT_EQ(fresh->state(), ConnectionState::unconnected);
}

// Mu's permission switch (paper section 4.2): a follower revokes the old leader's write
// access; from then on the old leader's writes fail at the target and change nothing.
TEST_P(Conformance, RevokedWriteFailsAndLeavesTargetMemoryUnchanged) {
  fill_source(0, 64, 1);
  ASSERT_EQ(write_from_source(1, 0, 0, 64), PostStatus::posted);
  expect_success(1);

  ASSERT_TRUE(wait_until_settled(*from_initiator_, from_initiator_->change_access(access_remote_read, AccessPath::fast)));
  EXPECT_EQ(from_initiator_->access(), access_remote_read);
  const auto before = target_snapshot();
  fill_source(0, 64, 2);
  ASSERT_EQ(write_from_source(2, 0, 0, 64), PostStatus::posted);
  const Completion refused = expect_completion(2);
  EXPECT_TRUE(is_remote_rejection(refused.status)) << completion_status_name(refused.status);
  EXPECT_EQ(target_snapshot(), before);
  EXPECT_EQ(to_target_->state(), ConnectionState::error);
  EXPECT_EQ(from_initiator_->state(), ConnectionState::error);
}

TEST_P(Conformance, UnsignaledWriteThatIsRefusedStillCompletes) {
  ASSERT_TRUE(wait_until_settled(*from_initiator_, from_initiator_->change_access(access_none, AccessPath::fast)));
  ASSERT_EQ(write_from_source(5, 0, 0, 8, /*signaled=*/false), PostStatus::posted);
  EXPECT_TRUE(is_remote_rejection(expect_completion(5).status));
}

TEST_P(Conformance, RevokedReadFails) {
  ASSERT_TRUE(wait_until_settled(*from_initiator_, from_initiator_->change_access(access_remote_write, AccessPath::fast)));
  ASSERT_EQ(read_into_source(1, 0, 0, 8), PostStatus::posted);
  EXPECT_TRUE(is_remote_rejection(expect_completion(1).status));
}

TEST_P(Conformance, RegrantAfterRevokeAllowsWritesAgain) {
  ASSERT_TRUE(wait_until_settled(*from_initiator_, from_initiator_->change_access(access_none, AccessPath::fast)));
  ASSERT_TRUE(wait_until_settled(*from_initiator_, from_initiator_->change_access(access_remote_all, AccessPath::fast)));
  fill_source(0, 32, 4);
  ASSERT_EQ(write_from_source(1, 256, 0, 32), PostStatus::posted);
  expect_success(1);
  EXPECT_EQ(std::memcmp(memory_->data() + 256, source_->data(), 32), 0);
  EXPECT_EQ(from_initiator_->state(), ConnectionState::connected);
}

// The robust path cycles the target's end through RESET -> RTS. From a healthy
// connection the writer, which has sent before, stays in step: its next write is judged
// by the new flags, refused, and changes nothing.
TEST_P(Conformance, RobustPathRevokeRefusesTheOldWriter) {
  for (std::uint64_t work_id = 1; work_id <= 20; ++work_id) {
    fill_source(0, 64, static_cast<std::uint8_t>(work_id));
    ASSERT_EQ(write_from_source(work_id, 0, 0, 64), PostStatus::posted);
    expect_success(work_id);
  }
  ASSERT_TRUE(wait_until_settled(*from_initiator_, from_initiator_->change_access(access_remote_read, AccessPath::robust)));
  EXPECT_EQ(from_initiator_->access(), access_remote_read);
  EXPECT_EQ(from_initiator_->state(), ConnectionState::connected);
  const auto before = target_snapshot();
  fill_source(0, 64, 99);
  ASSERT_EQ(write_from_source(100, 0, 0, 64), PostStatus::posted);
  const Completion refused = expect_completion(100);
  EXPECT_TRUE(is_remote_rejection(refused.status)) << completion_status_name(refused.status);
  EXPECT_EQ(target_snapshot(), before);
  EXPECT_EQ(to_target_->state(), ConnectionState::error);
}

TEST_P(Conformance, RobustRevokeThenGrantLeavesTheWriterInStep) {
  for (std::uint64_t work_id = 1; work_id <= 20; ++work_id) {
    ASSERT_EQ(write_from_source(work_id, 0, 0, 64), PostStatus::posted);
    expect_success(work_id);
  }
  ASSERT_TRUE(wait_until_settled(*from_initiator_, from_initiator_->change_access(access_none, AccessPath::robust)));
  ASSERT_TRUE(wait_until_settled(*from_initiator_, from_initiator_->change_access(access_remote_all, AccessPath::robust)));
  fill_source(0, 32, 10);
  ASSERT_EQ(write_from_source(21, 64, 0, 32), PostStatus::posted);
  expect_success(21);
  EXPECT_EQ(std::memcmp(memory_->data() + 64, source_->data(), 32), 0);
  EXPECT_EQ(to_target_->state(), ConnectionState::connected);
}

// After a refusal both ends are in the error state. Granting again cycles the target's
// end back (either path: an errored queue pair cannot be changed in place); the writer's
// end stays in error until it, too, resets and connects: a paired reset, in either order.
TEST_P(Conformance, ErrorStateFlushesLaterOperationsUntilAPairedReset) {
  ASSERT_TRUE(wait_until_settled(*from_initiator_, from_initiator_->change_access(access_none, AccessPath::fast)));
  ASSERT_EQ(write_from_source(1, 0, 0, 8), PostStatus::posted);
  EXPECT_TRUE(is_remote_rejection(expect_completion(1).status));
  EXPECT_EQ(from_initiator_->state(), ConnectionState::error);

  ASSERT_TRUE(wait_until_settled(*from_initiator_, from_initiator_->change_access(access_remote_all, AccessPath::fast)));
  EXPECT_EQ(from_initiator_->state(), ConnectionState::connected);
  ASSERT_EQ(write_from_source(2, 0, 0, 8), PostStatus::posted);
  EXPECT_EQ(expect_completion(2).status, CompletionStatus::flushed);
  EXPECT_EQ(to_target_->state(), ConnectionState::error);

  to_target_->reset();
  to_target_->connect(from_initiator_->local_endpoint(), access_none);
  fill_source(0, 8, 6);
  ASSERT_EQ(write_from_source(3, 0, 0, 8), PostStatus::posted);
  expect_success(3);
  EXPECT_EQ(std::memcmp(memory_->data(), source_->data(), 8), 0);
}

TEST_P(Conformance, PairedResetWorksWhicheverEndReconnectsFirst) {
  ASSERT_TRUE(wait_until_settled(*from_initiator_, from_initiator_->change_access(access_none, AccessPath::fast)));
  ASSERT_EQ(write_from_source(1, 0, 0, 8), PostStatus::posted);
  EXPECT_TRUE(is_remote_rejection(expect_completion(1).status));

  // The writer first, then the target cycles its end back with write access.
  to_target_->reset();
  to_target_->connect(from_initiator_->local_endpoint(), access_none);
  ASSERT_TRUE(wait_until_settled(*from_initiator_, from_initiator_->change_access(access_remote_all, AccessPath::robust)));
  fill_source(0, 8, 7);
  ASSERT_EQ(write_from_source(2, 0, 0, 8), PostStatus::posted);
  expect_success(2);
  EXPECT_EQ(std::memcmp(memory_->data(), source_->data(), 8), 0);
}

TEST_P(Conformance, AccessChangeOnAnUnconnectedEndIsRecordedForConnect) {
  auto fresh = target_->create_connection(target_queue_);
  EXPECT_EQ(fresh->change_access(access_remote_read, AccessPath::fast), ChangeStatus::settled);
  EXPECT_EQ(fresh->access(), access_remote_read);
}

TEST_P(Conformance, ZeroLengthOperationsAreRejectedAtPost) {
  EXPECT_EQ(write_from_source(1, 0, 0, 0), PostStatus::invalid_request);
  EXPECT_EQ(read_into_source(2, 0, 0, 0), PostStatus::invalid_request);
  EXPECT_EQ(to_target_->state(), ConnectionState::connected);
}

// The leader must never count an acknowledgement from a replica whose end is gone.
TEST_P(Conformance, WriteToAPeerWhoseEndIsGoneReportsItUnreachable) {
  from_initiator_.reset();
  ASSERT_EQ(write_from_source(1, 0, 0, 8), PostStatus::posted);
  EXPECT_EQ(expect_completion(1).status, CompletionStatus::peer_unreachable);
  EXPECT_EQ(to_target_->state(), ConnectionState::error);
}

TEST_P(Conformance, DeregisteredRegionIsRefused) {
  auto doomed = target_->register_region(4096);
  auto remote_doomed = initiator_->attach_remote_region(doomed->descriptor(), Fabric::AttachTiming::at_startup);
  doomed.reset();
  WriteRequest request;
  request.work_id = 1;
  request.remote = remote_doomed.get();
  request.local_region = source_.get();
  request.length = 8;
  ASSERT_EQ(to_target_->post_write(request), PostStatus::posted);
  EXPECT_TRUE(is_remote_rejection(expect_completion(1).status));
}

// Unsignaled operations stay outstanding until a later signaled one completes; the
// connection refuses to overrun its send queue instead of corrupting it.
TEST_P(Conformance, OutstandingOperationsAreBoundedUntilASignaledCompletion) {
  const std::uint32_t limit = to_target_->max_outstanding_operations();
  std::array<std::byte, 8> word{};
  for (std::uint32_t i = 0; i + 1 < limit; ++i) {
    ASSERT_EQ(write_inline(i, 0, word, /*signaled=*/false), PostStatus::posted) << i;
  }
  ASSERT_EQ(write_inline(limit, 0, word, /*signaled=*/true), PostStatus::posted);
  EXPECT_EQ(write_inline(limit + 1, 0, word, /*signaled=*/true), PostStatus::queue_full);
  expect_success(limit);
  EXPECT_EQ(write_inline(limit + 2, 0, word, /*signaled=*/true), PostStatus::posted);
  expect_success(limit + 2);
}

// Resets that leave completions behind, repeated without polling, must never overrun the
// completion queue: posts are refused (queue_full) until the leftovers have been polled,
// and every accepted post still yields exactly one completion.
TEST_P(Conformance, RepeatedResetsWithoutPollingNeverOverrunTheCompletionQueue) {
  constexpr std::uint32_t depth = 8;
  auto small_queue = initiator_->create_completion_queue(depth);
  auto target_small_queue = target_->create_completion_queue(depth);
  auto writer = initiator_->create_connection(small_queue);
  auto target_end = target_->create_connection(target_small_queue);
  target_end->connect(writer->local_endpoint(), access_remote_all);
  writer->connect(target_end->local_endpoint(), access_none);
  std::array<std::byte, 8> word{};
  WriteRequest request;
  request.remote = remote_memory_.get();
  request.inline_payload = word;

  // Five rounds end in a paired reset; the last one does not, so its completions are real
  // ones that a queue overrun by leftovers would lose.
  std::uint64_t posted = 0;
  constexpr int rounds = 6;
  for (int round = 0; round < rounds; ++round) {
    for (std::uint32_t i = 0; i < depth; ++i) {
      request.work_id = posted + 1;
      const PostStatus status = writer->post_write(request);
      if (status == PostStatus::queue_full) break;
      ASSERT_EQ(status, PostStatus::posted) << "round " << round;
      ++posted;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // let the device complete them
    if (round == rounds - 1) break;
    writer->reset();
    target_end->reset();
    target_end->connect(writer->local_endpoint(), access_remote_all);
    writer->connect(target_end->local_endpoint(), access_none);
  }
  std::uint64_t completed = 0;
  while (auto completion = wait_for_completion(*small_queue, std::chrono::milliseconds(200))) {
    EXPECT_TRUE(completion->status == CompletionStatus::success || completion->status == CompletionStatus::flushed)
        << completion_status_name(completion->status);
    ++completed;
  }
  EXPECT_GE(posted, depth);
  EXPECT_EQ(completed, posted);
  request.work_id = 1000;
  ASSERT_EQ(writer->post_write(request), PostStatus::posted);
  const auto last = wait_for_completion(*small_queue);
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->work_id, 1000u);
  EXPECT_EQ(last->status, CompletionStatus::success) << completion_status_name(last->status);
}

INSTANTIATE_TEST_SUITE_P(Backends, Conformance, ::testing::ValuesIn(testing::selected_backends()),
                         [](const ::testing::TestParamInfo<Backend>& param_info) {
                           return std::string(backend_name(param_info.param));
                         });

}  // namespace
}  // namespace mu::fabric
