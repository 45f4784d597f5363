#!/usr/bin/python3
"""End to end: two real libtorrent sessions meet through ringtracker alone.

A seeder and a leecher on loopback, with DHT, LSD, UPnP, NAT-PMP and the
default extensions (PEX among them) off, so the tracker is their only way to
find each other. The leecher downloads a few MiB of random data through a
udp:// tracker URL and the bytes must match. Afterwards a raw BEP 15 scrape
must show the swarm and the completed download.

Usage: libtorrent_swarm.py TRACKER_URL WORKDIR [private | db LEECHER_URL | dual LEECHER_URL]
(TRACKER_URL is udp://127.0.0.1:PORT[/PASSKEY]/announce or
http://127.0.0.1:PORT[/PASSKEY]/announce; over HTTP the scrape is libtorrent's
own. With `private`, the tracker only serves the passkey in the URL: over UDP
libtorrent must send it as BEP 41 URLData, and an announce without it must be
refused. With `db`, a private tracker on a site's database: the seeder
announces to TRACKER_URL and the leecher to LEECHER_URL (two users); the
script prints `info_hash <hex>` and waits for a line on stdin (the caller
registers the torrent meanwhile), and after the download both announce
once more, so the tracker has their final totals; it then prints
`live SEEDER_PORT LEECHER_PORT` and waits for a line, removes the
leecher's torrent (libtorrent then announces `stopped`), prints `stopped`
and waits for another line before it ends. With `dual`, TRACKER_URL is
http://[::1]:PORT/announce and LEECHER_URL http://127.0.0.1:PORT/announce:
the seeder announces over IPv6 only and the leecher over IPv4 only, so
they meet only if the tracker sends each the other family's peers (BEP 7
dual-stack replies): the leecher announces first, the seeder's reply
must list it, and the leecher's next reply must list the seeder.)
"""

import hashlib
import os
import socket
import struct
import sys
import time

import libtorrent as lt

DEADLINE_SECONDS = 180
DATA_BYTES = 4 * 1024 * 1024 + 12345


def session(listen="127.0.0.1:0"):
    settings = {
        "listen_interfaces": listen,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "alert_mask": lt.alert.category_t.all_categories,
        # Announce to every tracker right away, and allow loopback peers.
        "announce_to_all_trackers": True,
        "allow_multiple_connections_per_ip": True,
        # libtorrent refuses to scrape a tracker on localhost otherwise.
        "ssrf_mitigation": False,
    }
    params = lt.session_params(settings)
    # No default plugins: no ut_pex, no ut_metadata, no smart_ban.
    params.extensions = []
    return lt.session(params)


def make_torrent(data_dir, tracker_url, flags=0):
    fs = lt.file_storage()
    lt.add_files(fs, os.path.join(data_dir, "payload.bin"))
    t = lt.create_torrent(fs, 64 * 1024, flags=flags)
    if tracker_url:
        t.add_tracker(tracker_url)
    lt.set_piece_hashes(t, data_dir)
    return lt.torrent_info(t.generate())


def add(ses, info, save_path, tracker_url=None):
    atp = lt.add_torrent_params()
    atp.ti = info
    atp.save_path = save_path
    if tracker_url:
        atp.trackers = [tracker_url]
    # libtorrent 2 adds torrents paused and auto-managed by default here.
    atp.flags &= ~(lt.torrent_flags.paused | lt.torrent_flags.auto_managed)
    h = ses.add_torrent(atp)
    h.resume()
    return h


def drain(ses, name, log):
    for a in ses.pop_alerts():
        if isinstance(a, (lt.tracker_error_alert, lt.tracker_reply_alert,
                          lt.tracker_announce_alert, lt.peer_connect_alert,
                          lt.torrent_finished_alert, lt.tracker_warning_alert)):
            log.append(f"{name}: {a.message()}")


def udp_scrape(host, port, info_hashes):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(struct.pack(">QII", 0x41727101980, 0, 1), (host, port))
    reply = s.recv(64)
    cid = reply[8:16]
    s.sendto(cid + struct.pack(">II", 2, 2) + b"".join(info_hashes), (host, port))
    reply = s.recv(2048)
    assert struct.unpack(">I", reply[:4])[0] == 2, reply
    return [struct.unpack(">III", reply[8 + 12 * i: 20 + 12 * i]) for i in range(len(info_hashes))]


