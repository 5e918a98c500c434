#!/usr/bin/python3
"""Event loops against cores: relay and join throughput, idle connections held, for THREADS=L.

Called by bench/multicore.sh once the binaries are built; standard library only, and the
processes, pinning and measurements are bench/run.py's (imported, not copied). For each L in
1, 2, 4, 8, 16 that is at most the machine's core count:

  - the server runs with THREADS=L pinned to cores 0..L-1, signal-bench (with one thread per
    core) on the cores left; where none are left (L = cores) the two share every core, and the
    results say so: the figure is then a lower bound;
  - relay_embedded: closed-loop relay (window 8), embedded bus, --repeats runs, median;
  - connect: handshake + join pairs (signal-bench connect), --repeats runs, median;
  - hold: --hold-conns idle connections (default 100,000, less where the open-files limit is
    lower) from 127.0.0.2-127.0.0.9, RSS per connection, and how many connections each loop owns;
  - relay_redis: closed-loop relay (window 4) over the Redis bus, one instance, one run, when
    redis-server is installed (redis-server gets a core of its own where one is left).

Every step has a timeout, and a step that would start after --budget-s is skipped (and listed as
such), so that an unattended run ends in time. Results: multicore.json and summary.md in --out,
server and bench logs in --out/logs.
"""
import argparse
import datetime
import json
import os
import resource
import shutil
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as rb  # noqa: E402  (bench/run.py: processes, servers, one bench invocation)

LOOPS = [1, 2, 4, 8, 16]
ROOMS = 500
SIZE = 300
HOLD_IPS = "127.0.0.2-127.0.0.9"  # 8 source addresses: ~28,000 ephemeral ports each
# A client that uses this share of its cores or more may be what limits the figure.
CLIENT_BUSY = 0.85


def cpulist(cpus):
    return ",".join(str(c) for c in cpus)


def layout(loops, ncpu, want_redis=False):
    """Cores for the server, redis-server and signal-bench with `loops` event loops."""
    server = list(range(loops))
    rest = list(range(loops, ncpu))
    redis = None
    if want_redis:
        if len(rest) >= 2:
            redis, rest = [rest[0]], rest[1:]
        else:
            redis = rest or list(range(ncpu))
    shared = not rest
    bench = rest if rest else list(range(ncpu))
    threads = len(rest) if rest else max(1, ncpu // 2)
    text = f"server CPU {cpulist(server)}"
    if redis:
        text += f"; redis-server CPU {cpulist(redis)}"
    text += f"; signal-bench CPU {cpulist(bench)} ({threads} thread{'s' if threads > 1 else ''})"
    if shared:
        text += " - shared with the server"
    return {"server": cpulist(server), "bench": cpulist(bench), "redis": cpulist(redis) if redis else None,
            "bench_threads": threads, "bench_cores": len(bench), "shared": shared, "text": text}


def children_cpu():
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def bench_once(procs, args, server, lay, timeout, log_name):
    """One signal-bench run; adds the client's own CPU use (cores busy) to the result."""
    c0 = children_cpu()
    r = rb.run_bench(procs, args, [server.pid], [server.pid], cpus=lay["bench"], timeout=timeout,
                     log_name=log_name)
    wall = r["conditions"]["wall_s"] or 1
    r["client_cores_busy"] = round((children_cpu() - c0) / wall, 2)
    return r


def client_note(runs, lay):
    """Why the client may have set the figure rather than the server, or None."""
    notes = []
    busy = [r.get("client_cores_busy", 0) for r in runs]
    if busy and max(busy) >= CLIENT_BUSY * lay["bench_threads"]:
        notes.append(f"signal-bench used {max(busy):.2f} of its {lay['bench_threads']} thread(s): "
                     "the client may be the bottleneck")
    if lay["shared"]:
        notes.append("no core left for signal-bench: it shares the server's cores (lower bound)")
    return "; ".join(notes) or None


def socket_loops(pid, port):
    """{(client address, client port): event loop} for the TCP connections on the server's `port`.

    Each loop has an io_context and so an epoll instance of its own; /proc/PID/fdinfo of an epoll
    descriptor lists the descriptors registered with it (tfd:), which says which loop a socket
    belongs to, from outside the server. A loop is named by its epoll descriptor's number.
    """
    by_inode = {}  # socket inode -> (client address as /proc writes it, client port)
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] == "01":
                        addr, cport = parts[2].rsplit(":", 1)
                        by_inode[parts[9]] = (addr, int(cport, 16))
        except OSError:
            pass
    fd_port, epoll_fds = {}, []
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return None
    for name in names:
        try:
            link = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in by_inode:
            fd_port[int(name)] = by_inode[link[8:-1]]
        elif link == "anon_inode:[eventpoll]":
            epoll_fds.append(name)
    loops = {}
    for e in epoll_fds:
        try:
            with open(f"/proc/{pid}/fdinfo/{e}") as f:
                for line in f:
                    if line.startswith("tfd:"):
                        fd = int(line.split()[1])
                        if fd in fd_port:
                            loops[fd_port[fd]] = int(e)
        except OSError:
            continue
    return loops


