-- One XAUTOCLAIM step that also returns each claimed entry's delivery count,
-- so the attempt number survives hand-offs between hosts.
-- KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3] min idle ms,
-- ARGV[4] start cursor, ARGV[5] count
-- Returns { next cursor, { {id, fields, deliveries}... }, { deleted ids... } }
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local claimed = {}
for _, entry in ipairs(r[2]) do
  local id = entry[1]
  if entry[2] then
    local pending = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    table.insert(claimed, { id, entry[2], pending[1][4] })
  end
end
-- Redis 7 reports entries deleted while pending in a third list and drops them from the PEL.
return { r[1], claimed, r[3] or {} }
