// {{name}}: a streamhost handler. Field `data` must be a JSON object with an
// integer `order_id`; each valid order is emitted to `{{name}}.valid`.

import { Reject, emit, log } from '@streamhost/sdk';

export function handle(msg) {
  const order = msg.fieldJson('data'); // missing or not JSON: Reject
  if (order === null || typeof order !== 'object' || !Number.isInteger(order.order_id)) {
    throw new Reject('data must be a JSON object with an integer order_id');
  }
  log.info(`order ${order.order_id} is valid`);
  emit('{{name}}.valid', { order_id: String(order.order_id) });
}
