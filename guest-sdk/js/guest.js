// The component side: routes effects and logs to the host's imports and
// turns a handler's result into the WIT `result<_, handler-error>`. Used only
// by the entry module build.js generates (componentize-js sees WIT imports
// only in the entry module, so it passes them in).

import { setBackend } from './backend.js';
import { EffectError, Reject, Retry } from './errors.js';
import { Message } from './message.js';

function call(fn) {
  try {
    return fn();
  } catch (e) {
    // componentize-js throws an imported function's `err` as `{payload: {tag, val}}`.
    const p = e && e.payload;
    if (p && typeof p.tag === 'string') throw new EffectError(p.tag, String(p.val));
    throw e;
  }
}

/** Installs the host's `log` and `effects` imports as the backend. */
export function install(log, effects) {
  setBackend({
    log: (level, text) => log.log(level, text),
    emit: (stream, fields, maxLen) => call(() => effects.emit(stream, fields, maxLen)),
    publish: (channel, payload) => call(() => effects.publish(channel, payload)),
    schedule: (stream, fields, delayMs) => call(() => effects.schedule(stream, fields, delayMs)),
    kvGet: (key) => call(() => effects.kvGet(key)),
    kvSet: (key, value) => call(() => effects.kvSet(key, value)),
    kvDelete: (key) => call(() => effects.kvDelete(key)),
  });
  return log;
}

/** Wraps the author's `handle(msg)` as the WIT export. */
export function exportHandle(handle, log) {
  if (typeof handle !== 'function') {
    throw new Error('the handler module must `export function handle(msg)`');
  }
  return function (raw) {
    const msg = new Message({ stream: raw.stream, id: raw.id, fields: raw.fields, attempt: raw.attempt });
    try {
      handle(msg);
    } catch (e) {
      if (e instanceof Retry) throw { tag: 'retry', val: e.reason };
      if (e instanceof Reject) throw { tag: 'reject', val: e.reason };
      // A bug, like a Rust panic: say what and where, then trap (the host
      // counts a trap and replaces the instance).
      log.log('error', `uncaught ${e && e.stack ? e.stack : String(e)}`);
      throw e;
    }
  };
}
