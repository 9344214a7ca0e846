-- Apply one engagement event to a customer's engagement and suppression state, once.
-- KEYS[1] engagement (hash), KEYS[2] suppression (hash: no TTL, it is legal state),
-- KEYS[3] sends (zset: send record JSON -> epoch seconds), KEYS[4] applied event ids (zset),
-- KEYS[5] lifted (hash: scope -> when last lifted; no TTL, as the suppressions it guards)
-- ARGV[1] the event's time (epoch seconds), ARGV[2] engagement TTL s, ARGV[3] engaged (1/0),
-- ARGV[4] UTC hour of an open or click ("" = none; counted in u0..u23), ARGV[5] soft bounce
-- (1/0), ARGV[6] reset soft bounces (1/0),
-- ARGV[7] threshold ("" = none), ARGV[8] soft-bounce suppression detail JSON, ARGV[9] event id
-- ("" = none), ARGV[10] how long event ids are remembered (s), ARGV[11] now: when the event is
-- applied (epoch seconds), ARGV[12] n scopes to lift, then the scopes, then the rest as scope,
-- detail pairs to suppress. Event ids are remembered from ARGV[11] (see EventChange.applied_at).
-- Returns 0 when the event id was applied before (nothing changes), 1 otherwise.
local at = tonumber(ARGV[1])
if ARGV[9] ~= "" then
  if redis.call("ZSCORE", KEYS[4], ARGV[9]) then return 0 end
  local now = tonumber(ARGV[11])
  redis.call("ZADD", KEYS[4], ARGV[11], ARGV[9])
  redis.call("ZREMRANGEBYSCORE", KEYS[4], "-inf", "(" .. string.format("%.17g", now - tonumber(ARGV[10])))
  redis.call("EXPIRE", KEYS[4], ARGV[10])
end
-- When a suppression was recorded: its detail's ``ts`` (0 for details without one).
local function stamp(detail)
  local ok, found = pcall(cjson.decode, detail)
  if ok and type(found) == "table" and tonumber(found.ts) then return tonumber(found.ts) end
  return 0
end
-- A scope lifted after this suppression's time stays lifted: the resubscribe came later.
local function suppress(scope, detail)
  local at_detail = stamp(detail)
  local existing = redis.call("HGET", KEYS[2], scope)
  local lifted = tonumber(redis.call("HGET", KEYS[5], scope))
  if (not existing or stamp(existing) <= at_detail) and (not lifted or lifted <= at_detail) then
    redis.call("HSET", KEYS[2], scope, detail)
  end
end
if ARGV[3] == "1" then
  local last = redis.call("HGET", KEYS[1], "last_engaged")
  if not last or at >= tonumber(last) then
    -- Ignored = marketing sends since this engagement: none when it arrives at once, the sends
    -- made since when the platform reports it late.
    local ignored = 0
    for _, row in ipairs(redis.call("ZRANGEBYSCORE", KEYS[3], "(" .. ARGV[1], "+inf")) do
      if cjson.decode(row).k ~= "transactional" then ignored = ignored + 1 end
    end
    redis.call("HSET", KEYS[1], "ignored", ignored, "last_engaged", ARGV[1])
  end
end
-- UTC hours: h0..h23, written before, held local hours of the default zone (see redis.py).
if ARGV[4] ~= "" then redis.call("HINCRBY", KEYS[1], "u" .. ARGV[4], 1) end
-- Soft bounces since the latest delivery, by their own times: a delivery reported late clears
-- only the bounces before it, and at equal times the later report wins. The newest
-- MAX_SOFT_BOUNCES times are kept (store.base, prepended by redis.py).
if ARGV[5] == "1" or ARGV[6] == "1" then
  local fields = redis.call("HMGET", KEYS[1], "last_delivered", "soft_bounce_times")
  local delivered = tonumber(fields[1])
  local times = {}  -- kept as "%.17g" numbers separated by spaces: JSON would round them
  for word in string.gmatch(fields[2] or "", "%S+") do table.insert(times, tonumber(word)) end
  if ARGV[6] == "1" and (not delivered or at >= delivered) then
    delivered = at
    local kept = {}
    for _, t in ipairs(times) do if t > at then table.insert(kept, t) end end
    times = kept
    redis.call("HSET", KEYS[1], "last_delivered", string.format("%.17g", at))
  end
  if ARGV[5] == "1" and (not delivered or at >= delivered) then
    table.insert(times, at)
    table.sort(times)
    while #times > MAX_SOFT_BOUNCES do table.remove(times, 1) end
  end
  local words = {}
  for n, t in ipairs(times) do words[n] = string.format("%.17g", t) end
  redis.call("HSET", KEYS[1], "soft_bounces", #times, "soft_bounce_times", table.concat(words, " "))
  if ARGV[5] == "1" and ARGV[7] ~= "" and #times >= tonumber(ARGV[7]) then
    suppress("address", ARGV[8])
  end
end
local nlift = tonumber(ARGV[12])
for i = 13, 12 + nlift do
  local existing = redis.call("HGET", KEYS[2], ARGV[i])
  if not existing or stamp(existing) <= at then
    if existing then redis.call("HDEL", KEYS[2], ARGV[i]) end
    -- Remembered so that an older suppression reported after this lift does not undo it.
    local lifted = tonumber(redis.call("HGET", KEYS[5], ARGV[i]))
    if not lifted or at > lifted then
      redis.call("HSET", KEYS[5], ARGV[i], string.format("%.17g", at))
    end
  end
end
for i = 13 + nlift, #ARGV, 2 do suppress(ARGV[i], ARGV[i + 1]) end
redis.call("EXPIRE", KEYS[1], tonumber(ARGV[2]))
return 1
