// Server-side Lua for the Redis bus: membership is atomic across every instance.
#pragma once

namespace sigsrv::redis_scripts {

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
// Not declared in KEYS: the owners' lease keys (see kReap).
inline constexpr const char* kJoin = R"lua(
local room, owners = KEYS[1], KEYS[2]
local client, cap, instance, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local dropped = {}
if redis.call('SISMEMBER', room, client) == 0 then
  if redis.call('SCARD', room) >= cap then
    for _, m in ipairs(redis.call('SMEMBERS', room)) do
      local owner = redis.call('HGET', owners, m)
      if owner and owner ~= instance and redis.call('EXISTS', prefix .. owner) == 0 then
        redis.call('SREM', room, m)
        redis.call('HDEL', owners, m)
        redis.call('PUBLISH', room, '{"senderId":' .. cjson.encode(m) ..
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

// KEYS: room:{id}, room-owners:{id}. ARGV: client id, room TTL seconds.
// Removes the member; an emptied room gets EXPIRE ROOM_TTL_SECONDS (as the Node server does).
inline constexpr const char* kLeave = R"lua(
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local left = redis.call('SCARD', KEYS[1])
if left == 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
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
// Redis Cluster: the two keys live in different slots; tag both with one hash tag there.
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

// KEYS: room:{id}, room-owners:{id}.
// ARGV: lease key prefix, room TTL seconds, this instance's id, sentAtUs.
// Releases every member of the room whose owner's lease key is gone (the owner died), never the
// caller's own. The lease is checked here, not taken from the sweep that triggered the call: an
// instance that was late but is back has its lease again and keeps its members. Each release is
// atomic, so exactly one caller gets a member back; the script publishes its departure on the
// room's channel (sourceInstance = the caller, which tells its own members) and returns
// {member, owner, member, owner...}. An emptied room gets EXPIRE as kLeave gives it.
// Not declared in KEYS: the owners' lease keys (per owner, unknown until the hash is read; kJoin
// reads them the same way). A Redis Cluster port must tag them with the room, or read the
// registry instead.
inline constexpr const char* kReap = R"lua(
local room, owners = KEYS[1], KEYS[2]
local prefix, self = ARGV[1], ARGV[3]
local alive = {}
local released = {}
local entries = redis.call('HGETALL', owners)
for i = 1, #entries, 2 do
  local member, owner = entries[i], entries[i + 1]
  if owner ~= self then
    if alive[owner] == nil then alive[owner] = redis.call('EXISTS', prefix .. owner) == 1 end
    if not alive[owner] then
      redis.call('HDEL', owners, member)
      if redis.call('SREM', room, member) == 1 then
        redis.call('PUBLISH', room, '{"senderId":' .. cjson.encode(member) ..
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
end
return released
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

}  // namespace sigsrv::redis_scripts
