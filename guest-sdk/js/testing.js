// Runs a handler under node, without a host: effects and log lines are
// recorded, state lives in a Map, and the outcome is what the host would see.
//
//   import { Harness, message } from '@streamhost/sdk/testing';
//   const h = new Harness({ allowEmit: ['orders.valid'] });
//   const r = h.invoke(handle, message({ data: '{"order_id": 1, "amount_cents": 5}' }));
//   assert.equal(r.outcome, 'ok');
//
// Like the host, effects of an attempt that did not return ok are dropped, and
// an allow list given here refuses what it does not match with
// `EffectError('not-allowed', ...)` (no list: everything allowed).

import { setBackend } from './backend.js';
import { EffectError, Reject, Retry } from './errors.js';
import { Message } from './message.js';
import { toBytes } from './bytes.js';


/** A message with the given fields (`{data: '...'}`); `stream`, `id`, `attempt` in `meta`. */
export function message(fields = {}, meta = {}) {
  return new Message({ ...meta, fields: Object.entries(fields) });
}

/** `*`, `?` and `[...]` globs, as `[plugin.allow]` has them. */
function globToRegExp(glob) {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        re += '[' + glob.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\') + ']';
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 's');
}

/** A native stand-in for the host. `state` (a Map of key -> Uint8Array) survives between invocations. */
export class Harness {
  constructor({ allowEmit, allowPublish, allowSchedule, state } = {}) {
    this.allow = { 'emit to': allowEmit, 'publish on': allowPublish, 'schedule to': allowSchedule };
    this.state = new Map(Object.entries(state ?? {}).map(([k, v]) => [k, toBytes(v)]));
    this.effects = [];
    this.logs = [];
    this.overlay = new Map();
  }

  check(what, name) {
    if (!name) throw new EffectError('invalid', `empty ${what} name`);
    const patterns = this.allow[what];
    if (patterns && !patterns.some((p) => globToRegExp(p).test(name))) {
      throw new EffectError('not-allowed', `may not ${what} ${JSON.stringify(name)} (see [plugin.allow])`);
    }
  }

  static checkFields(fields) {
    if (fields.length === 0) throw new EffectError('invalid', 'an entry needs at least one field');
  }

  // The backend interface (see guest.js). Fields are recorded as
  // `{name: text}` objects when every value is UTF-8, for easy asserts.
  log(level, text) {
    this.logs.push([level, text]);
  }
  emit(stream, fields, maxLen) {
    this.check('emit to', stream);
    Harness.checkFields(fields);
    this.effects.push({ op: 'emit', stream, fields: readable(fields), maxLen });
  }
  publish(channel, payload) {
    this.check('publish on', channel);
    this.effects.push({ op: 'publish', channel, payload });
  }
  schedule(stream, fields, delayMs) {
    this.check('schedule to', stream);
    Harness.checkFields(fields);
    this.effects.push({ op: 'schedule', stream, fields: readable(fields), delayMs });
  }
  kvGet(key) {
    return this.overlay.has(key) ? this.overlay.get(key) : this.state.get(key);
  }
  kvSet(key, value) {
    this.effects.push({ op: 'kvSet', key, value });
    this.overlay.set(key, value);
  }
  kvDelete(key) {
    this.effects.push({ op: 'kvDelete', key });
    this.overlay.set(key, undefined);
  }

  /** Calls `handle(msg)` like the host would; returns `{outcome, reason, effects, logs, error}`. */
  invoke(handle, msg = message()) {
    this.effects = [];
    this.logs = [];
    this.overlay = new Map();
    const previous = setBackend(this);
    let outcome = 'ok';
    let reason = '';
    let error;
    try {
      handle(msg);
    } catch (e) {
      if (e instanceof Retry) [outcome, reason] = ['retry', e.reason];
      else if (e instanceof Reject) [outcome, reason] = ['reject', e.reason];
      else [outcome, reason, error] = ['trap', String(e), e];
    } finally {
      setBackend(previous);
    }
    if (outcome === 'ok') {
      for (const [key, value] of this.overlay) {
        if (value === undefined) this.state.delete(key);
        else this.state.set(key, value);
      }
    }
    return { outcome, reason, effects: outcome === 'ok' ? this.effects : [], logs: this.logs, error };
  }
}

function readable(fields) {
  const out = {};
  for (const { name, value } of fields) {
    try {
      out[name] = new TextDecoder('utf-8', { fatal: true }).decode(value);
    } catch {
      return fields;
    }
  }
  return Object.keys(out).length === fields.length ? out : fields;
}

/** One invocation on a fresh Harness. */
export function invoke(handle, msg, options) {
  return new Harness(options).invoke(handle, msg);
}

