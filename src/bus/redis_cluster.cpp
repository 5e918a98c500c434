// Redis Cluster client: slot routing, redirects, topology refresh, sharded subscriptions.
#include "bus/redis_cluster.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <optional>
#include <set>

#include "bus/redis_exchange.hpp"
#include "obs/metrics.hpp"

namespace sigsrv {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;

std::string_view RedisCluster::routing_key(std::span<const std::string_view> args) {
  if (args.empty()) return {};
  if (args[0] == "EVALSHA" || args[0] == "EVAL") {
    return args.size() > 3 && args[2] != "0" ? args[3] : std::string_view();
  }
  return args.size() > 1 ? args[1] : std::string_view();
}

RedisCluster::RedisCluster(asio::io_context& ioc, std::vector<HostPort> seeds,
                           RedisEndpoint credentials, std::shared_ptr<asio::ssl::context> tls,
                           Logger& log, Hooks hooks, std::vector<std::string> scripts)
    : ioc_(ioc),
      seeds_(std::move(seeds)),
      credentials_(std::move(credentials)),
      tls_(std::move(tls)),
      log_(log),
      hooks_(std::move(hooks)),
      scripts_(std::move(scripts)),
      refresh_timer_(ioc) {}

RedisCluster::~RedisCluster() {
  stop();
}

void RedisCluster::start() {
  stopped_ = false;
  refresh();
}

void RedisCluster::stop() {
  if (stopped_) return;
  stopped_ = true;
  refresh_timer_.cancel();
  // Held commands fail, as those in flight do.
  auto held = std::move(held_);
  held_.clear();
  for (auto& [slot, h] : held) {
    for (auto& req : h.requests) req.done(nullptr);
  }
  for (auto& [name, n] : nodes_) {
    n->command->stop();
    n->subscriber->stop();
    n->command_running = n->subscriber_running = false;
  }
}

std::size_t RedisCluster::pending() const {
  std::size_t n = 0;
  for (const auto& [name, node] : nodes_) n += node->command->pending();
  return n;
}

std::string RedisCluster::masters() const {
  std::string out;
  for (const auto& [name, n] : nodes_) {
    if (n->master) out.append(out.empty() ? "" : ",").append(name);
  }
  return out;
}

RedisCluster::Node& RedisCluster::node(const HostPort& at) {
  const std::string name = to_string(at);
  auto& slot = nodes_[name];
  if (slot) return *slot;
  slot = std::make_unique<Node>();
  Node* n = slot.get();
  n->address = at;
  RedisEndpoint ep = credentials_;
  ep.host = at.host;
  ep.port = at.port;
  n->command = std::make_unique<RedisConnection>(
      ioc_, ep, tls_, RedisConnection::Mode::kCommand, "cluster command " + name, log_,
      RedisConnection::Hooks{
          [this, n] {
            for (const std::string& body : scripts_) {
              n->command->command({"SCRIPT", "LOAD", body}, [](const redisReply*) {});
            }
            if (refresh_wanted_ && !refresh_in_flight_) refresh();
            update_state();
          },
          [this](const std::string&) {
            // Its master may be failing over: look again soon.
            schedule_refresh(std::chrono::milliseconds(0));
            update_state();
          },
          {},
          {},
          {},
          {}});
  n->subscriber = std::make_unique<RedisConnection>(
      ioc_, ep, tls_, RedisConnection::Mode::kSubscriber, "cluster subscriber " + name, log_,
      RedisConnection::Hooks{
          [this] { update_state(); }, [this, n](const std::string&) { on_subscriber_down(*n); },
          [this](std::string_view c, std::string_view p) { hooks_.on_message(c, p); },
          [this](std::string_view c) { hooks_.on_subscribed(c); },
          [this, n](std::string_view c) { on_unsubscribed(*n, c); },
          [this, name](std::string_view err) {
            // A SSUBSCRIBE that reached a node which no longer owns the slot: the refresh moves
            // the subscription to the owner.
            if (err.starts_with("MOVED")) {
              schedule_refresh(std::chrono::milliseconds(0));
              return;
            }
            log_.warn("Redis error", {{"connection", "cluster subscriber " + name}, {"err", err}});
          }});
  return *n;
}

void RedisCluster::run(Node& n, bool command, bool subscriber) {
  if (stopped_) return;
  if (command && !n.command_running) {
    n.command_running = true;
    n.command->start();
  }
  if (subscriber && !n.subscriber_running) {
    n.subscriber_running = true;
    n.subscriber->start();
  }
}

// ---- commands ----

void RedisCluster::command(std::span<const std::string_view> args, uint16_t slot, Callback done) {
  const uint32_t id = acquire();
  Request& req = requests_[id];
  req.encoded.clear();
  append_command(req.encoded, args);
  req.slot = slot;
  req.done = std::move(done);
  req.redirects = req.retries = 0;
  req.order = next_order_++;
  if (held_.contains(req.slot)) {
    hold(take(id), false, false);
    return;
  }
  send(id, nullptr, false);
}

uint32_t RedisCluster::acquire() {
  if (free_requests_.empty()) {
    requests_.emplace_back();
    return static_cast<uint32_t>(requests_.size() - 1);
  }
  const uint32_t id = free_requests_.back();
  free_requests_.pop_back();
  return id;
}

uint32_t RedisCluster::park(Request&& req) {
  const uint32_t id = acquire();
  requests_[id] = std::move(req);
  return id;
}

RedisCluster::Request RedisCluster::take(uint32_t id) {
  Request req = std::move(requests_[id]);
  finish(id);
  return req;
}

RedisCluster::Callback RedisCluster::finish(uint32_t id) {
  Callback done = std::move(requests_[id].done);
  requests_[id].done = nullptr;
  free_requests_.push_back(id);
  return done;
}

void RedisCluster::send(uint32_t id, Node* to, bool asking) {
  Request& req = requests_[id];
  Node* n = to != nullptr ? to : owner_[req.slot];
  if (n == nullptr || !n->command->up()) {
    // No reachable master for the slot: fail now, as a Redis that is down does; the refresh
    // finds where the slot went.
    if (!stopped_ && covered_) schedule_refresh(kRefreshRetry);
    asio::post(ioc_, [done = finish(id)] { done(nullptr); });
    return;
  }
  if (asking) n->command->command({"ASKING"}, [](const redisReply*) {});
  ++in_flight_[req.slot];
  req.sent_to = n;
  // Nodes are never destroyed while the cluster runs (see nodes_): `sent_to` outlives the reply.
  n->command->command_encoded(req.encoded, [this, id](const redisReply* r) { on_reply(id, r); });
}

void RedisCluster::on_reply(uint32_t id, const redisReply* r) {
  Request& req = requests_[id];
  const uint16_t slot = req.slot;
  if (in_flight_[slot] > 0) --in_flight_[slot];
  if (r != nullptr && r->type == REDIS_REPLY_ERROR && !stopped_) {
    const std::string_view err = reply_text(r);
    if (auto redirect = parse_redirect(err, req.sent_to->address.host);
        redirect && req.redirects < kMaxRedirects) {
      ++req.redirects;
      Node& to = node(redirect->to);
      if (redirect->kind == Redirect::Kind::kMoved) {
        metrics().redis_cluster_moved.inc();
        // The slot is the named node's now; the refresh learns what else moved. This command
        // and every later one of the slot wait until the rest sent to the old node is answered
        // (see Held), then go to the new one in the order asked.
        // A node not known as a master yet (a promotion the map has not caught up with) is
        // dialled now; the refresh that follows settles the map either way.
        owner_[redirect->slot] = &to;
        run(to, true, false);
        schedule_refresh(std::chrono::milliseconds(0));
        req.ask_to = nullptr;
        hold(take(id));
        return;
      }
      metrics().redis_cluster_ask.inc();
      // The slot is migrating. Alone, this command follows the redirect at once; with older ones
      // held or later ones still out, it waits its turn (see Held).
      req.ask_to = &to;
      hold(take(id), true, false);
      return;
    }
    // A script whose keys are split between the two nodes of a migrating slot (TRYAGAIN for
    // its declared keys; "non local key" for one it reads by name): the migration moves the rest
    // within moments.
    const bool split =
        err.starts_with("TRYAGAIN") || err.find("non local key") != std::string_view::npos;
    if (split && req.retries < kMaxTryAgain) {
      ++req.retries;
      hold(take(id), true, true);
      return;
    }
    if (err.starts_with("CLUSTERDOWN")) schedule_refresh(std::chrono::milliseconds(0));
  }
  // Freed before the callback runs: it may send more (and grow requests_).
  finish(id)(r);
  // A migrating slot's next held command goes out once this one is answered.
  if (auto it = held_.find(slot);
      it != held_.end() && it->second.one_at_a_time && !it->second.armed) {
    release(slot);
  }
}

void RedisCluster::hold(Request req, bool migrating, bool wait) {
  Held& h = held_[req.slot];
  const auto at =
      std::upper_bound(h.requests.begin(), h.requests.end(), req.order,
                       [](uint64_t order, const Request& other) { return order < other.order; });
  const uint16_t slot = req.slot;
  h.requests.insert(at, std::move(req));
  if (migrating) {
    h.one_at_a_time = true;
    h.migrating_until = SteadyClock::now() + kMigratingQuiet;
  }
  if (h.one_at_a_time && in_flight_[slot] > 0) return;  // its answer releases the next
  if (h.one_at_a_time && !wait && !h.armed) {
    release(slot);  // nothing of the slot out, and nothing to wait for: the oldest goes now
    return;
  }
  arm(slot, h);
}

void RedisCluster::arm(uint16_t slot, Held& h) {
  if (h.armed) return;
  h.armed = true;
  if (!h.timer) h.timer = std::make_unique<asio::steady_timer>(ioc_);
  h.timer->expires_after(kTryAgainDelay);
  h.timer->async_wait([this, slot](boost::system::error_code ec) {
    if (ec) return;
    auto it = held_.find(slot);
    if (it == held_.end()) return;
    it->second.armed = false;
    release(slot);
  });
}

void RedisCluster::release(uint16_t slot) {
  auto it = held_.find(slot);
  if (it == held_.end()) return;
  Held& h = it->second;
  if (in_flight_[slot] > 0) {
    // Something of the slot sent earlier is still unanswered (it may yet come back redirected,
    // and must go out before these). One at a time, its answer releases the next; otherwise
    // look again shortly.
    if (!h.one_at_a_time) arm(slot, h);
    return;
  }
  if (h.one_at_a_time) {
    // The oldest alone; the rest, and anything new, stay held behind it until it is answered. A
    // send that fails at once (no reachable master) has its callback posted and is not waited for.
    while (!h.requests.empty() && in_flight_[slot] == 0) {
      Request next = std::move(h.requests.front());
      h.requests.erase(h.requests.begin());
      Node* to = next.ask_to;
      send(park(std::move(next)), to, to != nullptr);
    }
    // All answered and the migration quiet: the slot's commands are sent at once again.
    if (h.requests.empty() && in_flight_[slot] == 0 && !h.armed &&
        SteadyClock::now() >= h.migrating_until) {
      held_.erase(it);
    }
    return;
  }
  // Out again in the order asked, in one pipeline; any still refused are held again.
  auto requests = std::move(h.requests);
  held_.erase(it);
  for (auto& req : requests) send(park(std::move(req)), nullptr, false);
}

// ---- topology ----

void RedisCluster::schedule_refresh(std::chrono::milliseconds delay) {
  if (stopped_) return;
  const auto at = std::max(SteadyClock::now() + delay, last_refresh_ + kMinRefreshGap);
  if (refresh_armed_ && refresh_at_ <= at) return;
  refresh_armed_ = true;
  refresh_at_ = at;
  refresh_timer_.expires_at(at);
  refresh_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    refresh_armed_ = false;
    refresh();
  });
}

