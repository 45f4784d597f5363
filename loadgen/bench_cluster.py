#!/usr/bin/python3
"""make bench-cluster: cluster mode's cost and convergence on this machine.

Two ringtracker nodes and one redis-server on loopback. The node measured
(A) runs pinned to CPU 0 with one worker, as in `make bench`; node B and
Redis share CPU 1 with the load generator (B follows the stream and is
probed for what it sees).

1. Throughput, cluster on vs off: loadgen/ab.py alternates node A without
   and with `[cluster]` (both filled with the standard 1M-torrent
   workload, then closed loop, 128 in flight) and prints medians.
2. Steady state at a fixed rate (open loop, BENCH_CLUSTER_RATE announces/s,
   default 100,000, loadgen's default churn): bytes A sends to Redis
   per announce, Redis CPU per announce (its /proc time over A's
   announces), and B's apply lag (a message's creation at A to applied at
   B: B's histogram).
3. Convergence as a client sees it, during that load: a peer announced at A
   (a fresh torrent each time) is polled for at B by scrape until it shows;
   p50/p99 over BENCH_CLUSTER_PROBES probes (default 200).

BENCH_CLUSTER_STEADY_ONLY=1 reuses the last run's throughput figures
(target/bench/cluster.json) and measures only parts 2 and 3.

Writes the section of docs/BENCHMARKS.md after its `<!-- make
bench-cluster -->` marker (make bench keeps it) and target/bench/cluster.json.
Needs redis-server (make redis installs it).
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import LOADGEN, ROOT, log, machine  # noqa: E402

BIN = ROOT / "target/release/ringtracker"
RATE = int(os.environ.get("BENCH_CLUSTER_RATE", "100000"))
PROBES = int(os.environ.get("BENCH_CLUSTER_PROBES", "200"))
ROUNDS = int(os.environ.get("BENCH_CLUSTER_ROUNDS", "3"))
STEADY_SECONDS = 30
A_UDP, B_UDP, A_METRICS, B_METRICS = 6969, 6971, 9010, 9011
MARKER = "<!-- make bench-cluster -->"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(what, check, seconds=60):
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"bench-cluster: {what} did not happen within {seconds} s")
        time.sleep(0.05)


def metrics(port):
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cluster_lines(redis_port, secret, node):
    return (f'[cluster]\nenabled = true\nnode = "{node}"\n'
            f'redis = ["redis://127.0.0.1:{redis_port}"]\nsecret_file = "{secret}"\n')


class Udp:
    """A tiny BEP 15 client for the probes."""

    def __init__(self, port):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.settimeout(2)
        self.addr = ("127.0.0.1", port)
        self.cid, self.cid_at = None, 0

    def ask(self, packet):
        for _ in range(5):
            self.s.sendto(packet, self.addr)
            try:
                return self.s.recv(2048)
            except socket.timeout:
                continue
        sys.exit(f"bench-cluster: no reply from port {self.addr[1]}")

    def connect(self):
        if self.cid is None or time.monotonic() - self.cid_at > 50:
            r = self.ask(struct.pack(">QII", 0x41727101980, 0, 7))
            self.cid, self.cid_at = struct.unpack(">Q", r[8:16])[0], time.monotonic()
        return self.cid

    def announce(self, info_hash, port):
        p = struct.pack(">QII20s20sQQQIIIiH", self.connect(), 1, 9, info_hash, b"-RT0001-probeprobepr",
                        0, 1, 0, 2, 0, 0, 0, port)
        self.ask(p)

    def seen(self, info_hash):
        r = self.ask(struct.pack(">QII20s", self.connect(), 2, 11, info_hash))
        seeders, completed, leechers = struct.unpack(">III", r[8:20])
        return seeders + leechers


def throughput(redis, b):
    """Node A off and on, alternated; before each run Redis is
    emptied and node B restarted, so every run starts from the same
    state."""
    from ab import run_once
    args = argparse.Namespace(torrents=1_000_000, peers=2_000_000, passkeys=0, fill=True,
                              load="closed", numwant=50, seconds=8)
    on = f"{BIN}::" + cluster_lines(redis.port, redis.secret, "a").replace("\n", "\\n")
    runs = {"off": [], "on": []}
    workdir = tempfile.mkdtemp(prefix="rt-ab-")
    for _ in range(ROUNDS):
        for side, server in (("off", str(BIN)), ("on", on)):
            redis.cli("FLUSHALL")
            b.restart()
            runs[side].append(run_once(server, args, workdir))
    shutil.rmtree(workdir, ignore_errors=True)
    t = {}
    for side in ("off", "on"):
        t[side] = statistics.median(r for r, _ in runs[side])
        t[f"{side}_cpu"] = statistics.median(c for _, c in runs[side])
        t[f"{side}_runs"] = " ".join(f"{r / 1000:.0f}k" for r, _ in runs[side])
    return t


class Redis:
    def __init__(self, workdir):
        self.port = free_port()
        self.secret = workdir / "secret"
        self.secret.write_bytes(os.urandom(32))
        self.proc = subprocess.Popen(["taskset", "-c", "1", "redis-server", "--port", str(self.port),
                                      "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                      "--dir", str(workdir)], stdout=subprocess.DEVNULL)
        wait_for("redis up", lambda: self.cli("PING").strip() == "PONG")

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                              text=True).stdout

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class NodeB:
    def __init__(self, workdir, redis):
        self.config = workdir / "b.toml"
        self.config.write_text(f'[http]\nlisten = []\n[metrics]\nlisten = "127.0.0.1:{B_METRICS}"\n'
                               + cluster_lines(redis.port, redis.secret, "b"))
        self.proc = None
        self.restart()

    def restart(self):
        self.stop()
        self.proc = subprocess.Popen(["taskset", "-c", "1", str(BIN), "--workers", "1", "--udp",
                                      f"127.0.0.1:{B_UDP}", "--config", str(self.config)],
                                     stderr=subprocess.DEVNULL)
        wait_for("node B up", lambda: metrics_ok(B_METRICS))

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None
        wait_for("node B's ports free", lambda: not metrics_ok(B_METRICS))


def steady(redis, workdir):
    redis_pid = redis.proc.pid
    config = workdir / "a.toml"
    config.write_text(f'[http]\nlisten = []\n[metrics]\nlisten = "127.0.0.1:{A_METRICS}"\n'
                      + cluster_lines(redis.port, redis.secret, "a"))
    a = subprocess.Popen(["taskset", "-c", "0", str(BIN), "--workers", "1", "--udp", f"127.0.0.1:{A_UDP}",
                          "--config", str(config)], stderr=subprocess.DEVNULL)
    try:
        wait_for("node A up", lambda: metrics_ok(A_METRICS))
        base = [str(LOADGEN), "--cpu", "1", "--json", "--target", f"127.0.0.1:{A_UDP}"]
        subprocess.run([*base, "--mode", "once", "--duration", "1200", "--inflight", "256",
                        "--timeout-ms", "3000"], capture_output=True, check=True)
        # --idle-wait: the load generator sleeps between batches instead of
        # spinning, so node B and Redis on the same core get their turn.
        load = subprocess.Popen([*base, "--mode", "open", "--rate", str(RATE), "--duration",
                                 str(STEADY_SECONDS + 60), "--warmup", "5", "--idle-wait"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        time.sleep(10)
        a0, b0, r0 = metrics(A_METRICS), metrics(B_METRICS), cpu_seconds(redis_pid)
        lags = probe()
        time.sleep(max(0.0, STEADY_SECONDS - len(lags) * 0.05))
        a1, b1, r1 = metrics(A_METRICS), metrics(B_METRICS), cpu_seconds(redis_pid)
        load.terminate()
        load.wait()
    finally:
        a.terminate()
        a.wait()
    key = 'ringtracker_responses_total{protocol="udp",type="announce"}'
    announces = a1[key] - a0[key]
    sent = a1['ringtracker_cluster_bytes_total{direction="out"}'] - a0['ringtracker_cluster_bytes_total{direction="out"}']
    changes = a1['ringtracker_cluster_changes_total{direction="out"}'] - a0['ringtracker_cluster_changes_total{direction="out"}']
    buckets = {}
    for name, v in b1.items():
        m = re.match(r'ringtracker_cluster_apply_lag_seconds_bucket\{le="([^"]+)"\}', name)
        if m:
            buckets[m.group(1)] = v - b0.get(name, 0)
    return {
        "announces": announces,
        "bytes_per_announce": sent / announces,
        "changes_per_announce": changes / announces,
        "redis_cpu_us_per_announce": (r1 - r0) * 1e6 / announces,
        "apply_lag_p50_ms": bucket_quantile(buckets, 0.5),
        "apply_lag_p99_ms": bucket_quantile(buckets, 0.99),
        "probe_p50_ms": statistics.median(lags),
        "probe_p99_ms": sorted(lags)[max(0, int(len(lags) * 0.99) - 1)],
        "probes": len(lags),
    }


def metrics_ok(port):
    try:
        metrics(port)
        return True
    except OSError:
        return False


def bucket_quantile(buckets, q):
    """The bound (ms) below which q of the messages' lags fall."""
    items = sorted(((float("inf") if le == "+Inf" else float(le)), n) for le, n in buckets.items())
    total = items[-1][1] if items else 0
    for le, cumulative in items:
        if total and cumulative >= q * total:
            return le * 1000
    return float("nan")


