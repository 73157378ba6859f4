import winston from 'winston';

/**
 * Application logger. Messages are constant strings; details go in structured fields.
 * Patient data must never reach a log line: fields whose name suggests identifying data or a resource body are
 * redacted here as a safety net, but callers should only ever log ids, counts and durations.
 */
export type Logger = winston.Logger;

const REDACTED_KEYS = /^(name|given|family|identifier|birthDate|telecom|address|resource|body|text|value|patient)$/i;
// 18-digit resident ID numbers (last char may be X) and long digit runs that look like card numbers.
const ID_NUMBER = /\b\d{17}[\dXx]\b|\b\d{15,}\b/g;

const redact = winston.format((info) => {
  for (const key of Object.keys(info)) {
    if (REDACTED_KEYS.test(key)) info[key] = '[redacted]';
    else if (typeof info[key] === 'string') info[key] = (info[key] as string).replace(ID_NUMBER, '[redacted]');
  }
  if (typeof info.message === 'string') info.message = info.message.replace(ID_NUMBER, '[redacted]');
  return info;
});

export function createLogger(options: { level: string; json?: boolean; stream?: NodeJS.WritableStream }): Logger {
  const format = winston.format.combine(
    redact(),
    winston.format.timestamp(),
    options.json === false
      ? winston.format.printf((i) => {
          const { level, message, timestamp, ...rest } = i;
          const extra = Object.keys(rest).length ? ' ' + JSON.stringify(rest) : '';
          return `${String(timestamp)} ${level} ${String(message)}${extra}`;
        })
      : winston.format.json(),
  );
  const transport = options.stream
    ? new winston.transports.Stream({ stream: options.stream })
    : new winston.transports.Console();
  return winston.createLogger({ level: options.level, format, transports: [transport] });
}
