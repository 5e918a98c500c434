// Redis Cluster client on the bus loop: one command and one sharded-subscriber connection per
// master, commands routed by their key's slot, MOVED/ASK followed, the topology kept fresh.
#pragma once

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "bus/cluster.hpp"
#include "bus/redis_connection.hpp"

namespace sigsrv {

// Looks like one command connection and one subscriber connection to its owner (RedisBus): up
// when every slot has a master whose connections are up, down as soon as one is not. Inside, it
// keeps per-node connections and follows the cluster as it changes:
// - a command goes to its slot's master; MOVED re-sends it to the named node (and refreshes the
//   slot map), ASK sends it there once after ASKING, TRYAGAIN (a multi-key script during a
//   migration) retries it shortly; a command whose master is unreachable fails at once, as on one
//   Redis that is down;
// - room channels are SSUBSCRIBEd on their slot's master; when the slot moves (the old master
//   sends an unsolicited sunsubscribe, or a refresh finds another owner) they are subscribed on
//   the new master first, then dropped on the old one;
// - the slot map (CLUSTER SLOTS) is read at start, after a redirect, a lost node or a moved
//   subscription, every kRefreshPeriod while healthy and every kRefreshRetry while a slot has no
//   reachable master; refreshes are coalesced (one in flight, at least kMinRefreshGap apart), so a
//   failover that fails many commands at once costs one refresh, not a storm.
class RedisCluster {
 public:
  using Callback = RedisConnection::Callback;
  struct Hooks {
    std::function<void()> on_commands_up;  // every slot's master answers commands
    std::function<void()> on_commands_down;
    std::function<void()> on_subscribers_up;  // every master's subscriber connection is up
    std::function<void()> on_subscribers_down;
    std::function<void(std::string_view channel, std::string_view payload)> on_message;
    std::function<void(std::string_view channel)> on_subscribed;
    // Channels subscribed again on a new master while the rest stayed up (a slot migrated, or
    // one master failed over): what was published on them in between may be lost.
    std::function<void(const std::vector<std::string>& channels)> on_moved;
  };
  static constexpr unsigned kMaxRedirects = 5;
  // A slot split mid-migration (TRYAGAIN, or a script's undeclared key already moved): its
  // commands are held and retried every kTryAgainDelay, for up to kMaxTryAgain tries each.
  static constexpr unsigned kMaxTryAgain = 300;
  static constexpr std::chrono::milliseconds kTryAgainDelay{10};
  static constexpr std::chrono::milliseconds kRefreshPeriod{10000};
  static constexpr std::chrono::milliseconds kRefreshRetry{250};
  static constexpr std::chrono::milliseconds kMinRefreshGap{100};

  // `credentials`: user, password and TLS of every node (host and port come from the cluster).
  // `scripts`: loaded (SCRIPT LOAD) on every node as its command connection comes up, ahead of
  // anything else on it. A master that answered NOSCRIPT would have the caller re-send one command
  // as EVAL while later ones, already sent, run (once another client loaded the script): a
  // relay overtaken.
  RedisCluster(boost::asio::io_context& ioc, std::vector<HostPort> seeds, RedisEndpoint credentials,
               std::shared_ptr<boost::asio::ssl::context> tls, Logger& log, Hooks hooks,
               std::vector<std::string> scripts = {});
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;
  ~RedisCluster();

  void start();
  void stop();
  bool commands_up() const { return commands_up_; }
  bool subscribers_up() const { return subscribers_up_; }
  // Replies owed by every node.
  std::size_t pending() const;

  // To the master of `slot`: that of routing_key(args), or one the caller keeps (a relay: its
  // room's). On the bus loop only; `done` is called exactly once, never from inside this call.
  void command(std::span<const std::string_view> args, uint16_t slot, Callback done);
  // What a command is routed by: an EVAL/EVALSHA's first key, else its first argument.
  static std::string_view routing_key(std::span<const std::string_view> args);
  // Channels of one slot (a room's relay and presence channels): SSUBSCRIBE on its master, each
  // acknowledged through on_subscribed; kept, and moved with the slot, until unsubscribe().
  void subscribe(std::span<const std::string> channels);
  void unsubscribe(std::span<const std::string> channels);
  // The masters of the slot map, for logs ("host:port,...").
  std::string masters() const;

