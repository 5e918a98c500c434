// WebSocket admission, resume: refusals, the claim (in process or through the bus), the attach.
#include "net/ws_admission.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include "net/loop_owned.hpp"
#include "net/server.hpp"
#include "signaling/resume.hpp"

namespace sigsrv {

void WsAdmission::refuse_resume(Rejection r) {
  metrics().resumes(ResumeResult::kRefused).inc();
  refuse(r, RejectReason::kInvalidResume);
}

void WsAdmission::resume_session() {
  Server& server = s_.server();
  const ConnectParams& p = params;
  const auto last_seq = parse_last_seq(p.last_seq);
  if (!last_seq) {
    refuse_resume(kInvalidLastSeq);
    return;
  }
  const auto session_id = verify_resume_token(server.resume_key(), p.resume_token, *p.room_id);
  if (!session_id) {
    refuse_resume(kInvalidResumeToken);
    return;
  }
  if (server.bus().shares_sessions()) {
    claim_shared(*session_id, *last_seq);
    return;
  }
  auto [found, member] = server.resumables().find(*session_id);
  if (found == ResumeRegistry::Found::kLeft) {
    refuse_resume(kInvalidResumeToken);
    return;
  }
  if (found == ResumeRegistry::Found::kUnknown) {
    // A genuine token whose session is not here: its window passed, or it lived on an instance
    // that is gone. Honest answer: recovered:false, then a fresh join.
    ResumableMember::Claim none;
    none.result = ResumableMember::Claim::Result::kNotRecovered;
    on_resume_claimed(nullptr, std::move(none));
    return;
  }
  // The claim runs on the member's loop; its answer comes back here before anything the member
  // forwards after it (posts from one thread run in order).
  Loop& loop = s_.loop();
  if (&member->home() == &loop) {
    on_resume_claimed(member, member->claim(s_.weak_from_this(), loop.index, *last_seq));
    return;
  }
  boost::asio::post(member->home().ioc, [self = s_.shared_from_this(), member, last = *last_seq] {
    auto claim = member->claim(self, self->loop().index, last);
    boost::asio::post(self->loop().ioc, [self, member, claim = std::move(claim)]() mutable {
      if (WsAdmission* a = self->admission()) a->on_resume_claimed(member, std::move(claim));
    });
  });
}

namespace {

// A claim that did not resume, as the socket takes it.
ResumableMember::Claim unresumed(SessionClaim::Result r) {
  using Result = ResumableMember::Claim::Result;
  ResumableMember::Claim claim;
  claim.result = r == SessionClaim::Result::kLeft    ? Result::kGone
                 : r == SessionClaim::Result::kError ? Result::kError
                                                     : Result::kNotRecovered;
  return claim;
}

}  // namespace

void WsAdmission::claim_shared(const std::string& session_id, uint64_t last_seq) {
  const std::string room_id = *params.room_id;
  s_.server().bus().session_claim(
      room_id, session_id, last_seq,
      [self = s_.shared_from_this(), room_id, session_id](SessionClaim c) {
        // On the bus' loop, in order with its deliveries: a member new here is in the room before
        // the next message numbered for it is handed out, and adopt() is posted to the member's
        // loop ahead of that message.
        using Result = SessionClaim::Result;
        Server& server = self->server();
        auto [found, member] = server.resumables().find(session_id);
        const bool held_here = found == ResumeRegistry::Found::kLive;
        if (c.result != Result::kResumed) {
          if (c.result == Result::kNotCovered || c.result == Result::kGone ||
              c.result == Result::kUnknown) {
            // The session is over: whoever holds it lets go, the member leaves, and this socket
            // joins afresh. Unknown to Redis (it lost its data) but held here: same.
            if (held_here) {
              if (c.client_id.empty()) c.client_id = member->client_id();
              boost::asio::post(member->home().ioc, [member] { member->taken_over(); });
            }
            if (!c.client_id.empty()) {
              server.bus().publish_presence(room_id, c.client_id, PresenceEvent::kTakeover);
              // kNotCovered: the claim freed the seat itself. Held here but unknown to the bus
              // (it lost its data): the seat it holds again since is freed now. kGone: its
              // departure was announced when it was released.
              if (c.result == Result::kNotCovered || (held_here && c.result == Result::kUnknown)) {
                server.release_member(room_id, c.client_id, c.result != Result::kNotCovered);
              }
            }
          }
          boost::asio::post(self->loop().ioc, [self, claim = unresumed(c.result)]() mutable {
            if (WsAdmission* a = self->admission()) a->on_resume_claimed(nullptr, std::move(claim));
          });
          return;
        }
        server.bus().publish_presence(room_id, c.client_id, PresenceEvent::kTakeover);
        std::shared_ptr<Room> room;
        if (!held_here) {
          member = make_loop_owned<ResumableMember>(self->loop().ioc, server, self->loop(),
                                                    session_id, c.client_id);
          server.resumables().add(member);
          room = server.rooms().attach(
              room_id, Member{c.client_id, member, member.get(), member->home().index, true, true});
        }
        boost::asio::post(member->home().ioc, [self, member, room_id, room = std::move(room),
                                               c = std::move(c)]() mutable {
          ResumableMember::Claim claim;
          if (member->has_left()) {
            // It left here (its window ran out, or another instance took it) while the claim was
            // on its way: the claim is void, and what it took (a place in the local room, a
            // listening reference) goes back.
            if (room) self->server().rooms().detach(room, c.client_id);
            self->server().bus().release_room(room_id);
            claim = unresumed(SessionClaim::Result::kGone);
          } else {
            if (!room) room = member->room();
            claim.result = ResumableMember::Claim::Result::kResumed;
            claim.generation =
                member->adopt(room, self, self->loop().index, c.seq, c.was_suspended);
            claim.after_gap = member->take_resynced();
            claim.room = std::move(room);
            claim.replay = std::move(c.replay);
            claim.received = c.received;
          }
          // On the socket's loop, ahead of anything the member forwards after adopt(): at once
          // when that is this loop (a post would let relays already queued here run first, and
          // the socket, not open yet, would drop them).
          auto answer = [self, member, claim = std::move(claim)]() mutable {
            if (WsAdmission* a = self->admission()) a->on_resume_claimed(member, std::move(claim));
          };
          if (&member->home() == &self->loop()) {
            answer();
            return;
          }
          boost::asio::post(self->loop().ioc, std::move(answer));
        });
      });
}

void WsAdmission::on_resume_claimed(const std::shared_ptr<ResumableMember>& member,
                                    ResumableMember::Claim claim) {
  using Result = ResumableMember::Claim::Result;
  if (claim.result == Result::kGone) {
    refuse_resume(kInvalidResumeToken);
    return;
  }
  if (claim.result == Result::kError) {
    refuse(kInternalError, RejectReason::kInternalError);
    return;
  }
  if (claim.result == Result::kNotRecovered) {
    metrics().resumes(ResumeResult::kNotRecovered).inc();
    not_recovered_ = true;
    join_room();
    return;
  }
  // Attached: from here this socket's end is the member's business (suspend or leave).
  Server& server = s_.server();
  MemberRelay& m = s_.member();
  m.resumable = member;
  m.generation = claim.generation;
  m.client_id = member->client_id();
  m.room = std::move(claim.room);
  m.joined = true;
  if (server.draining()) {
    refuse(draining_rejection(server.config().shutdown_close_code), RejectReason::kDraining);
    return;
  }
  s_.open();
  Metrics& mx = metrics();
  mx.resumes(ResumeResult::kRecovered).inc();
  mx.replayed_messages.inc(claim.replay.size());
  if (claim.after_gap) mx.bus_messages_recovered.inc(claim.replay.size());
  server.log().info("Client resumed", {{"clientId", m.client_id},
                                       {"roomId", m.room->id()},
                                       {"replayed", claim.replay.size()},
                                       {"received", claim.received}});
  // Fresh ICE credentials: the ones in the welcome may be close to their expiry by now.
  s_.deliver(std::make_shared<const std::string>(
      resumed_message(true, claim.received, server.ice_servers_for(m.client_id))));
  for (const auto& text : claim.replay) s_.deliver(text);
  s_.accept();
}

}  // namespace sigsrv