def probe():
    """A peer announced at A, polled for at B: milliseconds until seen."""
    at_a, at_b = Udp(A_UDP), Udp(B_UDP)
    lags = []
    for i in range(PROBES):
        info_hash = struct.pack(">Q", 0xC1057E7 + i) + os.urandom(12)
        t0 = time.monotonic()
        at_a.announce(info_hash, 40000 + i % 20000)
        while at_b.seen(info_hash) == 0:
            if time.monotonic() - t0 > 30:
                sys.exit("bench-cluster: a probe never reached node B")
        lags.append((time.monotonic() - t0) * 1000)
        time.sleep(0.05)
    return lags


def write_markdown(t, s):
    doc = ROOT / "docs" / "BENCHMARKS.md"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    text = text.split(MARKER)[0].rstrip() + "\n\n"
    L = [MARKER, "", "## Cluster mode (`make bench-cluster`)", "",
         "Produced by `make bench-cluster` (loadgen/bench_cluster.py); do not edit by hand: rerun it.", "",
         f"- Machine: {machine()}; date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
         "- Node A (measured) pinned to CPU 0 with one worker; node B, redis-server "
         f"({redis_version()}) and the load generator share CPU 1.",
         "- The standard 1M-torrent workload (2M peers, loadgen's default churn: events "
         "none/started/completed/stopped 94/3/1/2).", "",
         "| | cluster off | cluster on | on ÷ off |", "|---|---|---|---|",
         f"| max goodput/s (closed loop, medians of {ROUNDS} alternated runs: {t['off_runs']} vs {t['on_runs']}) "
         f"| {t['off']:,.0f} | {t['on']:,.0f} | {t['on'] / t['off']:.2f}× |",
         f"| server CPU µs per reply | {t['off_cpu']:.2f} | {t['on_cpu']:.2f} | {t['on_cpu'] / t['off_cpu']:.2f}× |",
         "",
         f"At a steady {RATE:,} announces/s on node A ({s['announces']:,.0f} announces measured):", "",
         "| measure | value |", "|---|---|",
         f"| changes published per announce | {s['changes_per_announce']:.3f} |",
         f"| bytes to Redis per announce | {s['bytes_per_announce']:.2f} B |",
         f"| Redis CPU per announce (2 nodes) | {s['redis_cpu_us_per_announce']:.3f} µs |",
         f"| apply lag at B, p50 / p99 (creation at A to applied at B; histogram bound) "
         f"| ≤ {s['apply_lag_p50_ms']:.0f} ms / ≤ {s['apply_lag_p99_ms']:.0f} ms |",
         f"| convergence as a client sees it, p50 / p99 ({s['probes']} probes: announce at A, "
         f"scrape at B until seen) | {s['probe_p50_ms']:.0f} ms / {s['probe_p99_ms']:.0f} ms |",
         "",
         "The convergence lag is mostly the flush interval (100 ms by default: a change waits "
         "for the next flush, 50 ms on average) plus one XREAD wake-up.", ""]
    doc.write_text(text + "\n".join(L))


