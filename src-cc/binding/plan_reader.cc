// Reads the JS plan (steps, env, user namespace, security) into a core Plan.

#include "binding/plan_reader.h"

#include <sched.h>
#include <stdio.h>
#include <sys/sysmacros.h>

#include <string>
#include <vector>

#include "core/subid.h"

namespace nsbox {
namespace {

bool parse_op(const std::string& s, StepOp* op) {
  static const struct {
    const char* name;
    StepOp op;
  } kOps[] = {
      {"makeRootPrivate", StepOp::kMakeRootPrivate},
      {"mountRootFs", StepOp::kMountRootFs},
      {"bindRoot", StepOp::kBindRoot},
      {"mountFs", StepOp::kMountFs},
      {"bindInRoot", StepOp::kBindInRoot},
      {"mkdirInRoot", StepOp::kMkdirInRoot},
      {"joinCgroup", StepOp::kJoinCgroup},
      {"symlinkInRoot", StepOp::kSymlinkInRoot},
      {"unshareCgroupNs", StepOp::kUnshareCgroupNs},
      {"maskInRoot", StepOp::kMaskInRoot},
      {"readonlyInRoot", StepOp::kReadonlyInRoot},
      {"pivotRoot", StepOp::kPivotRoot},
      {"loopbackUp", StepOp::kLoopbackUp},
      {"sethostname", StepOp::kSethostname},
      {"chdir", StepOp::kChdir},
      {"openPty", StepOp::kOpenPty},
      {"mountWriteLayer", StepOp::kMountWriteLayer},
  };
  for (const auto& e : kOps) {
    if (s == e.name) {
      *op = e.op;
      return true;
    }
  }
  return false;
}

std::string hex64(uint64_t v) {
  char buf[17];
  snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

void read_steps(Reader& r, Napi::Object js, Plan& plan) {
  Napi::Value v = js.Get("steps");
  if (!v.IsArray()) return r.Fail("steps must be an array");
  Napi::Array steps = v.As<Napi::Array>();
  for (uint32_t i = 0; i < steps.Length() && r.ok(); i++) {
    Napi::Value sv = steps.Get(i);
    if (!sv.IsObject()) return r.Fail("each step must be an object");
    Napi::Object so = sv.As<Napi::Object>();
    Step s;
    if (!parse_op(r.Str(so, "op", true), &s.op)) return r.Fail("unknown step op");
    s.name = plan.keep(r.Str(so, "name"));
    s.source = plan.keep(r.Str(so, "source"));
    s.target = plan.keep(r.Str(so, "target"));
    s.fstype = plan.keep(r.Str(so, "fstype"));
    std::vector<std::string> options = r.Strs(so, "options");
    if (options.size() % 2) return r.Fail("options must be key, value pairs");
    std::vector<const char*>& ptrs = plan.string_lists.emplace_back();
    for (std::string& o : options) ptrs.push_back(plan.keep(std::move(o)));
    s.options = ptrs.data();
    s.options_count = static_cast<uint32_t>(ptrs.size() / 2);
    s.attrs = static_cast<uint64_t>(r.Num(so, "attrs"));
    s.mode = static_cast<uint32_t>(r.Num(so, "mode"));
    s.flags = static_cast<uint32_t>(r.Num(so, "flags"));
    s.dev = makedev(static_cast<unsigned>(r.Num(so, "major")), static_cast<unsigned>(r.Num(so, "minor")));
    s.fd = so.Get("fd").IsNumber() ? static_cast<int>(r.Num(so, "fd")) : -1;
    if (s.op == StepOp::kJoinCgroup && s.fd < 0) return r.Fail("joinCgroup needs an fd");
    plan.steps.push_back(s);
  }
}

void read_list(Reader& r, Napi::Object js, const char* key, Plan& plan, std::vector<const char*>& out, bool terminate) {
  for (std::string& s : r.Strs(js, key)) out.push_back(plan.keep(std::move(s)));
  if (terminate) out.push_back(nullptr);
}

// userns: { uidMap, gidMap, setgroupsDeny }: a user namespace of the container's own, whose
// maps the child writes (core/child.cc write_id_maps).
void read_userns(Reader& r, Napi::Object js, Plan& plan) {
  Napi::Value v = js.Get("userns");
  if (v.IsUndefined()) return;
  if (!v.IsObject()) return r.Fail("userns must be an object");
  Napi::Object u = v.As<Napi::Object>();
  plan.userns.enabled = true;
  plan.userns.uid_map = plan.keep(r.Str(u, "uidMap"));
  plan.userns.gid_map = plan.keep(r.Str(u, "gidMap"));
  plan.userns.setgroups_deny = r.Bool(u, "setgroupsDeny");
  Napi::Value external = u.Get("external");
  plan.userns.external = external.IsBoolean() && external.As<Napi::Boolean>().Value();
  Napi::Value hv = u.Get("hostFds");
  if (!hv.IsUndefined()) {
    if (!hv.IsArray() || !plan.userns.external) return r.Fail("userns.hostFds must be an array, with external");
    Napi::Array ha = hv.As<Napi::Array>();
    if (ha.Length() > kMaxHostFds) return r.Fail("userns.hostFds: too many");
    for (uint32_t i = 0; i < ha.Length() && r.ok(); i++) {
      Napi::Value hi = ha.Get(i);
      if (!hi.IsObject()) return r.Fail("userns.hostFds: each must be an object");
      Napi::Object ho = hi.As<Napi::Object>();
      HostFd h;
      h.path = plan.keep(r.Str(ho, "path", true));
      h.fd = static_cast<int>(r.Num(ho, "fd"));
      h.flags = static_cast<uint32_t>(r.Num(ho, "flags"));
      if (h.path[0] != '/' || h.fd < 3) return r.Fail("userns.hostFds: an absolute path and an fd above 2");
      plan.userns.host_fds.push_back(h);
    }
  }
  Napi::Value helper = u.Get("mapHelper");
  if (!helper.IsUndefined()) {
    // { newuidmap, newgidmap, uidArgs, gidArgs }: rootless with a subordinate range (plan.h).
    if (!helper.IsObject() || !plan.userns.external || !plan.userns.host_fds.empty())
      return r.Fail("userns.mapHelper must be an object, with external and no hostFds");
    Napi::Object h = helper.As<Napi::Object>();
    plan.userns.newuidmap = plan.keep(r.Str(h, "newuidmap", true));
    plan.userns.newgidmap = plan.keep(r.Str(h, "newgidmap", true));
    for (const char* key : {"uidArgs", "gidArgs"}) {
      std::vector<const char*>& out = key[0] == 'u' ? plan.userns.uid_args : plan.userns.gid_args;
      for (std::string& a : r.Strs(h, key)) out.push_back(plan.keep(std::move(a)));
      if (out.empty() || out.size() > kMaxMapHelperArgs) return r.Fail("userns.mapHelper: 1 to 16 arguments each");
      out.push_back(nullptr);
    }
    if (plan.userns.newuidmap[0] != '/' || plan.userns.newgidmap[0] != '/') return r.Fail("userns.mapHelper: absolute paths");
    plan.share_vm = false;
  }
  if (plan.userns.external && plan.userns.setgroups_deny) return r.Fail("userns: external maps keep setgroups");
  plan.clone_flags |= CLONE_NEWUSER;
  // With setgroups denied nsbox-init cannot clear the supplementary groups (the kernel refuses
  // setgroups in that namespace); they show as the overflow gid inside and grant nothing new.
  if (plan.userns.setgroups_deny) plan.init_options.emplace_back("nosetgroups");
}

// Capabilities, ids, no_new_privs and the seccomp program, as nsbox-init's options.
void read_security(Reader& r, Napi::Object js, Plan& plan) {
  Napi::Value v = js.Get("security");
  if (!v.IsObject()) return;
  Napi::Object so = v.As<Napi::Object>();
  // Capability masks as BigInt-free pairs of 32-bit halves.
  auto mask = [&](const char* key) -> uint64_t {
    Napi::Value m = so.Get(key);
    if (!m.IsArray() || m.As<Napi::Array>().Length() != 2) {
      r.Fail(std::string("security.") + key + " must be [low, high]");
      return 0;
    }
    Napi::Array a = m.As<Napi::Array>();
    Napi::Value low = a.Get(0u), high = a.Get(1u);
    if (!low.IsNumber() || !high.IsNumber()) {
      r.Fail(std::string("security.") + key + " must be [low, high]");
      return 0;
    }
    return static_cast<uint64_t>(low.As<Napi::Number>().Uint32Value()) | (static_cast<uint64_t>(high.As<Napi::Number>().Uint32Value()) << 32);
  };
  std::vector<std::string>& o = plan.init_options;
  o.push_back("bset=" + hex64(mask("bounding")));
  o.push_back("eff=" + hex64(mask("effective")));
  if (!so.Get("ambient").IsUndefined()) o.push_back("amb=" + hex64(mask("ambient")));
  if (r.Bool(so, "noNewPrivs")) o.emplace_back("nnp");
  Napi::Value uid = so.Get("uid");
  if (uid.IsNumber()) {
    o.push_back("ids=" + std::to_string(uid.As<Napi::Number>().Uint32Value()) + ":" + std::to_string(static_cast<uint32_t>(r.Num(so, "gid"))));
  }
  Napi::Value filter = so.Get("seccomp");
  if (filter.IsTypedArray()) {
    // struct sock_filter is 8 bytes: code u16, jt u8, jf u8, k u32.
    Napi::TypedArray ta = filter.As<Napi::TypedArray>();
    size_t len = ta.ByteLength();
    if (len % 8 || len == 0) return r.Fail("security.seccomp must hold whole BPF instructions");
    Napi::ArrayBuffer buffer = ta.ArrayBuffer();
    if (buffer.IsEmpty() || buffer.Data() == nullptr) return r.Fail("security.seccomp: its buffer cannot be read");
    const unsigned char* bytes = static_cast<const unsigned char*>(buffer.Data()) + ta.ByteOffset();
    static const char kHex[] = "0123456789abcdef";
    std::string text = "seccomp=";
    text.reserve(text.size() + 2 * len);
    for (size_t i = 0; i < len; i++) {
      text += kHex[bytes[i] >> 4];
      text += kHex[bytes[i] & 15];
    }
    o.push_back(std::move(text));
  }
}

}  // namespace nsbox
