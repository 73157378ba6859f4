import { auditEvent } from '../audit/audit.js';

export type FederationAuditEvent = ReturnType<typeof auditEvent>;

/**
 * The asking side's record of a call to its neighbours (facts at order entry, figures for a report): this broker as
 * the requestor, searchable as `AuditEvent?altid=federation`; the results the answers named; one entity per
 * neighbour asked, saying whether it answered. A 504 when none did. Never a patient: the calls carry keys only.
 */
export function outboundEvent(
  answered: boolean,
  resources: string[],
  entities: { name: string; description: string }[],
): FederationAuditEvent {
  const event = auditEvent({
    interaction: 'operation',
    action: 'E',
    status: answered ? 200 : 504,
    resources,
    patients: [],
    recorded: new Date(),
  });
  event.agent = [
    {
      type: {
        coding: [{ system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110153', display: 'Source Role ID' }],
      },
      who: { display: 'Huren broker (federation, outbound)' },
      altId: 'federation',
      name: 'federation',
      requestor: true,
    },
  ];
  event.entity = [...(event.entity ?? []), ...entities];
  return event;
}
