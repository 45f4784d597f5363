#!/usr/bin/python3
"""The management API's latency under announce load, and what API traffic
costs the announces.

  /usr/bin/python3 loadgen/admin_latency.py ROUNDS [--torrents N --peers N]
      [--seconds S] [--api-rate CALLS_PER_SECOND]

Each round starts target/release/ringtracker pinned to CPU 0 (one UDP
worker, the admin thread beside it on the same core) with `access.mode =
"allow"` over the workload's info hashes (loadgen --write-hashes) and
`[admin]` on loopback; every peer announces once (`loadgen --mode once`),
then loadgen on CPU 1 runs a closed loop (128 in flight) twice for S
seconds: once alone (A), once while this script (also on CPU 1) sends
API calls at CALLS_PER_SECOND (default 100; a huge rate: back to back)
the whole time (B), in rounds of four: GET
/api/torrents/{h}?peers=10000 of the busiest torrent (10,000 peers listed),
GET /api/torrents/{h} of one in the tail (the default 200 at most), PUT and DELETE /api/allow/{a hash outside the
workload} (so the list's API entries are not empty while announces run),
and every 25th round GET /api/torrents?top=10 (a walk of the whole table).
Printed: announces/s A and B with their medians and the tracker's CPU per
reply (the API's CPU counts in B's), and each endpoint's
latency (p50, p99, max, over all rounds), from connect to the last byte;
any status but 200 is counted under its own name.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOADGEN = str(ROOT / "target/release/loadgen")
TRACKER = str(ROOT / "target/release/ringtracker")
TOKEN = "latency-token-0123456789abcdefghijklmnopqrstuvwxyz"


def port_bound(port):
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    return any(int(line.split()[1].split(":")[1], 16) == port for line in lines)


def call(name, method, path, timings):
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", 9101, timeout=30)
    conn.request(method, path, headers={"Authorization": f"Bearer {TOKEN}", "Content-Length": "0"})
    reply = conn.getresponse()
    reply.read()
    conn.close()
    timings.setdefault(name, []).append(time.perf_counter() - start)
    if reply.status != 200:
        timings.setdefault(f"{name}: status {reply.status}", []).append(0.0)


def api_traffic(stop, rate, hot, tail, timings):
    outside = "ab" * 20
    i, start = 0, time.monotonic()
    while not stop.is_set():
        # Four calls a round, rounds paced to `rate` calls a second.
        stop.wait(max(0.0, start + i * 4 / rate - time.monotonic()))
        i += 1
        call("GET /api/torrents/{hot}?peers=10000", "GET", f"/api/torrents/{hot}?peers=10000", timings)
        call("GET /api/torrents/{tail}", "GET", f"/api/torrents/{tail}", timings)
        call("PUT /api/allow/{h}", "PUT", f"/api/allow/{outside}", timings)
        call("DELETE /api/allow/{h}", "DELETE", f"/api/allow/{outside}", timings)
        if i % 25 == 24:
            call("GET /api/torrents?top=10", "GET", "/api/torrents?top=10", timings)


def closed_loop(base, pid, seconds):
    out = subprocess.run([*base, "--mode", "closed", "--inflight", "128", "--server-pid", str(pid),
                          "--duration", str(seconds), "--warmup", "2"],
                         capture_output=True, text=True, check=True)
    d = json.loads(out.stdout)
    return d["goodput_per_second"], d["server"]["cpu_us_per_reply"]


def round_once(args, workdir, hashes, timings):
    token = workdir / "admin.token"
    config = workdir / "tracker.toml"
    config.write_text(f'[http]\nlisten = []\n[access]\nmode = "allow"\nlist = "{hashes}"\n'
                      f'[admin]\nlisten = "127.0.0.1:9101"\ntoken_file = "{token}"\n')
    proc = subprocess.Popen(["taskset", "-c", "0", TRACKER, "--workers", "1", "--udp", "127.0.0.1:6969",
                             "--config", str(config), "--metrics", "127.0.0.1:0"],
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not port_bound(6969) and time.monotonic() < deadline:
            time.sleep(0.05)
        workload = ["--torrents", str(args.torrents), "--peers", str(args.peers)]
        base = [LOADGEN, "--cpu", "1", "--json", *workload]
        subprocess.run([*base, "--mode", "once", "--duration", "1200", "--inflight", "256",
                        "--timeout-ms", "3000"], capture_output=True, check=True)
        alone = closed_loop(base, proc.pid, args.seconds)
        listed = Path(hashes).read_text().split()
        hot, tail = listed[0], listed[len(listed) // 2]
        os.sched_setaffinity(0, {1})
        stop = threading.Event()
        t = threading.Thread(target=api_traffic, args=(stop, args.api_rate, hot, tail, timings))
        t.start()
        with_api = closed_loop(base, proc.pid, args.seconds)
        stop.set()
        t.join()
        return alone, with_api
    finally:
        proc.terminate()
        proc.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("rounds", type=int)
    p.add_argument("--torrents", type=int, default=1_000_000)
    p.add_argument("--peers", type=int, default=2_000_000)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--api-rate", type=float, default=100, help="API calls a second")
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rt-admin-"))
    (workdir / "admin.token").write_text(TOKEN + "\n")
    os.chmod(workdir / "admin.token", 0o600)
    hashes = workdir / "hashes.txt"
    subprocess.run([LOADGEN, "--torrents", str(args.torrents), "--peers", str(args.peers),
                    "--write-hashes", str(hashes)], check=True, capture_output=True)
    timings, runs = {}, []
    for _ in range(args.rounds):
        runs.append(round_once(args, workdir, hashes, timings))
    for label, side in (("alone:   ", 0), ("with API:", 1)):
        rates = [r[side][0] for r in runs]
        cpus = [r[side][1] for r in runs]
        print(f"announces/s {label} " + " ".join(f"{x / 1000:.0f}k" for x in rates)
              + f"; median {statistics.median(rates):,.0f}, "
              f"{statistics.median(cpus):.2f} µs tracker CPU per reply")
    for name, ts in sorted(timings.items()):
        ts = sorted(ts)
        p99 = ts[min(len(ts) - 1, int(len(ts) * 0.99))]
        print(f"{name:<22} n={len(ts):<5} p50 {ts[len(ts) // 2] * 1000:.2f} ms  "
              f"p99 {p99 * 1000:.2f} ms  max {ts[-1] * 1000:.2f} ms")


if __name__ == "__main__":
    main()
