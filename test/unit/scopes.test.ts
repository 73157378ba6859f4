import { describe, expect, test } from 'vitest';
import { allows, isCoveredBy, parseScope, parseScopes } from '../../src/auth/scopes.js';

describe('SMART scopes', () => {
  test('v2 letters, v1 read/write and wildcards parse to permissions', () => {
    expect([...parseScope('system/Observation.cu')!.permissions]).toEqual(['c', 'u']);
    expect([...parseScope('system/*.rs')!.permissions]).toEqual(['r', 's']);
    expect([...parseScope('system/Patient.read')!.permissions]).toEqual(['r', 's']);
    expect([...parseScope('system/Patient.write')!.permissions]).toEqual(['c', 'u', 'd']);
    expect(parseScope('system/*.*')!.permissions.size).toBe(5);
  });

  test('malformed scopes and out-of-order letters are not scopes', () => {
    expect(parseScope('system/Observation.')).toBeUndefined();
    expect(parseScope('system/Observation.rc')).toBeUndefined();
    expect(parseScope('admin/Observation.r')).toBeUndefined();
    expect(parseScopes('launch openid system/Observation.r')).toHaveLength(1);
  });

  test('a his client may create observations but not delete them, and may read only what it was given', () => {
    const scopes = parseScopes('system/Observation.cu system/DiagnosticReport.cu system/Patient.crus');
    expect(allows(scopes, 'Observation', 'c')).toBe(true);
    expect(allows(scopes, 'Observation', 'd')).toBe(false);
    expect(allows(scopes, 'Organization', 'r')).toBe(false);
    expect(allows(parseScopes('system/*.rs'), 'Organization', 's')).toBe(true);
  });

  test('a requested scope is granted only when the registered scopes cover it', () => {
    const registered = parseScopes('system/Observation.cu system/*.rs');
    expect(isCoveredBy(parseScope('system/Observation.cru')!, registered)).toBe(true);
    expect(isCoveredBy(parseScope('system/Observation.d')!, registered)).toBe(false);
    expect(isCoveredBy(parseScope('user/Observation.r')!, registered)).toBe(false);
  });
});
