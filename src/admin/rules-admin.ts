/**
 * What follows a change of the recognition rules: publish them as FHIR resources, and re-project the fact index in
 * the background when the catalogue or the local codes changed (a result's items depend on them). The process that
 * saved a version does both; the others only adopt the new rules in memory.
 */
import type { Resource } from 'fhir/r4';
import type { Validator } from '../fhir/validation/validator.js';
import type { Logger } from '../log.js';
import { SeedDataError } from '../recognition/errors.js';
import type { FactProjector } from '../recognition/fact-store.js';
import { SEED_FILES } from '../recognition/load.js';
import { buildRuleResources, publishResources, withdrawnResources } from '../recognition/rules-resources.js';
import type { CurrentRules, PartKey, ReindexStatus, RulesStore } from '../recognition/rules-store.js';
import type { ResourceStore } from '../store/resource-store.js';

/** Parts whose change alters which items a stored result covers. */
const REPROJECTED_PARTS: readonly PartKey[] = ['catalogue', 'localCodes'];

export class RulesAdmin {
  /** The running (or last) background re-projection; tests and shutdown may await it. */
  reindexing: Promise<void> = Promise.resolve();

  constructor(
    readonly store: RulesStore,
    private readonly facts: FactProjector,
    private readonly resources: ResourceStore,
    private readonly validator: Validator,
    private readonly log: Logger,
  ) {}

  /** Publishes the current rules (at start-up: idempotent, every process may do it). */
  async publish(previous?: CurrentRules): Promise<number> {
    const current = this.store.current;
    const resources = [
      ...buildRuleResources(current.rules),
      ...(previous ? withdrawnResources(previous.rules, current.rules) : []),
    ];
    this.assertValid(resources);
    const changed = await publishResources(this.resources, resources);
    if (changed) this.log.info('Recognition rules published', { version: current.version, resources: changed });
    return changed;
  }

  /** Saves a new version of one part, publishes it and starts the re-projection it needs. */
  async edit(
    part: PartKey,
    json: unknown,
    baseVersion: number,
    changedBy: string,
  ): Promise<CurrentRules & { changed: boolean }> {
    const previous = this.store.current;
    const next = await this.store.update(part, json, baseVersion, changedBy, (rules) =>
      this.assertValid(buildRuleResources(rules), SEED_FILES[part]),
    );
    if (!next.changed) return next; // identical content: nothing saved, published or re-projected
    await this.publish(previous);
    if (REPROJECTED_PARTS.includes(part)) this.startReindex(next.version);
    return next;
  }

  private startReindex(version: number): void {
    // One re-projection at a time: a later edit's runs after the earlier one, with the rules then in force.
    this.reindexing = this.reindexing.then(() => this.reindex(version));
  }

  private async reindex(version: number): Promise<void> {
    const status: ReindexStatus = { state: 'running', done: 0, total: 0, facts: 0, startedAt: new Date() };
    // Saves one after another: a progress save still in flight must not land after the final one (the status would
    // then say "running" for good).
    let saving = Promise.resolve();
    const save = () =>
      (saving = saving.then(() =>
        this.store.setReindex(version, { ...status }).catch((e: unknown) => {
          this.log.warn('Re-projection status not saved', { version, error: (e as Error).message });
        }),
      ));
    await save();
    try {
      const result = await this.facts.rebuild(this.resources, (p) => {
        Object.assign(status, p);
        void save();
      });
      Object.assign(status, result, { state: 'done', finishedAt: new Date() });
    } catch (e) {
      Object.assign(status, { state: 'failed', finishedAt: new Date(), error: (e as Error).message });
      this.log.error('Re-projection after a rules change failed', { version, error: (e as Error).message });
    }
    await save();
  }

  /** The published resources must pass the broker's own validator: a rules edit cannot publish broken FHIR. */
  private assertValid(resources: Resource[], file = 'recognition rules'): void {
    const problems = resources.flatMap((r) =>
      this.validator
        .validate(r, { expectedType: r.resourceType })
        .filter((i) => i.severity === 'error' || i.severity === 'fatal')
        .map((i) => `${r.resourceType}/${r.id} would not be valid FHIR: ${i.diagnostics ?? i.code}`),
    );
    if (problems.length) throw new SeedDataError(file, problems);
  }
}
