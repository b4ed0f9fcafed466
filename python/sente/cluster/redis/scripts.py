"""The Redis link's Lua scripts: presence is changed and decided in one place, atomically, inside Redis.

Presence (keys share the hash tag ``{<prefix>}``): ``{p}:u:<uid EDN>`` is a hash member → transport mask
(1 ws, 2 ajax) of the *members* (one per worker: ``<node id>|<worker index>``) holding the uid;
``{p}:m:<member>`` is the same data by member; ``{p}:members`` is a sorted set of members scored by when they
expire (Redis's own clock, so the machines' clocks do not matter); ``{p}:seq`` numbers every change. Each
change is one Lua script, so the hash of a uid going from empty to non-empty (``:chsk/uidport-open``) or back
(``:chsk/uidport-close``) is decided once for the whole cluster, and answered to the worker that made it,
which fires the event. Every worker refreshes its member's expiry each ``heartbeat_s`` and sweeps members
expired ``ttl_s`` after their last heartbeat (a killed node): the sweep that removes a member reports the uids
that left the cluster with it, and that worker fires their ``uidport-close``. Every worker keeps a view of
the other nodes' presence (a snapshot on connect, then the change messages; changes older than the snapshot
are skipped by their sequence number), so ``connected_uids`` and ``send``'s answer (is the uid anywhere?) are
answered locally, without a round trip. Whether to publish does not wait for the view: a push for a uid this node
does not hold goes to the uid's slot while the link is up (the uid may have connected elsewhere a moment ago),
and broadcasts go to ``b:all`` (see :class:`~sente.cluster.composite.CompositeBackplane`).
"""

# KEYS: uid hash, member hash, seq. ARGV: member, uid EDN, mask, presence channel.
# Returns 1 when the uid entered the cluster, -1 when it left it, 0 otherwise.
SET_LUA = """
local before = redis.call('HLEN', KEYS[1])
local mask = tonumber(ARGV[3])
if mask == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1]); redis.call('HDEL', KEYS[2], ARGV[2])
else
  redis.call('HSET', KEYS[1], ARGV[1], mask); redis.call('HSET', KEYS[2], ARGV[2], mask)
end
local after = redis.call('HLEN', KEYS[1])
local seq = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[4], seq .. ' ' .. ARGV[1] .. ' ' .. mask .. ' ' .. ARGV[2])
if before == 0 and after > 0 then return 1 end
if before > 0 and after == 0 then return -1 end
return 0
"""

# KEYS: members zset, seq. ARGV: prefix, member, ttl ms, presence channel, then uid EDN, mask pairs.
# Replaces the member's whole presence; returns the uids that left the cluster with its old entries.
RESET_LUA = """
local p, m = ARGV[1], ARGV[2]
local mkey = '{' .. p .. '}:m:' .. m
local old = redis.call('HKEYS', mkey)
local closed = {}
local new = {}
for i = 5, #ARGV, 2 do new[ARGV[i]] = ARGV[i + 1] end
for _, u in ipairs(old) do
  if not new[u] then
    local ukey = '{' .. p .. '}:u:' .. u
    redis.call('HDEL', ukey, m)
    if redis.call('HLEN', ukey) == 0 then table.insert(closed, u) end
  end
end
redis.call('DEL', mkey)
for u, mask in pairs(new) do
  redis.call('HSET', '{' .. p .. '}:u:' .. u, m, mask); redis.call('HSET', mkey, u, mask)
end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[3]), m)
local seq = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[4], seq .. ' ' .. m .. ' R ')
return closed
"""

# KEYS: members zset. ARGV: member, ttl ms. Returns 1 if the member was registered (not swept meanwhile).
HEARTBEAT_LUA = """
local was = redis.call('ZSCORE', KEYS[1], ARGV[1])
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2]), ARGV[1])
if was then return 1 end
return 0
"""

# Drops one member and its presence (shared by the sweep and a clean stop); appends the uids that left.
_DROP_MEMBER_LUA = """
local function drop_member(p, m, channel, closed)
  local mkey = '{' .. p .. '}:m:' .. m
  for _, u in ipairs(redis.call('HKEYS', mkey)) do
    local ukey = '{' .. p .. '}:u:' .. u
    redis.call('HDEL', ukey, m)
    if redis.call('HLEN', ukey) == 0 then table.insert(closed, u) end
  end
  redis.call('DEL', mkey)
  redis.call('ZREM', KEYS[1], m)
  local seq = redis.call('INCR', KEYS[2])
  redis.call('PUBLISH', channel, seq .. ' ' .. m .. ' - ')
end
"""

# KEYS: members zset, seq. ARGV: prefix, presence channel, max members. Removes expired members (their presence
# included); returns the uids that left the cluster with them. Atomic: one sweeper gets each dead member.
SWEEP_LUA = _DROP_MEMBER_LUA + """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local closed = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))) do
  drop_member(ARGV[1], m, ARGV[2], closed)
end
return closed
"""

# KEYS: members zset, seq. ARGV: prefix. The presence of every live member: {seq, member, {uid, mask...}, ...}.
SNAPSHOT_LUA = """
local out = {redis.call('GET', KEYS[2]) or '0'}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  table.insert(out, m)
  table.insert(out, redis.call('HGETALL', '{' .. ARGV[1] .. '}:m:' .. m))
end
return out
"""

# KEYS: members zset, seq. ARGV: prefix, member, presence channel. A member leaving on purpose (a clean stop).
REMOVE_LUA = _DROP_MEMBER_LUA + """
local closed = {}
drop_member(ARGV[1], ARGV[2], ARGV[3], closed)
return closed
"""
