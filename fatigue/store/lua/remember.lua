-- Keep a finished decision under its idempotency key unless another decision holds the key.
-- KEYS[1] idempotency (string: "<decision id> <JSON>")
-- ARGV[1] decision id, ARGV[2] decision JSON, ARGV[3] TTL s.
-- Returns the other decision's stored value, or false when this one was kept.
local stored = redis.call("GET", KEYS[1])
if stored and string.sub(stored, 1, #ARGV[1] + 1) ~= ARGV[1] .. " " then return stored end
redis.call("SET", KEYS[1], ARGV[1] .. " " .. ARGV[2], "EX", tonumber(ARGV[3]))
return false
