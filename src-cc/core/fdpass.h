// Passing one fd over a unix socket (SCM_RIGHTS). Both sides only make system calls on the
// stack, so the child may use send_fd after clone.
#pragma once

namespace nsbox {

// 0, or -1 with errno set.
int send_fd(int sock, int fd);
// The received fd (close-on-exec), or -1 with errno set; never blocks.
int receive_fd(int sock);

// Up to kMaxFdsPerMessage fds in one message with one byte of data: 0, or -1 with errno set.
constexpr int kMaxFdsPerMessage = 200;
int send_fds(int sock, const int* fds, int count);
// Blocks for one such message; the fds (close-on-exec) go to `out`. Their count, 0 at EOF,
// or -1 with errno set. Stack only, so the child may call it after clone.
int receive_fds(int sock, int* out, int max);

}  // namespace nsbox
