#!/usr/bin/python3
"""What private mode on a database costs under load: the same private
workload (every announce with a passkey and growing byte totals) against
the tracker with its users in a passkey file (no database) and with its
users, torrents and credits in MariaDB (flushing every 3 s), alternated
run by run (A B A B ...). With `--compare write-back`, the database with
private.write_back off (A) and on (B): what rt_peers, rt_torrent_stats and
the history columns cost.

  /usr/bin/python3 loadgen/private_cost.py [ROUNDS] [--torrents N --peers N --users N]
      [--compare file|write-back]

Starts its own mariadbd (as tests/private_db.rs does) with every torrent
of the workload in rt_torrents and every user in rt_users. Each run: the
tracker on CPU 0 (one worker, UDP), loadgen and mariadbd on CPU 1; every
peer announces once (--mode once; on the database, the run waits until
those credits are written), then an open loop at --rate for --seconds
gives the tracker's CPU per reply and the flushes during it (how many,
their mean duration), then a closed loop (128 in flight, 10 s) gives the
most replies/s. Needs mariadb-server (make mariadb) and a release build
(make build).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRACKER = str(ROOT / "target/release/ringtracker")
LOADGEN = str(ROOT / "target/release/loadgen")
SCHEMA = ROOT / "contrib/schema/mysql.sql"
METRICS = 9187


def port_bound(port, proto="udp"):
    lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
    return any(int(line.split()[1].split(":")[1], 16) == port for line in lines)


def wait_for(what, check, seconds=120):
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"timed out: {what}")
        time.sleep(0.05)


class MariaDb:
    def __init__(self, work):
        self.dir = work / "db"
        self.sock = self.dir / "mariadbd.sock"
        self.port = 33061
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.dir}/data",
                        "--auth-root-authentication-method=normal", "--skip-test-db", "--user=root"],
                       check=True, capture_output=True)
        sbin = "/usr/sbin/mariadbd" if os.path.exists("/usr/sbin/mariadbd") else "mariadbd"
        self.proc = subprocess.Popen(
            ["taskset", "-c", "1", sbin, "--no-defaults", f"--datadir={self.dir}/data",
             f"--socket={self.sock}", f"--port={self.port}", "--bind-address=127.0.0.1",
             "--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=512M",
             "--user=root", f"--log-error={self.dir}/error.log", "--secure-file-priv="],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("mariadbd", lambda: self.try_sql("SELECT 1", db=None) is not None)

    def try_sql(self, sql, db="site"):
        cmd = ["mariadb", "--no-defaults", f"--socket={self.sock}", "-u", "root", "--batch",
               "--skip-column-names"] + ([db] if db else []) + ["-e", sql]
        r = subprocess.run(cmd, capture_output=True, text=True)
        return r.stdout if r.returncode == 0 else None

    def sql(self, sql, db="site"):
        out = self.try_sql(sql, db)
        if out is None:
            sys.exit(f"mariadb: {sql[:200]} failed")
        return out

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def setup_site(db, work, args):
    hashes, keys = work / "hashes.txt", work / "passkeys.txt"
    workload = ["--torrents", str(args.torrents), "--peers", str(args.peers)]
    subprocess.run([LOADGEN, *workload, "--write-hashes", str(hashes)], check=True)
    subprocess.run([LOADGEN, *workload, "--passkeys", str(args.users), "--write-passkeys", str(keys)],
                   check=True)
    db.sql("CREATE DATABASE site", db=None)
    db.sql(SCHEMA.read_text())
    db.sql(f"SET @n = 0; LOAD DATA INFILE '{hashes}' INTO TABLE rt_torrents (@h) "
           "SET id = (@n := @n + 1), info_hash = UNHEX(@h)")
    db.sql(f"SET @n = 0; LOAD DATA INFILE '{keys}' INTO TABLE rt_users (@k) "
           "SET id = (@n := @n + 1), passkey = @k")
    db.sql("CREATE USER 'tracker'@'127.0.0.1' IDENTIFIED BY 'bench';"
           "GRANT ALL ON site.* TO 'tracker'@'127.0.0.1'", db=None)
    return keys


def metric(name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{METRICS}/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def run(mode, db, keys, work, args):
    config = work / f"{mode}.toml"
    private = (f'database = "mysql://tracker:bench@127.0.0.1:{db.port}/site"\n'
               f'ledger = "{work}/credits.journal"\nflush_interval = 3\nsync_interval = 10\n'
               f'write_back = {"false" if mode == "no-write-back" else "true"}\n'
               if mode != "file" else f'passkeys = "{keys}"\n')
    config.write_text("[http]\nlisten = []\n[access]\nmax_list_entries = 100000000\n"
                      "[private]\nenabled = true\nmax_peers_per_user_torrent = 0\n" + private)
    journal = work / "credits.journal"
    if journal.exists():
        journal.unlink()
    proc = subprocess.Popen(["taskset", "-c", "0", TRACKER, "--workers", "1", "--udp", "127.0.0.1:6969",
                             "--metrics", f"127.0.0.1:{METRICS}", "--config", str(config)],
                            stderr=subprocess.DEVNULL)
    try:
        wait_for("the tracker", lambda: port_bound(6969) and port_bound(METRICS, "tcp"))
        base = [LOADGEN, "--cpu", "1", "--json", "--torrents", str(args.torrents), "--peers",
                str(args.peers), "--passkeys", str(args.users)]
        subprocess.run([*base, "--mode", "once", "--duration", "1200", "--inflight", "256",
                        "--timeout-ms", "3000"], capture_output=True, check=True)
        if mode != "file":
            # The fill's credits (one per peer) are written first: the
            # steady phase measures flushes of its own credits only.
            done = metric("ringtracker_database_flushes_total") + 2
            wait_for("the fill's credits to be written", lambda: (
                metric("ringtracker_database_flushes_total") >= done
                and metric("ringtracker_ledger_pending_credits") == 0), seconds=600)
            # And its write-back rows (a rewrite at start, then 2M peers):
            # the steady phase measures its own rows only.
            wait_for("the fill's write-back rows to be written", lambda: (
                metric("ringtracker_database_write_back_waiting") == 0), seconds=1800)
        before = (metric("ringtracker_database_flushes_total"),
                  metric("ringtracker_database_flush_seconds_total"))
        out = subprocess.run([*base, "--mode", "open", "--rate", str(args.rate), "--server-pid",
                              str(proc.pid), "--duration", str(args.seconds), "--warmup", "2"],
                             capture_output=True, text=True, check=True)
        opened = json.loads(out.stdout)
        flushes = metric("ringtracker_database_flushes_total") - before[0]
        seconds = metric("ringtracker_database_flush_seconds_total") - before[1]
        out = subprocess.run([*base, "--mode", "closed", "--inflight", "128", "--server-pid",
                              str(proc.pid), "--duration", "10", "--warmup", "2"],
                             capture_output=True, text=True, check=True)
        closed = json.loads(out.stdout)
        if closed["counts"]["announces"] == 0:
            sys.exit(f"{mode}: no announce answered")
        return {
            "replies": closed["goodput_per_second"],
            # Under 1: the tracker was not the limit of the closed loop
            # (its CPU time over the 2-s warm-up and 10-s measurement).
            "busy": closed["server"]["cpu_seconds"] / 12,
            "cpu_us": opened["server"]["cpu_us_per_reply"],
            "flushes": flushes,
            "flush_ms": 1000 * seconds / flushes if flushes else 0.0,
        }
    finally:
        proc.terminate()
        proc.wait()
        wait_for("the port to close", lambda: not port_bound(6969))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("rounds", type=int, nargs="?", default=3)
    p.add_argument("--torrents", type=int, default=1_000_000)
    p.add_argument("--peers", type=int, default=2_000_000)
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--rate", type=int, default=20_000,
                   help="the steady phase's announces/s (a large private tracker sees a few thousand)")
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--compare", choices=["file", "write-back"], default="file",
                   help="A: a passkey file (file) or the database without write-back")
    args = p.parse_args()
    base = "file" if args.compare == "file" else "no-write-back"
    work = Path(tempfile.mkdtemp(prefix="rt-private-cost-"))
    db = MariaDb(work)
    try:
        keys = setup_site(db, work, args)
        results = {base: [], "database": []}
        for r in range(args.rounds):
            for mode in (base, "database"):
                res = run(mode, db, keys, work, args)
                results[mode].append(res)
                print(f"round {r + 1} {mode}: {res['replies']:.0f} replies/s closed loop "
                      f"(tracker busy {100 * res['busy']:.0f}%), "
                      f"{res['cpu_us']:.2f} µs/reply at {args.rate}/s, "
                      f"{res['flushes']:.0f} flushes of {res['flush_ms']:.1f} ms", flush=True)
        med = {m: {k: statistics.median(x[k] for x in v) for k in v[0]} for m, v in results.items()}
        credits = db.sql("SELECT COUNT(*), SUM(raw_uploaded) FROM rt_credits").split()
        peers = db.sql("SELECT COUNT(*) FROM rt_peers").split()
        a, b = med[base], med["database"]
        print(f"medians: {base} {a['replies']:.0f}/s {a['cpu_us']:.2f} µs, flush {a['flush_ms']:.1f} ms; "
              f"database {b['replies']:.0f}/s {b['cpu_us']:.2f} µs, flush {b['flush_ms']:.1f} ms; "
              f"ratio {b['replies'] / a['replies']:.3f}; rt_credits rows {credits[0]}; "
              f"rt_peers rows {peers[0]}")
    finally:
        db.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
