// Client message validation and serialization (PROTOCOL.md section 2): pure, no I/O.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sigsrv {

// Relayed bytes are immutable and shared by every recipient and the bus publish.
using SharedText = std::shared_ptr<const std::string>;

enum class MessageType { kOffer, kAnswer, kCandidate, kControl };

struct ParsedMessage {
  enum class Kind {
    kNotJson,      // not JSON or not an object: dropped silently
    kSchemaError,  // an object that fails the table: sender gets schema-error
    kValid,        // relay `text`
  } kind = Kind::kNotJson;
  MessageType type = MessageType::kControl;
  std::string text;  // canonical JSON with only the table's keys, in schema order
};

// Validates one client message and produces the stripped JSON to relay.
ParsedMessage parse_client_message(std::string_view input);

// Messages the server itself sends.
const SharedText& schema_error_message();
const SharedText& peer_disconnected_message();
// `ice_servers`: the payload's iceServers array (PROTOCOL.md section 9) as JSON text; empty: none.
std::string welcome_message(std::string_view client_id, std::string_view room_id, std::size_t peers,
                            std::string_view ice_servers = {});
// `{...}` -> `{...,"iceServers":ICE}`, for a payload object the server serialized itself;
// unchanged when `ice_servers` is empty.
std::string with_ice_servers(std::string object_json, std::string_view ice_servers);
std::string peer_joined_message(std::string_view client_id);

// A client's id from 128 random bits: "client:" and a UUID v4 (the version and variant bits
// set), as the Node server's "client:" + crypto.randomUUID(). Written by hand: snprintf cost 3%
// of a handshake + join.
std::string client_id_from(uint64_t a, uint64_t b);
// An IPv4 address in dotted decimal, as inet_ntop writes it (which, through sprintf, cost 2% of
// a handshake + join).
std::string ipv4_text(const std::array<unsigned char, 4>& bytes);

// What instances publish on `room:{roomId}` (PROTOCOL.md section 4). The seed fields are
// senderId, data and originServerId (absent on departures); ours add sentAtUs (publish time, for
// the cross-instance latency histogram) and, on departures, sourceInstance (so the publishing
// instance skips its own notice). Instances that do not know these fields ignore them.
// The numbers a relay was given for the room's resumable members (client id, seq): the
// "seqs" object that instances sharing sessions add to the envelope (PROTOCOL.md section 8).
using RecipientSeqs = std::vector<std::pair<std::string, uint64_t>>;

struct BusEnvelope {
  std::string sender_id;
  std::string data;  // `data` re-serialized, ready to send to clients
  std::string origin_server_id;
  std::string source_instance;
  std::optional<int64_t> sent_at_us;
  RecipientSeqs seqs;
};
std::optional<BusEnvelope> parse_bus_envelope(std::string_view payload);
std::string relay_envelope(std::string_view sender_id, std::string_view data_json,
                           std::string_view origin_server_id, int64_t sent_at_us);
// The same with the origin's part written once beforehand: `own_marker` is
// own_relay_marker(origin_server_id).
std::string relay_envelope_marked(std::string_view sender_id, std::string_view data_json,
                                  std::string_view own_marker, int64_t sent_at_us);
std::string departure_envelope(std::string_view sender_id, std::string_view source_instance,
                               int64_t sent_at_us);
// An instance hears its own publications back from Redis. Recognising them by their tail,
// `,"originServerId":"ID","sentAtUs":DIGITS}` as relay_envelope writes it, spares a full JSON
// parse per message. The tail cannot come from a client: inside `data` every quote is escaped.
std::string own_relay_marker(
    std::string_view origin_server_id);  // `,"originServerId":"ID","sentAtUs":`
bool is_own_relay(std::string_view payload, std::string_view own_marker);

// Each parse above tries the common shapes first (flat, ASCII, plain integers) without a DOM,
// and hands everything else to the DOM path. Both paths, for the tests that hold them equal:
namespace detail {
// true: decided, exactly as the DOM path decides (always a valid message); false: not decided.
bool parse_common_message(std::string_view input, ParsedMessage& result);
ParsedMessage parse_client_message_dom(std::string_view input);
// The same for envelopes (on false, `e` may be partly written: discard it).
bool parse_common_envelope(std::string_view payload, BusEnvelope& e);
std::optional<BusEnvelope> parse_bus_envelope_dom(std::string_view payload);
}  // namespace detail

// Presence between instances, on our own channel presence:{roomId} (never read by the Node
// instances): {"clientId":..,"originServerId":..} for a join, plus "event" for the others:
// "suspended" / "resumed" (a resumable member's socket dropped / came back) and "probe" (a join
// found the room full: ping your members of it now; PROTOCOL.md section 8).
// Sessions shared through Redis add "numbered" (a notice numbered for the resumable member
// clientId: "seq" and the text as "data") and "takeover" (the session of member clientId was
// resumed by originServerId: any other instance holding it lets it go without a departure).
enum class PresenceEvent { kJoined, kSuspended, kResumed, kProbe, kNumbered, kTakeover };
struct PresenceNotice {
  std::string client_id;
  std::string origin_server_id;
  PresenceEvent event = PresenceEvent::kJoined;
  uint64_t seq = 0;        // kNumbered
  std::string data;        // kNumbered: the numbered text, re-serialized
  bool resumable = false;  // kJoined: the member is resumable ("resumable":true)
};
std::string presence_message(std::string_view client_id, std::string_view origin_server_id,
                             PresenceEvent event = PresenceEvent::kJoined, bool resumable = false);
std::optional<PresenceNotice> parse_presence(std::string_view payload);

}  // namespace sigsrv
