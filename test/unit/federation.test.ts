import { describe, expect, test } from 'vitest';
import { parseBroker } from '../../src/federation/brokers.js';
import { layerCatalogue, layerDeclineReasons, layerMatrix } from '../../src/federation/rules.js';
import { divisionLevel, isWithin, scopeCovers } from '../../src/federation/scope.js';

describe('HR scope across brokers', () => {
  test('division codes nest: district in city in province', () => {
    expect(divisionLevel('370000')).toBe('province');
    expect(divisionLevel('370200')).toBe('city');
    expect(divisionLevel('370211')).toBe('district');
    expect(isWithin('370211', '370200')).toBe(true);
    expect(isWithin('370211', '370000')).toBe(true);
    expect(isWithin('370102', '370200')).toBe(false); // Jinan is not in Qingdao
    expect(isWithin('370000', '370200')).toBe(false); // the province is not inside a city
    expect(isWithin('370211', '370211')).toBe(true);
  });

  test('本市HR never leaves its city, 本省HR stays in its province, 全国HR goes everywhere', () => {
    const huangdao = '370211';
    expect(scopeCovers('municipal', huangdao, '370202')).toBe(true); // another district of Qingdao
    expect(scopeCovers('municipal', huangdao, '370200')).toBe(true); // the Qingdao broker
    expect(scopeCovers('municipal', huangdao, '370102')).toBe(false); // a Jinan hospital
    expect(scopeCovers('municipal', huangdao, '370000')).toBe(false); // the province broker as a whole
    expect(scopeCovers('provincial', huangdao, '370102')).toBe(true);
    expect(scopeCovers('provincial', huangdao, '370000')).toBe(true);
    expect(scopeCovers('provincial', huangdao, '440106')).toBe(false); // Guangzhou
    expect(scopeCovers('national', huangdao, '440106')).toBe(true);
  });
});

describe('rules per level', () => {
  const parent = {
    id: 'catalogue',
    region: '370000',
    items: [
      { code: 'HR-LAB-CBC', validityDays: 7 },
      { code: 'HR-LAB-ESR', validityDays: 7 },
    ],
  };

  test('a level may add items and shorten windows, never lengthen them; its own region is kept', () => {
    const layered = layerCatalogue(
      parent,
      {
        _id: 'current',
        items: [{ code: 'HR-LAB-CITY', validityDays: 30 }],
        windows: { 'HR-LAB-ESR': 3, 'HR-LAB-CBC': 30, 'HR-LAB-CITY': 14 },
      },
      '370200',
    );
    expect(layered.region).toBe('370200');
    expect(layered.items).toEqual([
      { code: 'HR-LAB-CBC', validityDays: 7 },
      { code: 'HR-LAB-ESR', validityDays: 3 },
      { code: 'HR-LAB-CITY', validityDays: 14 },
    ]);
  });

  test('an added item the parent already has is the parent’s', () => {
    const layered = layerCatalogue(
      parent,
      { _id: 'current', items: [{ code: 'HR-LAB-CBC', validityDays: 1 }], windows: {} },
      undefined,
    );
    expect(layered.items).toEqual(parent.items);
  });
});

test('a level’s regional acceptance rule replaces the parent’s for that region, the others stay', () => {
  const parent = {
    default: { policy: 'all' },
    regions: [
      { region: '370200', policy: 'all' },
      { region: '370100', policy: 'all' },
    ],
  };
  const layered = layerMatrix(parent, {
    _id: 'current',
    items: [],
    windows: {},
    regions: [{ region: '370200', policy: 'higher-or-peer' } as { region: string }],
  });
  expect(layered.regions).toEqual([
    { region: '370100', policy: 'all' },
    { region: '370200', policy: 'higher-or-peer' },
  ]);
  expect(layered.default).toEqual({ policy: 'all' });
});

describe('decline reasons per level', () => {
  test('the parent’s reasons in their order, then the level’s own; a parent’s code keeps the parent’s definition', () => {
    const parent = { version: '2026.1', reasons: [{ code: 'condition-changed', display: 'p' }, { code: 'other' }] };
    const layered = layerDeclineReasons(parent, {
      _id: 'current',
      items: [],
      windows: {},
      reasons: [{ code: 'condition-changed', display: 'city' } as never, { code: 'city-review' }],
    });
    expect(layered).toEqual({
      version: '2026.1',
      reasons: [{ code: 'condition-changed', display: 'p' }, { code: 'other' }, { code: 'city-review' }],
    });
  });
});

describe('federated broker definitions', () => {
  const valid = {
    relation: 'parent',
    baseUrl: 'https://qingdao.example/fhir/',
    region: '370200',
    outbound: {
      tokenUrl: 'https://qingdao.example/auth/token',
      clientId: 'broker-huangdao',
      privateJwk: { kty: 'EC', d: 'x' },
    },
    inbound: { clientId: 'broker-qingdao', jwks: { keys: [{ kty: 'EC', x: 'a', y: 'b', crv: 'P-384' }] } },
  };

  test('a valid definition is kept with defaults (trailing slash trimmed, 400 ms, enabled)', () => {
    expect(parseBroker('qingdao', valid)).toMatchObject({
      _id: 'qingdao',
      baseUrl: 'https://qingdao.example/fhir',
      timeoutMs: 400,
      enabled: true,
      outbound: { scope: 'system/DiagnosticReport.rs system/Observation.rs' },
    });
  });

  test.each([
    [{ relation: 'uncle' }, 'relation'],
    [{ baseUrl: 'ftp://x/fhir' }, 'baseUrl'],
    [{ region: '37' }, 'region'],
    [{ inbound: { clientId: 'broker-qingdao', jwks: { keys: [{ kty: 'EC', d: 'secret' }] } } }, 'inbound.jwks'],
    [
      { outbound: { tokenUrl: 'https://q/auth/token', clientId: 'c', privateJwk: { kty: 'EC' } } },
      'outbound.privateJwk',
    ],
    [{ timeoutMs: 5 }, 'timeoutMs'],
    [{ relation: 'child', inheritRules: true }, 'inheritRules'],
  ])('a definition with %j is refused naming %s', (change, field) => {
    try {
      parseBroker('qingdao', { ...valid, ...change });
      expect.unreachable();
    } catch (e) {
      expect((e as { outcome: { issue: { expression: string[] }[] } }).outcome.issue[0]!.expression).toEqual([field]);
    }
  });
});
