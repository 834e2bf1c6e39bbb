/**
 * Imported first by the CLI's entry point: on Node >= 22.1, V8's compiled code for nsbox's
 * modules is kept on disk (Node's own cache directory, $NODE_COMPILE_CACHE or the temp dir;
 * NODE_DISABLE_COMPILE_CACHE=1 turns it off), so that each CLI start skips compiling them.
 * Older Nodes have no such call: nothing happens.
 */
import * as nodeModule from 'node:module';

const enable = (nodeModule as { enableCompileCache?: () => unknown }).enableCompileCache;
if (typeof enable === 'function') {
  try {
    enable();
  } catch {
    // A cache that cannot be set up (read-only temp dir) only costs speed.
  }
}
