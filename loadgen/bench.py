#!/usr/bin/python3
"""make bench: ringtracker side by side with aquatic_udp and opentracker.

Every server runs pinned to CPU 0 with one worker; loadgen runs on CPU 1.
The servers are alternated run by run (A B C A B C ...) and medians are
reported, because only ratios from one run mean anything on a shared machine.
Writes docs/BENCHMARKS.md and docs/bench-chart.svg, and the raw numbers to
target/bench/results.json.

Two standard workloads, for every server: 1M torrents / 2M peers and 5M
torrents / 10M peers. At each, a fresh server is filled (every peer
announces once), runs a steady moderate load for SOAK seconds (so every
server has lived for minutes before it is measured: a timer that goes wrong
after a minute cannot hide), and is then measured: maximum goodput (closed
loop), best goodput of an open-loop numwant-30 load offered at 300-500k/s,
goodput with the sending core flat out (overload), server CPU per reply at
a fixed 150k/s, resident memory and bytes per peer.

Environment: BENCH_ROUNDS (default 3; 2 for the two standard workloads),
BENCH_SECONDS (default 10), BENCH_SOAK (seconds, default 90),
BENCH_QUICK=1 (short runs, for trying the script out), BENCH_BASELINE=REV
(also build git revision REV of ringtracker and run it as
"ringtracker@REV" in the same alternation: a before/after of a change).
"""

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "target" / "release"
LOADGEN = TARGET / "loadgen"
QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if QUICK else "3"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "3" if QUICK else "10"))
WARMUP = 1.0 if QUICK else 2.0
INFLIGHT = 128
STANDARD = dict(torrents=1_000_000, peers=2_000_000)
SCALES = [("1M torrents / 2M peers", dict(torrents=1_000_000, peers=2_000_000)),
          ("5M torrents / 10M peers", dict(torrents=5_000_000, peers=10_000_000))]
if QUICK:
    SCALES = [("100k torrents / 200k peers", dict(torrents=100_000, peers=200_000))]
SCALE_ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if QUICK else "2"))
SOAK = float(os.environ.get("BENCH_SOAK", "5" if QUICK else "90"))
SOAK_RATE = 100_000
FIXED_RATE = 150_000
NW30_RATES = [300_000, 400_000, 500_000]
FLAT_OUT = 3_000_000
SWARM_SIZES = [10, 100, 1_000, 10_000, 100_000, 1_000_000]
FILL_PEERS = 200_000 if QUICK else 1_000_000
SERVER_CPU, LOAD_CPU = "0", "1"
HTTP_FIXED_RATE = 50_000


def find(name, extra=()):
    for p in [*extra, shutil.which(name)]:
        if p and Path(p).is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


class Server:
    """One tracker process, started fresh for each measurement."""

    def __init__(self, name, port):
        self.name, self.port, self.proc = name, port, None
        # The workload's torrents (opentracker's whitelist depends on it).
        self.torrents = STANDARD["torrents"]

    def command(self):
        raise NotImplementedError

    def ready(self):
        """Block until the server answers a connect (bounded)."""
        import socket
        import struct
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.2)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            s.sendto(struct.pack(">QII", 0x41727101980, 0, 1), ("127.0.0.1", self.port))
            try:
                s.recv(64)
                return
            except OSError:
                continue
        raise RuntimeError(f"{self.name} did not answer on port {self.port}")

    def start(self):
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *self.command()],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.cwd())
        self.ready()
        return self.proc.pid

    def cwd(self):
        return None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        # A ring's asynchronous teardown can hold the port for a moment
        # after the process is gone (aquatic's does): wait until it is free.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and udp_port_bound(self.port):
            time.sleep(0.05)


