#include "core/spawner.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
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

size_t spawner_threads() {
  const char* env = getenv("NSBOX_SPAWN_THREADS");
  if (env && *env) {
    char* end = nullptr;
    long n = strtol(env, &end, 10);
    if (*end == '\0' && n >= 1 && n <= 64) return static_cast<size_t>(n);
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  long cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus < 1) cpus = 1;
  long n = 2 * cpus;
  return static_cast<size_t>(n < 2 ? 2 : n > 16 ? 16 : n);
}

Spawner::Spawner(std::string cgroup_tasks, std::string setup_tasks, size_t max_threads)
    : tasks_(std::move(cgroup_tasks)), setup_(std::move(setup_tasks)), max_threads_(max_threads < 1 ? 1 : max_threads) {}

Spawner::~Spawner() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void Spawner::Post(Job job, Done done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.emplace_back(std::move(job), std::move(done));
    // Every thread not busy takes one job (waiting, or about to look again): a new thread
    // only when the jobs outnumber them. A thread counts as free from the moment its job is
    // done, before its caller hears of it, so a caller's next start never makes a thread.
    if (queue_.size() + busy_ > threads_.size() && threads_.size() < max_threads_) threads_.emplace_back([this] { Loop(); });
  }
  cv_.notify_one();
}

SpawnResult Spawner::Run(Job job) {
  std::mutex m;
  std::condition_variable cv;
  bool finished = false;
  SpawnResult out;
  Post(std::move(job), [&](SpawnResult r) {
    std::lock_guard<std::mutex> lock(m);
    out = r;
    finished = true;
    cv.notify_all();
  });
  std::unique_lock<std::mutex> lock(m);
  cv.wait(lock, [&] { return finished; });
  return out;
}

void Spawner::Loop() {
  // No signal handler of Node's ever runs here; spawn() blocks them around clone anyway.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, nullptr);
  bool joined = tasks_.empty() && setup_.empty();
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    std::pair<Job, Done> item = std::move(queue_.front());
    queue_.pop_front();
    busy_++;
    const bool cancelled = stop_;
    lock.unlock();
    SpawnResult r;
    if (cancelled) {
      // The environment is going away: no new container for it.
      r.parent_sys = Sys::kClone;
      r.parent_errno = ECANCELED;
    } else if (!joined) {
      int err = tasks_.empty() ? 0 : join_cgroup_thread(tasks_);
      // The setup cgroup only lowers the setup's share: a thread that cannot join it clones
      // from where it is, and the child's move back (its last step) moves it nowhere.
      if (!err && !setup_.empty()) join_cgroup_thread(setup_);
      if (err) {
        r.parent_sys = Sys::kWrite;
        r.parent_errno = err;
      } else {
        joined = true;
      }
    }
    if (!cancelled && joined) r = item.first();
    lock.lock();
    busy_--;
    lock.unlock();
    item.second(r);
    lock.lock();
  }
}

}  // namespace nsbox
