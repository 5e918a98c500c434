// Server-side Lua for the Redis bus: membership is atomic across every instance.
#pragma once

namespace sigsrv::redis_scripts {

// Every script runs after one of these preludes, chosen by the bus's mode (see RedisKeys):
// - PUBLISH: the command that relays on a room's channel (SPUBLISH, sharded, on a cluster);
// - lease_gone(prefix, owner, first): whether `owner`'s instance lease has expired. On one Redis
//   its lease key (prefix .. owner) is read; a cluster keeps leases in another slot than the
//   room's, which a script may not touch, so the caller passes the expired instances its last
//   sweep found as ARGV[first], ARGV[first + 1], ...
// - CLUSTER: whether the keys may live on several nodes (a slot can migrate under a script);
// - PRUNE_MISSING: whether a session named in a room's set but whose hash is missing is dropped
//   from it. Not on a cluster: there a script run on a migrating slot's new master (after ASK)
//   sees only the keys moved so far, and a session hash still on the old master would look gone;
//   its id stays in the set until the session ends (kSessionEnd).
inline constexpr const char* kPreludeSingle = R"lua(
local PUBLISH = 'PUBLISH'
local CLUSTER = false
local PRUNE_MISSING = true
local function lease_gone(prefix, owner, first)
  return redis.call('EXISTS', prefix .. owner) == 0
end
)lua";
inline constexpr const char* kPreludeCluster = R"lua(
local PUBLISH = 'SPUBLISH'
local CLUSTER = true
local PRUNE_MISSING = false
local function lease_gone(prefix, owner, first)
  for i = first, #ARGV do
    if ARGV[i] == owner then return true end
  end
  return false
end
)lua";

// KEYS: room:{id}, room-owners:{id}.
// ARGV: client id, capacity, instance id, lease key prefix, sentAtUs (for the departure notice).
// Refuses when the room holds `capacity` members, after first dropping members whose instance
// lease has expired (their instance died without leaving), never the caller's own. Members added
// by instances that record no owner (the Node server) are never dropped. Clears any TTL on the
// room.
// Returns {size, member, owner, member, owner...}: the room size after the join (-1 when
// refused), then each member dropped here. A dropped member's departure is published on the
// room's channel by the script itself, with this instance as sourceInstance, so that the peers on
// other instances hear of it exactly once; the caller tells its own members.
// ARGV[6...] (cluster): the expired instances (see lease_gone); one Redis reads the owners' lease
// keys instead, which are not declared in KEYS (see kReap).
inline constexpr const char* kJoin = R"lua(
local room, owners = KEYS[1], KEYS[2]
local client, cap, instance, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local dropped = {}
if redis.call('SISMEMBER', room, client) == 0 then
  if redis.call('SCARD', room) >= cap then
    for _, m in ipairs(redis.call('SMEMBERS', room)) do
      local owner = redis.call('HGET', owners, m)
      if owner and owner ~= instance and lease_gone(prefix, owner, 6) then
        redis.call('SREM', room, m)
        redis.call('HDEL', owners, m)
        redis.call(PUBLISH, room, '{"senderId":' .. cjson.encode(m) ..
          ',"data":{"type":"peer-disconnected"},"sourceInstance":' .. cjson.encode(instance) ..
          ',"sentAtUs":' .. ARGV[5] .. '}')
        dropped[#dropped + 1] = m
        dropped[#dropped + 1] = owner
      end
    end
    if redis.call('SCARD', room) >= cap then
      table.insert(dropped, 1, -1)
      return dropped
    end
  end
  redis.call('SADD', room, client)
end
redis.call('HSET', owners, client, instance)
redis.call('PERSIST', room)
redis.call('PERSIST', owners)
table.insert(dropped, 1, redis.call('SCARD', room))
return dropped
)lua";

// KEYS: room:{id}, room-owners:{id}, room-resumable:{id}. ARGV: client id, room TTL seconds.
// Removes the member; an emptied room gets EXPIRE ROOM_TTL_SECONDS (as the Node server does),
// and its list of resumable sessions goes: every session holds a seat until it ends, so in an
// empty room none can be resumed (a claim answers 'gone'), and ids whose keys expired would
// otherwise stay in a set without a TTL.
inline constexpr const char* kLeave = R"lua(
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local left = redis.call('SCARD', KEYS[1])
if left == 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('DEL', KEYS[3])
end
return left
)lua";

// KEYS: room:{id}, room-owners:{id}. ARGV: client id, instance id.
// Re-asserts a member this instance still holds (after Redis restarted empty): no capacity
// check, since the member is connected already.
inline constexpr const char* kRejoin = R"lua(
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
return 1
)lua";

