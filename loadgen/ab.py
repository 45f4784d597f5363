#!/usr/bin/python3
"""A/B of tracker builds: alternate them run by run (A B A B ...) under the
standard closed-loop load and print each one's runs and medians.

  /usr/bin/python3 loadgen/ab.py ROUNDS BINARY_A BINARY_B [BINARY_C ...]

Each run starts the binary pinned to CPU 0 with one worker, UDP only, and
runs loadgen on CPU 1 for 8 s after a 2-s warm-up. Copy target/release/
ringtracker aside before and after a change to compare the two builds.
"""

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    rounds, binaries = int(sys.argv[1]), sys.argv[2:]
    config = Path(tempfile.mkdtemp(prefix="rt-ab-")) / "udp-only.toml"
    # Only keys every revision knows (an older build refuses newer keys).
    config.write_text("[http]\nlisten = []\n")
    runs = {b: [] for b in binaries}
    for _ in range(rounds):
        for b in binaries:
            server = subprocess.Popen(["taskset", "-c", "0", b, "--workers", "1", "--udp", "127.0.0.1:6969",
                                       "--config", str(config)], stderr=subprocess.DEVNULL)
            time.sleep(0.4)  # a script, not a test: let it bind
            out = subprocess.run([str(ROOT / "target/release/loadgen"), "--cpu", "1", "--server-pid",
                                  str(server.pid), "--duration", "8", "--warmup", "2", "--inflight", "128",
                                  "--json"], capture_output=True, text=True, check=True)
            server.terminate()
            server.wait()
            d = json.loads(out.stdout)
            if d["counts"]["announces"] == 0:
                sys.exit(f"{b} answered nothing: does it start with {config}?")
            runs[b].append((d["replies_per_second"], d["server"]["cpu_us_per_reply"]))
    for b in binaries:
        print(f"{b}: runs " + " ".join(f"{r / 1000:.0f}k" for r, _ in runs[b])
              + f"; median {statistics.median(r for r, _ in runs[b]):,.0f} replies/s, "
              f"{statistics.median(c for _, c in runs[b]):.2f} µs CPU per reply")


main()
