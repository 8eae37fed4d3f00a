// One stream entry as a handler sees it, with typed access to its fields.

import { Reject } from './errors.js';
import { toBytes } from './bytes.js';

const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * One stream entry. Field values are bytes (Uint8Array). If a name occurs
 * more than once (Redis allows it), lookups return the first occurrence. The
 * `field*` readers throw `Reject` when a field is missing or malformed: such
 * an entry cannot become valid by retrying.
 */
export class Message {
  constructor({ stream = 'test', id = '0-1', fields = [], attempt = 1 } = {}) {
    /** The stream the entry was read from. */
    this.stream = stream;
    /** The entry id, e.g. `1700000000000-0`. */
    this.id = id;
    /** All fields as `[name, Uint8Array]`, in the order they were written. */
    this.fields = (Array.isArray(fields) ? fields : Object.entries(fields)).map((f) =>
      Array.isArray(f) ? [String(f[0]), toBytes(f[1])] : [f.name, toBytes(f.value)],
    );
    /** 1-based delivery attempt, counted by Redis. */
    this.attempt = attempt;
  }

  /** The raw bytes of field `name`, or `undefined` when absent. */
  field(name) {
    const found = this.fields.find(([n]) => n === name);
    return found ? found[1] : undefined;
  }

  #required(name) {
    const value = this.field(name);
    if (value === undefined) throw new Reject(`missing field \`${name}\``);
    return value;
  }

  /** Field `name` as UTF-8 text; `Reject` if missing or not UTF-8. */
  fieldStr(name) {
    try {
      return decoder.decode(this.#required(name));
    } catch (e) {
      if (e instanceof Reject) throw e;
      throw new Reject(`field \`${name}\` is not UTF-8`);
    }
  }

  /** Field `name` parsed as JSON; `Reject` if missing or not JSON. */
  fieldJson(name) {
    const text = this.fieldStr(name);
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new Reject(`field \`${name}\` is not JSON: ${e.message}`);
    }
  }

  /** Field `name` as a decimal integer; `Reject` if missing or not one. */
  fieldInt(name) {
    const text = this.fieldStr(name);
    if (!/^-?\d+$/.test(text)) throw new Reject(`field \`${name}\` is not an integer: ${JSON.stringify(text)}`);
    const n = Number(text);
    return Number.isSafeInteger(n) ? n : BigInt(text);
  }
}
