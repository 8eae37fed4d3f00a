-- Finishes a replay begun in the same MULTI by an XADD of the dead letter to
-- the plugin's redelivery stream (sent by the client: Lua cannot pass an
-- entry of more than about 4,000 fields to one command). Nothing runs between
-- that XADD and this script, so the redelivery stream's newest entry is the
-- one just added when it carries our nonce. Removing the dead letter is the
-- last write; when it is already gone (replayed or purged meanwhile) the new
-- entry is removed again, so an entry is never replayed twice.
-- KEYS[1] dead-letter stream, KEYS[2] redelivery stream
-- ARGV[1] DLQ entry id, ARGV[2] nonce
-- Returns the new entry id, or false when the DLQ entry is already gone.
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #last == 0 or last[1][2][1] ~= 'dlq.nonce' or last[1][2][2] ~= ARGV[2] then
  return redis.error_reply('DLQNOTWRITTEN the redelivery entry was not added')
end
local new_id = last[1][1]
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then
  redis.call('XDEL', KEYS[2], new_id)
  return false
end
return new_id
