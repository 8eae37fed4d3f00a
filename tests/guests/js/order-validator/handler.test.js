// Native unit tests: `node --test` in this directory.
import assert from 'node:assert/strict';
import test from 'node:test';

import { invoke, message } from '@streamhost/sdk/testing';
import { handle } from './handler.js';

test('valid and invalid orders', () => {
  const ok = invoke(handle, message({ data: '{"order_id": 1, "amount_cents": 250}' }));
  assert.deepEqual([ok.outcome, ok.effects], ['ok', []]);
  const cases = {
    '{"order_id": 2, "amount_cents": -5}': 'amount_cents must be >= 0, got -5',
    '[1]': 'data must be a JSON object',
    '{"amount_cents": 1}': 'missing field order_id',
    '{"order_id": true, "amount_cents": 1}': 'order_id must be an integer, got boolean',
  };
  for (const [data, reason] of Object.entries(cases)) {
    const r = invoke(handle, message({ data }));
    assert.deepEqual([r.outcome, r.reason], ['reject', reason], data);
  }
  assert.equal(invoke(handle, message({ other: '' })).reason, 'missing field data');
});
