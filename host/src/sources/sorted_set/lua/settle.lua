-- Settles in-flight members this consumer holds, each only while the meta
-- hash still names its delivery (else the member expired and another
-- delivery owns it now).
-- KEYS[1] queue, KEYS[2] in-flight set, KEYS[3] meta hash.
-- ARGV[1] what to do:
--   ack      ARGV[2..] member, token pairs: remove from in flight and meta
--   requeue  ARGV[2] member, ARGV[3] token, ARGV[4] refused to add: back to
--            the queue with its own score, the count kept in meta
--   extend   ARGV[2] deadline ms from now, ARGV[3..] member, token pairs:
--            push their visibility deadline out (held, alive host)
-- Returns how many were settled.
local op, done = ARGV[1], 0
if op == 'ack' then
  for i = 2, #ARGV, 2 do
    if redis.call('HGET', KEYS[3], ARGV[i]) == ARGV[i + 1] then
      redis.call('ZREM', KEYS[2], ARGV[i])
      redis.call('HDEL', KEYS[3], ARGV[i])
      done = done + 1
    end
  end
elseif op == 'requeue' then
  if redis.call('HGET', KEYS[3], ARGV[2]) == ARGV[3] then
    local d, r, score = string.match(ARGV[3], '^(%d+):(%d+):(.*)$')
    redis.call('ZREM', KEYS[2], ARGV[2])
    redis.call('ZADD', KEYS[1], score, ARGV[2])
    redis.call('HSET', KEYS[3], ARGV[2], d .. ':' .. (tonumber(r) + tonumber(ARGV[4])) .. ':' .. score)
    done = 1
  end
elseif op == 'extend' then
  local t = redis.call('TIME')
  local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
  for i = 3, #ARGV, 2 do
    if redis.call('HGET', KEYS[3], ARGV[i]) == ARGV[i + 1] then
      redis.call('ZADD', KEYS[2], 'XX', deadline, ARGV[i])
      done = done + 1
    end
  end
else
  return redis.error_reply('unknown op ' .. tostring(op))
end
return done
