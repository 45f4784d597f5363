#!/usr/bin/python3
"""What snapshots cost: write and load time of a table of ~1M peers, and
announce throughput while snapshots are being written, against the same
tracker without snapshots (alternated A B A B, medians).

Usage (after `make build`): /usr/bin/python3 loadgen/snapshot_cost.py
Server pinned to CPU 0 with one worker, loadgen to CPU 1, as in make bench.
"""

import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release"
PEERS, TORRENTS = 1_000_000, 100_000
ROUNDS, SECONDS = 3, 10


def start(config, log):
    proc = subprocess.Popen(
        ["taskset", "-c", "0", str(BIN / "ringtracker"), "--workers", "1", "--config", str(config),
         "--metrics", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    deadline = time.monotonic() + 120
    while "listening on udp" not in Path(log).read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"tracker did not start: {Path(log).read_text()}")
        time.sleep(0.05)
    return proc


def loadgen(*args):
    out = subprocess.run(["taskset", "-c", "1", str(BIN / "loadgen"), "--target", "127.0.0.1:6995", "--json",
                          *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def fill():
    return loadgen("--mode", "once", "--torrents", str(TORRENTS), "--peers", str(PEERS), "--duration", "300",
                   "--inflight", "128", "--timeout-ms", "3000")


def main():
    work = Path(tempfile.mkdtemp(prefix="rt-snapcost-"))
    snap = work / "swarms.snap"
    with_snap = work / "with.toml"
    # A snapshot every second: the loaded run writes one after another.
    with_snap.write_text(f'[udp]\nlisten = ["127.0.0.1:6995"]\n[http]\nlisten = []\n'
                         f'[storage]\nsnapshot = "{snap}"\nsnapshot_interval = 1\n')
    without = work / "without.toml"
    without.write_text('[udp]\nlisten = ["127.0.0.1:6995"]\n[http]\nlisten = []\n')
    log = work / "log"
    load = ["--mode", "closed", "--torrents", str(TORRENTS), "--peers", str(PEERS), "--inflight", "128",
            "--duration", str(SECONDS), "--warmup", "1"]
    results = {"with": [], "without": []}
    writes, loads = [], []
    for r in range(ROUNDS):
        for name, config in (("without", without), ("with", with_snap)):
            snap.unlink(missing_ok=True)
            proc = start(config, log)
            fill()
            rep = loadgen(*load, "--server-pid", str(proc.pid))
            results[name].append(rep["replies_per_second"])
            proc.terminate()
            proc.wait()
            text = log.read_text()
            if name == "with":
                writes += [float(m) for m in re.findall(r"peers, \d+ bytes in ([\d.]+) ms", text)]
                # Load it back.
                proc = start(config, log)
                m = re.search(r"snapshot loaded .*: (\d+) torrents, (\d+) peers .* in ([\d.]+) ms", log.read_text())
                loads.append((int(m.group(2)), float(m.group(3))))
                proc.terminate()
                proc.wait()
            print(f"round {r + 1} {name}: {rep['replies_per_second']:.0f} replies/s", flush=True)
    size = snap.stat().st_size
    med = {k: statistics.median(v) for k, v in results.items()}
    print(json.dumps({"replies_per_second": results, "median": med,
                      "ratio_with_to_without": med["with"] / med["without"],
                      "write_ms": {"median": statistics.median(writes), "max": max(writes), "n": len(writes)},
                      "load": {"peers": loads[-1][0], "ms_median": statistics.median(x[1] for x in loads)},
                      "snapshot_bytes": size}, indent=2))


main()
