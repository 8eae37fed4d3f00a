-- Moves scheduled entries that are due from their sorted set onto their
-- target streams; each XADD and ZREM happen together, so an entry arrives
-- exactly once. Targets share the set's hash slot (checked at config load).
-- KEYS[1] the scheduled set; ARGV[1] now (ms), ARGV[2] most to move
-- Returns { moved, stuck } (stuck: target key of another type, left in place).
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
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
