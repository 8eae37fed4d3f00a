// Effects: writes to Redis the host buffers during an invocation and commits
// with the ack, so they happen exactly when the entry is acked. `emit`,
// `publish` and `schedule` need the matching `[plugin.allow]` entry; state
// (`kv*`) is the plugin's own. A refusal throws `EffectError`.

import { backend } from './backend.js';
import { toBytes, toFields } from './bytes.js';

/** Appends an entry (`{name: value}` or `[[name, value], ...]`) to `stream`, capped at about `maxLen` entries if given. */
export function emit(stream, fields, maxLen) {
  backend().emit(String(stream), toFields(fields), maxLen === undefined ? undefined : BigInt(maxLen));
}

/** Broadcasts `payload` on a Pub/Sub channel (subscribers may miss it). */
export function publish(channel, payload) {
  backend().publish(String(channel), toBytes(payload));
}

/** Appends an entry to `stream` no sooner than `delayMs` from now. */
export function schedule(stream, fields, delayMs) {
  backend().schedule(String(stream), toFields(fields), BigInt(delayMs));
}

/** Reads a key of this plugin's state (a Uint8Array, or `undefined`); sees this invocation's own writes. */
export function kvGet(key) {
  return backend().kvGet(String(key));
}

/** Writes a key of this plugin's state. */
export function kvSet(key, value) {
  backend().kvSet(String(key), toBytes(value));
}

/** Deletes a key of this plugin's state. */
export function kvDelete(key) {
  backend().kvDelete(String(key));
}
