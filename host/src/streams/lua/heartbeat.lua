-- One beat of a process using a consumer name: drops beats older than the
-- TTL, records this one at Redis's clock, returns every live beat.
-- KEYS[1] sorted set of the processes using one consumer name
-- ARGV[1] this process's id, ARGV[2] TTL ms, ARGV[3] most beats returned
-- Returns {now ms, {id, score, id, score, ...}}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {now, redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1, 'WITHSCORES')}
