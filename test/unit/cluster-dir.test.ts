import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { clusterDirFor } from '../../src/store/postgres.js';

// Only as root does a cluster go to /var/lib/huren: PostgreSQL refuses root and runs as the system user "postgres",
// who cannot enter a private directory. As any other user the cluster stays in the data directory.
const asRoot = process.getuid?.() === 0 && spawnSync('id', ['-u', 'postgres']).status === 0;

describe.skipIf(!asRoot)('the cluster of a data directory the postgres user cannot enter (as root)', () => {
  test('a data directory made again at the same path gets a new database: the earlier one is set aside, not taken up', async () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'huren-private-')); // mode 0700: closed to "postgres"
    const dataDir = path.join(home, 'data');
    const notices: string[] = [];
    const first = await clusterDirFor(dataDir, 'postgresql', (m) => notices.push(m));
    try {
      expect(first.startsWith('/var/lib/huren/')).toBe(true);
      expect(fs.realpathSync(path.join(dataDir, 'postgresql'))).toBe(first);
      fs.writeFileSync(path.join(first, 'PG_VERSION'), '15\n'); // stands for the earlier data directory's database
      expect(await clusterDirFor(dataDir, 'postgresql')).toBe(first); // the same data directory: its database

      fs.rmSync(dataDir, { recursive: true }); // removed, as with its clone, and made again at the same path
      const second = await clusterDirFor(dataDir, 'postgresql', (m) => notices.push(m));
      expect(second).toBe(first);
      expect(fs.readdirSync(second)).toEqual([]);
      const aside = fs.readdirSync(path.dirname(first)).filter((n) => n.startsWith('postgresql.set-aside-'));
      expect(aside).toHaveLength(1);
      expect(fs.readFileSync(path.join(path.dirname(first), aside[0]!, 'PG_VERSION'), 'utf8')).toBe('15\n');
      expect(notices).toEqual([expect.stringContaining(path.join(path.dirname(first), aside[0]!))]);
    } finally {
      fs.rmSync(path.dirname(first), { recursive: true, force: true });
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
});
