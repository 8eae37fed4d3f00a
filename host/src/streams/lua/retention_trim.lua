-- One round of a retention rule: trims the stream by age and/or length, but
-- never past what any consumer group still needs: its oldest pending entry,
-- or anything after its last-delivered id (not read yet). Redis has no trim
-- mode that respects the PEL, so the bound is computed here, atomically with
-- the trim (no group can move backwards between the check and XTRIM).
-- KEYS[1] stream
-- ARGV[1] max_len or '', ARGV[2] max_age in ms or '', ARGV[3] most entries
--         to look past for the length bound in one round (bounds the work)
-- Returns { trimmed, policy bound, safe bound, holding group, why ('pending'
-- or 'unread'), first id } with false where there is none. Bounds are the
-- first id to keep: XTRIM MINID deletes entries below it.

-- Ids compare as two decimal numbers; compare digit strings (no leading
-- zeros in ids) to stay exact past 2^53.
local function num_less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local function less(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  if ams ~= bms then return num_less(ams, bms) end
  return num_less(aseq, bseq)
end

local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #first == 0 then
  return { 0, false, false, false, false, false }
end
local first_id = first[1][1]

-- The policy bound: the stricter of the two rules wins.
local policy = false
if ARGV[2] ~= '' then
  local t = redis.call('TIME')
  local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[2])
  if cutoff > 0 then
    policy = string.format('%.0f-0', cutoff)
  end
end
if ARGV[1] ~= '' then
  local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[1])
  if excess > 0 then
    local n = math.min(excess, tonumber(ARGV[3]))
    local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', n + 1)
    local keep = head[#head][1]
    if not policy or less(policy, keep) then
      policy = keep
    end
  end
end
if not policy or not less(first_id, policy) then
  return { 0, policy, false, false, false, first_id }
end

-- The safe bound: the smallest of every group's oldest pending id and
-- last-delivered id (the last delivered entry itself is kept: one extra
-- entry buys not having to increment an id in Lua).
local safe, holder, why = false, false, false
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  local bound, reason = info['last-delivered-id'], 'unread'
  if info['pending'] > 0 then
    local oldest = redis.call('XPENDING', KEYS[1], info['name'])[2]
    if not less(bound, oldest) then
      bound, reason = oldest, 'pending'
    end
  end
  if not safe or less(bound, safe) then
    safe, holder, why = bound, info['name'], reason
  end
end

local bound = policy
if safe and less(safe, policy) then
  bound = safe
end
local trimmed = 0
if less(first_id, bound) then
  trimmed = redis.call('XTRIM', KEYS[1], 'MINID', '~', bound)
end
return { trimmed, policy, safe, holder, why, first_id }
