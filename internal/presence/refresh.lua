-- KEYS[1]: the room's sorted set; KEYS[2]: the room's hash
-- ARGV[1]: new expiry (Unix ms); ARGV[2]: now (Unix ms); ARGV[3]: key TTL (ms)
-- ARGV[4...]: member ids. Extends those not expired or removed.
local exp, now = ARGV[1], tonumber(ARGV[2])
for i = 4, #ARGV do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) > now then
    redis.call('ZADD', KEYS[1], exp, ARGV[i])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 0