void RedisCluster::refresh() {
  if (stopped_) return;
  if (refresh_in_flight_) {
    refresh_wanted_ = true;
    return;
  }
  // Any node that answers will do: masters first, round robin, so that one that is failing does
  // not keep getting asked.
  std::vector<Node*> up;
  for (auto& [name, n] : nodes_) {
    if (n->command->up()) up.push_back(n.get());
  }
  std::stable_partition(up.begin(), up.end(), [](const Node* n) { return n->master; });
  if (up.empty()) {
    // Nothing connected (start, or every known node lost): dial the seeds and every node known;
    // the first that comes up asks.
    refresh_wanted_ = true;
    for (const HostPort& seed : seeds_) run(node(seed), true, false);
    for (auto& [name, n] : nodes_) run(*n, true, false);
    schedule_refresh(kRefreshRetry);
    return;
  }
  const std::size_t masters = static_cast<std::size_t>(
      std::count_if(up.begin(), up.end(), [](const Node* n) { return n->master; }));
  Node* asked = up[next_refresh_node_++ % (masters > 0 ? masters : up.size())];
  refresh_in_flight_ = true;
  refresh_wanted_ = false;
  last_refresh_ = SteadyClock::now();
  metrics().redis_cluster_refreshes.inc();
  asked->command->command(
      {"CLUSTER", "SLOTS"}, [this, host = asked->address.host](const redisReply* r) {
        refresh_in_flight_ = false;
        if (stopped_) return;
        auto parsed = parse_cluster_slots(r, host);
        if (auto* err = std::get_if<std::string>(&parsed)) {
          if (*err != last_refresh_error_) {
            log_.warn("Redis Cluster slot map unavailable", {{"err", *err}});
            last_refresh_error_ = *err;
          }
          schedule_refresh(kRefreshRetry);
          return;
        }
        last_refresh_error_.clear();
        apply(std::get<std::vector<SlotRange>>(parsed));
        if (refresh_wanted_) {
          refresh_wanted_ = false;
          schedule_refresh(std::chrono::milliseconds(0));
        }
        schedule_refresh(commands_up_ && subscribers_up_ ? kRefreshPeriod : kRefreshRetry);
      });
}

