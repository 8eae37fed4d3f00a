// Why a handler did not accept an entry, and why the host refused an effect.

/** Transient failure: the host delivers the entry again after the plugin's backoff. */
export class Retry extends Error {
  constructor(reason) {
    super(String(reason));
    this.name = 'Retry';
    this.reason = String(reason);
  }
}

/** Permanent failure: the host dead-letters the entry at once, with `reason`. */
export class Reject extends Error {
  constructor(reason) {
    super(String(reason));
    this.name = 'Reject';
    this.reason = String(reason);
  }
}

/**
 * The host refused an effect. `kind` is `not-allowed` (not in the plugin's
 * `[plugin.allow]`), `limit-exceeded` (per-invocation count or bytes used
 * up), `invalid` (empty name, no fields, ...) or `unavailable` (state could
 * not be read; retrying the entry may help).
 */
export class EffectError extends Error {
  constructor(kind, detail) {
    super(`${kind}: ${detail}`);
    this.name = 'EffectError';
    this.kind = kind;
    this.detail = detail;
  }
}
