-- Puts an item this consumer holds back on the queue for another attempt:
-- removes one copy from the processing list and, only if there was one
-- (else a live host already moved it back), pushes the wrapped item (its
-- delivery count) at the queue's far end.
-- KEYS[1] processing list, KEYS[2] queue; ARGV[1] item as stored, ARGV[2] wrapped.
if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
