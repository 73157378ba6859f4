import { describe, expect, test } from 'vitest';
import { progress } from '../../src/progress.js';

/** Progress off a terminal, as a CI log or a pipe shows it. */
describe('progress lines off a terminal', () => {
  test('a line with rate and time left at most every 5 s, none repeated, and a last line with the time taken', () => {
    const lines: string[] = [];
    let t = 0;
    const p = progress('Seeding demo patients', {
      stream: { write: (s: string) => lines.push(s), isTTY: false },
      clock: () => t,
      unit: ' patients',
    });
    p.update(10, 100, '160 resources'); // within the first 5 s: kept for later
    t = 6000;
    p.update(30, 100, '480 resources');
    p.update(40, 100, '640 resources'); // too soon after the last line
    t = 10_000;
    p.stop('640 created, 0 updated, 0 unchanged');
    p.stop();
    expect(lines).toEqual([
      'Seeding demo patients: 30/100 patients (30%), 5 patients/s, ETA 14s; 480 resources\n',
      'Seeding demo patients: 40/100 patients (40%), 4 patients/s; 640 created, 0 updated, 0 unchanged (10s)\n',
    ]);
  });

  test('an unknown total shows the count and rate only', () => {
    const lines: string[] = [];
    let t = 0;
    const p = progress('sync', { stream: { write: (s: string) => lines.push(s) }, clock: () => t, unit: ' reports' });
    t = 5000;
    p.update(50, undefined, '2 hospital(s)');
    expect(lines).toEqual(['sync: 50 reports, 10 reports/s; 2 hospital(s)\n']);
  });
});
