// Server-side Lua for the Redis bus: membership is atomic across every instance.
#pragma once

namespace sigsrv::redis_scripts {

// KEYS: room:{id}, room-owners:{id}. ARGV: client id, capacity, instance id, lease key prefix.
// Refuses (-1) when the room holds `capacity` members, after first dropping members whose
// instance lease has expired (their instance died without leaving). Members added by instances
// that record no owner (the Node server) are never dropped. Clears any TTL on the room.
// Returns the room size after the join.
inline constexpr const char* kJoin = R"lua(
local room, owners = KEYS[1], KEYS[2]
local client, cap, instance, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
if redis.call('SISMEMBER', room, client) == 0 then
  if redis.call('SCARD', room) >= cap then
    for _, m in ipairs(redis.call('SMEMBERS', room)) do
      local owner = redis.call('HGET', owners, m)
      if owner and redis.call('EXISTS', prefix .. owner) == 0 then
        redis.call('SREM', room, m)
        redis.call('HDEL', owners, m)
      end
    end
    if redis.call('SCARD', room) >= cap then return -1 end
  end
  redis.call('SADD', room, client)
end
redis.call('HSET', owners, client, instance)
redis.call('PERSIST', room)
redis.call('PERSIST', owners)
return redis.call('SCARD', room)
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
