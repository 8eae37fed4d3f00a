-- Commits one entry's effects together with its ack, atomically, and only if
-- this consumer still owns the entry and the state it read is unchanged.
-- A script that fails midway does not roll back, so every check (ownership,
-- optimistic reads, key types) runs before the first write.
--
-- KEYS[1] where the entry is held (source stream, processing list or in-flight
-- sorted set), KEYS[2..] every key an effect touches (a sorted set's meta hash
-- first)
-- ARGV[1] how the entry is held and acked:
--   X  stream: ARGV[2] group, ARGV[3] consumer; owned = pending on it; ack XACK
--   L  list: ARGV[5] the item as stored; owned = still in the processing
--      list; ack LREM one copy (equal items are interchangeable)
--   Z  sorted set: ARGV[3] delivery token, ARGV[5] member, KEYS[2] meta hash;
--      owned = meta says this delivery; ack ZREM + HDEL
--   N  nothing to ack (Pub/Sub): effects only
-- ARGV[4] a unique id of the delivery (names scheduled members), then ops:
--   R <key#> <value>        state read during the invocation: must still equal <value>
--   N <key#>                state read as absent: must still be absent
--   E <key#> <maxlen|""> <n> <n field names and values...>   XADD
--   P <channel> <payload>                                    PUBLISH
--   S <key#> <target stream> <delay ms> <n> <n names and values...>  ZADD (scheduled,
--                           due = Redis's clock + delay, so host clocks never matter)
--   L <key#> <item>         LPUSH (push)
--   Z <key#> <score> <member>  ZADD (zadd)
--   K <key#> <value>        SET state
--   D <key#>                DEL state
-- Returns 1 committed, 0 not ours any more, -1 state changed (re-run the handler),
-- or an error naming a key of the wrong type.
local mode = ARGV[1]
if mode == 'X' then
  local pending = redis.call('XPENDING', KEYS[1], ARGV[2], ARGV[4], ARGV[4], 1)
  if #pending == 0 or pending[1][2] ~= ARGV[3] then
    return 0
  end
elseif mode == 'L' then
  if redis.call('LPOS', KEYS[1], ARGV[5], 'RANK', -1) == false then
    return 0
  end
elseif mode == 'Z' then
  if redis.call('HGET', KEYS[2], ARGV[5]) ~= ARGV[3] then
    return 0
  end
elseif mode ~= 'N' then
  return redis.error_reply('unknown ack mode ' .. tostring(mode))
end

-- State is strings: K and D refuse a key of any other type, so a kv-delete can
-- never remove a stream, DLQ or schedule, whatever its name.
local want = { E = 'stream', S = 'zset', K = 'string', D = 'string', L = 'list', Z = 'zset' }
local width = { R = 3, N = 2, P = 3, K = 3, D = 2, L = 3, Z = 4 }

-- Pass 1: checks only. `claimed` remembers the type an earlier op of this
-- commit gives a key, so a later op expecting another type fails here, before
-- anything is written.
local claimed = {}
local i = 6
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'R' or op == 'N' then
    local current = redis.call('GET', KEYS[tonumber(ARGV[i + 1])])
    if op == 'R' and current ~= ARGV[i + 2] then return -1 end
    if op == 'N' and current ~= false then return -1 end
  end
  if want[op] then
    local index = tonumber(ARGV[i + 1])
    local key = KEYS[index]
    local t = claimed[index] or redis.call('TYPE', key)['ok']
    if t ~= 'none' and t ~= want[op] then
      return redis.error_reply('WRONGTYPE ' .. key .. ' is a ' .. t .. ', not a ' .. want[op])
    elseif op == 'D' then
      claimed[index] = 'none'
    else
      claimed[index] = want[op]
    end
  end
  if op == 'E' then
    i = i + 4 + tonumber(ARGV[i + 3])
  elseif op == 'S' then
    i = i + 5 + tonumber(ARGV[i + 4])
  elseif width[op] then
    i = i + width[op]
  else
    return redis.error_reply('unknown effect op ' .. tostring(op))
  end
end

-- Pass 2: writes.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
i = 6
local n = 0
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'E' then
    local count = tonumber(ARGV[i + 3])
    local args = { KEYS[tonumber(ARGV[i + 1])] }
    if ARGV[i + 2] ~= '' then
      table.insert(args, 'MAXLEN'); table.insert(args, '~'); table.insert(args, ARGV[i + 2])
    end
    table.insert(args, '*')
    for j = 1, count do table.insert(args, ARGV[i + 3 + j]) end
    redis.call('XADD', unpack(args))
    i = i + 4 + count
  elseif op == 'S' then
    local count = tonumber(ARGV[i + 4])
    local fields = {}
    for j = 1, count do fields[j] = ARGV[i + 4 + j] end
    -- The member names its origin, so it is unique and a replayed commit cannot add it twice.
    local member = cmsgpack.pack({ ARGV[4] .. '/' .. n, ARGV[i + 2], fields })
    redis.call('ZADD', KEYS[tonumber(ARGV[i + 1])], now_ms + tonumber(ARGV[i + 3]), member)
    i = i + 5 + count
  elseif op == 'P' then
    redis.call('PUBLISH', ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  elseif op == 'L' then
    redis.call('LPUSH', KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2])
    i = i + 3
  elseif op == 'Z' then
    redis.call('ZADD', KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  elseif op == 'K' then
    redis.call('SET', KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2])
    i = i + 3
  elseif op == 'D' then
    redis.call('DEL', KEYS[tonumber(ARGV[i + 1])])
    i = i + 2
  else
    i = i + width[op]
  end
  n = n + 1
end
if mode == 'X' then
  redis.call('XACK', KEYS[1], ARGV[2], ARGV[4])
elseif mode == 'L' then
  redis.call('LREM', KEYS[1], -1, ARGV[5])
elseif mode == 'Z' then
  redis.call('ZREM', KEYS[1], ARGV[5])
  redis.call('HDEL', KEYS[2], ARGV[5])
end
return 1
