-- One step of a walk over a dead-letter stream: the entries that match a
-- filter, with their metadata but without their original fields, so that
-- listing, counting and selecting never send entry bodies. Read-only.
-- KEYS[1] dead-letter stream
-- ARGV[1] 'fwd' (oldest first) or 'rev' (newest first)
-- ARGV[2] first bound (inclusive '-'/'+', or '(' .. id exclusive)
-- ARGV[3] last bound, ARGV[4] entries to examine
-- ARGV[5] plugin, ARGV[6] group: when ARGV[5] is not '', only entries whose
--   dlq.plugin is ARGV[5], or that have no dlq.plugin and dlq.group ARGV[6]
-- ARGV[7] reason ('' any): dlq.reason equal to it or starting with it and ':'
-- ARGV[8] text ('' any): found in an original field name or value, or dlq.error
-- Returns { last id examined ('' when the range is done), examined count,
--           { {id, {metadata name, value, ...}, field count, field bytes}... } }
local rows
if ARGV[1] == 'rev' then
  rows = redis.call('XREVRANGE', KEYS[1], ARGV[2], ARGV[3], 'COUNT', ARGV[4])
else
  rows = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[3], 'COUNT', ARGV[4])
end
local plugin, group, reason, text = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local hits = {}
for _, row in ipairs(rows) do
  local flat = row[2]
  local metadata, count, bytes = {}, 0, 0
  local p, g, r, found = nil, nil, nil, text == ''
  for i = 1, #flat, 2 do
    local name, value = flat[i], flat[i + 1]
    if string.sub(name, 1, 4) == 'msg.' then
      count = count + 1
      bytes = bytes + #name - 4 + #value
      if not found and (string.find(name, text, 5, true) or string.find(value, text, 1, true)) then
        found = true
      end
    else
      table.insert(metadata, name)
      table.insert(metadata, value)
      if name == 'dlq.plugin' then p = value
      elseif name == 'dlq.group' then g = value
      elseif name == 'dlq.reason' then r = value
      elseif name == 'dlq.error' and not found and string.find(value, text, 1, true) then
        found = true
      end
    end
  end
  local owned = plugin == '' or p == plugin or (p == nil and g == group)
  local reason_ok = reason == '' or r == reason
    or (r ~= nil and string.sub(r, 1, #reason + 1) == reason .. ':')
  if owned and reason_ok and found then
    table.insert(hits, { row[1], metadata, count, bytes })
  end
end
local last = ''
if #rows == tonumber(ARGV[4]) then
  last = rows[#rows][1]
end
return { last, #rows, hits }
