-- Shared by decide.lua and commit.lua, which the store sends with this text in front: the
-- idempotency check, reading the send history, checking one offered send against it, and
-- recording a send. Keys as both scripts name them: KEYS[1] sends (zset: send record JSON ->
-- epoch seconds), KEYS[2] items (zset: item id -> epoch seconds last sent), KEYS[3]
-- suppression (hash: scope -> detail JSON), KEYS[4] engagement (hash: ignored, soft_bounces,
-- last_engaged, u0..u23), KEYS[5] idempotency (string: "<decision id> <JSON>").
-- An offer is [record JSON, cooldown since (text) or false, sunset at or false, [scopes], [caps],
-- [the record's items, greatest first: see redis_args._zadd_order], whether the record counts
-- as ignored (its kind is not transactional)], the caps one flat list of CAP_FIELDS values
-- each: since (text), inclusive, limit, channel, category or "", campaign or "", min ignored. The
-- items and the kind come apart from the record so that recording a send need not decode its
-- JSON; the caps are flat because every table cjson fills grows by rehashing (some 800
-- instructions each time it doubles), and a list of rows made four tables of three caps.
local CAP_FIELDS = 7

-- The value under the idempotency key when another decision than ``id`` holds it, else nil.
local function held_by_another(id)
  local stored = redis.call("GET", KEYS[5])
  if stored and string.sub(stored, 1, #id + 1) ~= id .. " " then return stored end
  return nil
end

-- Send records from ZRANGEBYSCORE ... WITHSCORES, each with its time as ``at``.
local function decode_sends(rows)
  local sends = {}
  for i = 1, #rows, 2 do
    local send = cjson.decode(rows[i])
    send.at = tonumber(rows[i + 1])
    sends[#sends + 1] = send
  end
  return sends
end

-- The sends the cap whose fields start at ``caps[at]`` counts. Its ``since`` comes as text,
-- read only when there are sends to count: a 17-digit number costs strtod its slow path.
local function counted(caps, at, sends)
  if #sends == 0 then return 0 end
  local since, inclusive = tonumber(caps[at]), caps[at + 1]
  local channel, category, campaign = caps[at + 3], caps[at + 4], caps[at + 5]
  local count = 0
  for _, send in ipairs(sends) do
    if ((inclusive and send.at >= since) or ((not inclusive) and send.at > since))
        and send.c == 1 and send.ch == channel and (category == "" or send.cat == category)
        and (campaign == "" or send.cmp == campaign) then
      count = count + 1
    end
  end
  return count
end

-- Why ``offer`` may not be sent now, in the memory store's order ("suppressed:<scope>",
-- "sunset", "cap:<0-based index>", "cooldown"), or nil when it may. ``blocked`` holds the
-- suppressed scopes as keys; ``ignored`` is the customer's count of ignored messages.
local function refusal(offer, sends, blocked, ignored)
  for _, scope in ipairs(offer[4]) do
    if blocked[scope] then return "suppressed:" .. scope end
  end
  if offer[3] and ignored >= offer[3] then return "sunset" end
  local caps = offer[5]
  for at = 1, #caps, CAP_FIELDS do
    if ignored >= caps[at + 6] and counted(caps, at, sends) >= caps[at + 2] then
      return "cap:" .. (at - 1) / CAP_FIELDS
    end
  end
  if offer[2] and #sends > 0 then
    local since = tonumber(offer[2])
    for _, send in ipairs(sends) do
      if send.k ~= "transactional" and send.at > since then return "cooldown" end
    end
  end
  return nil
end

-- Record ``offer``'s send at ``score`` (the caller's ARGV text, written as given), forget
-- sends and items at ``oldest`` or older, and count the send as ignored until the customer
-- engages. ``oldest`` and both TTLs come as text from the caller: a Lua number handed to
-- redis.call is formatted with snprintf("%.17g") (about 3,000 instructions each), and the
-- caller's ``repr`` of the score minus the history TTL is the very double "%.17g" wrote.
local function record_send(score, offer, oldest, history_ttl, engagement_ttl)
  local record, items = offer[1], offer[6]
  -- ZADD first, then the trim (which never reaches the new score, above ``oldest``): a full
  -- Redis refuses a script's first write only if it may grow memory, and lets every write
  -- after any write through. Trimmed first, a full server recorded sends while refusing the
  -- unsubscribes that should stop them.
  redis.call("ZADD", KEYS[1], score, record)
  redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", oldest)
  redis.call("EXPIRE", KEYS[1], history_ttl)
  if #items > 0 then
    -- One ZADD for every item (each redis.call costs about a microsecond). unpack takes at
    -- most 7,999 values: a send carries at most MAX_N (1,000) items, far below that.
    local scored = {}
    for _, item in ipairs(items) do
      scored[#scored + 1] = score
      scored[#scored + 1] = item
    end
    redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", oldest)
    redis.call("ZADD", KEYS[2], unpack(scored))
    redis.call("EXPIRE", KEYS[2], history_ttl)
  end
  if offer[7] then
    redis.call("HINCRBY", KEYS[4], "ignored", "1")
    redis.call("EXPIRE", KEYS[4], engagement_ttl)
  end
end
