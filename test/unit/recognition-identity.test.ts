import { describe, expect, test } from 'vitest';
import { RecognitionInputError } from '../../src/recognition/errors.js';
import {
  IDENTIFIER_SYSTEMS,
  checkResidentId,
  claimFromResidentId,
  corroborateDemographics,
  deriveEpochKey,
  isValidResidentId,
  normalizeIdentifier,
  patientKey,
  patientKeysFor,
  patientKeysOf,
  residentIdCheckChar,
} from '../../src/recognition/identity.js';

const SECRET = 'test-secret-of-at-least-32-bytes!!';
const ID_CARD = IDENTIFIER_SYSTEMS.residentIdCard;

describe('resident ID card numbers (GB 11643, ISO 7064 MOD 11-2)', () => {
  test.each([
    ['11010519491231002X', '1949-12-31', 'female'],
    ['11010519491231002x', '1949-12-31', 'female'],
    ['370202199001011237', '1990-01-01', 'male'],
    [' 370202199001011237 ', '1990-01-01', 'male'],
  ])('%s is valid, born %s, %s', (id, birthDate, sex) => {
    expect(checkResidentId(id)).toEqual({
      valid: true,
      value: id.trim().toUpperCase(),
      regionCode: id.trim().slice(0, 6),
      birthDate,
      sex,
    });
  });

  test('the check character is computed from the first 17 digits, X standing for 10', () => {
    expect(residentIdCheckChar('11010519491231002')).toBe('X');
    expect(residentIdCheckChar('37020219900101123')).toBe('7');
  });

  test.each([
    ['110105194912310021', 'check-digit'],
    ['370202199001011234', 'check-digit'],
    ['110105194902300020', 'birth-date'],
    ['11010519491231002', 'length'],
    ['1101054912310', 'length'],
    ['1101051949123100211', 'length'],
    ['11010519491231A02X', 'characters'],
    ['990105194912310026', 'region'],
    ['440524188001010014', 'birth-date'],
  ])('%s is refused (%s)', (id, problem) => {
    const check = checkResidentId(id);
    expect(check).toMatchObject({ valid: false, problem });
    if (!check.valid) expect(check.message).not.toContain(id);
  });

  test('a 15-digit first-generation number is valid and answered in its 18-digit form', () => {
    // 110105 491231 002 → 110105 19 491231 002 + check character X
    expect(checkResidentId('110105491231002')).toEqual({
      valid: true,
      value: '11010519491231002X',
      regionCode: '110105',
      birthDate: '1949-12-31',
      sex: 'female',
    });
    expect(checkResidentId('110105490230002')).toMatchObject({ valid: false, problem: 'birth-date' });
    expect(checkResidentId('11010549123100X')).toMatchObject({ valid: false, problem: 'characters' });
  });

  test('full-width digits and Ｘ, as typed with a Chinese input method, are the same number', () => {
    expect(checkResidentId('１１０１０５１９４９１２３１００２ｘ')).toMatchObject({
      valid: true,
      value: '11010519491231002X',
    });
    expect(patientKey(SECRET, ID_CARD, '１１０１０５１９４９１２３１００２Ｘ')).toBe(
      patientKey(SECRET, ID_CARD, '11010519491231002X'),
    );
    expect(patientKey(SECRET, ID_CARD, '110105491231002')).toBe(patientKey(SECRET, ID_CARD, '11010519491231002X'));
  });

  test('a birth date after today is refused', () => {
    const id = `37020220300101123`;
    const full = `${id}${residentIdCheckChar(id)}`;
    expect(isValidResidentId(full)).toBe(true);
    expect(isValidResidentId(full, '2026-11-25')).toBe(false);
  });
});

