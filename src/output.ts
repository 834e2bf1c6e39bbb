/**
 * Run to completion and collect (Runtime.output): what a code runner needs in one call, as
 * Deno's and Rust's Command.output() give it. Output beyond `maxOutput` bytes on a stream
 * kills the whole container and the result says `truncated`.
 */
import type { Readable } from 'node:stream';

import type { Container, ExitStatus } from './container';
import { invalid } from './errors';

export interface OutputOptions {
  /** Written to the container's stdin, which is then closed. */
  input?: string | Buffer | undefined;
  /** Bytes kept per stream (stdout, stderr); more kills the container. Default 16 MiB. */
  maxOutput?: number | undefined;
}

export interface OutputResult extends ExitStatus {
  stdout: Buffer;
  stderr: Buffer;
  /** A stream went past maxOutput: the container was killed, the output cut there. */
  truncated: boolean;
}

export const DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024;

export function checkOutputOptions(o: OutputOptions): OutputOptions & { maxOutput: number } {
  if (o.input !== undefined && typeof o.input !== 'string' && !Buffer.isBuffer(o.input)) throw invalid('output option input: expected a string or a Buffer');
  const max = o.maxOutput ?? DEFAULT_MAX_OUTPUT;
  if (!Number.isSafeInteger(max) || max < 0) throw invalid('output option maxOutput: expected a whole number of bytes');
  return { ...o, maxOutput: max };
}

export async function collectOutput(c: Container, options: OutputOptions & { maxOutput: number }): Promise<OutputResult> {
  let truncated = false;
  const collect = (stream: Readable | null): Promise<Buffer> => {
    if (!stream) return Promise.resolve(Buffer.alloc(0));
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let size = 0;
      stream.on('data', (d: Buffer) => {
        const room = options.maxOutput - size;
        if (d.length <= room) {
          chunks.push(d);
          size += d.length;
          return;
        }
        // Past the cap, whether this chunk crosses it or the cap was met exactly by the chunks
        // before (then a check for "crossing" alone never fires, and `yes` runs on for ever).
        if (room > 0) chunks.push(d.subarray(0, room));
        size = options.maxOutput;
        if (!truncated) {
          truncated = true;
          c.kill('SIGKILL');
        }
      });
      stream.on('close', () => resolve(Buffer.concat(chunks)));
    });
  };
  const out = collect(c.stdout);
  const err = collect(c.stderr);
  if (c.stdin) c.stdin.end(options.input ?? '');
  const [stdout, stderr, status] = await Promise.all([out, err, c.wait()]);
  return { ...status, stdout, stderr, truncated };
}
