-- Read one customer's state in a single command (cheaper to pipeline than five reads).
-- KEYS[1] sends (zset), KEYS[2] items (zset), KEYS[3] suppression (hash),
-- KEYS[4] engagement (hash), KEYS[5] idempotency (string)
-- ARGV[1] since (epoch seconds), ARGV[2] "1" to read the idempotency key.
-- Returns {sends with scores, items with scores, suppression fields, engagement fields, replay}.
local replay = false
if ARGV[2] == "1" then replay = redis.call("GET", KEYS[5]) end
return {
  redis.call("ZRANGEBYSCORE", KEYS[1], ARGV[1], "+inf", "WITHSCORES"),
  redis.call("ZRANGE", KEYS[2], 0, -1, "WITHSCORES"),
  redis.call("HGETALL", KEYS[3]),
  redis.call("HGETALL", KEYS[4]),
  replay,
}
