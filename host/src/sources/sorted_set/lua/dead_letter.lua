-- Dead-letters an in-flight member this consumer holds: only while the meta
-- hash names its delivery, removes it from in flight and meta and adds the
-- dead letter (fixed metadata plus `msg.data`: far below `unpack`'s limit).
-- KEYS[1] in-flight set, KEYS[2] meta hash, KEYS[3] DLQ stream;
-- ARGV[1] member, ARGV[2] token, ARGV[3..] field names and values.
-- Returns the DLQ id, or false when the member is not ours any more.
local t = redis.call('TYPE', KEYS[3])['ok']
if t ~= 'none' and t ~= 'stream' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[3] .. ' is a ' .. t .. ', not a stream')
end
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then
  return false
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('XADD', KEYS[3], '*', unpack(ARGV, 3))
