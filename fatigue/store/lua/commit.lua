-- Check every cap, the cooldown and the suppression list, then record the send: atomically.
-- The second step of the decisions ``decide.lua`` cannot settle (see docs/fatigue.md).
-- KEYS[1] sends (zset: send record JSON -> epoch seconds)
-- KEYS[2] items (zset: item id -> epoch seconds last sent)
-- KEYS[3] suppression (hash: scope -> detail JSON)
-- KEYS[4] engagement (hash: ignored, soft_bounces, last_engaged, h0..h23)
-- KEYS[5] idempotency (string: "<decision id> <decision JSON>")
-- ARGV[1] now, ARGV[2] record JSON, ARGV[3] replay JSON ("" = no idempotency key),
-- ARGV[4] history TTL s, ARGV[5] idempotency TTL s, ARGV[6] engagement TTL s,
-- ARGV[7] cooldown since ("" = none), ARGV[8] sunset at ("" = none), ARGV[9] n scopes, then
-- the scopes, then n caps, then 7 fields per cap: since, inclusive (1/0), limit, channel,
-- category, campaign ("" = any), min ignored. Returns {status, detail}.
local now = tonumber(ARGV[1])
local record = ARGV[2]
local parsed = cjson.decode(record)
local replay = ARGV[3]
if replay ~= "" then
  local earlier = redis.call("GET", KEYS[5])
  if earlier and string.sub(earlier, 1, #parsed.d + 1) ~= parsed.d .. " " then
    return {"duplicate", earlier}
  end
end
local at = 10
local nscopes = tonumber(ARGV[9])
for i = 1, nscopes do
  if redis.call("HEXISTS", KEYS[3], ARGV[at]) == 1 then return {"rejected", "suppressed:" .. ARGV[at]} end
  at = at + 1
end
local ignored = tonumber(redis.call("HGET", KEYS[4], "ignored") or "0")
if ARGV[8] ~= "" and ignored >= tonumber(ARGV[8]) then return {"rejected", "sunset"} end
local ncaps = tonumber(ARGV[at])
at = at + 1
local earliest = now
local cooldown = ARGV[7]
if cooldown ~= "" then earliest = math.min(earliest, tonumber(cooldown)) end
for i = 0, ncaps - 1 do earliest = math.min(earliest, tonumber(ARGV[at + 7 * i])) end
local rows = redis.call("ZRANGEBYSCORE", KEYS[1], earliest, "+inf", "WITHSCORES")
local sends = {}
for i = 1, #rows, 2 do
  local send = cjson.decode(rows[i])
  send.at = tonumber(rows[i + 1])
  sends[#sends + 1] = send
end
for i = 0, ncaps - 1 do
  local base = at + 7 * i
  local since, inclusive, limit = tonumber(ARGV[base]), ARGV[base + 1] == "1", tonumber(ARGV[base + 2])
  local channel, category, campaign = ARGV[base + 3], ARGV[base + 4], ARGV[base + 5]
  local count = 0
  for _, send in ipairs(sends) do
    local inside = (inclusive and send.at >= since) or ((not inclusive) and send.at > since)
    if inside and send.c == 1 and send.ch == channel
        and (category == "" or send.cat == category) and (campaign == "" or send.cmp == campaign) then
      count = count + 1
    end
  end
  if ignored >= tonumber(ARGV[base + 6]) and count >= limit then return {"rejected", "cap:" .. i} end
end
if cooldown ~= "" then
  local since = tonumber(cooldown)
  for _, send in ipairs(sends) do
    if send.k ~= "transactional" and send.at > since then return {"rejected", "cooldown"} end
  end
end
local history_ttl = tonumber(ARGV[4])
redis.call("ZADD", KEYS[1], now, record)
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", "(" .. (now - history_ttl))
redis.call("EXPIRE", KEYS[1], history_ttl)
if #parsed.i > 0 then
  for _, item in ipairs(parsed.i) do redis.call("ZADD", KEYS[2], now, item) end
  redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", "(" .. (now - history_ttl))
  redis.call("EXPIRE", KEYS[2], history_ttl)
end
if parsed.k ~= "transactional" then
  redis.call("HINCRBY", KEYS[4], "ignored", 1)
  redis.call("EXPIRE", KEYS[4], tonumber(ARGV[6]))
end
if replay ~= "" then redis.call("SET", KEYS[5], parsed.d .. " " .. replay, "EX", tonumber(ARGV[5])) end
return {"recorded", ""}