def redis_version():
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"v=([\d.]+)", out)
    return f"Redis {m.group(1)}" if m else "Redis"


def main():
    if not shutil.which("redis-server"):
        sys.exit("bench-cluster: redis-server missing (make redis)")
    workdir = Path(tempfile.mkdtemp(prefix="rt-bench-cluster-"))
    redis = Redis(workdir)
    b = None
    try:
        b = NodeB(workdir, redis)
        saved = ROOT / "target/bench/cluster.json"
        if os.environ.get("BENCH_CLUSTER_STEADY_ONLY") and saved.exists():
            t = json.loads(saved.read_text())["throughput"]
            log("bench-cluster: throughput from the last run (BENCH_CLUSTER_STEADY_ONLY)")
        else:
            log("bench-cluster: throughput, cluster off vs on (alternated)")
            t = throughput(redis, b)
        log(f"bench-cluster: {t}")
        redis.cli("FLUSHALL")
        b.restart()
        log(f"bench-cluster: steady {RATE}/s, probes")
        s = steady(redis, workdir)
        log(f"bench-cluster: {s}")
        out = ROOT / "target/bench"
        out.mkdir(parents=True, exist_ok=True)
        (out / "cluster.json").write_text(json.dumps({"throughput": t, "steady": s}, indent=2))
        write_markdown(t, s)
        log("bench-cluster: wrote docs/BENCHMARKS.md (cluster section), target/bench/cluster.json")
    finally:
        if b:
            b.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


main()