def loop_connections(pid, port):
    """How many of the connections on `port` each event loop owns, largest first."""
    loops = socket_loops(pid, port)
    if loops is None:
        return None
    counts = {}
    for loop in loops.values():
        counts[loop] = counts.get(loop, 0) + 1
    return sorted(counts.values(), reverse=True)


class Multicore:
    def __init__(self, args, procs, ncpu):
        self.a = args
        self.procs = procs
        self.ncpu = ncpu
        self.deadline = time.time() + args.budget_s
        q = args.quick
        self.repeats = 1 if q else args.repeats
        self.relay_time = ["--duration", 2 if q else 6, "--warmup", 0.5 if q else 1]
        self.connect_conns = 2000 if q else 20000
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        # One descriptor per connection in the server and one in signal-bench (separate limits);
        # 2,000 left for everything else.
        room = (soft - 2000) // 1000 * 1000 if soft != resource.RLIM_INFINITY else 100000
        wanted = 2000 if q else args.hold_conns
        self.hold_conns = max(1000, min(wanted, room))
        self.hold_limited = self.hold_conns < wanted
        self.hold_seconds = 1 if q else 5
        self.redis = shutil.which("redis-server") is not None and not args.no_redis
        self.skipped = []

    def time_left(self, need, what):
        if time.time() + need > self.deadline:
            self.skipped.append(what)
            rb.log(f"  skipped {what}: the --budget-s would be exceeded")
            return False
        return True

    def relay_args(self, url, window, threads):
        return ["relay", "--url", url, "--rooms", ROOMS, "--size", SIZE, "--rate", 0,
                "--window", window, "--threads", threads] + self.relay_time

    def relay(self, loops, redis):
        lay = layout(loops, self.ncpu, want_redis=redis)
        name = "relay_redis" if redis else "relay_embedded"
        n = 1 if redis else self.repeats
        if not self.time_left(n * 15 + 5, f"{name} L={loops}"):
            return None
        r_proc = rb.Redis(self.procs, "redis", cpus=lay["redis"]) if redis else None
        s = None
        runs = []
        try:
            s = rb.Server(self.procs, f"server-{name}-{loops}", threads=loops,
                          redis_port=r_proc.port if r_proc else None, cpus=lay["server"])
            for i in range(n):
                r = bench_once(self.procs, self.relay_args(s.url, 4 if redis else 8, lay["bench_threads"]),
                               s, lay, 120, f"{name}-{loops}")
                res = r["result"] or {}
                rb.log(f"  {name} L={loops} run {i + 1}/{n}: {res.get('delivered_per_s')} msg/s, "
                       f"server CPU {sum(x['cpu_percent'] for x in res.get('server', []))}%, "
                       f"client {r['client_cores_busy']} cores, exit {r['exit_code']}")
                runs.append(r)
        finally:
            if s:
                s.stop()
            if r_proc:
                r_proc.stop()
        return {"loops": loops, "bus": "redis" if redis else "embedded", "window": 4 if redis else 8,
                "pinning": lay["text"], "layout": lay, "server_env": s.settings, "runs": runs,
                "summary": rb.relay_summary(runs), "client_note": client_note(runs, lay)}

    def connect(self, loops):
        lay = layout(loops, self.ncpu)
        if not self.time_left(self.repeats * 20 + 5, f"connect L={loops}"):
            return None
        conc = 50 * loops  # the 1-core page's concurrency, per loop
        s = rb.Server(self.procs, f"server-connect-{loops}", threads=loops, cpus=lay["server"])
        runs = []
        try:
            for i in range(self.repeats):
                r = bench_once(self.procs, ["connect", "--url", s.url, "--conns", self.connect_conns,
                                            "--concurrency", conc, "--threads", lay["bench_threads"]],
                               s, lay, 150, f"connect-{loops}")
                res = r["result"] or {}
                rb.log(f"  connect L={loops} run {i + 1}/{self.repeats}: "
                       f"{res.get('handshake_join_per_s')}/s, failed {res.get('failed_pairs')}, "
                       f"client {r['client_cores_busy']} cores, exit {r['exit_code']}")
                runs.append(r)
        finally:
            s.stop()
        return {"loops": loops, "conns": self.connect_conns, "concurrency": conc,
                "pinning": lay["text"], "layout": lay, "server_env": s.settings, "runs": runs,
                "summary": {
                    "handshake_join_per_s": rb.median_of(runs, lambda r: r["handshake_join_per_s"]),
                    "setup_p99_us": rb.median_of(runs, lambda r: r["setup_us"]["p99"]),
                    "failed_pairs": sum(r["result"]["failed_pairs"] for r in runs if r["result"]),
                    "runs_ok": sum(1 for r in runs if r["ok"]), "runs": len(runs),
                    **rb.conditions_summary(runs)},
                "client_note": client_note(runs, lay)}

    def hold(self, loops):
        lay = layout(loops, self.ncpu)
        if not self.time_left(60, f"hold L={loops}"):
            return None
        s = rb.Server(self.procs, f"server-hold-{loops}", threads=loops, cpus=lay["server"])
        result = {}
        per_loop = None
        try:
            time.sleep(0.5)
            args = ["hold", "--url", s.url, "--conns", self.hold_conns,
                    "--concurrency", min(2000, 500 * lay["bench_threads"]), "--hold", self.hold_seconds,
                    "--source-ips", HOLD_IPS, "--threads", lay["bench_threads"]]
            t = threading.Thread(daemon=True, target=lambda: result.update(
                r=bench_once(self.procs, args, s, lay, 240, f"hold-{loops}")))
            t.start()
            # While they are held: which loop owns how many of them.
            while t.is_alive():
                if rb.scrape_gauge(s.port, "cloudgaming_active_connections") >= self.hold_conns:
                    per_loop = loop_connections(s.pid, s.port)
                    break
                time.sleep(0.5)
            t.join()
        finally:
            s.stop()
        r = result.get("r")
        res = (r or {}).get("result") or {}
        rb.log(f"  hold L={loops}: {res.get('opened')} open, {res.get('rss_bytes_per_conn')} B/conn, "
               f"per loop {per_loop}, exit {r and r['exit_code']}")
        return {"loops": loops, "conns": self.hold_conns, "hold_s": self.hold_seconds,
                "source_ips": HOLD_IPS, "limited_by_nofile": self.hold_limited,
                "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                "pinning": lay["text"], "layout": lay, "server_env": s.settings, "run": r,
                "conns_per_loop": per_loop,
                "summary": {"opened": res.get("opened"), "failed": res.get("failed"),
                            "dropped": res.get("dropped"),
                            "rss_bytes_per_conn": res.get("rss_bytes_per_conn"),
                            "empty_rss_kb": res.get("server_rss_kb_before"),
                            "loaded_rss_kb": res.get("server_rss_kb_loaded")}}


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, dict):
        v = v.get("median")
        if v is None:
            return "-"
    return f"{v:,.0f}{unit}"


