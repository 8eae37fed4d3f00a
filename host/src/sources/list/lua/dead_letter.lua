-- Dead-letters an item this consumer holds: removes one copy from the
-- processing list and, only if there was one, adds the dead letter. The
-- fields are the fixed metadata plus `msg.data`: a few dozen values, far
-- below `unpack`'s limit.
-- KEYS[1] processing list, KEYS[2] DLQ stream; ARGV[1] item as stored,
-- ARGV[2..] field names and values. Returns the DLQ id, or false.
local t = redis.call('TYPE', KEYS[2])['ok']
if t ~= 'none' and t ~= 'stream' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[2] .. ' is a ' .. t .. ', not a stream')
end
if redis.call('LREM', KEYS[1], -1, ARGV[1]) == 0 then
  return false
end
return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
