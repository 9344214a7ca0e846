-- One decision's whole store interaction: read the customer, check the offered sends in order,
-- record the first that passes, and remember the decision under the idempotency key.
-- KEYS[1] sends (zset), KEYS[2] items (zset), KEYS[3] suppression (hash),
-- KEYS[4] engagement (hash), KEYS[5] idempotency (string: "<decision id> <JSON>")
-- ARGV[1] now, ARGV[2] read sends since, ARGV[3] decision id, ARGV[4] "1" when a key is given,
-- ARGV[5] basis JSON to remember ("" = nothing), ARGV[6] idempotency TTL s, ARGV[7] history
-- TTL s, ARGV[8] engagement TTL s, ARGV[9] no-repeat since ("" = none), ARGV[10] n guard items,
-- then the guard items, then n offers, each: record JSON, cooldown since ("" = none), sunset at
-- ("" = none), n scopes, the scopes, n caps, then 7 fields per cap: since, inclusive (1/0),
-- limit, channel, category, campaign ("" = any), min ignored.
-- Returns {status, offer (1-based, 0 = none), sends with scores, suppression, engagement,
-- guard item scores}, or {"replay", stored value} when another decision holds the key.
local now, id = tonumber(ARGV[1]), ARGV[3]
if ARGV[4] == "1" then
  local stored = redis.call("GET", KEYS[5])
  if stored and string.sub(stored, 1, #id + 1) ~= id .. " " then return {"replay", stored} end
end
local rows = redis.call("ZRANGEBYSCORE", KEYS[1], ARGV[2], "+inf", "WITHSCORES")
local suppression = redis.call("HGETALL", KEYS[3])
local engagement = redis.call("HGETALL", KEYS[4])
local nguard = tonumber(ARGV[10])
local guard = {}
if nguard > 0 then guard = redis.call("ZMSCORE", KEYS[2], unpack(ARGV, 11, 10 + nguard)) end
local function reply(status, offer) return {status, offer, rows, suppression, engagement, guard} end
if ARGV[9] ~= "" then
  local since = tonumber(ARGV[9])
  for i = 1, nguard do
    if guard[i] and tonumber(guard[i]) > since then return reply("stale", 0) end
  end
end
local ignored = 0
for i = 1, #engagement, 2 do
  if engagement[i] == "ignored" then ignored = tonumber(engagement[i + 1]) end
end
local blocked = {}
for i = 1, #suppression, 2 do blocked[suppression[i]] = true end
local sends = {}
for i = 1, #rows, 2 do
  local send = cjson.decode(rows[i])
  send.at = tonumber(rows[i + 1])
  sends[#sends + 1] = send
end
local function over(base)
  if ignored < tonumber(ARGV[base + 6]) then return false end
  local since, inclusive = tonumber(ARGV[base]), ARGV[base + 1] == "1"
  local channel, category, campaign = ARGV[base + 3], ARGV[base + 4], ARGV[base + 5]
  local count = 0
  for _, send in ipairs(sends) do
    if ((inclusive and send.at >= since) or ((not inclusive) and send.at > since))
        and send.c == 1 and send.ch == channel and (category == "" or send.cat == category)
        and (campaign == "" or send.cmp == campaign) then
      count = count + 1
    end
  end
  return count >= tonumber(ARGV[base + 2])
end
local at = 11 + nguard
local noffers = tonumber(ARGV[at])
at = at + 1
local recorded = 0
for n = 1, noffers do
  local record, cooldown, sunset = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local ok = sunset == "" or ignored < tonumber(sunset)
  local nscopes = tonumber(ARGV[at + 3])
  for i = at + 4, at + 3 + nscopes do
    if blocked[ARGV[i]] then ok = false end
  end
  at = at + 4 + nscopes
  local ncaps = tonumber(ARGV[at])
  for i = 0, ncaps - 1 do
    if ok and over(at + 1 + 7 * i) then ok = false end
  end
  at = at + 1 + 7 * ncaps
  if ok and cooldown ~= "" then
    local since = tonumber(cooldown)
    for _, send in ipairs(sends) do
      if send.k ~= "transactional" and send.at > since then ok = false end
    end
  end
  if ok then
    local history_ttl = tonumber(ARGV[7])
    local parsed = cjson.decode(record)
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
      redis.call("EXPIRE", KEYS[4], tonumber(ARGV[8]))
    end
    recorded = n
    break
  end
end
if ARGV[5] ~= "" then
  local state = cjson.encode({rows, suppression, engagement, guard})
  local kept = '{"b":' .. ARGV[5] .. ',"r":' .. recorded .. ',"s":' .. state .. '}'
  redis.call("SET", KEYS[5], id .. " " .. kept, "EX", tonumber(ARGV[6]))
end
if recorded > 0 then return reply("recorded", recorded) end
return reply("checked", 0)
