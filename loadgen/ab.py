#!/usr/bin/python3
"""A/B of tracker builds (or configs): alternate them run by run
(A B A B ...) under one load and print each one's runs and medians.

  /usr/bin/python3 loadgen/ab.py ROUNDS SERVER_A SERVER_B [SERVER_C ...]
      [--torrents N --peers N] [--fill] [--load closed|open:RATE|flood]
      [--numwant N] [--seconds S] [--passkeys N]

A SERVER is a ringtracker binary, optionally with extra config lines after
`::` (`target/release/ringtracker::[udp]\\nsocket_recv_buffer = 1048576`:
`\\n` becomes a newline). Each run starts the server pinned to CPU 0 with one
worker, UDP only; with --fill every peer of the workload announces once
first (`loadgen --mode once`); then loadgen on CPU 1 measures for S seconds
(default 8) after a 2-s warm-up: closed loop (128 in flight, the default),
open loop at RATE/s, or `flood` (open loop asked for 3M/s: as fast as the
sending core goes). Printed per server: goodput (valid replies that
arrived, late ones included) and server CPU per reply. Copy
target/release/ringtracker aside before and after a change to compare.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOADGEN = str(ROOT / "target/release/loadgen")


def port_bound(port):
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    return any(int(line.split()[1].split(":")[1], 16) == port for line in lines)


def run_once(server, args, workdir):
    binary, _, extra = server.partition("::")
    config = Path(tempfile.mkstemp(dir=workdir, suffix=".toml")[1])
    # Only keys every revision knows (an older build refuses newer keys).
    config.write_text("[http]\nlisten = []\n" + extra.replace("\\n", "\n") + "\n")
    proc = subprocess.Popen(["taskset", "-c", "0", binary, "--workers", "1", "--udp", "127.0.0.1:6969",
                             "--config", str(config)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not port_bound(6969) and time.monotonic() < deadline:
            time.sleep(0.05)
        workload = ["--torrents", str(args.torrents), "--peers", str(args.peers),
                    "--passkeys", str(args.passkeys)]
        base = [LOADGEN, "--cpu", "1", "--json", *workload]
        if args.fill:
            subprocess.run([*base, "--mode", "once", "--duration", "1200", "--inflight", "256",
                            "--timeout-ms", "3000"], capture_output=True, check=True)
        if args.load == "closed":
            load = ["--mode", "closed", "--inflight", "128"]
        elif args.load == "flood":
            load = ["--mode", "open", "--rate", "3000000"]
        else:
            load = ["--mode", "open", "--rate", args.load.split(":")[1]]
        out = subprocess.run([*base, *load, "--numwant", str(args.numwant), "--server-pid", str(proc.pid),
                              "--duration", str(args.seconds), "--warmup", "2"],
                             capture_output=True, text=True, check=True)
        d = json.loads(out.stdout)
        if d["counts"]["announces"] + d["counts"]["late"] == 0:
            sys.exit(f"{server} answered nothing: does it start with {config}?")
        return d["goodput_per_second"], d["server"]["cpu_us_per_reply"]
    finally:
        proc.terminate()
        proc.wait()
        deadline = time.monotonic() + 10
        while port_bound(6969) and time.monotonic() < deadline:
            time.sleep(0.05)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("rounds", type=int)
    p.add_argument("servers", nargs="+")
    p.add_argument("--torrents", type=int, default=1_000_000)
    p.add_argument("--peers", type=int, default=2_000_000)
    p.add_argument("--fill", action="store_true")
    p.add_argument("--load", default="closed")
    p.add_argument("--numwant", type=int, default=50)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--passkeys", type=int, default=0,
                   help="private load: loadgen --passkeys N (give the servers a passkey file)")
    args = p.parse_args()
    workdir = tempfile.mkdtemp(prefix="rt-ab-")
    runs = {s: [] for s in args.servers}
    for _ in range(args.rounds):
        for s in args.servers:
            runs[s].append(run_once(s, args, workdir))
    for s in args.servers:
        print(f"{s}: runs " + " ".join(f"{r / 1000:.0f}k" for r, _ in runs[s])
              + f"; median {statistics.median(r for r, _ in runs[s]):,.0f} replies/s, "
              f"{statistics.median(c for _, c in runs[s]):.2f} µs CPU per reply")


if __name__ == "__main__":
    main()
