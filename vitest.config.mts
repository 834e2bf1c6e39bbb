import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        // Pure logic: plan building, tar encoding, argument parsing, BPF. No root, no kernel
        // features, no fixtures: `npx vitest run --project unit` works anywhere.
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'] },
      },
      {
        // Real containers on the real kernel, as root.
        test: {
          name: 'kernel',
          include: ['test/**/*.test.ts'],
          exclude: ['test/unit/**'],
          globalSetup: ['test/global-setup.ts'],
          // userns 'auto' claims host ids in a directory every nsbox on the host shares: the
          // tests share one of their own under /tmp, never the host's /var/lib/nsbox-idranges
          // (made on demand, as on a fresh machine).
          env: { NSBOX_IDRANGES_DIR: process.env.NSBOX_IDRANGES_DIR ?? '/tmp/nsbox-test-idranges' },
          // Containers die with the thread that cloned them (PR_SET_PDEATHSIG): test files run
          // in child processes, each on its main thread, never in worker threads.
          pool: 'forks',
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
