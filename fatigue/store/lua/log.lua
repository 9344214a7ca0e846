-- Append one decision to its customer's log: newest first, the newest ARGV[2] kept, TTL renewed.
-- One script instead of LPUSH + LTRIM + EXPIRE: a third of the commands to pack and parse, and
-- the trim only once the list is full (LPUSH says how long it is).
-- KEYS[1] decisions (list); ARGV[1] decision JSON, ARGV[2] entries kept, ARGV[3] TTL seconds.
local kept = tonumber(ARGV[2])
if redis.call("LPUSH", KEYS[1], ARGV[1]) > kept then redis.call("LTRIM", KEYS[1], 0, kept - 1) end
redis.call("EXPIRE", KEYS[1], ARGV[3])
return 1
