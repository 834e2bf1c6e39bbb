// Threads of nsbox's own that clone containers, per cgroup the containers are born in.
//
// Why threads of our own: a new process starts in the cgroups of the thread that cloned it.
// Each spawner thread joins the shared device cgroup once (`tasks`, that thread only: the
// rest of Node keeps its device access), and every container it clones is born there with no
// step of its own. Both moves, a thread's and a child's kJoinCgroup, write "0" to a v1 `tasks`
// file: a thread moving itself alone takes no global lock, while a move by pid or of a whole
// process (`cgroup.procs`) write-locks cgroup_threadgroup_rwsem and waits for an RCU grace
// period, 6-14 ms here whenever the last such move was not a moment ago (bench/ANALYSIS.md).
//
// Why several: with CLONE_VM | CLONE_VFORK the cloning thread is suspended until the child has
// exec'd, and then it waits for nsbox-init's first report. A start holds its thread for all of
// that, so starts in flight at once need as many threads (issue 14: the JS thread never waits
// for a child's setup, and several starts use several cores).
//
// Why a second cgroup, `setup` (issue 14: the event loop stays responsive while containers
// start): a v1 `cpu` cgroup of low cpu.shares beside the caller's own. The threads join it
// too, so a child is born there and its whole setup (mounts, pivot_root, the host-side calls
// of this thread) competes as one small group; the loop thread stays in the caller's group,
// whose share that setup no longer uses up. Nice values would not do it: with autogroups (or
// any cpu cgroup) the scheduler first shares the CPU between groups, and a niced child still
// spends its own group's share, the loop's. The child leaves for the caller's cpu cgroup as its
// last step, so the container runs where it would have been born without this.
//
// Why they live as long as the Node environment: a container's PR_SET_PDEATHSIG fires when
// the *thread* that cloned it exits, so a spawner thread never ends while its containers may
// run. Threads are made as starts need them, up to a maximum, and joined at teardown only.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/spawn.h"

namespace nsbox {

class Spawner {
 public:
  using Job = std::function<SpawnResult()>;
  using Done = std::function<void(SpawnResult)>;

  // Threads (up to `max_threads`) that join the cgroup whose `tasks` file is `cgroup_tasks`
  // and the one whose `tasks` file is `setup_tasks` ("" for wherever they are) before their
  // first job.
  Spawner(std::string cgroup_tasks, std::string setup_tasks, size_t max_threads);
  // Lets running jobs finish, ends queued ones with ECANCELED (their `done` still runs), joins.
  ~Spawner();
  Spawner(const Spawner&) = delete;
  Spawner& operator=(const Spawner&) = delete;

  // Queues `job`; `done` gets its result on the spawner thread. Returns at once.
  void Post(Job job, Done done);
  // Runs `job` on a spawner thread and waits for it.
  SpawnResult Run(Job job);

 private:
  void Loop();

  const std::string tasks_;
  const std::string setup_;
  const size_t max_threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<Job, Done>> queue_;
  std::vector<std::thread> threads_;
  size_t busy_ = 0;  // threads running a job
  bool stop_ = false;
};

// The spawner threads' maximum per cgroup: $NSBOX_SPAWN_THREADS (1-64), else twice the CPUs
// this process may run on, at least 2 and at most 16.
size_t spawner_threads();

}  // namespace nsbox
