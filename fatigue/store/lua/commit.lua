-- Check one send against suppression, sunset, caps and cooldown, then record it: atomically.
-- The second step of the decisions ``decide.lua`` cannot settle (see docs/fatigue.md).
-- Runs after sends.lua (keys and the offer layout are described there).
-- ARGV[1] now (epoch seconds, as the score to record), ARGV[2] the call as one JSON array:
--   [offer, read since, decision id, replay JSON or false (no idempotency key),
--    history TTL s, idempotency TTL s, engagement TTL s, oldest kept (ARGV[1] minus the
--    history TTL)]; read since, the TTLs and oldest kept as text, as redis.call takes them.
-- Returns {status, detail}: {"recorded", ""}, {"rejected", why} (see ``refusal``) or
-- {"duplicate", the stored value} when another decision holds the key.
local call = cjson.decode(ARGV[2])
local offer, id, replay = call[1], call[3], call[4]
if replay then
  local stored = held_by_another(id)
  if stored then return {"duplicate", stored} end
end
local blocked = {}
if #offer[4] > 0 then
  local found = redis.call("HMGET", KEYS[3], unpack(offer[4]))
  for i, scope in ipairs(offer[4]) do blocked[scope] = found[i] ~= false end
end
local ignored = tonumber(redis.call("HGET", KEYS[4], "ignored") or "0")
local sends = decode_sends(redis.call("ZRANGEBYSCORE", KEYS[1], call[2], "+inf", "WITHSCORES"))
local why = refusal(offer, sends, blocked, ignored)
if why then return {"rejected", why} end
record_send(ARGV[1], offer, call[8], call[5], call[7])
if replay then redis.call("SET", KEYS[5], id .. " " .. replay, "EX", call[6]) end
return {"recorded", ""}
