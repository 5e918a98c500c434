#!/usr/bin/python3
"""Runs every signal-bench scenario of the performance page and writes the results as JSON.

Called by bench/run.sh once the binaries are built; standard library only. Every server and
redis-server it starts is stopped on exit (normal, error, Ctrl-C, SIGTERM), and dies with this
process if it is killed outright (PR_SET_PDEATHSIG).

One JSON file per scenario plus results.json (all of them, and the machine) go to --out.
"""
import argparse
import ctypes
import datetime
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The layout: the server on one core, signal-bench on the other.
SERVER_CPU = "0"
BENCH_CPU = "1"
# With Redis there is no third core: redis-server shares core 1 with signal-bench, so that the
# server keeps core 0 to itself as in the embedded runs (two instances share core 0).
REDIS_CPU = "1"
ALL_CPUS = "0,1"

# Limits far above the offered load: the bench measures the relay, not the limiter.
SERVER_ENV = {
    "RATE_LIMIT_MESSAGES_PER_10S": "100000000",
    "RATE_LIMIT_IP_MSGS_PER_10S": "1000000000",
    "RATE_LIMIT_ROOM_MSGS_PER_10S": "100000000",
    "RATE_LIMIT_CONN_PER_10S": "100000000",
    "LOG_LEVEL": "warn",
    "HOST": "127.0.0.1",
    "DRAIN_TIMEOUT_MS": "1000",
}

# Scheduling priority of every process the run starts (--nice); 0 leaves them as they are.
NICE = 0
# Real-time priority (--rt, SCHED_FIFO) of every process the run starts; 0: none.
RT = 0


def with_nice(argv):
    if RT:
        argv = ["chrt", "-f", str(RT)] + argv
    return (["nice", "-n", str(NICE)] + argv) if NICE else argv


ROOMS = 500
SIZE = 300
LATENCY_RATES = [1000, 2000, 5000, 10000, 20000, 50000]
BUDGET_RATE = 10000  # the rate the p99 budget is set at


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ machine readings

