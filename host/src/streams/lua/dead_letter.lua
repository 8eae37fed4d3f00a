-- Finishes a dead-lettering begun in the same MULTI by an XADD of the
-- dead-letter entry. The XADD is sent by the client, not made here, because
-- Lua cannot pass more than about 8,000 values to one command and an entry
-- may have far more fields. Nothing runs between that XADD and this script,
-- so the DLQ's newest entry is the one just added when it carries our nonce.
-- Checks come first and writes last; a failed check removes the new entry, so
-- the whole MULTI either moves the entry or changes nothing.
-- KEYS[1] stream the entry is pending in, KEYS[2] dead-letter stream
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] entry id, ARGV[4] nonce
-- Returns the DLQ entry id, or false when the entry is no longer ours.
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #last == 0 or last[1][2][1] ~= 'dlq.nonce' or last[1][2][2] ~= ARGV[4] then
  return redis.error_reply('DLQNOTWRITTEN the dead-letter entry was not added')
end
local dlq_id = last[1][1]
local pending = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if type(pending) == 'table' and pending.err then
  redis.call('XDEL', KEYS[2], dlq_id)
  return pending
end
if #pending == 0 or pending[1][2] ~= ARGV[2] then
  redis.call('XDEL', KEYS[2], dlq_id)
  return false
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
return dlq_id
