// Passing one fd over a unix socket (SCM_RIGHTS). Both sides only make system calls on the
// stack, so the child may use send_fd after clone.
#pragma once

namespace nsbox {

// 0, or -1 with errno set.
int send_fd(int sock, int fd);
// The received fd (close-on-exec), or -1 with errno set; never blocks.
int receive_fd(int sock);

}  // namespace nsbox
