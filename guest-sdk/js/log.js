// Logging into the host's log, attributed to the plugin and the entry;
// `console.log` goes there too (stdout as info, stderr as warn). The host
// bounds each invocation's log bytes (`limits.log_bytes`).

import { backend } from './backend.js';

const line = (level) => (...parts) =>
  backend().log(level, parts.map((p) => (typeof p === 'string' ? p : JSON.stringify(p))).join(' '));

/** `log.info('...')`, `log.warn(...)`, ...: one line each. */
export const log = {
  trace: line('trace'),
  debug: line('debug'),
  info: line('info'),
  warn: line('warn'),
  error: line('error'),
};
