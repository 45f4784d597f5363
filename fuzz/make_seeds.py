#!/usr/bin/env python3
"""Write the checked-in seed corpus of every fuzz target (fuzz/corpus/).

Run from the repository root: python3 fuzz/make_seeds.py. The snapshot
seed is a real snapshot file (fuzz/seeds/swarms.snap, written by the
tracker at stop), copied in as is.
"""
import os
import shutil
import struct
import subprocess

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
MAGIC = 0x41727101980


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def connect(tid=1):
    return struct.pack(">QII", MAGIC, 0, tid)


def announce(cid=0, tid=2, h=b"h" * 20, event=2, numwant=-1, options=b""):
    return (struct.pack(">QII", cid, 1, tid) + h + b"-qB4650-abcdefghijkl"
            + struct.pack(">QQQIIIiH", 0, 100, 0, event, 0, 7, numwant, 6881)
            + options)


def scrape(cid=0, tid=3, hashes=(b"h" * 20, b"i" * 20)):
    return struct.pack(">QII", cid, 2, tid) + b"".join(hashes)


urldata = bytes([2, 12]) + b"/abcdef/anno" + bytes([1, 2, 5]) + b"unce\x00"
put("udp_request", "connect", connect())
put("udp_request", "announce", announce())
put("udp_request", "announce_urldata", announce(options=urldata))
put("udp_request", "scrape", scrape())


def record(flags, source, packet):
    pad = (-len(packet)) % 8
    packet += b"\x00" * pad
    return bytes([flags, source, len(packet) // 8]) + packet


seq = (record(1, 2, connect()) + record(1, 2, announce(options=urldata[:6]))
       + record(1, 4, announce(h=b"h" * 20, event=0, numwant=50))
       + record(1, 3, announce()) + record(1, 2, scrape(hashes=(b"h" * 20,) * 2))
       + record(0, 2, announce()))
put("udp_handler", "sequence", seq)
put("udp_handler", "garbage", record(0, 2, b"\x00" * 16) + record(1, 2, b"\xff" * 24))

HASH = "%68%68%68%68%68%68%68%68%68%68hhhhhhhhhh"


def get(target, headers=""):
    return f"GET {target} HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode()


ann = f"/announce?info_hash={HASH}&peer_id=-qB4650-abcdefghijkl&port=6881&left=0&event=started"
requests = [
    get(ann),
    get(ann.replace("left=0", "left=5") + "&compact=0&numwant=10"),
    get(f"/scrape?info_hash={HASH}&info_hash=iiiiiiiiiiiiiiiiiiii"),
    get("/scrape"),
    get("/0123456789abcdef/announce?" + ann.split("?")[1]),
    get(ann, "X-Forwarded-For: 10.0.0.1, 127.0.0.9\r\n"),
    b"POST /announce HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
]
for i, r in enumerate(requests):
    put("http_request", f"request{i}", r)
seq = b"\x01" + b"".join(bytes([2 * i, len(r) >> 8, len(r) & 0xFF]) + r
                         for i, r in enumerate(requests))
put("http_handler", "sequence", seq)
# Settings 3: full scrape on, every scrape body gzipped for who asks.
gz = [requests[0], get(f"/scrape?info_hash={HASH}", "Accept-Encoding: gzip\r\n"),
      get("/scrape", "Accept-Encoding: gzip;q=0.5, br\r\n"),
      get("/scrape", "Accept-Encoding: *;q=0, gzip;q=0\r\n")]
put("http_handler", "sequence_gzip", b"\x03" + b"".join(
    bytes([2 * i, len(r) >> 8, len(r) & 0xFF]) + r for i, r in enumerate(gz)))

printed = subprocess.run(["./target/release/ringtracker", "--print-config"],
                         capture_output=True, check=True).stdout
put("config_and_lists", "default.toml", printed)
put("config_and_lists", "hashes", b"# list\n" + b"ab" * 20 + b"\n\n" + b"CD" * 20 + b"\n")
put("config_and_lists", "bans", b"10.0.0.0/8\n2001:db8::/32 # v6\n192.0.2.1\n")
put("config_and_lists", "passkeys", b"abcdef0123456789\nZZZZZZZZZZZZZZZZZZZZ\n")



def snapshot_seed():
    """A real snapshot: three peers in two swarms, written at stop."""
    import signal
    import socket
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        snap, conf = os.path.join(d, "s.snap"), os.path.join(d, "c.toml")
        with open(conf, "w") as f:
            f.write(f'[http]\nlisten = []\n[storage]\nsnapshot = "{snap}"\n')
        p = subprocess.Popen(["./target/release/ringtracker", "--config", conf,
                              "--udp", "127.0.0.1:0", "--workers", "1",
                              "--metrics", "127.0.0.1:0"],
                             stderr=subprocess.PIPE, text=True)
        port = None
        for line in p.stderr:
            if "listening on udp " in line:
                port = int(line.rsplit(":", 1)[1])
                break
        for i, h in enumerate([b"a" * 20, b"a" * 20, b"b" * 20]):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((f"127.0.0.{i + 2}", 0))
            s.settimeout(10)
            s.sendto(connect(), ("127.0.0.1", port))
            cid = struct.unpack(">Q", s.recv(64)[8:16])[0]
            s.sendto(announce(cid=cid, h=h, event=2 if i else 1), ("127.0.0.1", port))
            s.recv(2048)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        return open(snap, "rb").read()


snap = snapshot_seed()
# Mode 0: the file as is; mode 1: without its 12-byte trailer (the harness
# appends a correct one).
put("snapshot", "swarms.snap", b"\x00" + snap)
put("snapshot", "swarms.body", b"\x01" + snap[:-12])

# Cluster mode: a message of three changes (seeder with a completion,
# IPv6 leecher, a stop) from node "a", and one with a port-0 completion.
# Bodies without their tag: the target tags what it is given with the key
# it knows, so the fuzzer reaches the decoder.
def change(kind, h, addr=b"", completed=False, v6=False):
    return bytes([kind | (0x08 if completed else 0) | (0x10 if v6 else 0)]) + h + addr


def message(node, changes):
    head = b"RTC2" + bytes([len(node)]) + node + struct.pack("<QQQI", 7, 1, 1700000000000, len(changes))
    return head + b"".join(changes)


v4 = bytes([10, 0, 0, 1, 0x1a, 0xe1])
v6 = bytes(15) + bytes([1, 0x1a, 0xe2])
put("cluster_message", "three.msg", message(b"a", [
    change(2, b"h" * 20, v4, completed=True), change(1, b"h" * 20, v6, v6=True), change(3, b"h" * 20, v4)]))
put("cluster_message", "completion.msg", message(b"node-b", [change(5, b"i" * 20, completed=True)]))
