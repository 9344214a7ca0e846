-- One decision's whole store interaction: read the customer, check the offered sends in order,
-- record the first that passes, and remember the decision under the idempotency key.
-- KEYS[1] sends (zset), KEYS[2] items (zset), KEYS[3] suppression (hash),
-- KEYS[4] engagement (hash), KEYS[5] idempotency (string: "<decision id> <JSON>")
-- ARGV[1] now (epoch seconds, as the score to record), ARGV[3] basis JSON ("" = keep nothing),
-- ARGV[2] the call as one JSON array (one argument is far cheaper to send than dozens):
--   [read since (string), decision id, key given (0/1), idempotency TTL s, history TTL s,
--    engagement TTL s, no-repeat since or false, [guard items], [offers]], each offer
--   [record JSON, cooldown since or false, sunset at or false, [scopes], [caps]], each cap
--   [since, inclusive, limit, channel, category or "", campaign or "", min ignored].
-- Returns JSON: [status, offer (1-based, 0 = none), sends with scores, suppression fields,
-- engagement fields, guard item scores (false = never sent)], or ["replay", stored value] when
-- another decision holds the key.
local call = cjson.decode(ARGV[2])
local now, id = tonumber(ARGV[1]), call[2]
if call[3] == 1 then
  local stored = redis.call("GET", KEYS[5])
  if stored and string.sub(stored, 1, #id + 1) ~= id .. " " then
    return cjson.encode({"replay", stored})
  end
end
local rows = redis.call("ZRANGEBYSCORE", KEYS[1], call[1], "+inf", "WITHSCORES")
local suppression = redis.call("HGETALL", KEYS[3])
local engagement = redis.call("HGETALL", KEYS[4])
local guard = {}
if #call[8] > 0 then guard = redis.call("ZMSCORE", KEYS[2], unpack(call[8])) end
local function reply(status, offer)
  return cjson.encode({status, offer, rows, suppression, engagement, guard})
end
if call[7] then
  for i = 1, #call[8] do
    if guard[i] and tonumber(guard[i]) > call[7] then return reply("stale", 0) end
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
local function over(cap)
  if ignored < cap[7] then return false end
  local since, inclusive, channel, category, campaign = cap[1], cap[2], cap[4], cap[5], cap[6]
  local count = 0
  for _, send in ipairs(sends) do
    if ((inclusive and send.at >= since) or ((not inclusive) and send.at > since))
        and send.c == 1 and send.ch == channel and (category == "" or send.cat == category)
        and (campaign == "" or send.cmp == campaign) then
      count = count + 1
    end
  end
  return count >= cap[3]
end
local function passes(offer)
  if offer[3] and ignored >= offer[3] then return false end
  for _, scope in ipairs(offer[4]) do
    if blocked[scope] then return false end
  end
  for _, cap in ipairs(offer[5]) do
    if over(cap) then return false end
  end
  if offer[2] then
    for _, send in ipairs(sends) do
      if send.k ~= "transactional" and send.at > offer[2] then return false end
    end
  end
  return true
end
local recorded = 0
for n, offer in ipairs(call[9]) do
  if passes(offer) then
    local record, history_ttl = offer[1], call[5]
    local parsed = cjson.decode(record)
    local oldest = "(" .. string.format("%.17g", now - history_ttl)
    redis.call("ZADD", KEYS[1], ARGV[1], record)
    redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", oldest)
    redis.call("EXPIRE", KEYS[1], history_ttl)
    if #parsed.i > 0 then
      for _, item in ipairs(parsed.i) do redis.call("ZADD", KEYS[2], ARGV[1], item) end
      redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", oldest)
      redis.call("EXPIRE", KEYS[2], history_ttl)
    end
    if parsed.k ~= "transactional" then
      redis.call("HINCRBY", KEYS[4], "ignored", 1)
      redis.call("EXPIRE", KEYS[4], call[6])
    end
    recorded = n
    break
  end
end
if ARGV[3] ~= "" then
  local state = cjson.encode({rows, suppression, engagement, guard})
  local kept = '{"b":' .. ARGV[3] .. ',"r":' .. recorded .. ',"s":' .. state .. '}'
  redis.call("SET", KEYS[5], id .. " " .. kept, "EX", call[4])
end
if recorded > 0 then return reply("recorded", recorded) end
return reply("checked", 0)
