-- Returns up to ARGV[1] in-flight members whose visibility deadline passed
-- (their host died or stalled) to the queue with their own score; their
-- delivery count stays in meta, so the next pop counts one more.
-- KEYS[1] queue, KEYS[2] in-flight set, KEYS[3] meta hash. Returns how many moved.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGE', KEYS[2], '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(expired) do
  local meta = redis.call('HGET', KEYS[3], member)
  local score = meta and string.match(meta, '^%d+:%d+:(.*)$') or now
  redis.call('ZREM', KEYS[2], member)
  redis.call('ZADD', KEYS[1], score, member)
end
return #expired
