// Mutex, MutexLock and CondVar with clang thread-safety annotations
// (-Wthread-safety): members a mutex protects are declared GUARDED_BY(mu_),
// functions that need it held REQUIRES(mu_), and the compiler checks every
// access. Under gcc the annotations compile to nothing.
//
// Thread safety: that is the point; Mutex is not recursive.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define FERRY_TSA(x) __attribute__((x))
#else
#define FERRY_TSA(x)
#endif

#define CAPABILITY(x) FERRY_TSA(capability(x))
#define SCOPED_CAPABILITY FERRY_TSA(scoped_lockable)
#define GUARDED_BY(x) FERRY_TSA(guarded_by(x))
#define PT_GUARDED_BY(x) FERRY_TSA(pt_guarded_by(x))
#define REQUIRES(...) FERRY_TSA(requires_capability(__VA_ARGS__))
#define ACQUIRE(...) FERRY_TSA(acquire_capability(__VA_ARGS__))
#define RELEASE(...) FERRY_TSA(release_capability(__VA_ARGS__))
#define EXCLUDES(...) FERRY_TSA(locks_excluded(__VA_ARGS__))
#define NO_THREAD_SAFETY_ANALYSIS FERRY_TSA(no_thread_safety_analysis)

namespace ferry {

class CAPABILITY("mutex") Mutex {
 public:
  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  // BasicLockable, for std::condition_variable_any (CondVar).
  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* mu_;
};

// A condition variable waited on with a Mutex held.
class CondVar {
 public:
  // Atomically releases `mu`, waits for a notification, re-acquires it.
  void Wait(Mutex* mu) REQUIRES(mu) { cv_.wait(*mu); }
  // The same, for at most `ms`; false on timeout.
  bool WaitFor(Mutex* mu, int64_t ms) REQUIRES(mu) {
    return cv_.wait_for(*mu, std::chrono::milliseconds(ms)) == std::cv_status::no_timeout;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable_any cv_;
};

}  // namespace ferry
