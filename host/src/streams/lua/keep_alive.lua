-- Resets the idle time of entries this consumer still holds (queued, being
-- handled, waiting for a retry), so that other hosts' claimers do not take
-- them from a live host that is merely busy: every such take-over adds a
-- delivery, and entries that bounce between busy hosts run out of attempts
-- without a handler ever failing. XCLAIM ... JUSTID adds no delivery.
-- Only entries this consumer still owns are touched: XCLAIM would otherwise
-- take back one that another consumer claimed meanwhile.
-- KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3..] ids
-- Returns the number of entries refreshed.
local mine = {}
for i = 3, #ARGV do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #pending > 0 and pending[1][2] == ARGV[2] then
    table.insert(mine, ARGV[i])
  end
end
local refreshed = #mine
if refreshed > 0 then
  table.insert(mine, 'JUSTID')
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(mine))
end
return refreshed
