// The cgroup v2 device program (src/devbpf.ts), run in a small eBPF interpreter of the
// instructions it uses: what it allows and refuses for each kind of access. The same program
// is attached to a real cgroup in test/container-devices.test.ts.
import { describe, expect, it } from 'vitest';

import { DEVICE_ALLOWLIST } from '../../src/cgroup';
import { DEVCG, EBPF, deviceProgram, parseDeviceRule } from '../../src/devbpf';

function run(prog: Uint8Array, type: 'c' | 'b', access: string, major: number, minor: number): number {
  const view = new DataView(prog.buffer, prog.byteOffset, prog.byteLength);
  const acc = (access.includes('m') ? DEVCG.ACC_MKNOD : 0) | (access.includes('r') ? DEVCG.ACC_READ : 0) | (access.includes('w') ? DEVCG.ACC_WRITE : 0);
  const ctx = [(acc << 16) | (type === 'c' ? DEVCG.DEV_CHAR : DEVCG.DEV_BLOCK), major, minor];
  const r = new Array<number>(11).fill(0);
  for (let pc = 0, steps = 0; steps < 10_000; pc++, steps++) {
    if (pc * 8 >= prog.length) throw new Error('ran off the end');
    const code = view.getUint8(pc * 8);
    const regs = view.getUint8(pc * 8 + 1);
    const dst = regs & 15,
      src = regs >> 4;
    const off = view.getInt16(pc * 8 + 2, true);
    const imm = view.getInt32(pc * 8 + 4, true);
    switch (code) {
      case EBPF.LDX_MEM_W:
        expect(src).toBe(1);
        r[dst] = ctx[off / 4]!;
        break;
      case EBPF.MOV64_REG:
        r[dst] = r[src]!;
        break;
      case EBPF.MOV64_IMM:
        r[dst] = imm;
        break;
      case EBPF.AND64_IMM:
        r[dst] = r[dst]! & imm;
        break;
      case EBPF.RSH64_IMM:
        r[dst] = r[dst]! >>> imm;
        break;
      case EBPF.JNE_IMM:
        if (r[dst] !== imm) pc += off;
        break;
      case EBPF.EXIT:
        return r[0]!;
      default:
        throw new Error(`opcode ${code}`);
    }
  }
  throw new Error('no exit');
}

describe('the v2 device program', () => {
  const prog = deviceProgram(DEVICE_ALLOWLIST.map(parseDeviceRule));

  it('allows the standard nodes, the terminals and mknod of anything', () => {
    for (const [major, minor] of [
      [1, 3],
      [1, 5],
      [1, 7],
      [1, 8],
      [1, 9],
      [5, 0],
      [5, 2],
      [136, 0],
      [136, 77],
    ]) {
      expect(run(prog, 'c', 'rw', major!, minor!)).toBe(1);
    }
    expect(run(prog, 'c', 'm', 10, 232)).toBe(1);
    expect(run(prog, 'b', 'm', 7, 0)).toBe(1);
  });

  it('refuses to open anything else: disks, kmsg, kvm, mem, fuse', () => {
    expect(run(prog, 'b', 'r', 7, 0)).toBe(0);
    expect(run(prog, 'b', 'rw', 8, 0)).toBe(0);
    expect(run(prog, 'c', 'r', 1, 11)).toBe(0);
    expect(run(prog, 'c', 'w', 1, 11)).toBe(0);
    expect(run(prog, 'c', 'rw', 10, 232)).toBe(0);
    expect(run(prog, 'c', 'r', 1, 1)).toBe(0);
    expect(run(prog, 'c', 'rw', 10, 229)).toBe(0);
    // A block device with a char device's numbers is not that char device.
    expect(run(prog, 'b', 'rw', 1, 3)).toBe(0);
  });

  it('an access beyond a rule is refused: mknod-only does not allow a read', () => {
    const mk = deviceProgram([parseDeviceRule('c 10:229 m')]);
    expect(run(mk, 'c', 'm', 10, 229)).toBe(1);
    expect(run(mk, 'c', 'rm', 10, 229)).toBe(0);
  });

  it('an extra rule (a --device) allows just that node', () => {
    const withFuse = deviceProgram([...DEVICE_ALLOWLIST, 'c 10:229 rwm'].map(parseDeviceRule));
    expect(run(withFuse, 'c', 'rw', 10, 229)).toBe(1);
    expect(run(withFuse, 'c', 'rw', 10, 230)).toBe(0);
  });
});
