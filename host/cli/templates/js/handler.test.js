// Unit tests without a host: `node --test` in this directory.
import assert from 'node:assert/strict';
import test from 'node:test';

import { Harness, message } from '@streamhost/sdk/testing';
import { handle } from './handler.js';

test('a valid order is emitted', () => {
  const result = new Harness({ allowEmit: ['{{name}}.valid'] }).invoke(handle, message({ data: '{"order_id": 7}' }));
  assert.equal(result.outcome, 'ok', result.reason);
  assert.deepEqual(result.effects, [{ op: 'emit', stream: '{{name}}.valid', fields: { order_id: '7' }, maxLen: undefined }]);
});

test('an invalid order is rejected', () => {
  assert.equal(new Harness().invoke(handle, message({ data: '{"order_id": "seven"}' })).outcome, 'reject');
});
