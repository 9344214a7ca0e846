-- Apply one engagement event to a customer's engagement and suppression state.
-- KEYS[1] engagement (hash), KEYS[2] suppression (hash: no TTL, it is legal state)
-- ARGV[1] now, ARGV[2] engagement TTL s, ARGV[3] engaged (1/0), ARGV[4] local hour ("" = none),
-- ARGV[5] soft bounce (1/0), ARGV[6] reset soft bounces (1/0), ARGV[7] threshold ("" = none),
-- ARGV[8] soft-bounce suppression detail JSON, ARGV[9] n scopes to lift, then the scopes,
-- then the rest as scope, detail pairs to suppress.
if ARGV[3] == "1" then
  redis.call("HSET", KEYS[1], "ignored", 0, "last_engaged", ARGV[1])
end
if ARGV[4] ~= "" then redis.call("HINCRBY", KEYS[1], "h" .. ARGV[4], 1) end
if ARGV[6] == "1" then redis.call("HSET", KEYS[1], "soft_bounces", 0) end
if ARGV[5] == "1" then
  local count = redis.call("HINCRBY", KEYS[1], "soft_bounces", 1)
  if ARGV[7] ~= "" and count >= tonumber(ARGV[7]) then
    redis.call("HSET", KEYS[2], "address", ARGV[8])
  end
end
redis.call("EXPIRE", KEYS[1], tonumber(ARGV[2]))
local nlift = tonumber(ARGV[9])
for i = 10, 9 + nlift do redis.call("HDEL", KEYS[2], ARGV[i]) end
for i = 10 + nlift, #ARGV, 2 do redis.call("HSET", KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
