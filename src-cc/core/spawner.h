// A thread of nsbox's own that clones every container (one per Node environment).
//
// Why a thread: a new process starts in the cgroups of the thread that cloned it. This thread
// joins the shared device cgroup once (`tasks`, this thread only: the rest of Node keeps its
// device access), and every container it clones is born there with no step of its own.
// Both moves, this thread's and a child's kJoinCgroup, write "0" to a v1 `tasks` file: a
// thread moving itself alone takes no global lock, while a move by pid or of a whole process
// (`cgroup.procs`) write-locks cgroup_threadgroup_rwsem and waits for an RCU grace period,
// 6-14 ms here whenever the last such move was not a moment ago (bench/ANALYSIS.md).
// The JS thread waits for each start as before (a start stays synchronous).
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "core/spawn.h"

namespace nsbox {

class Spawner {
 public:
  Spawner();
  ~Spawner();
  Spawner(const Spawner&) = delete;
  Spawner& operator=(const Spawner&) = delete;

  // spawn(plan, init_fd) on the spawner thread, once that thread is in the cgroup whose
  // `tasks` file is `cgroup_tasks` ("" for wherever it is). Blocks until done.
  SpawnResult Run(const Plan& plan, int init_fd, const std::string& cgroup_tasks);
  // Any other start (exec) on the same thread, under the same rule.
  SpawnResult RunJob(std::function<SpawnResult()> job, const std::string& cgroup_tasks);

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  const Plan* plan_ = nullptr;
  int init_fd_ = -1;
  std::function<SpawnResult()> job_fn_;
  std::string tasks_;
  bool job_ = false, done_ = false, stop_ = false;
  SpawnResult result_;
  std::string joined_;  // the tasks file this thread was last moved into
  std::thread thread_;
};

}  // namespace nsbox
