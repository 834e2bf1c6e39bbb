// Module import cycles: a module run before the one it takes a constant from sees it
// undefined. record.ts builds its validators at load from layout.ts's ID_RE; once fsat.ts
// (which layout.ts imports) imported subid.ts, and subid.ts userns.ts (which imports record),
// loading layout.ts first ran record.ts before layout.ts had defined ID_RE, and every record
// failed to validate ("Cannot read properties of undefined"): `nsbox inspect` and `rm` of any
// container failed, from the CLI and the library. Each module is loaded first in a fresh
// process of the built package, as the CLI and a library caller load them.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const DIST = path.join(__dirname, '..', 'dist');
const dir = mkdtempSync(path.join(os.tmpdir(), 'nsbox-import-order-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('import order', () => {
  it('a record validates whichever module is loaded first', () => {
    const id = '0123456789ab';
    mkdirSync(path.join(dir, 'containers', id), { recursive: true });
    // Valid JSON, not a valid record: the validators must say what is wrong with it.
    writeFileSync(path.join(dir, 'containers', id, 'container.json'), JSON.stringify({ id: 'nothex' }));
    for (const first of ['layout', 'fsat', 'subid', 'userns', 'record', 'runtime', 'index']) {
      const script = `
        require(${JSON.stringify(path.join(DIST, first))});
        const { Layout } = require(${JSON.stringify(path.join(DIST, 'layout'))});
        const { readRecord } = require(${JSON.stringify(path.join(DIST, 'record'))});
        try { readRecord(new Layout(${JSON.stringify(dir)}), ${JSON.stringify(id)}); console.log('read'); } catch (e) { console.log(e.message); }
      `;
      const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
      expect(r.stderr, first).toBe('');
      expect(r.stdout, first).not.toMatch(/Cannot read properties/);
      expect(r.stdout, first).toMatch(/is not valid: id: expected 12 hexadecimal digits/);
    }
  });
});
