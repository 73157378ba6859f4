/**
 * `POST /cds-services/{id}/feedback` (CDS Hooks 2.0, Feedback): what the doctor did with a card, recorded in the
 * decisions ledger through the same path as `$reuse-decision` (recordDecision). `accepted` with the card's
 * suggestion → accepted (the saving counts); `overridden` with a decline reason → declined. CDS Hooks 2.0 §Feedback:
 * a user may "accept its suggestions, ignore it entirely, or dismiss it with or without an override reason" — an
 * `overridden` without a reason is a dismissal, which says nothing about whether the result was looked at, so it is
 * acknowledged and not recorded (not `viewed`). A reference-only card offers no suggestion and no decline: its
 * dismissal is acknowledged, never a decline, and `accepted` is refused. The ledger keeps one decision per
 * (check, item): the same feedback again changes nothing.
 */
import type { Coding } from 'fhir/r4';
import { conflict, badRequest, notFound } from '../fhir/outcomes.js';
import { recordDecision, type DecisionRequest } from '../fhir/reuse-decision.js';
import { DECLINE_REASON_SYSTEM, findDeclineReason } from '../recognition/decline-reasons.js';
import type { DoctorAction } from '../recognition/ledger.js';
import type { CdsCaller } from './clients.js';
import type { CdsDeps, CdsService } from './hook.js';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Most feedback entries in one request. */
const MAX_ENTRIES = 100;

export interface FeedbackRecorded {
  card: string;
  /** What the feedback meant: a ledger action, or `dismissed` (overridden without a decline). */
  decision: DoctorAction | 'dismissed';
  /** `created` the first time, `unchanged` when the same feedback came before, `not-recorded` for a dismissal. */
  status: 'created' | 'unchanged' | 'not-recorded';
  result?: string;
}

/** Checks one Feedback entry against its card and turns it into the ledger's decision request. */
async function decisionOf(
  entry: unknown,
  at: string,
  service: CdsService,
  caller: CdsCaller,
  deps: CdsDeps,
): Promise<{ request?: DecisionRequest; card: string; result?: string }> {
  if (!isObject(entry)) throw badRequest('A feedback entry is an object (card, outcome, outcomeTimestamp …)', at);
  if (typeof entry.card !== 'string' || !entry.card) throw badRequest('card (the card uuid) is required', `${at}.card`);
  if (entry.outcome !== 'accepted' && entry.outcome !== 'overridden') {
    throw badRequest("outcome is 'accepted' or 'overridden'", `${at}.outcome`);
  }
  if (typeof entry.outcomeTimestamp !== 'string' || Number.isNaN(Date.parse(entry.outcomeTimestamp))) {
    throw badRequest('outcomeTimestamp (an ISO timestamp) is required', `${at}.outcomeTimestamp`);
  }
  const card = await deps.cards.findOne({ _id: entry.card });
  // Another EHR's card is as unknown as a made-up one: card uuids are not shared between EHRs.
  if (!card || card.iss !== caller.iss || card.service !== service.id) {
    throw notFound(`Service ${service.id} gave this EHR no card '${entry.card}'`);
  }
  // The doctor the card was shown to (the hook's userId): declines are supervised by doctor.
  const base = {
    check: card.check,
    item: card.item,
    ...(card.practitioner ? { practitioner: card.practitioner } : {}),
  };
  const referenceOnly = card.decision === 'reference-only';
  if (entry.outcome === 'accepted' && referenceOnly) {
    throw badRequest(
      `Card ${card._id} is about a result for reference only: it has no suggestion to accept`,
      `${at}.outcome`,
    );
  }
  if (entry.outcome === 'accepted') {
    const accepted = entry.acceptedSuggestions;
    if (!Array.isArray(accepted) || accepted.length === 0) {
      throw badRequest('An accepted outcome lists acceptedSuggestions ({ id })', `${at}.acceptedSuggestions`);
    }
    const ids = accepted.map((s: unknown) => (isObject(s) ? s.id : undefined));
    if (!ids.includes(card.suggestion)) {
      throw badRequest(
        `acceptedSuggestions does not name the suggestion of card ${card._id} (${card.suggestion})`,
        `${at}.acceptedSuggestions`,
      );
    }
    return { request: { ...base, action: 'accepted' }, card: card._id };
  }
  const override = entry.overrideReason;
  if (override !== undefined && !isObject(override))
    throw badRequest('overrideReason is an object', `${at}.overrideReason`);
  const coding = override?.reason as Coding | undefined;
  const comment = typeof override?.userComment === 'string' ? override.userComment.trim() : '';
  const dismissed = { card: card._id, ...(card.result ? { result: card.result } : {}) };
  if (!coding || referenceOnly) return dismissed;
  const rules = deps.facts!.rules;
  const reason =
    isObject(coding) && (coding.system === undefined || coding.system === DECLINE_REASON_SYSTEM)
      ? findDeclineReason(rules.declineReasons, String(coding.code ?? ''))
      : undefined;
  if (!reason) {
    throw badRequest(
      `overrideReason.reason is one of the card's overrideReasons (${DECLINE_REASON_SYSTEM}: ${rules.declineReasons.reasons.map((r) => r.code).join(', ')})`,
      `${at}.overrideReason.reason`,
    );
  }
  if (reason.requiresText && !comment) {
    throw badRequest(
      `The reason '${reason.code}' needs an explanation in userComment`,
      `${at}.overrideReason.userComment`,
    );
  }
  if (comment.length > 500)
    throw badRequest('userComment is at most 500 characters', `${at}.overrideReason.userComment`);
  return {
    request: { ...base, action: 'declined', reason, ...(comment ? { reasonText: comment } : {}) },
    card: card._id,
  };
}

export async function recordFeedback(
  body: unknown,
  service: CdsService,
  caller: CdsCaller,
  deps: CdsDeps,
): Promise<FeedbackRecorded[]> {
  if (!isObject(body) || !Array.isArray(body.feedback) || body.feedback.length === 0) {
    throw badRequest('The feedback request is an object with a non-empty feedback array', 'feedback');
  }
  if (body.feedback.length > MAX_ENTRIES) throw badRequest(`At most ${MAX_ENTRIES} feedback entries`, 'feedback');
  // Everything is checked before anything is recorded: a bad entry leaves the ledger as it was.
  const decisions = [];
  for (const [i, entry] of body.feedback.entries()) {
    decisions.push(await decisionOf(entry, `feedback[${i}]`, service, caller, deps));
  }
  const out: FeedbackRecorded[] = [];
  for (const [i, d] of decisions.entries()) {
    if (!d.request) {
      out.push({ card: d.card, decision: 'dismissed', status: 'not-recorded' });
      continue;
    }
    const result = await recordDecision(deps, d.request, 'cds-feedback', { card: d.card });
    if (result.status === 'conflict') {
      const stored = result.entry;
      throw conflict(
        `Card ${d.card}: item ${stored.item} of check ${stored.check} already has ${stored.event === 'viewed' ? 'a view' : `the decision '${stored.event}'`} recorded ${stored.recordedAt.toISOString()}; recorded decisions are immutable`,
        `feedback[${i}].outcome`,
      );
    }
    out.push({
      card: d.card,
      decision: d.request.action,
      status: result.status,
      ...(result.entry.result ? { result: result.entry.result } : {}),
    });
  }
  return out;
}
