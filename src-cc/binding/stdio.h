// Stdio plumbing for a start: the child's fds 0, 1, 2 and the parent's ends (pipes, /dev/null,
// a caller's fd, or the socket a pty master comes back on).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <napi.h>

#include "binding/plan_reader.h"
#include "core/plan.h"

namespace nsbox {

// The fds a child gets for 0, 1, 2, and the parent's ends, from the JS stdio description.
struct Stdio {
  int child[3] = {0, 1, 2};
  int parent[3] = {-1, -1, -1};
  int pty_master = -1;
  int pty_socket[2] = {-1, -1};  // [0] ours, [1] the child's: it sends the master here
  int devnull = -1;
  int err = 0;
  const char* sys = "";

  // Every fd the child dup2s from must be above 2, or one dup2 could overwrite another's
  // source (Node may run with 0, 1 or 2 closed).
  int above_stdio(int fd) {
    if (fd < 0 || fd > 2) return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    close(fd);
    return moved;
  }

  void CloseChildEnds() {
    for (int i = 0; i < 3; i++) {
      if (child[i] > 2 && child[i] != devnull) close(child[i]);
      child[i] = i;
    }
    if (devnull >= 0) close(devnull);
    devnull = -1;
    for (int& fd : pty_socket) {
      if (fd >= 0) close(fd);
      fd = -1;
    }
  }

  void CloseParentEnds() {
    for (int& fd : parent) {
      if (fd >= 0) close(fd);
      fd = -1;
    }
    if (pty_master >= 0) close(pty_master);
    pty_master = -1;
  }
};

// Makes `io` from the JS stdio description (stdio, stdioFds, tty). false: a bad argument (in
// `r`) or a failed call (io.err, io.sys); the caller closes what was made.
bool setup_stdio(Reader& r, Napi::Object js, Plan& plan, Stdio& io);

}  // namespace nsbox
