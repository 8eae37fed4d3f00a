-- Moves one pending entry to the dead-letter stream and acks it, atomically,
-- but only while this consumer still owns it: a consumer that lost the entry
-- to a claim must neither ack nor dead-letter it.
-- KEYS[1] source stream, KEYS[2] dead-letter stream
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] entry id, ARGV[4..] field/value pairs
-- Returns the DLQ entry id, or false when the entry is no longer ours.
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then
  return false
end
local dlq_id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
return dlq_id
