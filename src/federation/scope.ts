/**
 * The HR scope across brokers (pure): which results a holder may send to a requester in another region. 全国HR
 * everywhere, 本省HR within the performer's province, 本市HR within the performer's city; the scope of a result is the
 * narrowest of its mark (or the item's default) and its institution's qualification, as the engine computes it.
 */
import type { CodeIndex } from '../recognition/catalogue.js';
import type { RecognitionFact } from '../recognition/facts.js';
import { cityOf, provinceOf, qualificationAt, type Institution } from '../recognition/institutions.js';
import { narrowestScope, type HrScope } from '../recognition/vocabulary.js';

export const DIVISION_CODE = /^[1-9]\d{5}$/;

/** The level of a division code: a province (370000), a city (370200) or a district (370211). */
export function divisionLevel(code: string): 'province' | 'city' | 'district' {
  if (code.endsWith('0000')) return 'province';
  if (code.endsWith('00')) return 'city';
  return 'district';
}

/** Whether a division (a requester's district, or a whole broker region) lies inside another one. */
export function isWithin(code: string, region: string): boolean {
  switch (divisionLevel(region)) {
    case 'province':
      return provinceOf(code) === region;
    case 'city':
      return divisionLevel(code) !== 'province' && cityOf(code) === region;
    case 'district':
      return code === region;
  }
}

/**
 * Whether a result of scope `scope`, performed in `performerDistrict`, may be seen in `region` (a district, or a
 * broker's whole region: a 本市HR result reaches a city broker of its own city, never the province broker).
 */
export function scopeCovers(scope: HrScope, performerDistrict: string, region: string): boolean {
  if (scope === 'national') return true;
  if (scope === 'provincial') return isWithin(region, provinceOf(performerDistrict));
  return isWithin(region, cityOf(performerDistrict));
}

/**
 * The scope of a fact at its holder: undefined when its institution is not registered or holds no qualification for
 * the category (nothing to recognise elsewhere). A panel's parts are judged one by one (the requester's engine takes
 * the narrowest of the parts it assembles).
 */
export function scopeOf(
  fact: RecognitionFact,
  index: CodeIndex,
  institution: Institution | undefined,
): HrScope | undefined {
  if (!institution) return undefined;
  const item = index.items.get(fact.item);
  if (!item) return undefined;
  const q = qualificationAt(institution, item.category, fact.effectiveDay);
  if (q.status === 'none') return undefined;
  return narrowestScope(fact.hrMark ?? item.scope, q.qualification.scope);
}