def libtorrent_scrape(ses, handle, deadline, log):
    """Ask libtorrent to scrape its tracker; return (complete, incomplete)."""
    handle.scrape_tracker()
    while time.monotonic() < deadline:
        ses.wait_for_alert(500)
        for a in ses.pop_alerts():
            if isinstance(a, lt.scrape_reply_alert):
                return a.complete, a.incomplete
            if isinstance(a, lt.scrape_failed_alert):
                log.append(f"scrape failed: {a.message()}")
                return None
    return None


def udp_announce_without_passkey(host, port, info_hash):
    """A raw BEP 15 announce with no URLData: returns (action, message)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(struct.pack(">QII", 0x41727101980, 0, 1), (host, port))
    cid = s.recv(64)[8:16]
    packet = cid + struct.pack(">II", 1, 3) + info_hash + b"-XX0001-abcdefghijkl" + struct.pack(
        ">QQQIIIiH", 0, 0, 0, 2, 0, 0, -1, 7777)
    s.sendto(packet, (host, port))
    reply = s.recv(2048)
    return struct.unpack(">I", reply[:4])[0], reply[8:]


def next_reply_peers(ses, name, deadline, log):
    """Wait for the session's next tracker reply; return how many peers it
    listed."""
    while time.monotonic() < deadline:
        ses.wait_for_alert(500)
        for a in ses.pop_alerts():
            if isinstance(a, (lt.tracker_error_alert, lt.tracker_warning_alert)):
                log.append(f"{name}: {a.message()}")
            if isinstance(a, lt.tracker_reply_alert):
                log.append(f"{name}: {a.message()}")
                return a.num_peers
    print("\n".join(log))
    sys.exit(f"FAIL: the {name}'s announce got no reply")


def meet_across_families(info, seed_dir, leech_dir, seeder_url, leecher_url, log):
    """The dual-stack swarm: a leecher known to the tracker over IPv4, then
    a seeder known over IPv6; each must be sent the other."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    # Both listen on both families (libtorrent 2 connects out only from a
    # family it listens on) but each announces to one family's URL only, so
    # the tracker knows the seeder as IPv6 and the leecher as IPv4.
    both = "127.0.0.1:0,[::1]:0"
    leecher_ses, seeder_ses = session(both), session(both)
    leecher = add(leecher_ses, info, leech_dir, leecher_url)
    # Held to 1 KiB/s until both checks are done: a leecher that finished
    # would announce as a seeder, and seeders are sent leechers only.
    leecher.set_download_limit(1024)
    next_reply_peers(leecher_ses, "leecher", deadline, log)
    seeder = add(seeder_ses, info, seed_dir, seeder_url)
    if next_reply_peers(seeder_ses, "seeder", deadline, log) < 1:
        print("\n".join(log))
        sys.exit("FAIL: the IPv6 seeder was not sent the IPv4 leecher")
    leecher.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)
    if next_reply_peers(leecher_ses, "leecher", deadline, log) < 1:
        print("\n".join(log))
        sys.exit("FAIL: the IPv4 leecher was not sent the IPv6 seeder")
    print("dual stack: the IPv6 seeder and the IPv4 leecher were each sent the other")
    leecher.set_download_limit(-1)
    return seeder_ses, seeder, leecher_ses, leecher


def final_announces(seeder_ses, seeder, leecher_ses, leecher, deadline, log):
    """Both announce now (the leecher's `completed`, the seeder's upload)
    and the tracker answers both."""
    for ses, h, name in ((seeder_ses, seeder, "seeder"), (leecher_ses, leecher, "leecher")):
        ses.pop_alerts()
        h.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)
        answered = False
        while not answered:
            if time.monotonic() > deadline:
                print("\n".join(log))
                sys.exit(f"FAIL: the {name}'s last announce got no reply")
            ses.wait_for_alert(500)
            for a in ses.pop_alerts():
                if isinstance(a, lt.tracker_error_alert):
                    log.append(f"{name}: {a.message()}")
                answered |= isinstance(a, lt.tracker_reply_alert)