def read_loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def read_cpu_ticks():
    """Per-CPU (busy, total, steal) jiffies from /proc/stat, plus the sum under 'all'."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            name, *vals = line.split()
            v = [int(x) for x in vals[:8]]  # user nice system idle iowait irq softirq steal
            idle = v[3] + v[4]
            total = sum(v)
            out["all" if name == "cpu" else name] = (total - idle - v[7], total, v[7])
    return out


def proc_cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            content = f.read()
        fields = content[content.rfind(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def proc_rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def machine_info():
    info = {"hostname_kind": "shared KVM guest", "kernel": platform.release()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            value = value.strip()
            if key == "Model name":
                info["cpu_model"] = value
            elif key == "CPU(s)":
                info["cpus"] = int(value)
            elif key == "Hypervisor vendor":
                info["hypervisor"] = value
            elif key == "Thread(s) per core":
                info["threads_per_core"] = int(value)
    except (OSError, subprocess.CalledProcessError):
        pass
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    info["nofile_limit"] = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    info["loadavg_start"] = read_loadavg()
    for cmd, key in ((["g++", "--version"], "compiler"), (["redis-server", "--version"], "redis")):
        try:
            info[key] = subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
        except (OSError, IndexError):
            pass
    try:
        info["git_commit"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                            capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    return info


# ------------------------------------------------------------------ processes

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port():
    return free_ports(1)[0]


def free_ports(n):
    """n distinct free ports: all held open until every one is picked, so that processes started
    one after another cannot be handed a port another one is about to bind."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Processes:
    """Servers and redis-servers started by this run; stop_all() ends every one of them."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.procs = []  # (name, Popen, logfile)
        self.workdir = tempfile.mkdtemp(prefix="signal-bench-")  # no .env to pick up here

    def spawn(self, name, argv, env):
        logf = open(os.path.join(self.log_dir, f"{name}.log"), "ab")
        p = subprocess.Popen(with_nice(argv), env=env, cwd=self.workdir, stdout=logf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True,
                             preexec_fn=_die_with_parent)
        self.procs.append((name, p, logf))
        return p

    def stop(self, p):
        for i, (name, q, logf) in enumerate(self.procs):
            if q is p:
                if q.poll() is None:
                    q.send_signal(signal.SIGTERM)
                    try:
                        q.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        q.kill()
                        q.wait()
                logf.close()
                del self.procs[i]
                return

    def stop_all(self):
        for _, p, _ in list(self.procs):
            self.stop(p)


def base_env():
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TZ") if k in os.environ}
    return env


def wait_http_ok(port, path, proc, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process on port {port} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"port {port} not ready ({path}) after {timeout}s")


class Server:
    def __init__(self, procs, name, threads=1, redis_port=None, cpus=SERVER_CPU, extra_env=None):
        self.port = free_port()
        env = base_env()
        env.update(SERVER_ENV)
        env.update(extra_env or {})
        env.update({"THREADS": str(threads), "WS_PORT": str(self.port)})
        if redis_port:
            env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}"
        self.settings = {k: env[k] for k in sorted(env) if k not in base_env()}
        self.cpus = cpus
        self.procs = procs
        self.proc = procs.spawn(name, ["taskset", "-c", cpus, procs.binaries["server"]], env)
        wait_http_ok(self.port, "/readyz", self.proc)
        # taskset execs the server, so the pid is the server's
        self.pid = self.proc.pid
        self.url = f"ws://127.0.0.1:{self.port}"

    def stop(self):
        self.procs.stop(self.proc)


class Redis:
    def __init__(self, procs, name, cpus=REDIS_CPU):
        self.port = free_port()
        self.procs = procs
        self.proc = procs.spawn(name, ["taskset", "-c", cpus, "redis-server", "--port", str(self.port),
                                       "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                                base_env())
        self.pid = self.proc.pid
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self):
        self.procs.stop(self.proc)


# ------------------------------------------------------------------ one bench invocation

def run_bench(procs, args, watch_pids, pass_pids=(), cpus=BENCH_CPU, timeout=400, log_name="bench"):
    """Runs signal-bench once; returns its JSON plus the conditions it ran under."""
    argv = ["taskset", "-c", cpus, procs.binaries["bench"]] + [str(a) for a in args]
    for pid in pass_pids:
        argv += ["--pid", str(pid)]
    load_before = read_loadavg()
    ticks_before = read_cpu_ticks()
    ours_before = [proc_cpu_seconds(p) for p in watch_pids]
    child_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    with open(os.path.join(procs.log_dir, f"{log_name}.log"), "ab") as errf:
        errf.write(("$ " + " ".join(argv) + "\n").encode())
        errf.flush()
        try:
            cp = subprocess.run(with_nice(argv), stdout=subprocess.PIPE, stderr=errf, timeout=timeout,
                                preexec_fn=_die_with_parent)
            stdout, code = cp.stdout.decode(errors="replace"), cp.returncode
        except subprocess.TimeoutExpired as e:
            stdout, code = (e.stdout or b"").decode(errors="replace"), "timeout"
    wall = time.time() - t0
    child_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours_after = [proc_cpu_seconds(p) for p in watch_pids]
    ticks_after = read_cpu_ticks()
    result = None
    lines = [line for line in stdout.splitlines() if line.strip()]
    if lines:
        try:
            result = json.loads(lines[-1])
        except json.JSONDecodeError:
            result = None

    # How busy the machine was while the bench ran, and how much of that was not this run:
    # the rest is other work sharing these cores.
    def pct(cpu):
        busy = ticks_after[cpu][0] - ticks_before[cpu][0]
        total = ticks_after[cpu][1] - ticks_before[cpu][1]
        steal = ticks_after[cpu][2] - ticks_before[cpu][2]
        return (100.0 * busy / total if total else 0.0, 100.0 * steal / total if total else 0.0)

    ncpu = len([k for k in ticks_after if k != "all"])
    machine_busy, steal = pct("all")
    ours = (child_after.ru_utime + child_after.ru_stime) - (child_before.ru_utime + child_before.ru_stime)
    for b, a in zip(ours_before, ours_after):
        if b is not None and a is not None:
            ours += a - b
    ours_pct = 100.0 * ours / wall / ncpu if wall > 0 else 0.0
    conditions = {
        "wall_s": round(wall, 2),
        "loadavg_before": load_before,
        "loadavg_after": read_loadavg(),
        "machine_busy_pct": round(machine_busy, 1),  # of all cores
        "this_run_pct": round(min(ours_pct, machine_busy), 1),
        "others_pct": round(max(0.0, machine_busy - ours_pct), 1),
        "steal_pct": round(steal, 1),
        "per_cpu_busy_pct": {k: round(pct(k)[0], 1) for k in sorted(ticks_after) if k != "all"},
    }
    display = " ".join(with_nice(["taskset", "-c", cpus, "signal-bench"] + [str(a) for a in args] +
                                 ["--pid", "<server pid>"] * len(pass_pids)))
    return {"command": display, "exit_code": code, "ok": code == 0 and result is not None,
            "result": result, "conditions": conditions}


def median_of(runs, key_fn):
    values = [key_fn(r["result"]) for r in runs if r["result"] is not None]
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def relay_summary(runs):
    ok_results = [r["result"] for r in runs if r["result"]]
    return {
        "delivered_per_s": median_of(runs, lambda r: r.get("delivered_per_s")),
        "p50_us": median_of(runs, lambda r: r["latency_us"]["p50"]),
        "p99_us": median_of(runs, lambda r: r["latency_us"]["p99"]),
        "p999_us": median_of(runs, lambda r: r["latency_us"]["p999"]),
        "server_cpu_pct": median_of(
            runs, lambda r: sum(s["cpu_percent"] for s in r["server"]) if r.get("server") else None),
        "lost": sum(r["lost"] for r in ok_results) if ok_results else None,
        "duplicated": sum(r["duplicated"] for r in ok_results) if ok_results else None,
        "reordered": sum(r["reordered"] for r in ok_results) if ok_results else None,
        "closed": sum(sum(r["closed"].values()) for r in ok_results) if ok_results else None,
        "runs_ok": sum(1 for r in runs if r["ok"]),
        "runs": len(runs),
        **conditions_summary(runs),
    }


def conditions_summary(runs):
    """Median load average (1 min) at the start of the runs and CPU used by other processes."""
    return {
        "loadavg_1m": {"median": statistics.median(r["conditions"]["loadavg_before"][0] for r in runs)},
        "others_pct": {"median": statistics.median(r["conditions"]["others_pct"] for r in runs)},
    }


# ------------------------------------------------------------------ scenarios

def scrape_gauge(port, name):
    """One unlabelled sample from the server's /metrics (0 when absent or unreachable)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0


