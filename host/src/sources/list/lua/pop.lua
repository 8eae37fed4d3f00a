-- Moves up to ARGV[1] items from the queue (its right end: producers LPUSH)
-- to this consumer's processing list, in one step each (LMOVE), so an item
-- is always in one of the two lists.
-- KEYS[1] queue, KEYS[2] processing list. Returns the items moved, oldest first.
local out = {}
for i = 1, tonumber(ARGV[1]) do
  local item = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not item then break end
  out[i] = item
end
return out
