-- Forget a recorded send that the platform reports as failed.
-- KEYS[1] sends (zset), KEYS[2] items (zset), KEYS[3] engagement (hash)
-- ARGV[1] decision id. Returns 1 when the send was found, 0 otherwise.
local rows = redis.call("ZRANGE", KEYS[1], 0, -1, "WITHSCORES")
for i = 1, #rows, 2 do
  local send = cjson.decode(rows[i])
  if send.d == ARGV[1] then
    redis.call("ZREM", KEYS[1], rows[i])
    for _, item in ipairs(send.i) do
      if redis.call("ZSCORE", KEYS[2], item) == rows[i + 1] then redis.call("ZREM", KEYS[2], item) end
    end
    -- Only a send made after the latest engagement is among those ignored since.
    local engaged = tonumber(redis.call("HGET", KEYS[3], "last_engaged"))
    local ignored = tonumber(redis.call("HGET", KEYS[3], "ignored") or "0")
    if send.k ~= "transactional" and ignored > 0 and (not engaged or tonumber(rows[i + 1]) > engaged) then
      redis.call("HINCRBY", KEYS[3], "ignored", -1)
    end
    return 1
  end
end
return 0
