-- Removes consumers that have been idle longer than ARGV[2] ms and own no
-- pending entries. XGROUP DELCONSUMER silently drops a consumer's pending
-- entries, so the check and the delete happen in one atomic step.
-- KEYS[1] stream; ARGV[1] group, ARGV[2] min idle ms, ARGV[3] consumer to keep
-- Returns the names removed.
local removed = {}
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, c in ipairs(consumers) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if info['name'] ~= ARGV[3] and info['pending'] == 0 and info['idle'] > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    table.insert(removed, info['name'])
  end
end
return removed