// Instance liveness. Every instance holds a lease key, signal:instance:{id} (PX the lease TTL),
// and an entry in the registry ZSET signal:instances whose score is the same expiry in ms on
// the Redis server's clock (TIME), so host clock skew does not matter. A sweep every few hundred
// ms finds entries whose expiry has passed: dead instances, whose members each live instance then
// releases from its own rooms with kReap. Scripts that write after TIME need effects replication,
// the default since Redis 5; replicate_commands() asks for it on older servers.

// KEYS: signal:instance:{id}, signal:instances. ARGV: instance id, lease TTL ms.
// Sets the lease and its registry entry together. Returns 1 when the registry held an entry for
// this id that had already expired (others may have released this instance's members), else 0.
// Redis Cluster: both keys carry the tag {fleet} (see RedisKeys), so they share a slot.
inline constexpr const char* kLease = R"lua(
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local prev = redis.call('ZSCORE', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], '1', 'PX', ttl)
redis.call('ZADD', KEYS[2], string.format('%.0f', now + ttl), ARGV[1])
if prev and tonumber(prev) < now then return 1 end
return 0
)lua";

// KEYS: signal:instances. ARGV: forget-after ms.
// Returns the ids of instances whose lease expired, and forgets those expired longer than
// `forget-after` ago (kReap's lease check still catches their members, should any remain).
inline constexpr const char* kSweep = R"lua(
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf',
  '(' .. string.format('%.0f', now - tonumber(ARGV[1])))
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.0f', now))
)lua";

// KEYS: room:{id}, room-owners:{id}, room-resumable:{id}.
// ARGV: lease key prefix, room TTL seconds, this instance's id, sentAtUs; ARGV[5...] (cluster):
// the expired instances (see lease_gone).
// Releases every member of the room whose owner's lease key is gone (the owner died), never the
// caller's own. The lease is checked here, not taken from the sweep that triggered the call: an
// instance that was late but is back has its lease again and keeps its members. Each release is
// atomic, so exactly one caller gets a member back; the script publishes its departure on the
// room's channel (sourceInstance = the caller, which tells its own members) and returns
// {member, owner, member, owner...}. An emptied room gets EXPIRE, and loses its list of
// resumable sessions, as in kLeave.
// On one Redis, not declared in KEYS: the owners' lease keys (per owner, unknown until the hash is
// read; kJoin reads them the same way). A cluster passes the expired instances instead: their
// lease keys live in another slot.
inline constexpr const char* kReap = R"lua(
local room, owners = KEYS[1], KEYS[2]
local prefix, self = ARGV[1], ARGV[3]
local alive = {}
local released = {}
local entries = redis.call('HGETALL', owners)
for i = 1, #entries, 2 do
  local member, owner = entries[i], entries[i + 1]
  if owner ~= self then
    if alive[owner] == nil then alive[owner] = not lease_gone(prefix, owner, 5) end
    if not alive[owner] then
      redis.call('HDEL', owners, member)
      if redis.call('SREM', room, member) == 1 then
        redis.call(PUBLISH, room, '{"senderId":' .. cjson.encode(member) ..
          ',"data":{"type":"peer-disconnected"},"sourceInstance":' .. cjson.encode(self) ..
          ',"sentAtUs":' .. ARGV[4] .. '}')
        released[#released + 1] = member
        released[#released + 1] = owner
      end
    end
  end
end
if #released > 0 and redis.call('SCARD', room) == 0 then
  redis.call('EXPIRE', room, ARGV[2])
  redis.call('EXPIRE', owners, ARGV[2])
  redis.call('DEL', KEYS[3])
end
return released
)lua";

// ---- Resumable sessions (PROTOCOL.md section 8) ----
// Redis numbers what each resumable session is sent, so any instance can resume it: a HASH
// resume:{sid} (room, client, owner instance, seq = last number given, received = client
// messages accepted, bytes kept), a STREAM resume-log:{sid} whose entry 0-N holds message N as
// sent, and a SET room-resumable:{room} of the room's resumable sessions. Only the owner (the
// instance holding the session's socket, or its suspension) writes for a session; a resume
// elsewhere moves the owner, which fences the old one. The per-session keys are computed from
// the session ids a script reads, not declared in KEYS; on a cluster the stored session id carries
// the room's tag ({room}:sid, see RedisKeys), so those keys share the room's slot.

// The log helper shared by the scripts below: numbers `data` (a JSON object) for `sid`, keeps
// it, trims the log to ARGV-given bounds (oldest first; the newest always stays) and returns
// the number and the text.
#define SIGSRV_RESUME_APPEND_LUA                                           \
  "local function append(sid, data, maxn, maxb, ttl)\n"                    \
  "  local meta, log = 'resume:' .. sid, 'resume-log:' .. sid\n"           \
  "  local n = redis.call('HINCRBY', meta, 'seq', 1)\n"                    \
  "  local text = string.sub(data, 1, -2) .. ',\"seq\":' .. n .. '}'\n"    \
  "  if #data <= 2 then text = '{\"seq\":' .. n .. '}' end\n"              \
  "  redis.call('XADD', log, '0-' .. n, 'm', text)\n"                      \
  "  local bytes = redis.call('HINCRBY', meta, 'bytes', #text)\n"          \
  "  local len = redis.call('XLEN', log)\n"                                \
  "  while len > 1 and (len > maxn or bytes > maxb) do\n"                  \
  "    local first = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1]\n" \
  "    redis.call('XDEL', log, first[1])\n"                                \
  "    bytes = redis.call('HINCRBY', meta, 'bytes', -#first[2][2])\n"      \
  "    len = len - 1\n"                                                    \
  "  end\n"                                                                \
  "  redis.call('PEXPIRE', meta, ttl)\n"                                   \
  "  redis.call('PEXPIRE', log, ttl)\n"                                    \
  "  return n, text\n"                                                     \
  "end\n"

// KEYS: resume:{sid}, room-resumable:{room}. ARGV: room, client, instance, TTL ms, sid.
// A resumable member joined: its session starts at seq 0, owned here.
inline constexpr const char* kSessionOpen = R"lua(
redis.call('DEL', KEYS[1], 'resume-log:' .. ARGV[5])
redis.call('HSET', KEYS[1], 'room', ARGV[1], 'client', ARGV[2], 'owner', ARGV[3], 'seq', 0,
  'received', 0, 'bytes', 0, 'state', 'live')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('PERSIST', KEYS[2])
return 1
)lua";

