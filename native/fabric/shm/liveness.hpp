// Kernel-reported process liveness through shared memory, readable with one load.
//
// The owner keeps a process-shared robust mutex locked for its whole life, from a thread
// of its own that does nothing else. When the process dies for any reason (SIGKILL
// included), the kernel walks the thread's robust-futex list and sets FUTEX_OWNER_DIED
// in the mutex word (Linux robust-futex ABI); an orderly shutdown unlocks it instead.
// Either way the word stops naming a live owner, and a peer that mapped the same memory
// sees it with a single atomic load: no syscall, no polling of /proc, no guessing from
// timeouts. This is what lets a revoker stop waiting for a dead initiator, and an
// initiator refuse to write into the memory of a dead target.
#pragma once

#include <pthread.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace mu::fabric::shm {

// The word lives in shared memory; LivenessHolder owns it, anyone may call is_alive().
class LivenessHolder {
 public:
  // `word` must be zeroed shared memory that outlives this holder.
  explicit LivenessHolder(pthread_mutex_t* word);
  ~LivenessHolder();
  LivenessHolder(const LivenessHolder&) = delete;
  LivenessHolder& operator=(const LivenessHolder&) = delete;

 private:
  pthread_mutex_t* word_;
  std::mutex stop_mutex_;
  std::condition_variable stop_signal_;
  bool stop_requested_ = false;
  std::thread holder_;
};

// True while the word's owner is alive: locked, by a live thread, never marked dead.
bool is_alive(const pthread_mutex_t* word);

// Confirms that a process has exited entirely. The liveness word turns dead when the
// thread holding it goes, but other threads of a dying process can still run for a moment
// (each must take its SIGKILL), so a revoker that must know a peer's write can no longer
// land waits for the whole process, which a pidfd reports by becoming readable.
class ProcessExitWatch {
 public:
  ProcessExitWatch() = default;
  // Opens a pidfd for `process_id`, then reads `liveness`: if its owner is still alive,
  // the pid cannot have been reused, so the pidfd names that owner ("bound"). Otherwise the
  // watch stays unbound and exited() resolves the pid afresh each time: a pid that no longer
  // exists, or a zombie, has exited; a live process under a reused pid makes it wait
  // (errs on the side of safety).
  ProcessExitWatch(std::uint32_t process_id, const pthread_mutex_t* liveness);
  ~ProcessExitWatch();
  ProcessExitWatch(ProcessExitWatch&& other) noexcept;
  ProcessExitWatch& operator=(ProcessExitWatch&& other) noexcept;
  ProcessExitWatch(const ProcessExitWatch&) = delete;
  ProcessExitWatch& operator=(const ProcessExitWatch&) = delete;

  // True once no thread of the process can run again. One non-blocking poll(2).
  bool exited() const;

 private:
  int pidfd_ = -1;
  std::uint32_t process_id_ = 0;
};

}  // namespace mu::fabric::shm
