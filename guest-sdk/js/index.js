// streamhost guest SDK for JavaScript handlers.
//
//   import { Reject, emit, log } from '@streamhost/sdk';
//
//   export function handle(msg) {
//     const order = msg.fieldJson('data');        // missing or bad JSON -> Reject
//     if (order.amount_cents < 0) throw new Reject('amount_cents must be >= 0');
//     emit('orders.valid', { order_id: String(order.order_id) });
//   }
//
// Returning acks the entry; `throw new Retry(reason)` delivers it again after
// the plugin's backoff; `throw new Reject(reason)` dead-letters it. Any other
// exception is a bug: it is logged and the invocation traps. `node build.js`
// (`npx streamhost-js-build`) makes a component; `@streamhost/sdk/testing`
// runs handlers under node, recording effects and logs.

export { Retry, Reject, EffectError } from './errors.js';
export { Message } from './message.js';
export { emit, publish, schedule, kvGet, kvSet, kvDelete } from './effects.js';
export { log } from './log.js';
