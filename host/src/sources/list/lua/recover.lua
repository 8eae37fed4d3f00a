-- Moves a consumer's processing list back to the queue when the consumer is
-- dead (its heartbeat key expired), or unconditionally for this host's own
-- list at start (ARGV[2] = 'own': what a previous run held). Each item's
-- delivery count goes up by one: its delivery ended without an outcome.
-- At most ARGV[1] items per call; the caller calls again while items move.
-- Items go to the consuming (right) end: they were popped before anything
-- still queued. Their order among themselves is not kept.
-- KEYS[1] processing list, KEYS[2] queue, KEYS[3] heartbeat key,
-- KEYS[4] the set of consumers; ARGV[3] the consumer name, ARGV[4] the wrapper magic.
-- Returns the items moved, or -1 when the consumer is alive.
if ARGV[2] ~= 'own' and redis.call('EXISTS', KEYS[3]) == 1 then
  return -1
end
local magic = ARGV[4]
local moved = 0
for i = 1, tonumber(ARGV[1]) do
  local item = redis.call('RPOP', KEYS[1])
  if not item then break end
  local deliveries, refused, data = 0, 0, item
  if string.sub(item, 1, #magic) == magic then
    local d, r, rest = string.match(string.sub(item, #magic + 1), '^(%d+):(%d+):(.*)$')
    if d then
      deliveries, refused, data = tonumber(d), tonumber(r), rest
    end
  end
  redis.call('RPUSH', KEYS[2], magic .. (deliveries + 1) .. ':' .. refused .. ':' .. data)
  moved = moved + 1
end
if redis.call('LLEN', KEYS[1]) == 0 and ARGV[2] ~= 'own' then
  redis.call('SREM', KEYS[4], ARGV[3])
end
return moved
