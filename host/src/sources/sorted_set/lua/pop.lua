-- Pops up to ARGV[1] members and marks them in flight in one step, so a
-- member is always in the queue or in flight, never in neither.
-- KEYS[1] queue, KEYS[2] in-flight set (score: visibility deadline, ms),
-- KEYS[3] meta hash (member -> "<deliveries>:<refused>:<score>", the
-- delivery's token); ARGV[2] 'priority' (lowest score first) or 'due'
-- (score <= now, earliest first), ARGV[3] visibility in ms.
-- Times are Redis's clock, so hosts' clocks never matter.
-- Returns { now ms, next due score or '', member1, token1, ... }.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local picked
if ARGV[2] == 'due' then
  picked = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, n, 'WITHSCORES')
else
  picked = redis.call('ZRANGE', KEYS[1], 0, n - 1, 'WITHSCORES')
end
local out = { now, '' }
local deadline = now + tonumber(ARGV[3])
for i = 1, #picked, 2 do
  local member, score = picked[i], picked[i + 1]
  local deliveries, refused = 0, 0
  local meta = redis.call('HGET', KEYS[3], member)
  if meta then
    local d, r = string.match(meta, '^(%d+):(%d+):')
    if d then deliveries, refused = tonumber(d), tonumber(r) end
  end
  local token = (deliveries + 1) .. ':' .. refused .. ':' .. score
  redis.call('ZREM', KEYS[1], member)
  redis.call('ZADD', KEYS[2], deadline, member)
  redis.call('HSET', KEYS[3], member, token)
  out[#out + 1] = member
  out[#out + 1] = token
end
if #picked == 0 then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #first > 0 then out[2] = first[2] end
end
return out
