// A WebSocket session as a room member: who it is, its per-connection rate limit, the fan-out of
// what it sends, and its departure.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "bus/bus.hpp"
#include "limits/token_bucket.hpp"
#include "net/resumable_member.hpp"
#include "signaling/rooms.hpp"

namespace sigsrv {

struct Config;
class WsSession;

// On its session's loop only; every call names the session it belongs to (its owner), which
// keeps this object free of a back-pointer.
class MemberRelay {
 public:
  explicit MemberRelay(const Config& config);

  // Who the member is, set by the admission when it is admitted (or resumed).
  std::string client_id;
  std::shared_ptr<Room> room;
  // resume=1: the member this socket is attached to, as its `generation`-th socket. A socket
  // whose generation is no longer the member's has been taken over (4001) and stops relaying.
  std::shared_ptr<ResumableMember> resumable;
  uint64_t generation = 0;
  bool joined = false;         // member of the bus room and the local registry
  bool client_closed = false;  // the client sent a close frame: it left (no suspension)

  // This member as the room knows it: the session itself, or its ResumableMember.
  const Peer* self_peer(const WsSession& s) const;
  // A complete message read from the client.
  void on_message(WsSession& s, std::string_view text);
  // A notice to this client: numbered through the member when the session is resumable.
  void notify_self(WsSession& s, const SharedText& message);
  // The socket ended or is closing: the member leaves (or, resumable, is suspended).
  void depart(WsSession& s);

 private:
  void process(WsSession& s, std::string_view text, MessageVerdict verdict);
  void relay(WsSession& s, const SharedText& message);
  void count_unrelayed(WsSession& s);

  TokenBucket bucket_;
  // Named at the member's first message (a member that never sends pays 8 bytes for it).
  std::unique_ptr<const MessageWindows> windows_;
};

}  // namespace sigsrv
