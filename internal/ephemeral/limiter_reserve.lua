-- Take one attempt in a fixed window if fewer than the limit are counted.
-- KEYS[1]: the counter; ARGV[1]: the limit; ARGV[2]: the window in
-- milliseconds. Returns {1, count} when the attempt is counted and
-- {0, count} when it is refused (and nothing is counted).
-- As in limiter_hit.lua, the first attempt starts the window, and a counter
-- found without an expiry gets one.
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then
	if n > 0 and redis.call('PTTL', KEYS[1]) == -1 then
		redis.call('PEXPIRE', KEYS[1], ARGV[2])
	end
	return {0, n}
end
n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) == -1 then
	redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {1, n}
