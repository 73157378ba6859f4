import type { Patient } from 'fhir/r4';
import { describe, expect, test } from 'vitest';
import { ageAt, maskIdentifier, maskName, patientBanner } from '../../src/ui/patient-banner.js';

describe('the patient banner of the doctor view', () => {
  test('names are masked as Chinese hospital systems display them', () => {
    expect(maskName('张三')).toBe('张*');
    expect(maskName('张小三')).toBe('张*三');
    expect(maskName('欧阳小明')).toBe('欧**明');
    expect(maskName('阿依古丽·买买提')).toBe('阿******提');
    expect(maskName('李')).toBe('李');
  });

  test('ID numbers keep the first 6 and the last 4 characters, 15- and 18-digit alike', () => {
    expect(maskIdentifier('370202198003150025')).toBe('370202********0025');
    expect(maskIdentifier('11010519491231002X')).toBe('110105********002X');
    expect(maskIdentifier('370202800315002')).toBe('370202*****5002');
    expect(maskIdentifier('A1234567')).toBe('****4567');
  });

  test('age in whole years on the local day, months under one year', () => {
    expect(ageAt('1980-03-15', '2026-03-14')).toEqual({ years: 45, months: 0 });
    expect(ageAt('1980-03-15', '2026-03-15')).toEqual({ years: 46, months: 0 });
    expect(ageAt('2026-01-20', '2026-12-07')).toEqual({ years: 0, months: 10 });
    expect(ageAt('2027-01-01', '2026-12-07')).toBeUndefined();
  });

  test("from the launching institution's Patient: masked name, sex, age and the resident ID first", () => {
    const patient: Patient = {
      resourceType: 'Patient',
      name: [
        { use: 'old', text: '王晓红' },
        { use: 'official', family: '王', given: ['小红'] },
      ],
      gender: 'female',
      birthDate: '1980-03-15',
      identifier: [
        { system: 'https://huren.example.org/fhir/sid/medical-insurance-code', value: 'Y12345678901' },
        { system: 'urn:oid:2.16.156.10011.1.1', value: '370202198003150025' },
      ],
    };
    expect(patientBanner(patient, new Date('2026-12-07T02:00:00Z'), 'Asia/Shanghai')).toEqual({
      name: '王*红',
      sex: 'female',
      age: { years: 46, months: 0 },
      identifier: { kind: 'resident-id', masked: '370202********0025' },
    });
    expect(patientBanner(undefined, new Date(), 'Asia/Shanghai')).toEqual({});
  });
});
