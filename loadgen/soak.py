#!/usr/bin/python3
"""make soak: half an hour of mixed open-loop load on one tracker.

A measurement, not a test: does memory stay flat, latency steady and the
socket drop nothing while the tracker lives through churn, snapshots and
reloads? The release build serves UDP and HTTP on loopback, pinned to CPU 0
with one worker; the load runs on CPU 1:

- the standard workload (1M torrents / 2M peers) is filled first;
- UDP at half of the measured maximum goodput (or SOAK_RATE), open loop:
  connects, announces with started/completed/stopped churn (the load
  generator's default event weights) and 10% scrapes;
- HTTP at SOAK_HTTP_RATE (default 10,000/s), open loop, keep-alive;
- a snapshot every minute (storage.snapshot_interval = 60) and a SIGHUP
  every minute (an access list is configured, so a reload reads it).

The load runs in 10-s segments back to back; after each, the tracker's RSS,
both loads' p99 and goodput, and the UDP socket's drop counter
(/proc/net/udp) are sampled. Writes docs/SOAK.md, docs/soak-chart.svg and
target/soak/results.json.

Environment: SOAK_MINUTES (default 30), SOAK_RATE (UDP requests/s; default
half the measured maximum), SOAK_HTTP_RATE, SOAK_TORRENTS, SOAK_PEERS,
SOAK_RECV_BUFFER (udp.socket_recv_buffer in bytes; default the tracker's).
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import LOADGEN, ROOT, TARGET, log, machine, median, rss  # noqa: E402

MINUTES = float(os.environ.get("SOAK_MINUTES", "30"))
HTTP_RATE = int(os.environ.get("SOAK_HTTP_RATE", "10000"))
TORRENTS = int(os.environ.get("SOAK_TORRENTS", "1000000"))
PEERS = int(os.environ.get("SOAK_PEERS", "2000000"))
UDP_PORT, HTTP_PORT = 6979, 6980
SEGMENT = 10
# Samples before this many seconds are the warm-up (not judged for flatness).
WARMUP = min(120, MINUTES * 60 / 4)
SERVER_CPU, LOAD_CPU = "0", "1"


def drops(port):
    """The drop counter of the UDP socket bound to `port` (IPv4)."""
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[1].split(":")[1], 16) == port:
            total += int(f[-1])
    return total


def load(port, args, protocol="udp"):
    cmd = ["taskset", "-c", LOAD_CPU, str(LOADGEN), "--target", f"127.0.0.1:{port}", "--json",
           "--protocol", protocol, "--torrents", str(TORRENTS), "--peers", str(PEERS), *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(proc):
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed: {err.strip()}")
    return json.loads(out)


def start(workdir):
    listed = workdir / "deny.txt"
    listed.write_text("# one torrent nobody asks for\n" + "ee" * 20 + "\n")
    config = workdir / "soak.toml"
    buffer = os.environ.get("SOAK_RECV_BUFFER")
    config.write_text(
        (f"[udp]\nsocket_recv_buffer = {int(buffer)}\n" if buffer else "")
        + f'[http]\nlisten = ["127.0.0.1:{HTTP_PORT}"]\n'
        f'[access]\nmode = "deny"\nlist = "{listed}"\n'
        f'[storage]\nsnapshot = "{workdir / "swarms.snap"}"\nsnapshot_interval = 60\n')
    logfile = open(workdir / "tracker.log", "w")
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, str(TARGET / "ringtracker"), "--workers", "1",
         "--udp", f"127.0.0.1:{UDP_PORT}", "--metrics", "127.0.0.1:0", "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=logfile)
    deadline = time.monotonic() + 60
    while "listening on http" not in (workdir / "tracker.log").read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("tracker did not start:\n" + (workdir / "tracker.log").read_text())
        time.sleep(0.1)
    return proc


def main():
    workdir = Path(tempfile.mkdtemp(prefix="ringtracker-soak-"))
    proc = start(workdir)
    samples = []
    try:
        log(f"filling {TORRENTS} torrents / {PEERS} peers")
        result(load(UDP_PORT, ["--mode", "once", "--duration", "120"]))
        # The HTTP load's peers come from other addresses: fill them too,
        # so the table is at its steady size before the soak begins.
        result(load(HTTP_PORT, ["--mode", "once", "--duration", "300", "--first-source",
                                "127.32.0.1", "--sources", "16"], "http"))
        rate, how = os.environ.get("SOAK_RATE"), "SOAK_RATE"
        if rate is None:
            top = result(load(UDP_PORT, ["--mode", "closed", "--inflight", "128",
                                         "--duration", "10"]))
            rate = int(top["goodput_per_second"] / 2)
            how = f"half the maximum goodput, {top['goodput_per_second']:,.0f}/s, measured first"
            log(f"max goodput {top['goodput_per_second']:.0f}/s: soaking at {rate}/s")
        rate = int(rate)
        base_drops = drops(UDP_PORT)
        started = time.monotonic()
        for i in range(int(MINUTES * 60 / SEGMENT)):
            # Both loads share CPU 1: each sleeps until its next send is due
            # rather than spin (two spinning loads would take turns on the
            # core in slices of milliseconds, and send in bursts).
            common = ["--mode", "open", "--duration", str(SEGMENT), "--warmup", "0",
                      "--idle-wait"]
            # The fill's workload (same seed, same torrents and peers): the
            # table stays the standard size, churned by started/stopped.
            udp = load(UDP_PORT, [*common, "--rate", str(rate), "--scrape-share", "0.1"])
            http = load(HTTP_PORT, [*common, "--rate", str(HTTP_RATE), "--first-source",
                                    "127.32.0.1", "--sources", "16"], "http")
            u, h = result(udp), result(http)
            sample = dict(
                t=round(time.monotonic() - started), rss_mb=rss(proc.pid) / 2**20,
                udp_p99_us=u["latency_us"]["p99"], udp_goodput=u["goodput_per_second"],
                udp_lost=u["counts"]["lost"], udp_lag_us=u["max_lag_us"],
                http_p99_us=h["latency_us"]["p99"],
                http_goodput=h["goodput_per_second"], http_lost=h["counts"]["lost"],
                drops=drops(UDP_PORT) - base_drops)
            samples.append(sample)
            log(" ".join(f"{k}={v:.0f}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in sample.items()))
            if proc.poll() is not None:
                raise RuntimeError("the tracker died")
            if (i + 1) % (60 // SEGMENT) == 0:
                proc.send_signal(signal.SIGHUP)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    text = (workdir / "tracker.log").read_text()
    events = dict(snapshots=text.count("snapshot written to"),
                  reloads=text.count("access list reloaded"),
                  errors=sum(" ERROR " in l for l in text.splitlines()),
                  warnings=sum(" WARN " in l for l in text.splitlines()))
    out = ROOT / "target" / "soak"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(dict(rate=rate, samples=samples,
                                                      events=events), indent=1))
    write_markdown(rate, how, samples, events)
    write_svg(samples)


def write_markdown(rate, how, samples, events):
    warm = [s for s in samples if s["t"] >= WARMUP] or samples
    first, last = warm[:6], warm[-6:]

    def med(rows, key):
        return median([r[key] for r in rows])

    lines = [
        "# Soak",
        "",
        "Written by `make soak` (`loadgen/soak.py`); a measurement, not a test.",
        f"Machine: {machine()}. The release build, one worker on CPU 0, serves "
        f"UDP and HTTP on loopback; the load runs on CPU 1 for {MINUTES:g} minutes: "
        f"a workload of {TORRENTS:,} torrents / {PEERS:,} peers (filled first over UDP, "
        "and again over HTTP from the HTTP load's addresses), "
        f"UDP open loop at {rate:,}/s ({how}) with "
        "connects, announces with started/completed/stopped churn and 10% scrapes, "
        f"HTTP open loop at {HTTP_RATE:,}/s (keep-alive), a snapshot every minute and "
        "a SIGHUP (access list reload) every minute. Sampled every 10 s.",
        "",
        f"| | first minute after the warm-up ({WARMUP:g} s) | last minute |",
        "|---|---|---|",
        f"| RSS (MB) | {med(first, 'rss_mb'):.1f} | {med(last, 'rss_mb'):.1f} |",
        f"| UDP p99 (µs) | {med(first, 'udp_p99_us'):.0f} | {med(last, 'udp_p99_us'):.0f} |",
        f"| HTTP p99 (µs) | {med(first, 'http_p99_us'):.0f} | {med(last, 'http_p99_us'):.0f} |",
        f"| UDP goodput (/s) | {med(first, 'udp_goodput'):,.0f} | "
        f"{med(last, 'udp_goodput'):,.0f} |",
        f"| HTTP goodput (/s) | {med(first, 'http_goodput'):,.0f} | "
        f"{med(last, 'http_goodput'):,.0f} |",
        "",
        f"RSS after warm-up: min {min(s['rss_mb'] for s in warm):.1f} MB, "
        f"max {max(s['rss_mb'] for s in warm):.1f} MB. Socket drops over the whole run: "
        f"{samples[-1]['drops']}. Requests lost (no reply within 1 s): UDP "
        f"{sum(s['udp_lost'] for s in samples)}, HTTP {sum(s['http_lost'] for s in samples)}. "
        f"The tracker logged {events['snapshots']} snapshots, {events['reloads']} reloads, "
        f"{events['errors']} errors and {events['warnings']} warnings.",
        "",
        "![RSS and p99 over the soak](soak-chart.svg)",
        "",
        "Every sample (t in seconds since the load began):",
        "",
        "| t | RSS MB | UDP p99 µs | UDP goodput | UDP sender lag µs | HTTP p99 µs | HTTP goodput "
        "| drops |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in samples:
        lines.append(f"| {s['t']} | {s['rss_mb']:.1f} | {s['udp_p99_us']} | "
                     f"{s['udp_goodput']:,.0f} | {s.get('udp_lag_us', '')} | {s['http_p99_us']} | "
                     f"{s['http_goodput']:,.0f} | {s['drops']} |")
    (ROOT / "docs" / "SOAK.md").write_text("\n".join(lines) + "\n")


def write_svg(samples):
    w, h, pad = 720, 300, 50
    tmax = max(s["t"] for s in samples) or 1
    rmax = max(s["rss_mb"] for s in samples) * 1.2 or 1
    pmax = max(max(s["udp_p99_us"], s["http_p99_us"]) for s in samples) * 1.2 or 1

    def path(key, top):
        pts = [(pad + (w - 2 * pad) * s["t"] / tmax, h - pad - (h - 2 * pad) * s[key] / top)
               for s in samples]
        return "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in pts)

    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
        f'<text x="{w / 2}" y="{h - 15}" text-anchor="middle">seconds of load '
        f'(0-{tmax})</text>',
        f'<path d="{path("rss_mb", rmax)}" fill="none" stroke="#1f77b4" stroke-width="2"/>',
        f'<path d="{path("udp_p99_us", pmax)}" fill="none" stroke="#d62728"/>',
        f'<path d="{path("http_p99_us", pmax)}" fill="none" stroke="#2ca02c"/>',
        f'<text x="{pad}" y="20" fill="#1f77b4">RSS (0-{rmax:.0f} MB)</text>',
        f'<text x="{pad + 200}" y="20" fill="#d62728">UDP p99 (0-{pmax:.0f} µs)</text>',
        f'<text x="{pad + 400}" y="20" fill="#2ca02c">HTTP p99 (same scale)</text>',
        "</svg>",
    ]
    (ROOT / "docs" / "soak-chart.svg").write_text("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
