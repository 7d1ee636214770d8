-- KEYS[1]: the room's sorted set (member id -> expiry, Unix ms)
-- KEYS[2]: the room's hash (member id -> sealed name)
-- ARGV[1]: now (Unix ms); ARGV[2]: how many members to return
-- Drops expired entries, then returns {count, id1, sealed1, id2, ...}.
local now = ARGV[1]
local limit = tonumber(ARGV[2])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 1, #dead, 1000 do
  redis.call('HDEL', KEYS[2], unpack(dead, i, math.min(i + 999, #dead)))
end
if #dead > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
end
local out = {redis.call('ZCARD', KEYS[1])}
if limit > 0 then
  local ids = redis.call('ZRANGE', KEYS[1], 0, limit - 1)
  if #ids > 0 then
    local names = redis.call('HMGET', KEYS[2], unpack(ids))
    for i = 1, #ids do
      out[#out + 1] = ids[i]
      out[#out + 1] = names[i] or ''
    end
  end
end
return out
