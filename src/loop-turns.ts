/**
 * Turns of the event loop during long synchronous work on the JS thread (a commit's walk of
 * the layers, cp's walks and writes): nsbox runs inside servers, whose loop must keep serving
 * while a big tree is read. The work keeps its state (its directory fds, its place in the
 * walk) across a turn; `due` says when a turn is owed (callers check it before awaiting `give`),
 * so the cost is one clock read per step and a setImmediate every few milliseconds, not a
 * promise per entry.
 */
import { performance } from 'node:perf_hooks';

/** Synchronous work allowed between two turns of the loop, in milliseconds. */
export const TURN_MS = 4;

export class LoopTurns {
  private last = performance.now();

  constructor(private readonly everyMs = TURN_MS) {}

  /** Whether `everyMs` of work have passed since the last turn (or since this was made). */
  get due(): boolean {
    return performance.now() - this.last >= this.everyMs;
  }

  /** Lets the loop run everything that is ready (timers, I/O callbacks), then resumes. */
  async give(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.last = performance.now();
  }
}