// KEYS: room-resumable:{room}, room:{room} (the channel, and the set of members), the sender's
// resume:{sid} (room-resumable:{room} again when the sender is not resumable).
// ARGV: envelope, data, sender session id ('' = not resumable), instance, max messages, max
// bytes, TTL ms.
// The relay of one client message: numbers it for every other resumable session of the room
// (logged), then publishes the envelope with "seqs":{clientId:n,...} added. A resumable sender
// counts the message as received, atomically with its relay; a sender whose session was resumed
// elsewhere (fenced) is not relayed: its client re-sends from `received`. Returns -1 when fenced.
inline constexpr const char* kRelay = SIGSRV_RESUME_APPEND_LUA R"lua(
if ARGV[3] ~= '' and redis.call('HGET', KEYS[3], 'owner') ~= ARGV[4] then return -1 end
-- On a cluster every key written below is read first. Mid-migration a session key the script
-- names itself may be on the other node: Redis fails the script at that access ("non local key")
-- and keeps what it wrote before, and the caller retries. Failing before any write, a retry
-- counts and numbers the message once. (One Redis holds every key: no read needed.)
local sessions = {}
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if sid ~= ARGV[3] then
    local client = redis.call('HGET', 'resume:' .. sid, 'client')
    if client and CLUSTER then redis.call('EXISTS', 'resume-log:' .. sid) end
    sessions[#sessions + 1] = {sid, client}
  end
end
if ARGV[3] ~= '' then redis.call('HINCRBY', KEYS[3], 'received', 1) end
local seqs = {}
for _, s in ipairs(sessions) do
  local sid, client = s[1], s[2]
  if not client then
    if PRUNE_MISSING then redis.call('SREM', KEYS[1], sid) end
  elseif redis.call('SISMEMBER', KEYS[2], client) == 0 then
    -- Released without its session ending (its instance crashed): nothing to keep for it.
    redis.call('SREM', KEYS[1], sid)
    redis.call('DEL', 'resume:' .. sid, 'resume-log:' .. sid)
  else
    local n = append(sid, ARGV[2], tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7])
    seqs[#seqs + 1] = cjson.encode(client) .. ':' .. n
  end
end
local env = ARGV[1]
if #seqs > 0 then env = string.sub(env, 1, -2) .. ',"seqs":{' .. table.concat(seqs, ',') .. '}}' end
return redis.call(PUBLISH, KEYS[2], env)
)lua";

// KEYS: resume:{sid}, presence:{room} (the channel).
// ARGV: data, instance, max messages, max bytes, TTL ms, sid, client id.
// Numbers a notice for one session (peer-joined, peer-disconnected, schema-error...) and
// publishes it on the presence channel, so that it reaches the owner in the same order as the
// relays numbered around it. 0 when this instance no longer owns the session.
inline constexpr const char* kSessionAppend = SIGSRV_RESUME_APPEND_LUA R"lua(
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return 0 end
local n, text = append(ARGV[6], ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5])
redis.call(PUBLISH, KEYS[2], '{"clientId":' .. cjson.encode(ARGV[7]) .. ',"originServerId":' ..
  cjson.encode(ARGV[2]) .. ',"event":"numbered","seq":' .. n .. ',"data":' .. text .. '}')