void RedisCluster::apply(const std::vector<SlotRange>& ranges) {
  owner_.fill(nullptr);
  std::set<Node*> owners;
  for (const SlotRange& range : ranges) {
    Node& n = node(range.master);
    owners.insert(&n);
    for (unsigned s = range.first; s <= range.last; ++s) owner_[s] = &n;
  }
  covered_ = std::all_of(owner_.begin(), owner_.end(), [](const Node* n) { return n != nullptr; });
  std::vector<Node*> retired;
  for (auto& [name, n] : nodes_) {
    n->master = owners.contains(n.get());
    if (n->master) {
      run(*n, true, true);
    } else if (n->command_running || n->subscriber_running) {
      retired.push_back(n.get());
    }
  }
  // Stopped after this turn: stopping fails the replies they still owe, and their callbacks must
  // not run inside this one. A node that is a master again by then stays.
  if (!retired.empty()) {
    asio::post(ioc_, [this, retired] {
      for (Node* n : retired) {
        if (n->master) continue;
        n->command_running = n->subscriber_running = false;
        n->command->stop();
        n->subscriber->stop();
        for (auto& [channel, at] : subscriptions_) {
          if (at == n) at = nullptr;
        }
      }
      update_state();
    });
  }
  const std::string now = masters();
  if (now != last_masters_) {
    log_.info("Redis Cluster slot map",
              {{"masters", now}, {"covered", covered_}, {"ranges", ranges.size()}});
    last_masters_ = now;
  }
  move_subscriptions();
  update_state();
}