class Scraper:
    """GET /metrics every `period` seconds on a thread of its own, as Prometheus would; keeps
    each answer's wall time in seconds."""

    def __init__(self, port, period):
        import threading
        self.port, self.period, self.times = port, period, []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.done.is_set():
            t0 = time.time()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                    r.read()
                self.times.append(time.time() - t0)
            except OSError:
                pass
            self.done.wait(max(0.0, self.period - (time.time() - t0)))

    def stop(self):
        self.done.set()
        self.thread.join()
        return self.times



class Runner:
    def __init__(self, args, procs):
        self.a = args
        self.procs = procs
        q = args.quick
        self.repeats = 1 if q else args.repeats
        self.relay_time = ["--duration", 2 if q else 8, "--warmup", 0.5 if q else 2]
        self.sweep_time = ["--duration", 1.5 if q else 6, "--warmup", 0.5 if q else 1]
        self.connect_conns = 2000 if q else 20000
        # Each held connection takes a descriptor in the server and one in signal-bench; leave
        # 2,000 of the hard limit for everything else (18,000 here, where the limit is 20,000).
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        default_hold = max(1000, (hard - 2000) // 1000 * 1000) if hard != resource.RLIM_INFINITY else 18000
        self.hold_conns = args.hold_conns or (1000 if q else default_hold)
        self.hold_seconds = 1 if q else 5
        # Admission under attack: the 10,000 half-open requests and 2,000 members that
        # never read; each needs a descriptor in the server and one in signal-bench (with their
        # partners, 14,000 of the 20,000 here).
        self.attack = {"half_open": 1000 if q else 10000, "stuck": 200 if q else 2000,
                       "duration": 3 if q else 30}

    def relay_args(self, url, rate, window=1, url_b=None, timing=None, bench_threads=1):
        args = ["relay", "--url", url]
        if url_b:
            args += ["--url-b", url_b]
        args += ["--rooms", ROOMS, "--size", SIZE, "--rate", rate]
        if rate == 0:
            args += ["--window", window]
        if bench_threads != 1:
            args += ["--threads", bench_threads]
        return args + (timing or self.relay_time)

    def relay_runs(self, servers, extra_pids, rate, window, repeats, timing=None, bench_cpus=BENCH_CPU,
                   bench_threads=1, label="relay"):
        urls = [s.url for s in servers]
        runs = []
        for i in range(repeats):
            r = run_bench(self.procs,
                          self.relay_args(urls[0], rate, window, urls[1] if len(urls) > 1 else None,
                                          timing, bench_threads),
                          [s.pid for s in servers] + extra_pids, [s.pid for s in servers],
                          cpus=bench_cpus, log_name=label)
            res = r["result"] or {}
            log(f"  {label} run {i + 1}/{repeats}: {res.get('delivered_per_s')} msg/s, "
                f"p99 {res.get('latency_us', {}).get('p99')} us, lost {res.get('lost')}, "
                f"exit {r['exit_code']}, others {r['conditions']['others_pct']}%")
            runs.append(r)
        return runs

    # Each scenario returns a dict that is written to <name>.json.

    def relay_embedded_max(self):
        s = Server(self.procs, "server-embedded", threads=1)
        try:
            runs = self.relay_runs([s], [], 0, 8, self.repeats, label="relay_embedded_max")
        finally:
            s.stop()
        return {"title": "relay, embedded bus, closed loop (window 8), THREADS=1",
                "setup": {"bus": "embedded", "instances": 1, "threads": 1, "window": 8,
                          "pinning": f"server CPU {SERVER_CPU}; signal-bench CPU {BENCH_CPU}",
                          "server_env": s.settings},
                "runs": runs, "summary": relay_summary(runs)}

    def _redis_max(self, instances, pinned):
        redis = Redis(self.procs, "redis", cpus=REDIS_CPU if pinned else ALL_CPUS)
        servers = []
        try:
            for i in range(instances):
                servers.append(Server(self.procs, f"server-redis-{i}", threads=1, redis_port=redis.port,
                                      cpus=SERVER_CPU if pinned else ALL_CPUS))
            label = f"relay_redis_{'one' if instances == 1 else 'two'}_max{'' if pinned else '_unpinned'}"
            runs = self.relay_runs(servers, [redis.pid], 0, 4, self.repeats,
                                   bench_cpus=BENCH_CPU if pinned else ALL_CPUS, label=label)
        finally:
            for s in servers:
                s.stop()
            redis.stop()
        if pinned:
            pinning = (f"server{'s' if instances > 1 else ''} CPU {SERVER_CPU}; "
                       f"redis-server and signal-bench CPU {BENCH_CPU}")
        else:
            pinning = "nothing pinned (servers, redis-server and signal-bench share both CPUs)"
        topo = "one instance" if instances == 1 else "two instances, peers split (--url-b)"
        return {"title": f"relay, Redis bus, {topo}, closed loop (window 4)"
                         f"{'' if pinned else ', unpinned'}",
                "setup": {"bus": "redis", "instances": instances, "threads": 1, "window": 4,
                          "pinned": pinned, "pinning": pinning, "server_env": servers[0].settings},
                "runs": runs, "summary": relay_summary(runs)}

    def relay_redis_one_max(self):
        return self._redis_max(1, True)

    def relay_redis_two_max(self):
        return self._redis_max(2, True)

    def relay_redis_one_max_unpinned(self):
        return self._redis_max(1, False)

    def relay_redis_two_max_unpinned(self):
        return self._redis_max(2, False)

    def _sweep(self, topology):
        redis = None
        servers = []
        extra = []
        try:
            if topology == "embedded":
                servers.append(Server(self.procs, "server-embedded", threads=1))
            else:
                redis = Redis(self.procs, "redis")
                extra = [redis.pid]
                for i in range(1 if topology == "redis_one" else 2):
                    servers.append(Server(self.procs, f"server-redis-{i}", threads=1,
                                          redis_port=redis.port))
            points = []
            for rate in LATENCY_RATES:
                # Every point is a median: single runs on the shared machine put 100 ms spikes
                # from a neighbour's compile anywhere on the curve.
                n = self.repeats
                runs = self.relay_runs(servers, extra, rate, 1, n, timing=self.sweep_time,
                                       label=f"latency_{topology}")
                points.append({"rate_offered": rate, "runs": runs, "summary": relay_summary(runs)})
        finally:
            for s in servers:
                s.stop()
            if redis:
                redis.stop()
        names = {"embedded": "embedded bus", "redis_one": "Redis bus, one instance",
                 "redis_two": "Redis bus, two instances (peers split)"}
        pinning = f"server CPU {SERVER_CPU}; signal-bench CPU {BENCH_CPU}"
        if redis:
            pinning = (f"server{'s' if len(servers) > 1 else ''} CPU {SERVER_CPU}; "
                       f"redis-server and signal-bench CPU {BENCH_CPU}")
        return {"title": f"p99 latency against offered rate, {names[topology]}",
                "setup": {"bus": "embedded" if topology == "embedded" else "redis",
                          "instances": len(servers), "threads": 1, "pinning": pinning,
                          "server_env": servers[0].settings},
                "points": points}

    def latency_embedded(self):
        return self._sweep("embedded")

    def latency_redis_one(self):
        return self._sweep("redis_one")

    def latency_redis_two(self):
        return self._sweep("redis_two")

    def connect_embedded(self):
        s = Server(self.procs, "server-connect", threads=1)
        runs = []
        try:
            for i in range(self.repeats):
                r = run_bench(self.procs, ["connect", "--url", s.url, "--conns", self.connect_conns,
                                           "--concurrency", 50], [s.pid], log_name="connect")
                res = r["result"] or {}
                log(f"  connect run {i + 1}/{self.repeats}: {res.get('handshake_join_per_s')}/s, "
                    f"failed {res.get('failed_pairs')}, exit {r['exit_code']}")
                runs.append(r)
        finally:
            s.stop()
        return {"title": "handshake + join, embedded bus, concurrency 50",
                "setup": {"bus": "embedded", "instances": 1, "threads": 1,
                          "conns": self.connect_conns, "concurrency": 50,
                          "pinning": f"server CPU {SERVER_CPU}; signal-bench CPU {BENCH_CPU}",
                          "server_env": s.settings},
                "runs": runs,
                "summary": {
                    "handshake_join_per_s": median_of(runs, lambda r: r["handshake_join_per_s"]),
                    "setup_p50_us": median_of(runs, lambda r: r["setup_us"]["p50"]),
                    "setup_p99_us": median_of(runs, lambda r: r["setup_us"]["p99"]),
                    "failed_pairs": sum(r["result"]["failed_pairs"] for r in runs if r["result"]),
                    "runs_ok": sum(1 for r in runs if r["ok"]), "runs": len(runs),
                    **conditions_summary(runs)}}

    def hold_embedded(self):
        runs = []
        for i in range(self.repeats):
            # A fresh server each time: the bench's first RSS reading is the empty process.
            s = Server(self.procs, "server-hold", threads=1)
            try:
                time.sleep(0.5)
                r = run_bench(self.procs, ["hold", "--url", s.url, "--conns", self.hold_conns,
                                           "--concurrency", 500, "--hold", self.hold_seconds,
                                           "--source-ips", "127.0.0.2-127.0.0.9"],
                              [s.pid], [s.pid], log_name="hold")
            finally:
                s.stop()
            res = r["result"] or {}
            log(f"  hold run {i + 1}/{self.repeats}: {res.get('opened')} open, "
                f"{res.get('rss_bytes_per_conn')} B/conn, exit {r['exit_code']}")
            runs.append(r)
        return {"title": f"idle connections held ({self.hold_conns}), RSS per connection",
                "setup": {"bus": "embedded", "instances": 1, "threads": 1, "conns": self.hold_conns,
                          "hold_s": self.hold_seconds,
                          "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                          "pinning": f"server CPU {SERVER_CPU}; signal-bench CPU {BENCH_CPU}",
                          "server_env": s.settings},
                "runs": runs,
                "summary": {
                    "rss_bytes_per_conn": median_of(runs, lambda r: r["rss_bytes_per_conn"]),
                    "empty_rss_kb": median_of(runs, lambda r: r["server_rss_kb_before"]),
                    "loaded_rss_kb": median_of(runs, lambda r: r["server_rss_kb_loaded"]),
                    "opened": median_of(runs, lambda r: r["opened"]),
                    "dropped": sum(r["result"]["dropped"] for r in runs if r["result"]),
                    "failed": sum(r["result"]["failed"] for r in runs if r["result"]),
                    "runs_ok": sum(1 for r in runs if r["ok"]), "runs": len(runs),
                    **conditions_summary(runs)}}

    def attack_embedded(self):
        # A fresh server per run: its first RSS reading is the empty process. Stuck members are
        # closed for backpressure at 256 KiB (rather than the default 5 MiB), so that within a
        # run each fills its queue, is closed, and comes back.
        a = self.attack
        attack_env = {"BACKPRESSURE_CLOSE_THRESHOLD_BYTES": "262144"}
        runs = []
        for i in range(self.repeats):
            s = Server(self.procs, "server-attack", threads=1, extra_env=attack_env)
            try:
                time.sleep(0.5)
                r = run_bench(self.procs, ["attack", "--url", s.url, "--half-open", a["half_open"],
                                           "--stuck", a["stuck"], "--stuck-msg-bytes", 16384,
                                           "--stuck-rate", 2, "--legit-rate", 50,
                                           "--duration", a["duration"],
                                           "--source-ips", "127.0.0.2-127.0.0.9"],
                              [s.pid], [s.pid], log_name="attack")
            finally:
                s.stop()
            res = r["result"] or {}
            log(f"  attack run {i + 1}/{self.repeats}: join p99 "
                f"{res.get('legit', {}).get('join_us', {}).get('p99')} us, peak RSS "
                f"{res.get('server', {}).get('rss_kb_peak')} KiB, exit {r['exit_code']}")
            runs.append(r)
        return {"title": f"joins under attack ({a['half_open']:,} half-open requests, "
                         f"{a['stuck']:,} members that never read)",
                "setup": {"bus": "embedded", "instances": 1, "threads": 1, **a,
                          "legit_pairs_per_s": 50, "stuck_msg_bytes": 16384, "stuck_rate": 2,
                          "pinning": f"server CPU {SERVER_CPU}; signal-bench CPU {BENCH_CPU}",
                          "server_env": s.settings},
                "runs": runs,
                "summary": {
                    "join_p50_us": median_of(runs, lambda r: r["legit"]["join_us"]["p50"]),
                    "join_p99_us": median_of(runs, lambda r: r["legit"]["join_us"]["p99"]),
                    "join_max_us": median_of(runs, lambda r: r["legit"]["join_us"]["max"]),
                    "failed_pairs": sum(r["result"]["legit"]["failed_pairs"] for r in runs
                                        if r["result"]),
                    "rss_kb_peak": median_of(runs, lambda r: r["server"]["rss_kb_peak"]),
                    "rss_bytes_per_half_open": median_of(
                        runs, lambda r: r["server"]["rss_bytes_per_half_open"]),
                    "rss_bytes_per_stuck_pair_peak": median_of(
                        runs, lambda r: r["server"]["rss_bytes_per_stuck_pair_peak"]),
                    "handshake_timeouts": median_of(runs, lambda r: r["metrics"]["handshake_timeouts"]),
                    "backpressure_closes": median_of(
                        runs, lambda r: r["metrics"]["backpressure_closes"]),
                    "runs_ok": sum(1 for r in runs if r["ok"]), "runs": len(runs),
                    **conditions_summary(runs)}}

    def relay_threads(self):
        # THREADS=1 pinned is relay_embedded_max. Pinned THREADS=2 shows the cost of two loops on
        # one core; unpinned, the server may use both cores (and shares them with the bench).
        configs = [
            ("threads2_pinned", 2, SERVER_CPU, BENCH_CPU, 1,
             f"server CPU {SERVER_CPU} (two loops on one core); signal-bench CPU {BENCH_CPU}"),
            ("threads1_unpinned", 1, ALL_CPUS, ALL_CPUS, 2,
             "nothing pinned; signal-bench with 2 threads"),
            ("threads2_unpinned", 2, ALL_CPUS, ALL_CPUS, 2,
             "nothing pinned; signal-bench with 2 threads"),
        ]
        out = {"title": "relay, embedded bus, closed loop (window 8): THREADS=1 vs THREADS=2",
               "configs": []}
        for name, threads, scpus, bcpus, bthreads, pinning in configs:
            s = Server(self.procs, f"server-{name}", threads=threads, cpus=scpus)
            try:
                runs = self.relay_runs([s], [], 0, 8, self.repeats, bench_cpus=bcpus,
                                       bench_threads=bthreads, label=f"relay_{name}")
            finally:
                s.stop()
            out["configs"].append({"name": name, "threads": threads, "pinning": pinning,
                                   "server_env": s.settings, "runs": runs,
                                   "summary": relay_summary(runs)})
        return out

    def metrics_scrape(self):
        """Relay p99 at the budget rate with many connections open, /metrics scraped every 100 ms
        or not at all, runs interleaved so that both see the same machine."""
        conns = min(15000, self.hold_conns)
        s = Server(self.procs, "server-scrape", threads=1)
        holder = None
        runs = {"quiet": [], "scraped": []}
        scrapes = []
        try:
            holder = self.procs.spawn(
                "scrape-hold",
                ["taskset", "-c", BENCH_CPU, self.procs.binaries["bench"], "hold", "--url", s.url,
                 "--conns", str(conns), "--concurrency", "500", "--hold", "3600",
                 "--source-ips", "127.0.0.2-127.0.0.9"], base_env())
            deadline = time.time() + 120
            while scrape_gauge(s.port, "cloudgaming_active_connections") < conns:
                if time.time() > deadline or holder.poll() is not None:
                    raise RuntimeError(f"signal-bench hold did not open {conns} connections")
                time.sleep(0.5)
            for i in range(self.repeats):
                for mode in ("quiet", "scraped"):
                    scraper = Scraper(s.port, 0.1) if mode == "scraped" else None
                    try:
                        r = run_bench(self.procs, self.relay_args(s.url, BUDGET_RATE),
                                      [s.pid], [s.pid], log_name=f"metrics_{mode}")
                    finally:
                        if scraper:
                            scrapes += scraper.stop()
                    res = r["result"] or {}
                    log(f"  {mode} run {i + 1}/{self.repeats}: p99 "
                        f"{res.get('latency_us', {}).get('p99')} us, lost {res.get('lost')}")
                    runs[mode].append(r)
        finally:
            if holder:
                self.procs.stop(holder)
            s.stop()
        scrapes.sort()
        pick = (lambda q: round(scrapes[min(len(scrapes) - 1, int(q * len(scrapes)))] * 1e3, 2)
                if scrapes else None)
        return {"title": f"relay p99 at {BUDGET_RATE} msg/s with {conns} connections open, "
                         "/metrics scraped every 100 ms or not",
                "setup": {"bus": "embedded", "instances": 1, "threads": 1, "held_conns": conns,
                          "rate": BUDGET_RATE, "scrape_period_ms": 100,
                          "pinning": f"server CPU {SERVER_CPU}; signal-bench (relay and hold) "
                                     f"CPU {BENCH_CPU}; the scraper unpinned",
                          "server_env": s.settings},
                "runs": runs["quiet"] + runs["scraped"],
                "summary": {"quiet": relay_summary(runs["quiet"]),
                            "scraped": relay_summary(runs["scraped"]),
                            "scrapes": len(scrapes), "scrape_ms_p50": pick(0.5),
                            "scrape_ms_p99": pick(0.99)}}


SCENARIOS = ["relay_embedded_max", "relay_redis_one_max", "relay_redis_two_max",
             "relay_redis_one_max_unpinned", "relay_redis_two_max_unpinned",
             "latency_embedded", "latency_redis_one", "latency_redis_two",
             "connect_embedded", "hold_embedded", "relay_threads", "metrics_scrape",
             "attack_embedded"]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a couple of seconds per scenario")
    ap.add_argument("--out", required=True)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--repeats", type=int, default=3, help="runs per throughput figure (median)")
    ap.add_argument("--hold-conns", type=int, default=0,
                    help="idle connections to hold (default: open-files hard limit - 2000)")
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument("--nice", type=int, default=0,
                    help="run every process under nice -n N (negative: ahead of other load)")
    ap.add_argument("--rt", type=int, default=0,
                    help="run every process under chrt -f N (SCHED_FIFO: other load never "
                         "preempts them; needs root)")
    args = ap.parse_args()

    global NICE, RT
    NICE = args.nice
    RT = args.rt
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    out = os.path.abspath(args.out)
    log_dir = os.path.join(out, "logs")
    os.makedirs(log_dir, exist_ok=True)
    procs = Processes(log_dir)
    build_dir = os.path.abspath(args.build_dir)  # processes start in a scratch directory
    procs.binaries = {"server": os.path.join(build_dir, "signal-server"),
                      "bench": os.path.join(build_dir, "signal-bench")}

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    wanted = [s for s in args.only.split(",") if s] or SCENARIOS
    unknown = [s for s in wanted if s not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    started = datetime.datetime.now(datetime.timezone.utc)
    flags = ((" --quick" if args.quick else "") + (f" --nice {NICE}" if NICE else "") +
             (f" --rt {RT}" if RT else "") +
             (f" --only {args.only}" if args.only else "") +
             (f" --hold-conns {args.hold_conns}" if args.hold_conns else "") +
             (f" --repeats {args.repeats}" if args.repeats != 3 else ""))
    combined = {"generated_by": "bench/run.sh" + flags,
                "started": started.isoformat(timespec="seconds"),
                "quick": args.quick, "nice": NICE, "rt": RT, "machine": machine_info(),
                "workload": {"rooms": ROOMS, "size_bytes": SIZE, "type": "candidate"},
                "scenarios": {}}
    runner = Runner(args, procs)
    try:
        for name in wanted:
            log(f"scenario {name}")
            t0 = time.time()
            data = {"scenario": name, "invocation": combined["generated_by"],
                    "run_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
            try:
                data.update(getattr(runner, name)())
            except (RuntimeError, OSError, KeyError, TypeError, ValueError) as e:
                # One scenario that cannot run (a server that does not start, say) must not cost
                # the others: record why and go on.
                log(f"scenario {name} failed: {e!r}")
                procs.stop_all()
                data["error"] = repr(e)
            data["elapsed_s"] = round(time.time() - t0, 1)
            with open(os.path.join(out, f"{name}.json"), "w") as f:
                json.dump(data, f, indent=1)
                f.write("\n")
    finally:
        procs.stop_all()
    # results.json holds every scenario file in --out: a run with --only refreshes its scenarios
    # and keeps the others' last figures (each says when it ran).
    for name in SCENARIOS:
        path = os.path.join(out, f"{name}.json")
        if os.path.exists(path):
            with open(path) as f:
                combined["scenarios"][name] = json.load(f)
    combined["machine"]["loadavg_end"] = read_loadavg()
    combined["elapsed_s"] = round(
        (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(), 1)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(combined, f, indent=1)
        f.write("\n")
    log(f"done in {combined['elapsed_s']} s; results in {out}")


if __name__ == "__main__":
    main()