 private:
  struct Node {
    HostPort address;
    std::unique_ptr<RedisConnection> command;
    std::unique_ptr<RedisConnection> subscriber;
    bool master = false;  // owns slots in the current map
    bool command_running = false;
    bool subscriber_running = false;
  };
  struct Request {
    std::string encoded;  // kept for a redirect: re-sent as is
    uint16_t slot = 0;
    Callback done;
    unsigned redirects = 0;
    unsigned retries = 0;
    uint64_t order = 0;  // when it was first asked: held commands go out again in this order
    const Node* sent_to = nullptr;  // while in flight
    Node* ask_to = nullptr;         // held after ASK: sent there again, after ASKING
  };
  // Commands of a slot that moved (MOVED) or is split mid-migration (TRYAGAIN), in the order
  // asked. While a slot has some, every new command of that slot waits behind them, and they go
  // out again only once nothing of the slot is in flight any more: a command sent to the old
  // node and redirected must not be overtaken by a later one sent straight to the new node.
  // A migrating slot's (ASK or TRYAGAIN) go out one at a time, each once the one before is
  // answered, and so does every new command of the slot until kMigratingQuiet has passed without
  // either: pipelined to the importing node, one command could be refused (its keys split) while
  // a later one, which the node ran once the migration had moved the rest, relayed before it.
  struct Held {
    std::vector<Request> requests;
    std::unique_ptr<boost::asio::steady_timer> timer;
    bool armed = false;  // the timer will call release()
    bool one_at_a_time = false;
    std::chrono::steady_clock::time_point migrating_until{};
  };
  static constexpr std::chrono::milliseconds kMigratingQuiet{1000};

  Node& node(const HostPort& at);
  void run(Node& n, bool command, bool subscriber);
  uint32_t acquire();            // a free entry of requests_
  uint32_t park(Request&& req);  // into a free entry
  Request take(uint32_t id);     // out of its entry, which is freed
  Callback finish(uint32_t id);  // frees the entry, its encoded buffer kept; its callback
  void send(uint32_t id, Node* to, bool asking);
  void on_reply(uint32_t id, const redisReply* r);
  // `migrating`: the slot's commands go one at a time from now on (see Held); `wait`: the next
  // try waits kTryAgainDelay (a split slot: the migration moves the rest meanwhile).
  void hold(Request req, bool migrating = false, bool wait = true);
  void arm(uint16_t slot, Held& h);  // release(slot) after kTryAgainDelay, unless armed already
  void release(uint16_t slot);
  void schedule_refresh(std::chrono::milliseconds delay);
  void refresh();
  void apply(const std::vector<SlotRange>& ranges);
  void move_subscriptions();
  void on_unsubscribed(Node& n, std::string_view channel);
  void on_subscriber_down(Node& n);
  void update_state();

  boost::asio::io_context& ioc_;
  std::vector<HostPort> seeds_;
  RedisEndpoint credentials_;
  std::shared_ptr<boost::asio::ssl::context> tls_;
  Logger& log_;
  Hooks hooks_;
  const std::vector<std::string> scripts_;
  bool stopped_ = true;

  // Every node ever seen, by "host:port": kept (with its connections stopped) when it stops being
  // a master, so handlers that hold a pointer to one never dangle; bounded by the cluster's size.
  std::map<std::string, std::unique_ptr<Node>> nodes_;
  std::array<Node*, kClusterSlots> owner_{};  // the slot map (null: no master known)
  bool covered_ = false;                      // every slot has a master
  bool commands_up_ = false;
  bool subscribers_up_ = false;
  // Channels subscribed (or to be), and the node each is SSUBSCRIBEd on (null: on none now).
  std::unordered_map<std::string, Node*> subscriptions_;

  boost::asio::steady_timer refresh_timer_;
  bool refresh_armed_ = false;
  std::chrono::steady_clock::time_point refresh_at_{};
  bool refresh_in_flight_ = false;
  bool refresh_wanted_ = false;  // asked for while one was in flight, or before any node was up
  std::chrono::steady_clock::time_point last_refresh_{};
  std::string last_refresh_error_;  // logged once per distinct error
  std::string last_masters_;        // logged when it changes
  std::size_t next_refresh_node_ = 0;
  uint64_t next_order_ = 0;
  // Commands sent and not answered (and the one being routed), by index: the callback a node's
  // connection holds carries only [this, index], which std::function stores without allocating,
  // and a free entry keeps its encoded buffer's capacity for the next command. As many entries as
  // commands were ever in flight at once, which the connections bound (kMaxPending per node).
  std::vector<Request> requests_;
  std::vector<uint32_t> free_requests_;
  std::map<uint16_t, Held> held_;
  // Commands sent and not answered, by slot: a flat table, since it changes on every command.
  std::vector<uint32_t> in_flight_ = std::vector<uint32_t>(kClusterSlots, 0);
};

}  // namespace sigsrv

namespace sigsrv {

// At start-up, before the bus runs: asks the seed nodes in turn (a blocking connection, at most
// `timeout` each) whether they are a Redis Cluster. A node that answers without cluster support,
// or refuses the password, is a configuration error; nodes that do not answer are not (they may be
// starting too): the bus keeps trying and readiness says 503 meanwhile.
struct ClusterProbe {
  enum class Kind { kCluster, kNotCluster, kAuthFailed, kUnreachable } kind = Kind::kUnreachable;
  std::string node;    // the node that answered ("host:port")
  std::string detail;  // its error text, or why none answered
};
ClusterProbe probe_cluster_once(const std::vector<HostPort>& seeds,
                                const RedisEndpoint& credentials,
                                std::shared_ptr<boost::asio::ssl::context> tls,
                                std::chrono::milliseconds timeout);

}  // namespace sigsrv
