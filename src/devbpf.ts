/**
 * The device allowlist for cgroup v2, where there is no devices.allow: a tiny eBPF program
 * of type BPF_PROG_TYPE_CGROUP_DEVICE, attached to the container's cgroup, that the kernel
 * runs on every open and mknod of a device node. Built here as plain bytes, like the seccomp
 * filter (src/security.ts), so a unit test can run it; loaded by the addon (core/devbpf.cc).
 *
 * The kernel hands it struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; },
 * access_type = (access << 16) | type. It returns 1 to allow, 0 to refuse (EPERM).
 */

/** One rule, as in devices.allow: `c 1:3 rwm`, `b *:* m`. */
export interface DeviceRule {
  type: 'c' | 'b';
  /** -1: any. */
  major: number;
  minor: number;
  access: string;
}

/** `c 1:3 rwm` → a DeviceRule. */
export function parseDeviceRule(rule: string): DeviceRule {
  const m = /^([cb]) (\*|\d+):(\*|\d+) ([rwm]+)$/.exec(rule);
  if (!m) throw new Error(`device rule ${JSON.stringify(rule)}`);
  const num = (s: string) => (s === '*' ? -1 : Number(s));
  return { type: m[1] as 'c' | 'b', major: num(m[2]!), minor: num(m[3]!), access: m[4]! };
}

// From <linux/bpf.h>.
export const DEVCG = { DEV_BLOCK: 1, DEV_CHAR: 2, ACC_MKNOD: 1, ACC_READ: 2, ACC_WRITE: 4 } as const;

const accessBits = (a: string) => (a.includes('m') ? DEVCG.ACC_MKNOD : 0) | (a.includes('r') ? DEVCG.ACC_READ : 0) | (a.includes('w') ? DEVCG.ACC_WRITE : 0);

// eBPF opcodes used here (<linux/bpf_common.h>, <linux/bpf.h>).
export const EBPF = {
  LDX_MEM_W: 0x61, // dst = *(u32 *)(src + off)
  MOV64_IMM: 0xb7,
  MOV64_REG: 0xbf,
  AND64_IMM: 0x57,
  RSH64_IMM: 0x77,
  JNE_IMM: 0x55,
  EXIT: 0x95,
} as const;

interface Insn {
  code: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
}
const insn = (code: number, dst: number, src: number, off: number, imm: number): Insn => ({ code, dst, src, off, imm });

/**
 * The program: r2 = access, r3 = type, r4 = major, r5 = minor; for each rule, on a match of
 * type, numbers and an access within the rule's, return 1; else return 0.
 */
export function deviceProgram(rules: DeviceRule[]): Uint8Array {
  const prog: Insn[] = [
    insn(EBPF.LDX_MEM_W, 2, 1, 0, 0),
    insn(EBPF.MOV64_REG, 3, 2, 0, 0),
    insn(EBPF.AND64_IMM, 3, 0, 0, 0xffff),
    insn(EBPF.RSH64_IMM, 2, 0, 0, 16),
    insn(EBPF.LDX_MEM_W, 4, 1, 4, 0),
    insn(EBPF.LDX_MEM_W, 5, 1, 8, 0),
  ];
  for (const r of rules) {
    const block: Insn[] = [];
    // Each test jumps past the rest of this block (to the next rule) when it fails: the
    // offset is filled in once the block's length is known.
    const skips: number[] = [];
    const test = (reg: number, value: number) => {
      skips.push(block.length);
      block.push(insn(EBPF.JNE_IMM, reg, 0, 0, value));
    };
    test(3, r.type === 'c' ? DEVCG.DEV_CHAR : DEVCG.DEV_BLOCK);
    if (r.major >= 0) test(4, r.major);
    if (r.minor >= 0) test(5, r.minor);
    // The access asked for must be within the rule's: (access & ~allowed) == 0.
    block.push(insn(EBPF.MOV64_REG, 6, 2, 0, 0));
    block.push(insn(EBPF.AND64_IMM, 6, 0, 0, ~accessBits(r.access) & 7));
    skips.push(block.length);
    block.push(insn(EBPF.JNE_IMM, 6, 0, 0, 0));
    block.push(insn(EBPF.MOV64_IMM, 0, 0, 0, 1), insn(EBPF.EXIT, 0, 0, 0, 0));
    for (const at of skips) block[at]!.off = block.length - at - 1;
    prog.push(...block);
  }
  prog.push(insn(EBPF.MOV64_IMM, 0, 0, 0, 0), insn(EBPF.EXIT, 0, 0, 0, 0));

  const bytes = new Uint8Array(prog.length * 8);
  const view = new DataView(bytes.buffer);
  prog.forEach((p, i) => {
    view.setUint8(i * 8, p.code);
    view.setUint8(i * 8 + 1, (p.src << 4) | p.dst); // little-endian bitfields: dst_reg low nibble
    view.setInt16(i * 8 + 2, p.off, true);
    view.setInt32(i * 8 + 4, p.imm, true);
  });
  return bytes;
}
