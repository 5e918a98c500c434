// An example host: joins a room, answers offers with a canned SDP (replace answer_for() with
// your WebRTC stack) and logs every event. Usage:
//   signal_client_example_host ws://127.0.0.1:3002 ROOM [TOKEN] [--ca FILE] [--once]
// --once: exit after answering the first offer (used by the tests).
#include <signal_client/client.hpp>

#include <atomic>
#include <csignal>
#include <cstring>
#include <iostream>
#include <string>

namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_signal(int) {
  g_stop = true;
}

// The SDP handler stub: a real host feeds the offer to its peer connection
// (setRemoteDescription, createAnswer, setLocalDescription) and returns the answer's SDP.
std::string answer_for(const std::string& offer_sdp) {
  (void)offer_sdp;
  return "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=example-host\r\nt=0 0\r\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: " << argv[0] << " URL ROOM [TOKEN] [--ca FILE] [--once]\n";
    return 2;
  }
  signal_client::Options options;
  options.url = argv[1];
  options.room_id = argv[2];
  bool once = false;
  for (int i = 3; i < argc; ++i) {
    if (std::strcmp(argv[i], "--ca") == 0 && i + 1 < argc) {
      options.ca_file = argv[++i];
    } else if (std::strcmp(argv[i], "--once") == 0) {
      once = true;
    } else {
      options.token = argv[i];
    }
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  // Events are polled here (no on_event callback), so everything runs on this thread.
  signal_client::Client client(options);
  if (!client.connect()) {
    std::cerr << "cannot connect: " << client.last_error() << "\n";
    return 2;
  }
  int exit_code = 0;
  while (!g_stop) {
    auto ev = client.wait_event(std::chrono::milliseconds(200));
    if (!ev) continue;
    std::cout << signal_client::to_string(ev->type);
    switch (ev->type) {
      case signal_client::EventType::offer:
        std::cout << " (answering)" << std::endl;
        client.send_answer(answer_for(ev->sdp));
        if (once) g_stop = true;
        continue;
      case signal_client::EventType::candidate:
        std::cout << " " << ev->candidate;  // a real host: addIceCandidate
        break;
      case signal_client::EventType::welcome:
      case signal_client::EventType::peer_joined:
      case signal_client::EventType::peer_suspended:
      case signal_client::EventType::peer_resumed:
        std::cout << " " << ev->client_id;
        break;
      case signal_client::EventType::resumed:
        std::cout << " recovered=" << ev->recovered;
        break;
      case signal_client::EventType::session_lost:
        // The peer connection must be renegotiated: the old session is gone.
        std::cout << " " << ev->reason << " (renegotiate)";
        break;
      case signal_client::EventType::close:
        std::cout << " " << ev->code << " " << ev->reason << (ev->will_retry ? " (retrying)" : "");
        if (!ev->will_retry) {
          g_stop = true;
          exit_code = 1;
        }
        break;
      case signal_client::EventType::protocol_error:
        std::cout << " " << ev->reason;
        break;
      default:
        break;
    }
    std::cout << std::endl;
  }
  // The answer goes out before the close frame (writes keep their order), and the destructor
  // waits for the close handshake.
  client.close();
  return exit_code;
}
