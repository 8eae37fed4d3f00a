-- Makes a stored component the current version of a plugin: a new version
-- number, its record, the current pointer and the announcement, together.
-- KEYS[1] versions stream, KEYS[2] current hash
-- ARGV[1] digest, ARGV[2] who, ARGV[3] action, ARGV[4] time ms, ARGV[5] channel,
-- ARGV[6] '1': do nothing when the digest is already current (a deploy)
-- Returns {version number, 1 if a version was created else 0}.
if ARGV[6] == '1' and redis.call('HGET', KEYS[2], 'digest') == ARGV[1] then
  return {tonumber(redis.call('HGET', KEYS[2], 'version')), 0}
end
local v = redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('XADD', KEYS[1], '*', 'version', v, 'digest', ARGV[1], 'by', ARGV[2], 'action', ARGV[3], 'at-ms', ARGV[4])
redis.call('HSET', KEYS[2], 'version', v, 'digest', ARGV[1])
redis.call('PUBLISH', ARGV[5], ARGV[1])
return {v, 1}
