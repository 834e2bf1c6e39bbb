#include "core/devbpf.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace nsbox {

DevBpfResult attach_device_program(const char* cgroup_dir, const void* insns, size_t count) {
  DevBpfResult r;
  union bpf_attr load;
  memset(&load, 0, sizeof load);
  load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  load.insn_cnt = static_cast<__u32>(count);
  load.insns = reinterpret_cast<__u64>(insns);
  // The program calls no helper, so the license does not matter to the kernel.
  static const char kLicense[] = "MIT";
  load.license = reinterpret_cast<__u64>(kLicense);
  int prog = static_cast<int>(syscall(SYS_bpf, BPF_PROG_LOAD, &load, sizeof load));
  if (prog < 0) return {errno, "bpf(BPF_PROG_LOAD)"};
  // BPF fds are close-on-exec from the kernel; the cgroup fd is opened so.
  int cg = open(cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cg < 0) {
    r = {errno, "open"};
    close(prog);
    return r;
  }
  union bpf_attr attach;
  memset(&attach, 0, sizeof attach);
  attach.target_fd = static_cast<__u32>(cg);
  attach.attach_bpf_fd = static_cast<__u32>(prog);
  attach.attach_type = BPF_CGROUP_DEVICE;
  if (syscall(SYS_bpf, BPF_PROG_ATTACH, &attach, sizeof attach) < 0) r = {errno, "bpf(BPF_PROG_ATTACH)"};
  // The attachment holds the program for as long as the cgroup exists.
  close(cg);
  close(prog);
  return r;
}

}  // namespace nsbox
