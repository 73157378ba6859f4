import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { CommandStartedEvent, MongoClient } from 'mongodb';
import { observe, type ObservedQuery } from '../../src/store/query-inventory.js';

/** The connection string with command monitoring on (the recorder below listens to its events). */
export function monitored(uri: string): string {
  const url = new URL(uri);
  url.searchParams.set('monitorCommands', 'true');
  return url.toString();
}

/**
 * Records the shape of every query a test app sends (collection and the filter's top-level keys, no values), so that
 * the run can check each against the query inventory (global-setup.ts teardown). One file per app, written when the
 * app closes.
 */
export function recordQueries(client: MongoClient, dir: string): () => void {
  const seen = new Map<string, ObservedQuery>();
  const listener = (event: CommandStartedEvent) => {
    for (const [collection, filter] of filtersOf(event.commandName, event.command)) {
      const q = observe(collection, filter);
      seen.set(JSON.stringify(q), q);
    }
  };
  client.on('commandStarted', listener);
  return () => {
    client.off('commandStarted', listener);
    if (seen.size === 0) return;
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `${process.pid}-${randomBytes(4).toString('hex')}.json`);
    fs.writeFileSync(file, JSON.stringify([...seen.values()]));
  };
}

type Filter = Record<string, unknown>;

function filtersOf(name: string, command: Record<string, unknown>): [string, Filter][] {
  const collection = command[name];
  if (typeof collection !== 'string') return [];
  switch (name) {
    case 'find':
      return [[collection, (command.filter as Filter) ?? {}]];
    case 'count':
    case 'distinct':
    case 'findAndModify':
      return [[collection, (command.query as Filter) ?? {}]];
    case 'aggregate': {
      const first = (command.pipeline as Filter[] | undefined)?.[0];
      return [[collection, (first?.$match as Filter) ?? {}]];
    }
    case 'delete':
      return ((command.deletes as { q: Filter }[]) ?? []).map((d) => [collection, d.q]);
    case 'update':
      return ((command.updates as { q: Filter }[]) ?? []).map((u) => [collection, u.q]);
    default:
      return [];
  }
}
