import { describe, expect, test } from 'vitest';
import { SeedDataError } from '../../src/recognition/errors.js';
import { buildRuleResources, withdrawnResources } from '../../src/recognition/rules-resources.js';
import { compileRules, partKeyOf, readSeedParts } from '../../src/recognition/rules-store.js';
import { SEED_DIR } from '../../src/services.js';

const seed = readSeedParts(SEED_DIR);

describe('recognition rules as versioned parts', () => {
  test('parts are named in URLs like the seed files', () => {
    expect(partKeyOf('local-codes')).toBe('localCodes');
    expect(partKeyOf('acceptance-matrix')).toBe('acceptanceMatrix');
    expect(partKeyOf('localCodes')).toBeUndefined();
  });

  test('a part that is not JSON is refused naming its file', () => {
    expect(() => compileRules({ ...seed, declineReasons: '{' })).toThrow(SeedDataError);
    try {
      compileRules({ ...seed, declineReasons: '{' });
    } catch (e) {
      expect((e as SeedDataError).file).toBe('decline-reasons.json');
    }
  });

  test('the seed rules publish 19 resources with one Organization per institution', () => {
    const rules = compileRules(seed);
    const resources = buildRuleResources(rules);
    const orgs = resources.filter((r) => r.resourceType === 'Organization');
    expect(orgs).toHaveLength(rules.institutions.institutions.length);
    expect(resources.map((r) => `${r.resourceType}/${r.id}`)).toContain('ConceptMap/local-codes-demo-hospital-b');
  });

  test('an institution or local code map removed from the rules is withdrawn, not deleted', () => {
    const before = compileRules(seed);
    const localCodes = JSON.parse(seed.localCodes) as { maps: { institution: string }[] };
    localCodes.maps = localCodes.maps.filter((m) => m.institution !== 'demo-hospital-b');
    const after = compileRules({ ...seed, localCodes: JSON.stringify(localCodes) });
    const withdrawn = withdrawnResources(before, after);
    expect(withdrawn).toEqual([expect.objectContaining({ id: 'local-codes-demo-hospital-b', status: 'retired' })]);
  });
});
