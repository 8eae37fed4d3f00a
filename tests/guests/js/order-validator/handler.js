// Validates orders like plugins/order-validator: field `data` must be a JSON
// object with an integer `order_id` and an integer `amount_cents >= 0`.

import { Reject } from '@streamhost/sdk';

function integer(order, name) {
  if (!(name in order)) throw new Reject(`missing field ${name}`);
  const value = order[name];
  if (!Number.isInteger(value)) throw new Reject(`${name} must be an integer, got ${typeof value}`);
  return value;
}

export function handle(msg) {
  const raw = msg.field('data');
  if (raw === undefined) throw new Reject('missing field data');
  let order;
  try {
    order = JSON.parse(new TextDecoder().decode(raw));
  } catch (e) {
    throw new Reject(`data is not JSON: ${e.message}`);
  }
  if (order === null || typeof order !== 'object' || Array.isArray(order)) {
    throw new Reject('data must be a JSON object');
  }
  integer(order, 'order_id');
  const amount = integer(order, 'amount_cents');
  if (amount < 0) throw new Reject(`amount_cents must be >= 0, got ${amount}`);
}