return n
)lua";

// KEYS: resume:{sid}. ARGV: instance. A client message read and not relayed (dropped, refused):
// counted, in order with the relays, while this instance owns the session.
inline constexpr const char* kSessionCount = R"lua(
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
return redis.call('HINCRBY', KEYS[1], 'received', 1)
)lua";

// KEYS: resume:{sid}, resume-log:{sid}. ARGV: instance, state, TTL ms.
// The owner's session changed state: 'suspended' (socket lost; TTL = the window and a margin)
// or 'live' (refresh). 0 when no longer the owner.
inline constexpr const char* kSessionState = R"lua(
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
)lua";

// KEYS: resume:{sid}, resume-log:{sid}, room-resumable:{room}, resume-left:{sid}.
// ARGV: instance, sid, tombstone ms (0 = none), force ('1': whoever owns it).
// The session is over: its keys go; a tombstone makes a later resume with its token a refusal
// (it left with a close frame) instead of a window that passed.
inline constexpr const char* kSessionEnd = R"lua(
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= ARGV[1] and ARGV[4] ~= '1' then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[2])
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[4], '1', 'PX', ARGV[3]) end
return 1
)lua";

// KEYS: resume:{sid}, resume-log:{sid}, room:{room}, room-owners:{room}, resume-left:{sid},
// room-resumable:{room}. ARGV: room, new owner instance, lastSeq, TTL ms, sid.
// A resume: {'ok', client, seq, received, previous state, message N+1, ..., message seq} and
// the session now owned by the caller (and its member by the caller in room-owners, so the
// crash reaper leaves it alone); or {'left'} (tombstone, or another room), {'unknown'} (no such
// session: its window passed, or Redis lost it), {'gone'} (its member was released: window,
// crash), {'not_covered', client} (the messages after lastSeq are no longer all kept: its seat is
// released here, atomically). The last two end the session's keys; the caller tells the peers
// and joins the client afresh.
inline constexpr const char* kSessionClaim = R"lua(
if redis.call('EXISTS', KEYS[5]) == 1 then return {'left'} end
local m = redis.call('HMGET', KEYS[1], 'room', 'client', 'seq', 'received', 'state')
if not m[1] then return {'unknown'} end
if m[1] ~= ARGV[1] then return {'left'} end
local client, seq, last = m[2], tonumber(m[3]), tonumber(ARGV[3])
local function over(tag)
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('SREM', KEYS[6], ARGV[5])
  return {tag, client}
end
if redis.call('SISMEMBER', KEYS[3], client) == 0 then return over('gone') end
local function not_covered()
  redis.call('SREM', KEYS[3], client)
  redis.call('HDEL', KEYS[4], client)
  return over('not_covered')
end
if last > seq then return not_covered() end
local entries = {}
if last < seq then
  entries = redis.call('XRANGE', KEYS[2], '0-' .. (last + 1), '+')
  if #entries == 0 or entries[1][1] ~= '0-' .. (last + 1) then return not_covered() end
end
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'state', 'live')
redis.call('HSET', KEYS[4], client, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local out = {'ok', client, m[3], m[4] or '0', m[5] or 'live'}
for _, e in ipairs(entries) do out[#out + 1] = e[2][2] end
return out
)lua";

// KEYS: rl:{namespace}:{id}:10 ... ARGV: window seconds, then one limit per key.
// INCR each key in turn (EXPIRE on its first hit) and stop at the first over its limit, as
// sequential limiters would. Returns the 1-based index of that key, or 0 when all allow.
inline constexpr const char* kLimit = R"lua(
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('EXPIRE', key, ARGV[1]) end
  if n > tonumber(ARGV[i + 1]) then return i end
end
return 0
)lua";

// KEYS: rl:{namespace}:{id}:10 ... ARGV: one count per key, then the window in ms.
// Adds a batch of hits counted on an instance (see ReconciledWindows). A key without a TTL gets
// the window: new, or left without one by a writer that died between INCR and EXPIRE. Returns
// {count, ttl ms} per key, flattened.
inline constexpr const char* kWindowAdd = R"lua(
local out = {}
local window = ARGV[#KEYS + 1]
for i, key in ipairs(KEYS) do
  local n = redis.call('INCRBY', key, ARGV[i])
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then
    redis.call('PEXPIRE', key, window)
    ttl = tonumber(window)
  end
  out[2 * i - 1] = n
  out[2 * i] = ttl
end
return out
)lua";

}  // namespace sigsrv::redis_scripts
