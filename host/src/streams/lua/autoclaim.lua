-- One step of the claimer's walk over the PEL. Claims the entries idle at
-- least ARGV[3] ms that belong to OTHER consumers, returning each with its
-- delivery count (XCLAIM adds one), so the attempt number survives hand-offs.
-- This consumer's own idle entries are only reported: XAUTOCLAIM would take
-- them too, delivering twice an entry this host still has queued or waiting
-- for a retry (and counting a delivery that never happened); the host
-- re-claims only those it no longer holds, and keeps the idle time of those
-- it holds below ARGV[3] (own entries are reported from ARGV[6] ms of idle).
-- Entries deleted or trimmed while pending are dropped from the PEL and
-- reported (Redis 7 XCLAIM already drops them; older servers return nil).
-- KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3] min idle ms,
-- ARGV[4] id to continue after ('-' to start), ARGV[5] count,
-- ARGV[6] idle ms from which own entries are reported (at most ARGV[3])
-- Returns { next id ('0-0' when done), { {id, fields, deliveries}... },
--           { deleted ids... }, { own ids idle >= ARGV[3]... },
--           { own ids idle >= ARGV[6] but < ARGV[3]... } }
local start = ARGV[4]
if start ~= '-' then
  start = '(' .. start
end
local count = tonumber(ARGV[5])
local min_idle = tonumber(ARGV[3])
local rows = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[6], start, '+', count)
local others, deliveries, own, aging = {}, {}, {}, {}
for _, row in ipairs(rows) do
  if row[2] == ARGV[2] then
    if row[3] >= min_idle then
      table.insert(own, row[1])
    else
      table.insert(aging, row[1])
    end
  elseif row[3] >= min_idle then
    table.insert(others, row[1])
    deliveries[row[1]] = row[4]
  end
end
local claimed, deleted = {}, {}
if #others > 0 then
  local got = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], unpack(others))
  local found = {}
  for _, entry in ipairs(got) do
    if type(entry) == 'table' and entry[2] then
      found[entry[1]] = true
      table.insert(claimed, { entry[1], entry[2], deliveries[entry[1]] + 1 })
    end
  end
  for _, id in ipairs(others) do
    if not found[id] then
      redis.call('XACK', KEYS[1], ARGV[1], id)
      table.insert(deleted, id)
    end
  end
end
local next = '0-0'
if #rows == count then
  next = rows[#rows][1]
end
return { next, claimed, deleted, own, aging }
