#!/usr/bin/python3
"""What a room pays when its two members live on different event loops (THREADS=2).

Connections go to the loops in turn as they are accepted. Before 2026-12-01 nothing moved them
after that, so in a relay run some rooms had both members on one loop and the others were split
(each message then crosses from the sender's loop to the receiver's: a post and a wake-up); now
an upgrade moves to its room's loop (plain TCP), and the split share should read 0 (run it with
--build-dir of an older build to see the split rooms). This runs the relay against a THREADS=2
server, reads which loop owns each connection from /proc (bench/multicore.py socket_loops) while
it runs, and compares, within the same run, the rooms whose members share a loop with the split
ones: messages per second per room (closed loop: a room's rate is its window over its round
trip) and mean latency. Several runs, closed loop (window 8) and open loop at --rate.

Rates per room within a run cannot show what a hop costs in CPU (every room shares both loops'
queues), so the closed-loop runs are also set against the placement a fix would give at best:
two THREADS=1 servers, one per core, each with half the rooms (every room on one loop, nothing
shared between the loops), driven by two signal-bench processes at once. Server CPU per message
delivered, in microseconds, is the figure to compare.

  bench/cross_loop.py --build-dir build/bench [--out DIR] [--runs 3] [--server-cpus 0,1]
                      [--bench-cpus 0,1] [--rate 20000] [--rt N]

Writes cross_loop.json to --out and prints a table. Needs the signal-bench --rooms-out option.
"""
import argparse
import json
import os
import resource
import signal
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import multicore as mc  # noqa: E402
import run as rb  # noqa: E402

ROOMS = 500


def one_run(procs, server, args_base, bench_cpus, rooms_path):
    loops = {}

    def watch():
        # Once every member is in (2 per room), which loop owns each of them.
        deadline = time.time() + 60
        while time.time() < deadline:
            if rb.scrape_gauge(server.port, "cloudgaming_active_connections") >= 2 * ROOMS:
                time.sleep(0.5)
                # signal-bench relays from 127.0.0.1 only: its port names a connection.
                loops.update({port: loop for (_, port), loop in
                              (mc.socket_loops(server.pid, server.port) or {}).items()})
                return
            time.sleep(0.2)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    r = rb.run_bench(procs, args_base + ["--rooms-out", rooms_path], [server.pid], [server.pid],
                     cpus=bench_cpus, timeout=120, log_name="cross_loop")
    t.join()
    res = r["result"] or {}
    seconds = res.get("duration_s") or 1
    groups = {"same": [], "split": [], "unknown": 0}
    with open(rooms_path) as f:
        for line in f:
            _, sp, rp, n, lat = line.split()
            ls, lr = loops.get(int(sp)), loops.get(int(rp))
            if ls is None or lr is None:
                groups["unknown"] += 1
                continue
            groups["same" if ls == lr else "split"].append((int(n) / seconds, int(lat) / max(1, int(n))))
    per_loop = {}
    for loop in loops.values():
        per_loop[loop] = per_loop.get(loop, 0) + 1

    def stats(rows):
        if not rows:
            return None
        return {"rooms": len(rows),
                "msgs_per_s_per_room": round(statistics.median(x[0] for x in rows), 1),
                "mean_latency_us": round(statistics.median(x[1] for x in rows), 1),
                "msgs_per_s": round(sum(x[0] for x in rows))}

    rate = res.get("delivered_per_s")
    cpu = sum(x["cpu_percent"] for x in res.get("server", []))
    return {"command": r["command"], "ok": r["ok"], "delivered_per_s": rate,
            "cpu_us_per_msg": round(cpu / 100 / rate * 1e6, 2) if rate else None,
            "p99_us": res.get("latency_us", {}).get("p99"),
            "server_cpu_pct": cpu,
            "conns_per_loop": sorted(per_loop.values(), reverse=True),
            "split_fraction": round(len(groups["split"]) / max(1, len(groups["split"]) + len(groups["same"])), 3),
            "same_loop": stats(groups["same"]), "split": stats(groups["split"]),
            "unmapped_rooms": groups["unknown"], "conditions": r["conditions"]}