// ---- sharded subscriptions ----

void RedisCluster::subscribe(std::span<const std::string> channels) {
  if (channels.empty()) return;
  Node* n = owner_[key_slot(channels.front())];
  // Its subscriber down: sent later, by move_subscriptions() or, once every subscriber is back,
  // by the owner's resubscription.
  if (n != nullptr && !n->subscriber->up()) n = nullptr;
  std::vector<std::string_view> args{"SSUBSCRIBE"};
  std::size_t again = 0;
  for (const std::string& c : channels) {
    auto [it, added] = subscriptions_.try_emplace(c, n);
    // Kept while its node was lost: the owner resubscribes everything once every master is back.
    if (!added && it->second == nullptr) ++again;
    it->second = n;
    args.push_back(c);
  }
  if (n == nullptr) return;
  metrics().redis_cluster_resubscribes.inc(again);
  n->subscriber->send(args);
}

void RedisCluster::unsubscribe(std::span<const std::string> channels) {
  if (channels.empty()) return;
  Node* at = nullptr;
  std::vector<std::string_view> args{"SUNSUBSCRIBE"};
  for (const std::string& c : channels) {
    auto it = subscriptions_.find(c);
    if (it == subscriptions_.end()) continue;
    if (it->second != nullptr) at = it->second;
    subscriptions_.erase(it);
    args.push_back(c);
  }
  if (at != nullptr && args.size() > 1) at->subscriber->send(args);
}

