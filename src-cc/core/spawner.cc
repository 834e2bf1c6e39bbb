#include "core/spawner.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

namespace nsbox {
namespace {

// Moves the calling thread (only it) into the cgroup whose v1 `tasks` file is given. "0"
// names the writer itself: the kernel then moves one thread without write-locking the global
// cgroup_threadgroup_rwsem, whose write side waits for an RCU grace period (about 6-14 ms
// here after a quiet moment). Writing the thread's own id instead takes that lock.
int join_cgroup_thread(const std::string& tasks) {
  int fd = open(tasks.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  ssize_t n;
  do {
    n = write(fd, "0", 1);
  } while (n < 0 && errno == EINTR);
  int err = n < 0 ? errno : 0;
  close(fd);
  return err;
}

}  // namespace

Spawner::Spawner() : thread_([this] { Loop(); }) {}

Spawner::~Spawner() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

SpawnResult Spawner::Run(const Plan& plan, int init_fd, const std::string& cgroup_tasks) {
  std::unique_lock<std::mutex> lock(mu_);
  plan_ = &plan;
  init_fd_ = init_fd;
  tasks_ = cgroup_tasks;
  job_ = true;
  done_ = false;
  cv_.notify_all();
  cv_.wait(lock, [this] { return done_; });
  return result_;
}

SpawnResult Spawner::RunJob(std::function<SpawnResult()> job, const std::string& cgroup_tasks) {
  std::unique_lock<std::mutex> lock(mu_);
  job_fn_ = std::move(job);
  tasks_ = cgroup_tasks;
  job_ = true;
  done_ = false;
  cv_.notify_all();
  cv_.wait(lock, [this] { return done_; });
  job_fn_ = nullptr;
  return result_;
}

void Spawner::Loop() {
  // No signal handler of Node's ever runs here; spawn() blocks them around clone anyway.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, nullptr);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return job_ || stop_; });
    if (stop_) return;
    job_ = false;
    SpawnResult r;
    if (!tasks_.empty() && tasks_ != joined_) {
      int err = join_cgroup_thread(tasks_);
      if (err) {
        r.parent_sys = Sys::kWrite;
        r.parent_errno = err;
      } else {
        joined_ = tasks_;
      }
    }
    if (r.parent_sys == Sys::kNone) r = job_fn_ ? job_fn_() : spawn(*plan_, init_fd_);
    result_ = r;
    done_ = true;
    cv_.notify_all();
  }
}

}  // namespace nsbox
