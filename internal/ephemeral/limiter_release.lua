-- Give back one counted attempt. KEYS[1]: the counter.
-- DECR keeps the key's expiry, so the window ends when it would have. A
-- missing counter is not created, and a count never goes below zero.
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then
	return redis.call('DECR', KEYS[1])
end
return n