void RedisCluster::move_subscriptions() {
  // Channels whose slot is elsewhere now (or that lost their node): subscribed on the new master,
  // one SSUBSCRIBE per slot, then dropped on the old node if it still has them. Only while every
  // master's subscriber is up, so this is a move under traffic: after a loss, the owner
  // resubscribes every channel once they are all back (the on_subscribers_up hook) and treats the
  // whole outage as one gap.
  if (!subscribers_up_) return;
  std::map<uint16_t, std::vector<std::string_view>> to_subscribe;
  std::map<Node*, std::vector<std::string_view>> to_drop;
  std::vector<std::string> moved;
  for (auto& [channel, at] : subscriptions_) {
    const uint16_t slot = key_slot(channel);
    Node* owner = owner_[slot];
    if (owner == at || owner == nullptr || !owner->subscriber->up()) continue;
    if (at != nullptr && at->subscriber->up()) to_drop[at].push_back(channel);
    at = owner;
    to_subscribe[slot].push_back(channel);
    moved.push_back(channel);
  }
  for (auto& [slot, channels] : to_subscribe) {
    metrics().redis_cluster_resubscribes.inc(channels.size());
    channels.insert(channels.begin(), "SSUBSCRIBE");
    owner_[slot]->subscriber->send(channels);
  }
  for (auto& [n, channels] : to_drop) {
    channels.insert(channels.begin(), "SUNSUBSCRIBE");
    n->subscriber->send(channels);
  }
  if (moved.empty()) return;
  log_.info("Redis Cluster: room channels subscribed on their slots' new masters",
            {{"slots", to_subscribe.size()}, {"channels", moved.size()}});
  hooks_.on_moved(moved);
}

void RedisCluster::on_unsubscribed(Node& n, std::string_view channel) {
  auto it = subscriptions_.find(std::string(channel));
  // Ours to keep, and dropped by the node we had it on: its slot moved (Redis sends this when a
  // slot changes owner). Subscribed again once the refresh says where.
  if (it == subscriptions_.end() || it->second != &n) return;
  it->second = nullptr;
  schedule_refresh(std::chrono::milliseconds(0));
}

void RedisCluster::on_subscriber_down(Node& n) {
  for (auto& [channel, at] : subscriptions_) {
    if (at == &n) at = nullptr;
  }
  schedule_refresh(std::chrono::milliseconds(0));
  update_state();
}

void RedisCluster::update_state() {
  bool commands = covered_;
  bool subscribers = covered_;
  for (const auto& [name, n] : nodes_) {
    if (!n->master) continue;
    commands = commands && n->command->up();
    subscribers = subscribers && n->subscriber->up();
  }
  // When the subscribers come back, on_subscribers_up resubscribes every channel (each once: not
  // move_subscriptions() as well). Hooks last: they call back into this object.
  const bool commands_changed = commands != commands_up_;
  const bool subscribers_changed = subscribers != subscribers_up_;
  commands_up_ = commands;
  subscribers_up_ = subscribers;
  if (commands_changed) (commands ? hooks_.on_commands_up : hooks_.on_commands_down)();
  if (subscribers_changed) (subscribers ? hooks_.on_subscribers_up : hooks_.on_subscribers_down)();
}

}  // namespace sigsrv

namespace sigsrv {

ClusterProbe probe_cluster_once(const std::vector<HostPort>& seeds,
                                const RedisEndpoint& credentials,
                                std::shared_ptr<asio::ssl::context> tls,
                                std::chrono::milliseconds timeout) {
  // Over the same exchange as the sentinels' questions, so TLS and ACL users work here as they do
  // on the bus's own connections.
  asio::io_context ioc(1);
  const RedisCredentials how{credentials.user, credentials.password, std::move(tls)};
  ClusterProbe out;
  for (const HostPort& seed : seeds) {
    std::optional<ClusterProbe> answer;
    auto ex = std::make_shared<RedisExchange>(ioc, [&](const RedisExchange::Outcome& o) {
      using Kind = RedisExchange::Outcome::Kind;
      const std::string node = to_string(seed);
      if (o.kind == Kind::kAuthFailed) {
        answer = ClusterProbe{ClusterProbe::Kind::kAuthFailed, node, o.detail};
      } else if (o.kind == Kind::kFailed) {
        out.detail = o.detail;
      } else if (o.reply->type == REDIS_REPLY_ERROR) {
        answer =
            ClusterProbe{ClusterProbe::Kind::kNotCluster, node, std::string(reply_text(o.reply))};
      } else {
        answer = ClusterProbe{ClusterProbe::Kind::kCluster, node, {}};
      }
    });
    ex->run(seed, how, {"CLUSTER", "SLOTS"}, timeout);
    ex.reset();
    ioc.restart();
    ioc.run();
    if (answer) return *answer;
  }
  return out;
}

}  // namespace sigsrv
