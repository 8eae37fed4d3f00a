// Native unit tests: `node --test` in this directory.
import assert from 'node:assert/strict';
import test from 'node:test';

import { Harness, message } from '@streamhost/sdk/testing';
import { handle } from './handler.js';

const order = (fields, meta) => message({ data: JSON.stringify(fields) }, meta);
const text = (bytes) => new TextDecoder().decode(bytes);

test('an order records every effect and the running total', () => {
  const h = new Harness({ allowEmit: ['orders.valid'], allowPublish: ['orders.events'], allowSchedule: ['orders.followup'] });
  const first = h.invoke(handle, order({ order_id: 1, amount_cents: 250, customer: 'ann' }));
  assert.equal(first.outcome, 'ok', first.reason);
  assert.deepEqual(
    first.effects.map((e) => ({ ...e, value: e.value && text(e.value), payload: e.payload && text(e.payload) })),
    [
      { op: 'kvSet', key: 'total:ann', value: '250', payload: undefined },
      { op: 'emit', stream: 'orders.valid', fields: { order_id: '1', amount_cents: '250', customer_total: '250' }, maxLen: 10000n, value: undefined, payload: undefined },
      { op: 'publish', channel: 'orders.events', payload: 'validated 1', value: undefined },
      { op: 'schedule', stream: 'orders.followup', fields: { order_id: '1' }, delayMs: 60000n, value: undefined, payload: undefined },
    ],
  );
  assert.deepEqual(first.logs, [['info', 'order 1: ann total 250']]);
  const second = h.invoke(handle, order({ order_id: 2, amount_cents: 50, customer: 'ann' }));
  assert.equal(text(second.effects[0].value), '300');
  assert.equal(text(h.state.get('total:ann')), '300');
});

test('bad orders are rejected and retry asks once', () => {
  const h = new Harness();
  assert.equal(h.invoke(handle, message({ other: 'x' })).reason, 'missing field `data`');
  assert.equal(h.invoke(handle, message({ data: '{' })).outcome, 'reject');
  const retried = h.invoke(handle, order({ order_id: 1, amount_cents: 1, retry: true }));
  assert.deepEqual([retried.outcome, retried.effects], ['retry', []]);
  assert.equal(h.invoke(handle, order({ order_id: 1, amount_cents: 1, retry: true }, { attempt: 2 })).outcome, 'ok');
});

test('a refused effect is an EffectError', () => {
  const result = new Harness({ allowEmit: [] }).invoke(handle, order({ order_id: 1, amount_cents: 1 }));
  assert.equal(result.outcome, 'trap');
  assert.match(result.reason, /not-allowed/);
});