def two_instances(procs, server_cpus, bench_cpus, tag):
    """Closed loop, window 8: two THREADS=1 servers, one per core, half the rooms each."""
    cpus = server_cpus.split(",")
    servers = [rb.Server(procs, f"server-single-{i}", threads=1, cpus=c) for i, c in enumerate(cpus[:2])]
    results = [None, None]
    try:
        def go(i):
            results[i] = rb.run_bench(
                procs, ["relay", "--url", servers[i].url, "--rooms", ROOMS // 2, "--size", 300,
                        "--rate", 0, "--window", 8, "--duration", 6, "--warmup", 1],
                [servers[i].pid], [servers[i].pid], cpus=bench_cpus, timeout=120,
                log_name=f"cross_loop_single_{tag}_{i}")
        ts = [threading.Thread(target=go, args=(i,), daemon=True) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        for s in servers:
            s.stop()
    res = [(r or {}).get("result") or {} for r in results]
    rate = sum(x.get("delivered_per_s") or 0 for x in res)
    cpu = sum(sum(y["cpu_percent"] for y in x.get("server", [])) for x in res)
    return {"commands": [r["command"] for r in results], "ok": all(r["ok"] for r in results),
            "delivered_per_s": rate, "server_cpu_pct": cpu,
            "cpu_us_per_msg": round(cpu / 100 / rate * 1e6, 2) if rate else None,
            "p99_us": [x.get("latency_us", {}).get("p99") for x in res],
            "conditions": [r["conditions"] for r in results]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--out", default="")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--server-cpus", default="0,1")
    ap.add_argument("--bench-cpus", default="0,1")
    ap.add_argument("--rate", type=int, default=20000, help="open-loop rate (msg/s)")
    ap.add_argument("--nice", type=int, default=0, help="as bench/run.py --nice")
    ap.add_argument("--rt", type=int, default=0, help="as bench/run.py --rt (chrt -f N)")
    args = ap.parse_args()
    rb.NICE = args.nice
    rb.RT = args.rt
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    out = os.path.abspath(args.out or tempfile.mkdtemp(prefix="cross-loop-"))
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    procs = rb.Processes(os.path.join(out, "logs"))
    bd = os.path.abspath(args.build_dir)
    procs.binaries = {"server": os.path.join(bd, "signal-server"), "bench": os.path.join(bd, "signal-bench")}

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    doc = {"command": " ".join(["bench/cross_loop.py"] + sys.argv[1:]),
           "machine": rb.machine_info(), "server_cpus": args.server_cpus, "bench_cpus": args.bench_cpus,
           "rooms": ROOMS, "modes": {}}
    modes = {"closed_window8": ["--rate", 0, "--window", 8],
             f"open_{args.rate}": ["--rate", args.rate]}
    try:
        for mode, extra in modes.items():
            runs = []
            for i in range(args.runs):
                # A fresh server per run: where the members land differs from one to the next.
                s = rb.Server(procs, "server-cross-loop", threads=2, cpus=args.server_cpus)
                try:
                    base = ["relay", "--url", s.url, "--rooms", ROOMS, "--size", 300] + extra + \
                           ["--threads", 2, "--duration", 6, "--warmup", 1]
                    run = one_run(procs, s, base, args.bench_cpus, os.path.join(out, f"rooms-{mode}-{i}.txt"))
                finally:
                    s.stop()
                rb.log(f"{mode} run {i + 1}: {run['delivered_per_s']} msg/s, split {run['split_fraction']}, "
                       f"per loop {run['conns_per_loop']}, same {run['same_loop']}, split {run['split']}")
                runs.append(run)
                if mode.startswith("closed"):
                    single = two_instances(procs, args.server_cpus, args.bench_cpus, i)
                    rb.log(f"two THREADS=1 servers run {i + 1}: {single['delivered_per_s']} msg/s, "
                           f"{single['cpu_us_per_msg']} us CPU/msg")
                    doc.setdefault("two_instances", []).append(single)
            doc["modes"][mode] = runs
    finally:
        procs.stop_all()
    doc["machine"]["loadavg_end"] = rb.read_loadavg()
    with open(os.path.join(out, "cross_loop.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("| mode | run | msg/s | server CPU | CPU us/msg | conns per loop | split rooms | "
          "per room, same loop (msg/s, mean us) | per room, split (msg/s, mean us) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, runs in doc["modes"].items():
        for i, r in enumerate(runs):
            def cell(g):
                return f"{g['msgs_per_s_per_room']:,.0f}, {g['mean_latency_us']:,.0f}" if g else "-"
            print(f"| {mode} | {i + 1} | {r['delivered_per_s'] or 0:,.0f} | {r['server_cpu_pct']:.0f}% | "
                  f"{r['cpu_us_per_msg']} | "
                  f"{' / '.join(map(str, r['conns_per_loop']))} | {r['split_fraction']:.0%} | "
                  f"{cell(r['same_loop'])} | {cell(r['split'])} |")
    for i, r in enumerate(doc.get("two_instances", [])):
        print(f"| two THREADS=1 servers, closed_window8 | {i + 1} | {r['delivered_per_s']:,.0f} | "
              f"{r['server_cpu_pct']:.0f}% | {r['cpu_us_per_msg']} | - | 0% | - | - |")
    print(f"results: {out}/cross_loop.json")


if __name__ == "__main__":
    main()