def summary_md(doc):
    m = doc["machine"]
    lines = [f"# Event loops against cores ({doc['started']})", "",
             f"Command: `{doc['command']}`  ",
             f"Machine: {m.get('cpus')} CPUs ({m.get('cpu_model')}), {m.get('memory_gib')} GiB, "
             f"kernel {m.get('kernel')}, commit {m.get('git_commit')}; load average at start "
             f"{m['loadavg_start']}, at end {m.get('loadavg_end')}; open files {m['nofile_limit']}.  ",
             f"Loops measured: {', '.join(str(x) for x in doc['loops'])}"
             + (f" (loops above {m.get('cpus')} need more cores)" if doc["loops"][-1] < LOOPS[-1] else "")
             + f"; {doc['elapsed_s']} s in all.", ""]
    lines += ["| loops | relay, embedded (msg/s) | per loop | relay, Redis bus (msg/s) | "
              "handshake + join (/s) | join p99 (us) | held idle | RSS/conn (B) | conns per loop | "
              "others' CPU |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for L in doc["loops"]:
        st = doc["steps"].get(str(L), {})
        for k, step in st.items():
            if "error" in step:
                notes.append(f"- L={L} {k} failed: {step['error']}")
        re_, rr, co, ho = (st.get(k) if "error" not in st.get(k, {"error": 1}) else None
                           for k in ("relay_embedded", "relay_redis", "connect", "hold"))
        rate = re_ and re_["summary"]["delivered_per_s"] and re_["summary"]["delivered_per_s"]["median"]
        others = [r["conditions"]["others_pct"] for step in (re_, co, rr) if step
                  for r in step["runs"]]
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            L, fmt(re_ and re_["summary"]["delivered_per_s"]), fmt(rate / L if rate else None),
            fmt(rr and rr["summary"]["delivered_per_s"]),
            fmt(co and co["summary"]["handshake_join_per_s"]),
            fmt(co and co["summary"]["setup_p99_us"]),
            fmt(ho and ho["summary"]["opened"]), fmt(ho and ho["summary"]["rss_bytes_per_conn"]),
            " / ".join(str(x) for x in (ho and ho.get("conns_per_loop")) or []) or "-",
            f"{max(others):.0f}%" if others else "-"))
        for k, step in (("relay_embedded", re_), ("relay_redis", rr), ("connect", co)):
            if step and step.get("client_note"):
                notes.append(f"- L={L} {k}: {step['client_note']}")
        if ho and ho.get("limited_by_nofile"):
            notes.append(f"- L={L} hold: {ho['conns']:,} connections, not 100,000: the open-files "
                         f"limit is {ho['nofile_limit']:,} (raise it as root, see bench/multicore.sh)")
    lines += ["", "Others' CPU: the most, over the relay and connect runs, of the machine's CPU that "
              "processes other than this run's used (other work sharing the cores).", "", "Pinning:", ""]
    for L in doc["loops"]:
        st = doc["steps"].get(str(L), {})
        for k in ("relay_embedded", "relay_redis", "connect", "hold"):
            if st.get(k) and "pinning" in st[k]:
                lines.append(f"- L={L} {k}: {st[k]['pinning']}")
    if notes or doc["skipped"]:
        lines += ["", "Notes:", ""] + notes
        lines += [f"- skipped (time budget): {s}" for s in doc["skipped"]]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--loops", default="", help="comma-separated loop counts (default: 1,2,4,8,16 up to the cores)")
    ap.add_argument("--repeats", type=int, default=3, help="relay and connect runs per loop count (median)")
    ap.add_argument("--hold-conns", type=int, default=100000)
    ap.add_argument("--budget-s", type=int, default=540, help="start no step after this many seconds")
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--quick", action="store_true", help="seconds per step, to check the script works")
    ap.add_argument("--nice", type=int, default=0,
                    help="run every process under nice -n N (negative: ahead of other load; root)")
    ap.add_argument("--rt", type=int, default=0,
                    help="run every process under chrt -f N (SCHED_FIFO: other load, whatever its "
                         "session or group, never preempts them; root)")
    ap.add_argument("--command", default="bench/multicore.py", help="as invoked, for the summary")
    args = ap.parse_args()

    rb.NICE = args.nice
    rb.RT = args.rt
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ncpu = len(os.sched_getaffinity(0))
    loops = [int(x) for x in args.loops.split(",") if x] or [L for L in LOOPS if L <= ncpu]
    if any(L > ncpu for L in loops):
        sys.exit(f"more loops than the {ncpu} cores at hand: {loops}")
    out = os.path.abspath(args.out)
    log_dir = os.path.join(out, "logs")
    os.makedirs(log_dir, exist_ok=True)
    procs = rb.Processes(log_dir)
    build_dir = os.path.abspath(args.build_dir)
    procs.binaries = {"server": os.path.join(build_dir, "signal-server"),
                      "bench": os.path.join(build_dir, "signal-bench")}

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    started = datetime.datetime.now(datetime.timezone.utc)
    mc = Multicore(args, procs, ncpu)
    doc = {"command": args.command, "started": started.isoformat(timespec="seconds"),
           "machine": rb.machine_info(), "nice": args.nice, "rt": args.rt, "loops": loops, "repeats": mc.repeats, "quick": args.quick,
           "workload": {"rooms": ROOMS, "size_bytes": SIZE, "type": "candidate"},
           "hold_conns": mc.hold_conns, "steps": {}, "skipped": mc.skipped}
    doc["machine"].pop("hostname_kind", None)  # run.py's label for the 2-core machine
    rb.log(f"{ncpu} cores; loops {loops}; hold {mc.hold_conns:,} connections"
           f"{' (open-files limit)' if mc.hold_limited else ''}; redis {'yes' if mc.redis else 'no'}; "
           f"budget {args.budget_s} s")

    def write():
        doc["machine"]["loadavg_end"] = rb.read_loadavg()
        doc["elapsed_s"] = round((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(), 1)
        with open(os.path.join(out, "multicore.json"), "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        with open(os.path.join(out, "summary.md"), "w") as f:
            f.write(summary_md(doc))

    try:
        for L in loops:
            steps = doc["steps"].setdefault(str(L), {})
            for name, fn in (("relay_embedded", lambda: mc.relay(L, False)),
                             ("connect", lambda: mc.connect(L)),
                             ("hold", lambda: mc.hold(L)),
                             ("relay_redis", lambda: mc.relay(L, True) if mc.redis else None)):
                rb.log(f"L={L} {name}")
                try:
                    data = fn()
                except (RuntimeError, OSError, KeyError, TypeError, ValueError) as e:
                    rb.log(f"L={L} {name} failed: {e!r}")
                    procs.stop_all()
                    data = {"error": repr(e)}
                if data is not None:
                    steps[name] = data
                write()
    finally:
        procs.stop_all()
        write()
    rb.log(f"done in {doc['elapsed_s']} s; {out}/summary.md")
    sys.stdout.write(summary_md(doc))
    # Results are written either way; a failed step makes the exit status say so.
    if any("error" in step for steps in doc["steps"].values() for step in steps.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
