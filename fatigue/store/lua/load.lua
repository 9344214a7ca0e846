-- Read one customer's state in a single command (cheaper to pipeline than four reads).
-- KEYS[1] sends (zset), KEYS[2] items (zset), KEYS[3] suppression (hash),
-- KEYS[4] engagement (hash)
-- ARGV[1] since (epoch seconds).
-- Returns {sends with scores, items with scores, suppression fields, engagement fields}.
return {
  redis.call("ZRANGEBYSCORE", KEYS[1], ARGV[1], "+inf", "WITHSCORES"),
  redis.call("ZRANGE", KEYS[2], 0, -1, "WITHSCORES"),
  redis.call("HGETALL", KEYS[3]),
  redis.call("HGETALL", KEYS[4]),
}
