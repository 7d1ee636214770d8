-- Count one event in a fixed window.
-- KEYS[1]: the counter; ARGV[1]: the window in milliseconds.
-- The first hit starts the window; later hits leave its expiry alone. A
-- counter found without an expiry (which this script never leaves behind)
-- gets one too, so that a key can never count forever.
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) == -1 then
	redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
