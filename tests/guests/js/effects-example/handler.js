// Every effect from JavaScript: for an order in field `data` (JSON with
// integer `order_id` and `amount_cents`, optional `customer`), adds the amount
// to the customer's running total in state, emits the order with the new
// total to `orders.valid`, publishes `validated <id>` on `orders.events`,
// schedules a follow-up on `orders.followup`, and logs. `"retry": true` asks
// for a second attempt once; `"forget": true` deletes the customer's total.

import { Reject, Retry, emit, kvDelete, kvGet, kvSet, log, publish, schedule } from '@streamhost/sdk';

const FOLLOW_UP_MS = 60_000;

export function handle(msg) {
  const order = msg.fieldJson('data');
  if (order === null || typeof order !== 'object' || Array.isArray(order)) {
    throw new Reject('data must be a JSON object');
  }
  const { order_id: orderId, amount_cents: amount } = order;
  if (!Number.isInteger(orderId) || !Number.isInteger(amount)) {
    throw new Reject('order_id and amount_cents must be integers');
  }
  if (order.retry && msg.attempt === 1) throw new Retry('asked to retry once');
  const customer = String(order.customer ?? 'anon');
  const key = `total:${customer}`;
  if (order.forget) {
    kvDelete(key);
    log.info(`forgot ${customer}`);
    return;
  }
  const previous = kvGet(key);
  const total = Number(previous ? new TextDecoder().decode(previous) : '0') + amount;
  kvSet(key, String(total));
  emit(
    'orders.valid',
    { order_id: String(orderId), amount_cents: String(amount), customer_total: String(total) },
    10_000,
  );
  publish('orders.events', `validated ${orderId}`);
  schedule('orders.followup', [['order_id', String(orderId)]], FOLLOW_UP_MS);
  log.info(`order ${orderId}: ${customer} total ${total}`);
}
