-- One decision's whole store interaction: read the customer, check the offered sends in order,
-- record the first that passes, and remember the decision under the idempotency key.
-- Runs after sends.lua (keys and the offer layout are described there).
-- ARGV[1] now (epoch seconds, as the score to record), ARGV[3] the kept value's start,
-- '<decision id> {"b":<basis JSON>' ("" = keep nothing),
-- ARGV[2] the call as one JSON array (one argument is far cheaper to send than dozens):
--   [read since, decision id, key given (0/1), idempotency TTL s, history TTL s,
--    engagement TTL s, no-repeat since or false, number of guard items, [offers], oldest kept
--    (ARGV[1] minus the history TTL)]; every value but the flag and the count is text: as
--   redis.call takes it, or (no-repeat since) read as a number only when a guard item was sent.
-- ARGV[4] the guard items as a JSON array, decoded only when the customer has an items key.
-- Returns {status, offer (1-based, 0 = none), the state read as JSON: [sends with scores,
-- suppression fields, engagement fields, guard item scores (false = never sent; empty when
-- none was ever sent)]}, or
-- {"replay", 0, stored value} when another decision holds the key. A table, not one JSON
-- text: the state goes out as encoded, never copied into a longer Lua string.
local call = cjson.decode(ARGV[2])
local id = call[2]
if call[3] == 1 then
  local stored = held_by_another(id)
  if stored then return {"replay", 0, stored} end
end
local rows = redis.call("ZRANGEBYSCORE", KEYS[1], call[1], "+inf", "WITHSCORES")
local suppression = redis.call("HGETALL", KEYS[3])
local engagement = redis.call("HGETALL", KEYS[4])
local guard = {}
-- A customer never sent anything has no items key: every guard item is unsent, as the empty
-- list says (read as no scores). ZMSCORE of some 30 items costs about ten times the EXISTS.
if call[8] > 0 and redis.call("EXISTS", KEYS[2]) == 1 then
  guard = redis.call("ZMSCORE", KEYS[2], unpack(cjson.decode(ARGV[4])))
end
-- Encoded once: the reply and the kept basis carry the same state, as read before any record.
local state = cjson.encode({rows, suppression, engagement, guard})
local function reply(status, offer)
  return {status, offer, state}
end
if call[7] then
  for i = 1, call[8] do
    if guard[i] and tonumber(guard[i]) > tonumber(call[7]) then return reply("stale", 0) end
  end
end
local ignored = 0
for i = 1, #engagement, 2 do
  if engagement[i] == "ignored" then ignored = tonumber(engagement[i + 1]) end
end
local blocked = {}
for i = 1, #suppression, 2 do blocked[suppression[i]] = true end
local sends = decode_sends(rows)
local recorded = 0
for n, offer in ipairs(call[9]) do
  if not refusal(offer, sends, blocked, ignored) then
    record_send(ARGV[1], offer, call[10], call[5], call[6])
    recorded = n
    break
  end
end
if ARGV[3] ~= "" then
  -- Written in two parts, the basis as it came: every Lua string is hashed byte by byte when
  -- it is made (about 12 instructions a byte), and one concatenation of the kept value cost
  -- more than the APPEND that saves it.
  redis.call("SET", KEYS[5], ARGV[3], "EX", call[4])
  -- %d: a number concatenated as it is is formatted as a double, several times the work.
  local r = string.format("%d", recorded)
  redis.call("APPEND", KEYS[5], ',"r":' .. r .. ',"s":' .. state .. '}')
end
if recorded > 0 then return reply("recorded", recorded) end
return reply("checked", 0)
