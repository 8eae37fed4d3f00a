-- Moves scheduled entries that are due from their sorted set onto their
-- target streams; each XADD and ZREM happen together, so an entry arrives
-- exactly once. Targets share the set's hash slot (checked at config load).
-- KEYS[1] the scheduled set; ARGV[1] most to move. "Now" is Redis's clock,
-- the same clock the commit script used for the due time.
-- Returns { moved, stuck } (stuck: target key of another type, left in place).
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[1]))
local moved, stuck = 0, 0
for _, member in ipairs(due) do
  local item = cmsgpack.unpack(member)
  local t = redis.call('TYPE', item[2])['ok']
  if t == 'none' or t == 'stream' then
    redis.call('XADD', item[2], '*', unpack(item[3]))
    redis.call('ZREM', KEYS[1], member)
    moved = moved + 1
  else
    stuck = stuck + 1
  end
end
return { moved, stuck }
