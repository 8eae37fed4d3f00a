-- Puts a dead-lettered entry's original fields back on its source stream and
-- removes it from the dead-letter stream, atomically. Checks come first and
-- writes last, because a script that fails midway does not roll back.
-- KEYS[1] dead-letter stream, KEYS[2] source stream
-- ARGV[1] DLQ entry id, ARGV[2..] original field/value pairs
-- Returns the new entry id, or false when the DLQ entry is already gone.
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then
  return false
end
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
redis.call('XDEL', KEYS[1], ARGV[1])
return id