describe('pseudonymous patient key', () => {
  test('is stable for the same person whatever the spacing or the case of X', () => {
    const a = patientKey(SECRET, ID_CARD, '11010519491231002X');
    expect(patientKey(SECRET, ` ${ID_CARD} `, ' 11010519491231002x ')).toBe(a);
    expect(a).toMatch(/^[0-9a-f]{64}$/);
  });

  test('differs by secret, by identifier system and by number', () => {
    const a = patientKey(SECRET, ID_CARD, '11010519491231002X');
    expect(patientKey(`${SECRET}-other`, ID_CARD, '11010519491231002X')).not.toBe(a);
    expect(patientKey(SECRET, IDENTIFIER_SYSTEMS.eHealthCard, '11010519491231002X')).not.toBe(a);
    expect(patientKey(SECRET, ID_CARD, '370202199001011237')).not.toBe(a);
  });

  test('e-health card and insurance codes keep their case', () => {
    const upper = patientKey(SECRET, IDENTIFIER_SYSTEMS.eHealthCard, 'AB12CD');
    expect(patientKey(SECRET, IDENTIFIER_SYSTEMS.eHealthCard, 'ab12cd')).not.toBe(upper);
    expect(normalizeIdentifier(IDENTIFIER_SYSTEMS.medicalInsuranceCode, ' YB3702000001 ')).toEqual({
      system: IDENTIFIER_SYSTEMS.medicalInsuranceCode,
      value: 'YB3702000001',
    });
  });

  test('an unknown identifier system or a malformed ID number is refused with what to fix', () => {
    expect(() => patientKey(SECRET, 'urn:oid:1.2.156.112604.1.2', 'MRN-1')).toThrow(RecognitionInputError);
    expect(() => patientKey(SECRET, 'urn:oid:1.2.156.112604.1.2', 'MRN-1')).toThrow(/is not one of them/);
    expect(() => patientKey(SECRET, ID_CARD, '110105194912310021')).toThrow(/check character does not match/);
    try {
      patientKey(SECRET, ID_CARD, '110105194912310021');
    } catch (e) {
      expect(e).toMatchObject({ code: 'invalid-identifier', expression: 'patient.value' });
    }
  });

  test('every broker of a province derives the same epoch key from the root; epochs and provinces differ', () => {
    const root = 'province-root-secret-held-by-the-custodian';
    const epoch = deriveEpochKey(root, '370000', '2027-01');
    expect(deriveEpochKey(root, '370000', '2027-01')).toBe(epoch);
    expect(deriveEpochKey(root, '370000', '2026-07')).not.toBe(epoch);
    expect(deriveEpochKey(root, '440000', '2027-01')).not.toBe(epoch);
    expect(Buffer.byteLength(epoch)).toBeGreaterThanOrEqual(32);
    expect(() => deriveEpochKey(root, '370200', '2027-01')).toThrow(/division code/);
    expect(() => deriveEpochKey('short', '370000', '2027-01')).toThrow(/at least 32 bytes/);
  });

  test('during a rotation a patient has one key per honoured epoch, the current one first', () => {
    const [current, previous] = [
      'secret-of-epoch-2027-01-at-least-32-bytes',
      'secret-of-epoch-2026-07-at-least-32-bytes',
    ];
    const keys = patientKeysFor([current, previous], ID_CARD, '11010519491231002X');
    expect(keys).toEqual([
      patientKey(current, ID_CARD, '11010519491231002X'),
      patientKey(previous, ID_CARD, '11010519491231002X'),
    ]);
    // A broker still on the previous epoch asks with a key the rotated broker's index still holds.
    const identifiers = [{ system: ID_CARD, value: '11010519491231002X' }];
    expect(patientKeysOf([current, previous], identifiers)).toContain(patientKeysOf(previous, identifiers)[0]);
  });

  test('a short secret is refused', () => {
    expect(() => patientKey('short', ID_CARD, '11010519491231002X')).toThrow(/at least 16 bytes/);
  });

  test('keys of a patient skip record numbers and malformed numbers', () => {
    const keys = patientKeysOf(SECRET, [
      { system: 'urn:oid:1.2.156.112604.1.2', value: 'MRN-1' },
      { system: ID_CARD, value: '110105194912310021' },
      { system: ID_CARD, value: '11010519491231002X' },
      { system: ID_CARD, value: '11010519491231002x' },
      { system: IDENTIFIER_SYSTEMS.eHealthCard, value: 'EHC-0001' },
    ]);
    expect(keys).toEqual([
      patientKey(SECRET, ID_CARD, '11010519491231002X'),
      patientKey(SECRET, IDENTIFIER_SYSTEMS.eHealthCard, 'EHC-0001'),
    ]);
  });
});

describe('corroboration of demographics across institutions', () => {
  test('agreeing claims are consistent; a year agrees with a full date in that year', () => {
    const c = corroborateDemographics([
      { source: 'demo-hospital-a', sex: 'female', birthDate: '1949-12-31' },
      { source: 'demo-hospital-b', sex: 'female', birthDate: '1949' },
      { source: 'demo-hospital-c', sex: 'unknown' },
    ]);
    expect(c).toEqual({ consistent: true, sex: 'female', birthDate: '1949-12-31', conflicts: [] });
  });

  test('a sex conflict is reported with who said what, and nothing is merged', () => {
    const c = corroborateDemographics([
      { source: 'demo-hospital-a', sex: 'female' },
      { source: 'demo-hospital-b', sex: 'male' },
      { source: 'demo-hospital-c', sex: 'female' },
    ]);
    expect(c.consistent).toBe(false);
    expect(c.sex).toBeUndefined();
    expect(c.conflicts).toEqual([
      {
        field: 'sex',
        values: [
          { value: 'female', sources: ['demo-hospital-a', 'demo-hospital-c'] },
          { value: 'male', sources: ['demo-hospital-b'] },
        ],
      },
    ]);
  });

  test('birth dates in different months of one year conflict', () => {
    const c = corroborateDemographics([
      { source: 'demo-hospital-a', birthDate: '1990-05' },
      { source: 'demo-hospital-b', birthDate: '1990-06-01' },
    ]);
    expect(c.birthDate).toBeUndefined();
    expect(c.conflicts.map((x) => x.field)).toEqual(['birthDate']);
  });

  test('what the ID number encodes is one more claim that can reveal a mistyped number', () => {
    const card = claimFromResidentId('11010519491231002X');
    expect(card).toEqual({ source: 'resident-id-card', sex: 'female', birthDate: '1949-12-31' });
    const c = corroborateDemographics([card!, { source: 'demo-hospital-b', sex: 'male', birthDate: '1949-12-31' }]);
    expect(c.conflicts).toEqual([
      {
        field: 'sex',
        values: [
          { value: 'female', sources: ['resident-id-card'] },
          { value: 'male', sources: ['demo-hospital-b'] },
        ],
      },
    ]);
    expect(claimFromResidentId('110105194912310021')).toBeUndefined();
  });
});
