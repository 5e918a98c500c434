// WebSocket session, resume: refusals, the claim (in process or through the bus), the attach.
#include "net/ws_session.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include "net/server.hpp"
#include "net/ws_upgrade.hpp"
#include "obs/metrics.hpp"
#include "signaling/resume.hpp"

namespace sigsrv {

void WsSession::refuse_resume(Rejection r) {
  metrics().resumes(ResumeResult::kRefused).inc();
  reject(r, RejectReason::kInvalidResume);
}

void WsSession::resume_session() {
  const ConnectParams& p = upgrade_->params;
  const auto last_seq = parse_last_seq(p.last_seq);
  if (!last_seq) {
    refuse_resume(kInvalidLastSeq);
    return;
  }
  const auto session_id = verify_resume_token(server_.resume_key(), p.resume_token, *p.room_id);
  if (!session_id) {
    refuse_resume(kInvalidResumeToken);
    return;
  }
  if (server_.bus().shares_sessions()) {
    claim_shared(*session_id, *last_seq);
    return;
  }
  auto [found, member] = server_.resumables().find(*session_id);
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
  if (&member->home() == &loop_) {
    on_resume_claimed(member, member->claim(weak_from_this(), loop_.index, *last_seq));
    return;
  }
  boost::asio::post(member->home().ioc, [self = shared_from_this(), member, last = *last_seq] {
    auto claim = member->claim(self, self->loop_.index, last);
    boost::asio::post(self->loop_.ioc, [self, member, claim = std::move(claim)]() mutable {
      self->on_resume_claimed(member, std::move(claim));
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

void WsSession::claim_shared(const std::string& session_id, uint64_t last_seq) {
  const std::string room_id = *upgrade_->params.room_id;
  server_.bus().session_claim(
      room_id, session_id, last_seq,
      [self = shared_from_this(), room_id, session_id](SessionClaim c) {
        // On the bus' loop, in order with its deliveries: a member new here is in the room before
        // the next message numbered for it is handed out, and adopt() is posted to the member's
        // loop ahead of that message.
        using Result = SessionClaim::Result;
        Server& server = self->server_;
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
          boost::asio::post(self->loop_.ioc, [self, claim = unresumed(c.result)]() mutable {
            self->on_resume_claimed(nullptr, std::move(claim));
          });
          return;
        }
        server.bus().publish_presence(room_id, c.client_id, PresenceEvent::kTakeover);
        std::shared_ptr<Room> room;
        if (!held_here) {
          member = std::make_shared<ResumableMember>(server, self->loop_, session_id, c.client_id);
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
            if (room) self->server_.rooms().detach(room, c.client_id);
            self->server_.bus().release_room(room_id);
            claim = unresumed(SessionClaim::Result::kGone);
          } else {
            if (!room) room = member->room();
            claim.result = ResumableMember::Claim::Result::kResumed;
            claim.generation = member->adopt(room, self, self->loop_.index, c.seq, c.was_suspended);
            claim.after_gap = member->take_resynced();
            claim.room = std::move(room);
            claim.replay = std::move(c.replay);
            claim.received = c.received;
          }
          // On the socket's loop, ahead of anything the member forwards after adopt(): at once
          // when that is this loop (a post would let relays already queued here run first, and
          // the socket, not open yet, would drop them).
          if (&member->home() == &self->loop_) {
            self->on_resume_claimed(member, std::move(claim));
            return;
          }
          boost::asio::post(self->loop_.ioc, [self, member, claim = std::move(claim)]() mutable {
            self->on_resume_claimed(member, std::move(claim));
          });
        });
      });
}

void WsSession::on_resume_claimed(const std::shared_ptr<ResumableMember>& member,
                                  ResumableMember::Claim claim) {
  using Result = ResumableMember::Claim::Result;
  if (claim.result == Result::kGone) {
    refuse_resume(kInvalidResumeToken);
    return;
  }
  if (claim.result == Result::kError) {
    reject(kInternalError, RejectReason::kInternalError);
    return;
  }
  if (claim.result == Result::kNotRecovered) {
    metrics().resumes(ResumeResult::kNotRecovered).inc();
    not_recovered_ = true;
    join_room();
    return;
  }
  // Attached: from here this socket's end is the member's business (suspend or leave).
  resumable_ = member;
  session_id_ = member->session_id();
  generation_ = claim.generation;
  client_id_ = member->client_id();
  events_ = true;
  room_ = std::move(claim.room);
  joined_ = true;
  if (server_.draining()) {
    reject(draining_rejection(server_.config().shutdown_close_code), RejectReason::kDraining);
    return;
  }
  loop_slot = loop_.sessions.size();
  loop_.sessions.push_back(this);
  registered_ = true;
  state_ = State::kOpen;
  Metrics& m = metrics();
  m.active_connections.inc();
  m.resumes(ResumeResult::kRecovered).inc();
  m.replayed_messages.inc(claim.replay.size());
  if (claim.after_gap) m.bus_messages_recovered.inc(claim.replay.size());
  server_.log().info("Client resumed", {{"clientId", client_id_},
                                        {"roomId", room_->id()},
                                        {"replayed", claim.replay.size()},
                                        {"received", claim.received}});
  deliver(std::make_shared<const std::string>(resumed_message(true, claim.received)));
  for (const auto& text : claim.replay) deliver(text);
  accept();
}

}  // namespace sigsrv