def main():
    url, work = sys.argv[1], sys.argv[2]
    private = len(sys.argv) > 3 and sys.argv[3] == "private"
    db = len(sys.argv) > 4 and sys.argv[3] == "db"
    dual = len(sys.argv) > 4 and sys.argv[3] == "dual"
    scheme, rest = url.split("://", 1)
    hostport = rest.split("/", 1)[0]
    host, port = hostport.rsplit(":", 1)
    port = int(port)
    seed_dir = os.path.join(work, "seed")
    leech_dir = os.path.join(work, "leech")
    os.makedirs(seed_dir, exist_ok=True)
    os.makedirs(leech_dir, exist_ok=True)
    data = os.urandom(DATA_BYTES)
    with open(os.path.join(seed_dir, "payload.bin"), "wb") as f:
        f.write(data)

    # Dual stack: v1 only, so each announce has one reply to count.
    flags = lt.create_torrent.v1_only if dual else 0
    info = make_torrent(seed_dir, None if db or dual else url, flags)
    log = []
    if dual:
        seeder_ses, seeder, leecher_ses, leecher = meet_across_families(
            info, seed_dir, leech_dir, url, sys.argv[4], log)
    elif db:
        seeder_ses, leecher_ses = session(), session()
        print("info_hash", info.info_hashes().v1.to_bytes().hex(), flush=True)
        sys.stdin.readline()
        seeder = add(seeder_ses, info, seed_dir, url)
        leecher = add(leecher_ses, info, leech_dir, sys.argv[4])
    else:
        seeder_ses, leecher_ses = session(), session()
        seeder = add(seeder_ses, info, seed_dir)
        leecher = add(leecher_ses, info, leech_dir)

    deadline = time.monotonic() + DEADLINE_SECONDS
    while not leecher.status().is_seeding:
        if time.monotonic() > deadline:
            print("\n".join(log))
            print("seeder:", seeder.status().state, "leecher:", leecher.status().state,
                  leecher.status().progress)
            sys.exit("FAIL: the leecher did not finish in time")
        # Blocks until an alert arrives (or 500 ms): event-driven, not a sleep.
        leecher_ses.wait_for_alert(500)
        drain(seeder_ses, "seeder", log)
        drain(leecher_ses, "leecher", log)

    with open(os.path.join(leech_dir, "payload.bin"), "rb") as f:
        got = f.read()
    if hashlib.sha256(got).digest() != hashlib.sha256(data).digest():
        sys.exit("FAIL: downloaded data differs from the seed")
    print(f"leecher downloaded {len(got)} bytes through {url}; data matches")

    # The leecher announces `completed` when it finishes; make sure the
    # tracker has it, then scrape.
    if db:
        final_announces(seeder_ses, seeder, leecher_ses, leecher, deadline, log)
        # Both stay live while the caller reads the site's tables; then the
        # leecher leaves (its `stopped` answered) and the seeder stays.
        print("live", seeder_ses.listen_port(), leecher_ses.listen_port(), flush=True)
        sys.stdin.readline()
        # libtorrent sends the `stopped` announce as the torrent goes (it
        # posts no reply alert for it): the caller watches the tables.
        leecher_ses.remove_torrent(leecher)
        print("stopped", flush=True)
        sys.stdin.readline()
        print("PASS")
        return
    leecher.force_reannounce()
    if scheme == "http":
        counts = None
        while time.monotonic() < deadline:
            counts = libtorrent_scrape(leecher_ses, leecher, deadline, log)
            if counts and counts[0] >= 2:
                break
        print("libtorrent's scrape (complete, incomplete):", counts)
        if not counts or counts[0] < 2:
            print("\n".join(log))
            sys.exit("FAIL: libtorrent's scrape does not show two seeders")
    elif private:
        # The download above could only happen through the tracker, so
        # libtorrent's URLData carried the passkey; without it, no service.
        action, message = udp_announce_without_passkey(host, port, info.info_hashes().v1.to_bytes())
        print("announce without passkey:", action, message)
        if action != 3 or message != b"unknown passkey":
            sys.exit("FAIL: the private tracker served an announce without a passkey")
    else:
        hashes = [info.info_hashes().v1.to_bytes()]
        if info.info_hashes().has_v2():
            hashes.append(info.info_hashes().v2.to_bytes()[:20])
        counts = []
        while time.monotonic() < deadline:
            counts = udp_scrape(host, port, hashes)
            if counts[0][1] >= 1 and counts[0][0] >= 2:
                break
            leecher_ses.wait_for_alert(500)
            drain(leecher_ses, "leecher", log)
        print("scrape (seeders, completed, leechers) per info hash:", counts)
        if counts[0][0] < 2 or counts[0][1] < 1:
            print("\n".join(log))
            sys.exit("FAIL: scrape does not show two seeders and a completed download")
    print("PASS")


if __name__ == "__main__":
    main()
