#!/usr/bin/python3
"""Relay on Redis Cluster against relay on one Redis, in the same run.

Two signal-server instances (THREADS=1, peers of every room split between them, as
relay_redis_two_max), first on one redis-server, then on a Redis Cluster of --masters masters
(no replicas: replication is the masters' own cost, not ours), interleaved --runs times. Pinning as
bench/run.py: both servers on CPU 0, redis-server(s) and signal-bench on CPU 1. After each cluster
run it reads INFO commandstats from every master: how many commands and sharded publications each
node served per second, which says how the load spreads (and so how more masters would take it).

  bench/cluster.py --build-dir build/bench [--out DIR] [--runs 3] [--masters 3] [--nice N] [--rt N]
                   [--unpinned]

--unpinned lets the kernel place every process on both CPUs (as relay_redis_two_max_unpinned).

Writes cluster.json and summary.md to --out.
"""
import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as rb  # noqa: E402


def cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port)] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=30).stdout


def commandstats(port):
    """{command: calls} from INFO commandstats."""
    out = {}
    for line in cli(port, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line[len("cmdstat_"):].partition(":")
            fields = dict(kv.split("=") for kv in rest.split(","))
            out[name] = int(fields["calls"])
    return out


class Cluster:
    def __init__(self, procs, masters, cpus):
        self.nodes = []
        ports = rb.free_ports(2 * masters)
        for i in range(masters):
            port, bus_port = ports[2 * i], ports[2 * i + 1]
            d = tempfile.mkdtemp(prefix="cluster-node-")
            p = procs.spawn(f"redis-cluster-{i}", ["taskset", "-c", cpus, "redis-server", "--port", str(port),
                                                   "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                                   # bus port given: port + 10000 overflows
                                                   "--cluster-port", str(bus_port),
                                                   "--cluster-enabled", "yes", "--cluster-config-file",
                                                   os.path.join(d, "nodes.conf"), "--dir", d], rb.base_env())
            self.nodes.append((port, p))
        self.procs = procs
        deadline = time.time() + 10
        while any(cli(port, "PING").strip() != "PONG" for port, _ in self.nodes):
            if time.time() > deadline:
                raise RuntimeError("cluster nodes did not start")
            time.sleep(0.05)
        subprocess.run(["redis-cli", "--cluster", "create"] + [f"127.0.0.1:{port}" for port, _ in self.nodes] +
                       ["--cluster-replicas", "0", "--cluster-yes"], capture_output=True, timeout=60, check=True)
        deadline = time.time() + 20
        while any("cluster_state:ok" not in cli(port, "CLUSTER", "INFO") for port, _ in self.nodes):
            if time.time() > deadline:
                raise RuntimeError("cluster did not reach cluster_state:ok")
            time.sleep(0.1)
        self.seeds = ",".join(f"127.0.0.1:{port}" for port, _ in self.nodes)
        self.pids = [p.pid for _, p in self.nodes]

    def stop(self):
        for _, p in self.nodes:
            self.procs.stop(p)


def relay(procs, servers, extra_pids, window, duration, cpus):
    args = ["relay", "--url", servers[0].url, "--url-b", servers[1].url, "--rooms", rb.ROOMS, "--size", rb.SIZE,
            "--rate", 0, "--window", window, "--duration", duration, "--warmup", 2]
    return rb.run_bench(procs, args, [s.pid for s in servers] + extra_pids, [s.pid for s in servers],
                        cpus=cpus, log_name="cluster")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default="build/bench")
    ap.add_argument("--out", default="")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--masters", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--nice", type=int, default=0, help="as bench/run.py --nice")
    ap.add_argument("--rt", type=int, default=0, help="as bench/run.py --rt (SCHED_FIFO, needs root)")
    ap.add_argument("--unpinned", action="store_true", help="every process on both CPUs")
    args = ap.parse_args()
    server_cpu, redis_cpu, bench_cpu = ((rb.ALL_CPUS,) * 3 if args.unpinned else
                                        (rb.SERVER_CPU, rb.REDIS_CPU, rb.BENCH_CPU))
    rb.NICE = args.nice
    rb.RT = args.rt
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    out = os.path.abspath(args.out or tempfile.mkdtemp(prefix="cluster-bench-"))
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    procs = rb.Processes(os.path.join(out, "logs"))
    bd = os.path.abspath(args.build_dir)
    procs.binaries = {"server": os.path.join(bd, "signal-server"), "bench": os.path.join(bd, "signal-bench")}

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    window = 4  # as relay_redis_two_max
    doc = {"command": " ".join(["bench/cluster.py"] + sys.argv[1:]), "machine": rb.machine_info(),
           "masters": args.masters, "window": window, "rooms": rb.ROOMS, "single": [], "cluster": []}
    try:
        for i in range(args.runs):
            redis = rb.Redis(procs, "redis", cpus=redis_cpu)
            servers = []
            try:
                for k in range(2):
                    servers.append(rb.Server(procs, f"server-single-{k}", redis_port=redis.port,
                                             cpus=server_cpu))
                r = relay(procs, servers, [redis.pid], window, args.duration, bench_cpu)
            finally:
                for s in servers:
                    s.stop()
                redis.stop()
            res = r["result"] or {}
            rb.log(f"single run {i + 1}: {res.get('delivered_per_s')} msg/s, lost {res.get('lost')}, "
                   f"others {r['conditions']['others_pct']}%")
            doc["single"].append(r)

            cluster = Cluster(procs, args.masters, redis_cpu)
            servers = []
            try:
                for k in range(2):
                    servers.append(rb.Server(procs, f"server-cluster-{k}",
                                             extra_env={"REDIS_CLUSTER_NODES": cluster.seeds},
                                             cpus=server_cpu))
                before = [commandstats(port) for port, _ in cluster.nodes]
                t0 = time.time()
                r = relay(procs, servers, cluster.pids, window, args.duration, bench_cpu)
                wall = time.time() - t0
                after = [commandstats(port) for port, _ in cluster.nodes]
            finally:
                for s in servers:
                    s.stop()
                cluster.stop()
            per_node = []
            for (port, _), b, a in zip(cluster.nodes, before, after):
                calls = {k: a.get(k, 0) - b.get(k, 0) for k in a}
                per_node.append({"port": port, "commands_per_s": round(sum(calls.values()) / wall),
                                 "spublish_per_s": round(calls.get("spublish", 0) / wall),
                                 "evalsha_per_s": round(calls.get("evalsha", 0) / wall)})
            r["per_node"] = per_node
            res = r["result"] or {}
            rb.log(f"cluster run {i + 1}: {res.get('delivered_per_s')} msg/s, lost {res.get('lost')}, "
                   f"others {r['conditions']['others_pct']}%, per node {per_node}")
            doc["cluster"].append(r)
    finally:
        procs.stop_all()

    def med(runs):
        v = [r["result"]["delivered_per_s"] for r in runs if r["result"]]
        return statistics.median(v) if v else None

    single, clustered = med(doc["single"]), med(doc["cluster"])
    doc["summary"] = {"single_median": single, "cluster_median": clustered,
                      "ratio": round(clustered / single, 3) if single and clustered else None,
                      "lost": sum((r["result"] or {}).get("lost", 0) for r in doc["single"] + doc["cluster"]),
                      "reordered": sum((r["result"] or {}).get("reordered", 0)
                                       for r in doc["single"] + doc["cluster"])}
    with open(os.path.join(out, "cluster.json"), "w") as f:
        json.dump(doc, f, indent=1)
    lines = [f"# Relay on Redis Cluster ({args.masters} masters) vs one Redis, same run", "",
             f"`{doc['command']}` on {doc['machine'].get('cpu_model', '?')}, "
             f"{doc['machine'].get('cpus', '?')} CPUs; two instances, THREADS=1, window {window}, "
             f"{'nothing pinned' if args.unpinned else 'servers on CPU 0, Redis and signal-bench on CPU 1'}, "
             f"{rb.ROOMS} rooms, peers split.", "",
             "| run | one Redis msg/s | cluster msg/s | others % (one / cluster) | load before |",
             "|---|---|---|---|---|"]
    for i, (a, b) in enumerate(zip(doc["single"], doc["cluster"])):
        lines.append(f"| {i + 1} | {(a['result'] or {}).get('delivered_per_s')} | "
                     f"{(b['result'] or {}).get('delivered_per_s')} | {a['conditions']['others_pct']} / "
                     f"{b['conditions']['others_pct']} | {b['conditions']['loadavg_before']} |")
    lines += ["", f"Medians: one Redis {single}, cluster {clustered}, ratio {doc['summary']['ratio']}; "
                  f"lost {doc['summary']['lost']}, reordered {doc['summary']['reordered']}.", "",
              "Per master, per second (cluster runs): " +
              "; ".join(" / ".join(f"{n['port']}: {n['commands_per_s']} cmds, {n['spublish_per_s']} SPUBLISH"
                                   for n in r["per_node"]) for r in doc["cluster"])]
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
