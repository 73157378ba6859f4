/**
 * The detail of a prior report the doctor reads before deciding, as the regional platforms show it: 检查所见
 * (findings), the time the report was issued, the reporting (报告医师) and reviewing (审核医师) doctors, and links to
 * the images (cloud film, DICOMweb viewer). The impression (诊断意见) is the report's `conclusion`, shown apart as not
 * recognised.
 */
import type { Attachment, DiagnosticReport, Endpoint, ImagingStudy, Media, Observation, Resource } from 'fhir/r4';
import type { ReportDetail } from './view-types.js';

/** LOINC 59776-5 Procedure findings; 18782-3 Radiology study observation (findings narrative). */
const FINDINGS_CODES = new Set(['59776-5', '18782-3']);
const MAX_TEXT = 20_000;

function contained<T extends Resource>(report: DiagnosticReport, ref: string | undefined, type: string): T | undefined {
  if (!ref?.startsWith('#')) return undefined;
  const found = report.contained?.find((r) => r.id === ref.slice(1));
  return found?.resourceType === type ? (found as T) : undefined;
}

/** A text attachment's content (UTF-8 base64 `data`), bounded. */
function textOf(a: Attachment): string | undefined {
  if (!a.data || !(a.contentType ?? '').startsWith('text/plain')) return undefined;
  return Buffer.from(a.data, 'base64').toString('utf8').slice(0, MAX_TEXT);
}

function isHttpUrl(url: string | undefined): url is string {
  return typeof url === 'string' && /^https?:\/\//i.test(url);
}

function names(refs: { reference?: string; display?: string }[] | undefined): string[] {
  return (refs ?? [])
    .filter((r) => r.display && (!r.reference || /^Practitioner(Role)?\//.test(r.reference)))
    .map((r) => r.display!.trim());
}

export function reportDetail(source: Resource | undefined, observations: Observation[]): ReportDetail | undefined {
  if (source?.resourceType !== 'DiagnosticReport') return undefined;
  const report = source as DiagnosticReport;
  const findingsObs = observations.find((o) => o.code.coding?.some((c) => FINDINGS_CODES.has(c.code ?? '')));
  const findings =
    findingsObs?.valueString ?? (report.presentedForm ?? []).map(textOf).find((t): t is string => Boolean(t?.trim()));
  const images: { url: string; title?: string }[] = [];
  for (const form of report.presentedForm ?? []) {
    if (isHttpUrl(form.url)) images.push({ url: form.url, ...(form.title ? { title: form.title } : {}) });
  }
  for (const m of report.media ?? []) {
    const media = contained<Media>(report, m.link.reference, 'Media');
    if (isHttpUrl(media?.content.url)) {
      images.push({
        url: media.content.url,
        ...((m.comment ?? media.content.title) ? { title: m.comment ?? media.content.title } : {}),
      });
    }
  }
  for (const ref of report.imagingStudy ?? []) {
    const study = contained<ImagingStudy>(report, ref.reference, 'ImagingStudy');
    for (const e of study?.endpoint ?? []) {
      const endpoint = contained<Endpoint>(report, e.reference, 'Endpoint');
      if (isHttpUrl(endpoint?.address))
        images.push({ url: endpoint.address, ...(ref.display ? { title: ref.display } : {}) });
    }
  }
  // R4: resultsInterpreter wrote the interpretation (报告医师); the practitioner among the performers is the one
  // responsible for issuing the report, who signs it off (审核医师).
  const reportedBy = names(report.resultsInterpreter);
  const reviewedBy = names(report.performer);
  const detail: ReportDetail = {
    ...(findings?.trim() ? { findings: findings.trim() } : {}),
    ...(report.issued ? { issued: report.issued } : {}),
    ...(reportedBy.length ? { reportedBy } : {}),
    ...(reviewedBy.length ? { reviewedBy } : {}),
    ...(images.length ? { images } : {}),
  };
  return Object.keys(detail).length ? detail : undefined;
}
