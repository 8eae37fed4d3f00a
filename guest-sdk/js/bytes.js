// Field values are bytes, as in Redis: conversions between what authors pass
// (strings, Uint8Array, ArrayBuffer, arrays of numbers) and Uint8Array.

const encoder = new TextEncoder();

/** `value` as a Uint8Array: strings as UTF-8, byte containers copied as they are. */
export function toBytes(value) {
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'string') return encoder.encode(value);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (Array.isArray(value)) return Uint8Array.from(value);
  throw new TypeError(`a field value is a string or bytes, not ${typeof value}`);
}

/** Fields given as an object or as `[name, value]` pairs, as WIT `field` records. */
export function toFields(fields) {
  const entries = Array.isArray(fields) ? fields : Object.entries(fields ?? {});
  return entries.map(([name, value]) => ({ name: String(name), value: toBytes(value) }));
}
