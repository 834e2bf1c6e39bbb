/**
 * Imported first by the CLI's entry point: on Node >= 22.1, V8's compiled code for nsbox's
 * modules is kept on disk (Node's own cache directory, $NODE_COMPILE_CACHE or the temp dir;
 * NODE_DISABLE_COMPILE_CACHE=1 turns it off), so that each CLI start skips compiling them.
 * Older Nodes have no such call: nothing happens.
 */
// Asked only where the call exists: on Node 20, requiring node:module from a CommonJS file
// loads the ES module loader with it (about 0.7 ms of every CLI start).
const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
if (major > 22 || (major === 22 && minor >= 1)) {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- only on the Nodes that have the call
  const enable = (require('node:module') as { enableCompileCache?: () => unknown }).enableCompileCache;
  if (typeof enable === 'function') {
    try {
      enable();
    } catch {
      // A cache that cannot be set up (read-only temp dir) only costs speed.
    }
  }
}
export {};
