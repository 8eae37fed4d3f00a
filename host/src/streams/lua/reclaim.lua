-- Claims this consumer's own pending entries again for a retry, returning each
-- with its delivery count as Redis records it (XCLAIM adds one). Entries that
-- another consumer claimed meanwhile are left alone; entries deleted or trimmed
-- while pending are acked and reported.
-- KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3..] ids
-- Returns { {id, fields, deliveries}... }, { gone ids... }
local claimed, gone = {}, {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if #pending > 0 and pending[1][2] == ARGV[2] then
    local entry = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id)
    if #entry > 0 and entry[1] and entry[1][2] then
      table.insert(claimed, { entry[1][1], entry[1][2], pending[1][4] + 1 })
    else
      redis.call('XACK', KEYS[1], ARGV[1], id)
      table.insert(gone, id)
    end
  end
end
return { claimed, gone }