class Ringtracker(Server):
    def __init__(self, workdir):
        super().__init__("ringtracker", 6979)
        # UDP only: an idle HTTP worker would share the measured core.
        self.config = workdir / "udp-only.toml"
        self.config.write_text("[http]\nlisten = []\n")

    def command(self):
        return [str(TARGET / "ringtracker"), "--workers", "1", "--udp", f"127.0.0.1:{self.port}",
                "--config", str(self.config)]


class RingtrackerBaseline(Ringtracker):
    """An earlier revision of ringtracker, built from git into target/bench."""

    def __init__(self, rev, workdir):
        Ringtracker.__init__(self, workdir)
        self.name = f"ringtracker@{rev}"
        self.port = 6999
        tree = ROOT / "target" / "bench" / f"baseline-{rev}"
        if not tree.exists():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True)
        subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "ringtracker"], cwd=tree, check=True)
        self.binary = tree / "target" / "release" / "ringtracker"

    def command(self):
        return [str(self.binary), *Ringtracker.command(self)[1:]]


class RingtrackerHttp(Server):
    """ringtracker serving HTTP (and UDP, only for the readiness check)."""

    def __init__(self):
        super().__init__("ringtracker", 6977)
        self.http_port = 6978

    def command(self):
        return [str(TARGET / "ringtracker"), "--workers", "1", "--udp", f"127.0.0.1:{self.port}",
                "--http", f"127.0.0.1:{self.http_port}"]


class RingtrackerHttpEpoll(RingtrackerHttp):
    """The same HTTP frontend on its epoll backend (what `http.backend =
    "auto"` takes where io_uring is blocked)."""

    def __init__(self, workdir):
        Server.__init__(self, "ringtracker-epoll", 6975)
        self.http_port = 6976
        self.config = workdir / "http-epoll.toml"
        self.config.write_text('[http]\nbackend = "epoll"\n')

    def command(self):
        return [*RingtrackerHttp.command(self), "--config", str(self.config)]


class RingtrackerMmsg(Ringtracker):
    """The same tracker on its recvmmsg/sendmmsg backend: the baseline the
    io_uring driver has to beat."""

    def __init__(self, workdir):
        Server.__init__(self, "ringtracker-mmsg", 6989)
        self.config = workdir / "mmsg.toml"
        self.config.write_text('[udp]\nbackend = "mmsg"\n[http]\nlisten = []\n')


class Aquatic(Server):
    def __init__(self, binary, workdir):
        super().__init__("aquatic_udp", 7000)
        self.binary = binary
        self.config = workdir / "aquatic.toml"
        text = subprocess.run([binary, "-p"], capture_output=True, text=True).stdout
        lines = []
        for line in text.splitlines():
            if line.startswith("address ="):
                line = f'address = "127.0.0.1:{self.port}"'
            elif line.startswith("socket_workers ="):
                line = "socket_workers = 1"
            elif line.startswith("max_response_peers ="):
                line = "max_response_peers = 50"
            elif line.startswith("use_io_uring ="):
                line = "use_io_uring = true"
            lines.append(line)
        self.config.write_text("\n".join(lines) + "\n")

    def command(self):
        return [self.binary, "-c", str(self.config)]


class Opentracker(Server):
    """Debian's build is whitelist-only: it gets loadgen's info hashes."""

    def __init__(self, binary, workdir):
        super().__init__("opentracker", 7100)
        self.http_port = 7101
        self.binary = binary
        self.dir = workdir / "opentracker"
        self.dir.mkdir(exist_ok=True)
        os.chmod(workdir, 0o755)
        os.chmod(self.dir, 0o755)
        for _, scale in SCALES + [("standard", STANDARD)]:
            wl = self.dir / f"whitelist-{scale['torrents']}.txt"
            if not wl.exists():
                subprocess.run([str(LOADGEN), "--write-hashes", str(wl), "--torrents",
                                str(scale["torrents"]), "--peers", "1"], check=True)
                os.chmod(wl, 0o644)

    def cwd(self):
        return str(self.dir)

    def command(self):
        # It refuses to run as root and chroots to -d.
        return [self.binary, "-i", "127.0.0.1", "-p", str(self.port + 1), "-P", str(self.port),
                "-d", str(self.dir), "-w", f"whitelist-{self.torrents}.txt", "-u", "nobody"]

    def ready(self):
        super().ready()
        # The whitelist loads in the background; wait until an announce for
        # a listed hash is answered with peers counted (bounded).
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            r = loadgen(self, ["--mode", "once", "--torrents", "1", "--peers", "1", "--duration", "2",
                               "--timeout-ms", "200", "--first-source", "127.99.0.1", "--sources", "1"])
            if r["counts"]["announces"] == 1:
                return
        raise RuntimeError("opentracker never accepted a whitelisted hash")


