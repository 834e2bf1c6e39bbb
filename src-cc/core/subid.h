// Subordinate id ranges through the setuid newuidmap/newgidmap (shadow-utils): a rootless
// container's full map (core/spawn.cc give_userns), and a helper process in a user namespace
// with that map for host-side work on files the user's subordinate ids own (src/subid.ts).
#pragma once

#include "common/report.h"

namespace nsbox {

// A helper's wait status that was not a clean 0 comes back as kMapHelperFailed + the exit
// code (128 + the signal for a killed one; 127: it could not be exec'd), never as an errno.
constexpr int kMapHelperFailed = 100000;
constexpr int kMaxMapHelperArgs = 16;

// Runs `file PID args...` (args null-terminated, at most kMaxMapHelperArgs) with /dev/null as
// its stdio and an empty environment, and waits for it. 0, an errno (the clone or the wait),
// or kMapHelperFailed + its status. Only system calls on the stack and the given data: a
// detached start's P2 runs it under the child's rule. The helper is cloned CLONE_VM |
// CLONE_VFORK on a buffer of this frame, signals blocked across the clone.
int run_map_helper(const char* file, const char* const* args, int pid);

// Runs `file argv envp` in a user namespace of its own whose maps `newuidmap` and
// `newgidmap` write (their args after the PID), `out` as its stdout and stderr. The child
// waits on a pipe until both helpers succeeded (EOF: it exits 125). Returns the helper's wait
// status (>= 0), or -1 with `*sys` and `*err` saying what failed: the clone, a pipe, or one of
// the map helpers (kNewuidmap/kNewgidmap, err as run_map_helper's).
int userns_exec(const char* file, const char* const* argv, const char* const* envp, int out, const char* newuidmap, const char* const* uid_args,
                const char* newgidmap, const char* const* gid_args, Sys* sys, int* err);

}  // namespace nsbox
