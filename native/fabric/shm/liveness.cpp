#include "fabric/shm/liveness.hpp"

#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cassert>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <future>
#include <string>
#include <utility>

#include "fabric/fabric.hpp"

namespace mu::fabric::shm {
namespace {

// glibc keeps the futex word of a mutex in its first field; the kernel's robust-list
// entry points at it, and it is the word the kernel marks on owner death.
static_assert(offsetof(pthread_mutex_t, __data.__lock) == 0);

void check(int result, const char* what) {
  if (result != 0) throw FabricError(std::string("shm liveness: ") + what + ": " + std::strerror(result));
}

int open_pidfd(std::uint32_t process_id) {
  return static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(process_id), 0));
}

bool pidfd_readable(int pidfd) {
  pollfd entry{.fd = pidfd, .events = POLLIN, .revents = 0};
  return ::poll(&entry, 1, 0) == 1;
}

}  // namespace

LivenessHolder::LivenessHolder(pthread_mutex_t* word) : word_(word) {
  pthread_mutexattr_t attributes;
  check(pthread_mutexattr_init(&attributes), "mutexattr_init");
  check(pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED), "setpshared");
  check(pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST), "setrobust");
  check(pthread_mutex_init(word_, &attributes), "mutex_init");
  pthread_mutexattr_destroy(&attributes);

  // The holder thread takes the lock and sleeps until shutdown. A dedicated thread (not the
  // caller's) makes liveness independent of which thread created the fabric.
  std::promise<int> locked;
  auto locked_result = locked.get_future();
  holder_ = std::thread([this, &locked] {
    locked.set_value(pthread_mutex_lock(word_));
    std::unique_lock guard(stop_mutex_);
    stop_signal_.wait(guard, [this] { return stop_requested_; });
    pthread_mutex_unlock(word_);
  });
  const int lock_result = locked_result.get();
  if (lock_result != 0) {
    { std::lock_guard guard(stop_mutex_); stop_requested_ = true; }
    stop_signal_.notify_one();
    holder_.join();
    check(lock_result, "mutex_lock");
  }
  assert(is_alive(word_));
}

LivenessHolder::~LivenessHolder() {
  { std::lock_guard guard(stop_mutex_); stop_requested_ = true; }
  stop_signal_.notify_one();
  holder_.join();
}

bool is_alive(const pthread_mutex_t* word) {
  // Read-only view of the futex word; the owner and the kernel are its only writers.
  const auto* futex_word = reinterpret_cast<const int*>(word);
  const auto value = static_cast<unsigned>(__atomic_load_n(futex_word, __ATOMIC_SEQ_CST));
  return (value & FUTEX_TID_MASK) != 0 && (value & FUTEX_OWNER_DIED) == 0;
}

ProcessExitWatch::ProcessExitWatch(std::uint32_t process_id, const pthread_mutex_t* liveness)
    : process_id_(process_id) {
  const int pidfd = open_pidfd(process_id);
  if (pidfd < 0) return;
  if (is_alive(liveness)) {
    pidfd_ = pidfd;
  } else {
    ::close(pidfd);
  }
}

ProcessExitWatch::~ProcessExitWatch() {
  if (pidfd_ >= 0) ::close(pidfd_);
}

ProcessExitWatch::ProcessExitWatch(ProcessExitWatch&& other) noexcept
    : pidfd_(std::exchange(other.pidfd_, -1)), process_id_(other.process_id_) {}

ProcessExitWatch& ProcessExitWatch::operator=(ProcessExitWatch&& other) noexcept {
  if (this != &other) {
    if (pidfd_ >= 0) ::close(pidfd_);
    pidfd_ = std::exchange(other.pidfd_, -1);
    process_id_ = other.process_id_;
  }
  return *this;
}

bool ProcessExitWatch::exited() const {
  if (pidfd_ >= 0) return pidfd_readable(pidfd_);
  const int pidfd = open_pidfd(process_id_);
  if (pidfd >= 0) {
    const bool readable = pidfd_readable(pidfd);
    ::close(pidfd);
    return readable;
  }
  if (errno == ESRCH) return true;
  // No pidfd support (Linux < 5.3): a pid that kill(2) cannot find has been reaped.
  return ::kill(static_cast<pid_t>(process_id_), 0) != 0 && errno == ESRCH;
}

}  // namespace mu::fabric::shm