def loadgen(server, args, pid=None, port=None):
    port = port or server.port
    cmd = ["taskset", "-c", LOAD_CPU, str(LOADGEN), "--target", f"127.0.0.1:{port}", "--json", *args]
    if pid:
        cmd += ["--server-pid", str(pid)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def udp_port_bound(port):
    """Whether a local UDP socket is bound to `port` (IPv4)."""
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        local = line.split()[1]
        if int(local.split(":")[1], 16) == port:
            return True
    return False


def rss(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def timed(server, args, port=None):
    pid = server.start()
    try:
        return loadgen(server, args, pid, port)
    finally:
        server.stop()


def main():
    if sys.argv[1:] == ["--render"]:
        # Rewrite the docs from the last run's numbers (no measuring).
        results = json.loads((ROOT / "target" / "bench" / "results.json").read_text())
        write_markdown(results)
        write_svg(results)
        return
    if not LOADGEN.exists():
        sys.exit("build first: cargo build --release --workspace")
    workdir = Path(tempfile.mkdtemp(prefix="ringtracker-bench-"))
    servers = [Ringtracker(workdir), RingtrackerMmsg(workdir)]
    if os.environ.get("BENCH_BASELINE"):
        servers.insert(1, RingtrackerBaseline(os.environ["BENCH_BASELINE"], workdir))
    aq = find("aquatic_udp", [Path.home() / ".cargo/bin/aquatic_udp"])
    if aq:
        servers.append(Aquatic(aq, workdir))
    ot = find("opentracker", ["/usr/bin/opentracker"])
    if ot:
        servers.append(Opentracker(ot, workdir))
    names = [s.name for s in servers]
    log(f"bench: {', '.join(names)}; {SCALE_ROUNDS} round(s), {SECONDS:.0f} s per measurement; server on CPU {SERVER_CPU}, load on CPU {LOAD_CPU}")
    results = {"servers": names, "rounds": SCALE_ROUNDS, "seconds": SECONDS, "inflight": INFLIGHT,
               "soak": SOAK, "latency": [], "per_peer": {}, "swarm_1m": {}}
    common = ["--duration", str(SECONDS), "--warmup", str(WARMUP)]

    # 1. The two standard workloads, every server, rounds alternated.
    results["scale"] = {label: {s.name: [] for s in servers} for label, _ in SCALES}
    for r in range(SCALE_ROUNDS):
        for label, scale in SCALES:
            for s in servers:
                m = measure_scale(s, scale)
                results["scale"][label][s.name].append(m)
                log(f"  {label} round {r + 1} {s.name}: max {m['max_goodput']:.0f}/s, "
                    f"numwant-30 best {m['nw30_goodput']:.0f}/s, overloaded {m['overload_goodput']:.0f}/s, "
                    f"{m['fixed_cpu_us']:.2f} µs/reply at {FIXED_RATE}/s, rss {m['rss'] / 1e6:.1f} MB, "
                    f"{m['bytes_per_peer']:.1f} B/peer, lived {m['lived_s']:.0f} s")

    # 2. Latency at fixed offered rates: shares of the slowest server's max
    #    goodput at the first standard workload, on fresh servers.
    first = results["scale"][SCALES[0][0]]
    slowest = min(median([x["max_goodput"] for x in first[n]]) for n in names)
    for share in (0.25, 0.5, 0.75):
        rate = round(slowest * share, -3)
        row = {"share": share, "rate": rate, "servers": {}}
        for s in servers:
            s.torrents = STANDARD["torrents"]
            rep = timed(s, ["--mode", "open", "--rate", str(rate), *common])
            row["servers"][s.name] = {
                "p50": rep["latency_us"]["p50"], "p99": rep["latency_us"]["p99"],
                "p999": rep["latency_us"]["p999"], "cpu_us": rep["server"]["cpu_us_per_reply"],
                "lost": rep["counts"]["lost"], "rps": rep["replies_per_second"]}
            log(f"  open loop {rate:.0f}/s {s.name}: p99 {rep['latency_us']['p99']} µs, "
                f"{rep['server']['cpu_us_per_reply']:.2f} µs/reply")
        results["latency"].append(row)

    # 4. Bytes per peer by swarm size (FILL_PEERS peers in swarms of N), and
    #    announce throughput into the largest swarm.
    for n in SWARM_SIZES:
        if n > FILL_PEERS:
            continue
        torrents = FILL_PEERS // n
        for s in servers:
            s.torrents = STANDARD["torrents"]
            pid = s.start()
            try:
                before = rss(pid)
                rep = loadgen(s, ["--mode", "once", "--torrents", str(torrents), "--peers", str(FILL_PEERS),
                                  "--zipf", "0", "--seeders", "0.5", "--duration", "300",
                                  "--inflight", str(INFLIGHT), "--timeout-ms", "3000"], pid)
                after = rss(pid)
                stored = rep["counts"]["announces"]
                results["per_peer"].setdefault(str(n), {})[s.name] = {
                    "bytes_per_peer": (after - before) / max(stored, 1), "announces": stored,
                    "lost": rep["counts"]["lost"]}
                log(f"  swarms of {n}: {s.name} {(after - before) / max(stored, 1):.1f} B/peer")
                if n == max(x for x in SWARM_SIZES if x <= FILL_PEERS):
                    rep = loadgen(s, ["--mode", "closed", "--torrents", "1", "--peers", str(FILL_PEERS),
                                      "--zipf", "0", "--seeders", "0.5", "--inflight", str(INFLIGHT),
                                      "--duration", str(min(SECONDS, 5)), "--warmup", "1"], pid)
                    results["swarm_1m"][s.name] = {"rps": rep["replies_per_second"],
                                                   "lost": rep["counts"]["lost"]}
                    log(f"  announces into the {FILL_PEERS}-peer swarm {s.name}: {rep['replies_per_second']:.0f}/s")
            finally:
                s.stop()

    results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    # 5. HTTP: ringtracker against opentracker's HTTP frontend, keep-alive
    #    connections from 64 source addresses, pipelined.
    http_servers = [RingtrackerHttp(), RingtrackerHttpEpoll(workdir)] + \
        [s for s in servers if s.name == "opentracker"]
    results["http"] = {"throughput": {s.name: [] for s in http_servers}, "fixed": {}}
    for r in range(ROUNDS):
        for s in http_servers:
            rep = timed(s, ["--protocol", "http", "--mode", "closed", "--inflight", "64", *common],
                        port=s.http_port)
            results["http"]["throughput"][s.name].append({
                "rps": rep["replies_per_second"], "cpu_us": rep["server"]["cpu_us_per_reply"],
                "cpu_s": rep["server"]["cpu_seconds"], "p99": rep["latency_us"]["p99"],
                "lost": rep["counts"]["lost"], "errors": rep["counts"]["errors"] + rep["counts"]["invalid"]})
            log(f"  http round {r + 1} {s.name}: {rep['replies_per_second']:.0f}/s, "
                f"{rep['server']['cpu_us_per_reply']:.2f} µs/reply")
    for s in http_servers:
        rep = timed(s, ["--protocol", "http", "--mode", "open", "--rate", str(HTTP_FIXED_RATE), *common],
                    port=s.http_port)
        results["http"]["fixed"][s.name] = {
            "cpu_us": rep["server"]["cpu_us_per_reply"], "p50": rep["latency_us"]["p50"],
            "p99": rep["latency_us"]["p99"], "lost": rep["counts"]["lost"]}
        log(f"  http open loop {HTTP_FIXED_RATE}/s {s.name}: {rep['server']['cpu_us_per_reply']:.2f} µs/reply")

    out = ROOT / "target" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write_markdown(results)
    write_svg(results)
    shutil.rmtree(workdir, ignore_errors=True)
    log("bench: wrote docs/BENCHMARKS.md, docs/bench-chart.svg, target/bench/results.json")


def measure_scale(s, scale):
    """Fill a fresh server with the workload, soak it, measure it."""
    s.torrents = scale["torrents"]
    started = time.monotonic()
    pid = s.start()
    try:
        w = ["--torrents", str(scale["torrents"]), "--peers", str(scale["peers"])]
        before = rss(pid)
        fill = loadgen(s, ["--mode", "once", *w, "--duration", "1200", "--inflight", str(INFLIGHT),
                           "--timeout-ms", "3000"], pid)
        stored = fill["counts"]["announces"]
        filled = rss(pid)
        loadgen(s, ["--mode", "open", "--rate", str(SOAK_RATE), *w, "--duration", str(SOAK),
                    "--warmup", "0"], pid)
        common = ["--duration", str(SECONDS), "--warmup", str(WARMUP), *w]
        closed = loadgen(s, ["--mode", "closed", "--inflight", str(INFLIGHT), *common], pid)
        fixed = loadgen(s, ["--mode", "open", "--rate", str(FIXED_RATE), *common], pid)
        over = loadgen(s, ["--mode", "open", "--rate", str(FLAT_OUT), *common], pid)
        nw30 = [loadgen(s, ["--mode", "open", "--rate", str(r), "--numwant", "30", *common], pid)
                for r in NW30_RATES]
        return {
            "max_goodput": closed["goodput_per_second"], "max_cpu_us": closed["server"]["cpu_us_per_reply"],
            "max_p99": closed["latency_us"]["p99"],
            "nw30_goodput": max(x["goodput_per_second"] for x in nw30),
            "nw30_runs": [x["goodput_per_second"] for x in nw30],
            "overload_goodput": over["goodput_per_second"], "overload_sent": over["sent_per_second"],
            "overload_cpu_us": over["server"]["cpu_us_per_reply"],
            "fixed_cpu_us": fixed["server"]["cpu_us_per_reply"], "fixed_p99": fixed["latency_us"]["p99"],
            "fixed_lost": fixed["counts"]["lost"],
            "rss": rss(pid), "filled_rss": filled, "stored": stored, "fill_lost": fill["counts"]["lost"],
            "bytes_per_peer": (filled - before) / max(stored, 1),
            "lived_s": time.monotonic() - started,
        }
    finally:
        s.stop()


def machine():
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{cpu}, {os.cpu_count()} cores, Linux {os.uname().release}"


def ratio(a, b):
    return f"{a / b:.2f}×" if b else "–"


def scale_medians(res, label):
    """Per server, the median over rounds of each figure at one workload."""
    out = {}
    for n, runs in res["scale"][label].items():
        out[n] = {k: median([r[k] for r in runs]) for k in runs[0] if not isinstance(runs[0][k], list)}
    return out


def write_markdown(res):
    names = res["servers"]
    L = []
    L.append("# Benchmarks\n")
    L.append("Produced by `make bench` (loadgen/bench.py); do not edit by hand: rerun it.\n")
    L.append(f"- Machine: {machine()}; shared and noisy, so compare ratios within one run.")
    L.append(f"- Date: {res.get('date') or time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    L.append(f"- Each server pinned to CPU {SERVER_CPU} with one worker; loadgen pinned to CPU {LOAD_CPU}; "
             f"loopback, many 127.16.x.x source addresses.")
    L.append("- `ringtracker` is the io_uring backend (what the default, `auto`, picks here); `ringtracker-mmsg` is the same tracker on "
             "its poll + recvmmsg/sendmmsg backend, the baseline io_uring has to beat.")
    for n in names:
        if n.startswith("ringtracker@"):
            L.append(f"- `{n}` is ringtracker built from git revision `{n.split('@')[1]}` "
                     f"(`BENCH_BASELINE={n.split('@')[1]} make bench`): a before/after in one alternated run.")
    L.append("- Workloads: Zipf(1.0) torrent popularity, 25% seeders, numwant 50, events "
             "none/started/completed/stopped 94/3/1/2 (loadgen's defaults), at two standard sizes below.")
    L.append(f"- Servers alternated run by run, {res['rounds']} round(s), medians shown; each measurement "
             f"{res['seconds']:.0f} s after a warm-up.\n")
    L.append("![throughput and latency](bench-chart.svg)\n")
    for label, _ in SCALES:
        if label not in res.get("scale", {}):
            continue
        m = scale_medians(res, label)
        rt = m["ringtracker"]
        L.append(f"## {label}\n")
        L.append(f"A fresh server is filled (every peer announces once: `loadgen --mode once`), then runs "
                 f"{res['soak']:.0f} s of steady load ({SOAK_RATE:,} announces/s), then is measured, so every "
                 f"server has run for minutes (column *lived*). Max goodput: closed loop, {res['inflight']} "
                 f"requests in flight. numwant 30: open loop offered at "
                 + "/".join(f"{r // 1000}k" for r in NW30_RATES) + "/s, the best goodput. Overloaded: "
                 f"open loop offered as fast as the sending core goes ({FLAT_OUT:,}/s asked); goodput counts every "
                 f"valid reply that arrived. CPU per reply: server CPU time over replies at a fixed "
                 f"{FIXED_RATE:,}/s.\n")
        L.append("| server | max goodput/s | numwant 30, best/s | overloaded/s | overloaded ÷ max | "
                 f"CPU µs/reply at {FIXED_RATE // 1000}k/s | RSS | bytes/peer | lived |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for n in names:
            x = m[n]
            L.append(f"| {n} | {x['max_goodput']:,.0f} | {x['nw30_goodput']:,.0f} | {x['overload_goodput']:,.0f} | "
                     f"{x['overload_goodput'] / max(x['max_goodput'], 1):.2f} | {x['fixed_cpu_us']:.2f} | "
                     f"{x['rss'] / 1e6:.1f} MB | {x['bytes_per_peer']:.1f} B | {x['lived_s']:.0f} s |")
        L.append("\nRatios, ringtracker ÷ each (goodput: higher is better for ringtracker; CPU and memory: "
                 "lower is):\n")
        L.append("| vs | max goodput | numwant 30 | overloaded | CPU per reply | RSS |")
        L.append("|---|---|---|---|---|---|")
        for n in names:
            if n == "ringtracker":
                continue
            x = m[n]
            L.append(f"| {n} | {ratio(rt['max_goodput'], x['max_goodput'])} | "
                     f"{ratio(rt['nw30_goodput'], x['nw30_goodput'])} | "
                     f"{ratio(rt['overload_goodput'], x['overload_goodput'])} | "
                     f"{ratio(rt['fixed_cpu_us'], x['fixed_cpu_us'])} | {ratio(rt['rss'], x['rss'])} |")
        runs = "; ".join(f"{n} " + ", ".join(f"{r['max_goodput'] / 1000:.0f}k" for r in res["scale"][label][n])
                         for n in names)
        L.append(f"\nMax goodput by round: {runs}.\n")
    if "opentracker" in names:
        L.append("opentracker's memory includes its whitelist of the workload's info hashes (Debian builds it "
                 "whitelist-only).\n")
    L.append("## Latency at fixed offered rates (open loop, from each request's scheduled send time)\n")
    L.append("| offered rate | server | p50 µs | p99 µs | p99.9 µs | server CPU per reply (µs) | lost |")
    L.append("|---|---|---|---|---|---|---|")
    for row in res["latency"]:
        for n in names:
            s = row["servers"][n]
            L.append(f"| {row['rate']:,.0f}/s ({row['share']:.0%}) | {n} | {s['p50']} | {s['p99']} | {s['p999']} | "
                     f"{s['cpu_us']:.2f} | {s['lost']} |")
    L.append(f"\n## Bytes per peer by swarm size ({FILL_PEERS:,} peers in equal swarms, IPv4, half seeders)\n")
    L.append("Growth of resident memory divided by the peers stored (the same table as ExTracker's README).\n")
    L.append("| peers per swarm | " + " | ".join(names) + " |")
    L.append("|---|" + "---|" * len(names))
    for n in SWARM_SIZES:
        row = res["per_peer"].get(str(n))
        if row:
            L.append(f"| {n:,} | " + " | ".join(f"{row[s]['bytes_per_peer']:.1f} B" if s in row else "–"
                                                 for s in names) + " |")
    if res["swarm_1m"]:
        L.append(f"\nAnnounces per second into that {FILL_PEERS:,}-peer swarm (closed loop): " + ", ".join(
            f"{n} {v['rps']:,.0f}" for n, v in res["swarm_1m"].items()) + ".")
    http = res.get("http")
    if http:
        L.append("\n## HTTP announces (64 connections from 64 source addresses, one request in flight on each)\n")
        L.append("`ringtracker-epoll` is the same HTTP frontend on its epoll backend (`http.backend = \"epoll\"`, "
                 "what `auto` takes where io_uring is blocked).\n")
        L.append("| server | replies/s (median) | runs | server CPU per reply (µs) | server busy | "
                 f"CPU per reply at {HTTP_FIXED_RATE:,}/s (µs) | p99 at {HTTP_FIXED_RATE:,}/s (µs) |")
        L.append("|---|---|---|---|---|---|---|")
        for n, runs in http["throughput"].items():
            rps = median([x["rps"] for x in runs])
            busy = median([x["cpu_s"] / (res["seconds"] + WARMUP) for x in runs])
            f = http["fixed"].get(n, {})
            L.append(f"| {n} | {rps:,.0f} | " + ", ".join(f"{x['rps'] / 1000:.0f}k" for x in runs)
                     + f" | {median([x['cpu_us'] for x in runs]):.2f} | {busy:.0%} | "
                     f"{f.get('cpu_us', float('nan')):.2f} | {f.get('p99', '–')} |")
        L.append("\nA server busy well under 100% was not saturated: the one-core HTTP load generator was the "
                 "limit, so compare CPU per reply (at the fixed rate above all). opentracker closes the "
                 "connection after every reply; loadgen reconnects, as real clients must.")
    L.append("\nWhat each tuning knob did, the profile, and what limits us: [PERFORMANCE.md](PERFORMANCE.md).")
    L.append("\n## Reproduce\n")
    L.append("```sh\nmake bench-peers   # once: installs aquatic_udp (cargo) and opentracker (Debian)\nmake bench\n```")
    L.append("\n`make bench` also runs the criterion benchmarks of the core (`cargo bench --bench core`); "
             "their output is in target/criterion.")
    doc = ROOT / "docs" / "BENCHMARKS.md"
    # `make bench-cluster` owns the section after its marker, and the
    # sections measured by their own commands sit after theirs: keep both.
    marker = "<!-- make bench-cluster -->"
    by_hand = "<!-- measured by their own commands -->"
    text = doc.read_text() if doc.exists() else ""
    head, has_cluster, cluster = text.partition(marker)
    _, has_by_hand, hand = head.partition(by_hand)
    middle = "\n" + by_hand + hand if has_by_hand else ""
    tail = "\n" + marker + cluster if has_cluster else ""
    doc.write_text("\n".join(L) + "\n" + middle + tail)


def write_svg(res):
    names = res["servers"]
    colors = {"ringtracker": "#2b7bb9", "ringtracker-mmsg": "#8fbce0",
              **{n: "#5a9bd0" for n in names if n.startswith("ringtracker@")}, "aquatic_udp": "#e08a1e",
              "opentracker": "#7a7a7a"}
    labels = [label for label, _ in SCALES if label in res.get("scale", {})]
    goodput = {label: {n: v["max_goodput"] for n, v in scale_medians(res, label).items()} for label in labels}
    W, H = 1000, 360
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
             f'<rect width="{W}" height="{H}" fill="white"/>',
             '<text x="20" y="24" font-size="15" font-weight="bold">Max announce goodput/s by workload</text>',
             '<text x="470" y="24" font-size="15" font-weight="bold">p99 latency (µs, log scale) by offered rate</text>']
    top = max((v for g in goodput.values() for v in g.values()), default=1) or 1
    x0, base, height = 30, 320, 260
    group_w = 420 / max(len(labels), 1)
    bw = min(60, (group_w - 20) / max(len(names), 1))
    for j, label in enumerate(labels):
        for i, n in enumerate(names):
            v = goodput[label][n]
            h = v / top * height
            x = x0 + j * group_w + i * bw
            parts.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bw - 2:.1f}" height="{h:.1f}" '
                         f'fill="{colors.get(n, "#555")}"><title>{n}: {v:,.0f}/s</title></rect>')
            parts.append(f'<text x="{x + bw / 2:.1f}" y="{base - h - 4:.1f}" text-anchor="middle" '
                         f'font-size="10">{v / 1000:.0f}k</text>')
        parts.append(f'<text x="{x0 + j * group_w + (group_w - 20) / 2:.1f}" y="{base + 16}" '
                     f'text-anchor="middle" font-size="11">{label}</text>')
    rows = res["latency"]
    # Log scale: the slow outliers would flatten everything else.
    import math
    worst = math.log10(max((row["servers"][n]["p99"] for row in rows for n in names), default=10) or 10)
    def scaled(v):
        return max(math.log10(max(v, 1)), 0.0) / worst * height
    gx, gw = 480, 500
    group = gw / max(len(rows), 1)
    bw2 = (group - 20) / max(len(names), 1)
    for j, row in enumerate(rows):
        for i, n in enumerate(names):
            v = row["servers"][n]["p99"]
            h = scaled(v)
            x = gx + j * group + i * bw2
            parts.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bw2 - 2:.1f}" height="{h:.1f}" '
                         f'fill="{colors.get(n, "#555")}"><title>{n}: {v} µs</title></rect>')
            parts.append(f'<text x="{x + bw2 / 2:.1f}" y="{base - h - 4:.1f}" text-anchor="middle" font-size="10">{v}</text>')
        parts.append(f'<text x="{gx + j * group + (group - 20) / 2:.1f}" y="{base + 16}" text-anchor="middle">'
                     f'{row["rate"] / 1000:.0f}k/s</text>')
    for i, n in enumerate(names):
        parts.append(f'<rect x="{480 + i * 125}" y="340" width="12" height="12" fill="{colors.get(n, "#555")}"/>')
        parts.append(f'<text x="{496 + i * 125}" y="351">{n}</text>')
    parts.append("</svg>")
    (ROOT / "docs" / "bench-chart.svg").write_text("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
