//! Private mode on a site's database, over real sockets and a real
//! MariaDB that each test starts in a temporary directory: "the site"
//! writes rt_users and rt_torrents with the `mariadb` client, clients
//! announce over HTTP (passkey in the path) and UDP (passkey in BEP 41
//! URLData), and rt_credits must show what they reported. Every wait is a
//! poll with a deadline.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::admin;
use common::mariadb::MariaDb;
use common::tracker::{Started, http_get, metrics_addr, signal, start_with_config, wait_for_line};
use common::{Client, fresh_dir};

const DEADLINE: Duration = Duration::from_secs(60);

const SEEDER_KEY: &str = "seederKey0123456789";
const LEECHER_KEY: &str = "leecherKey0123456789";

/// Event numbers of BEP 15 (UDP).
const UDP_NONE: u32 = 0;
const UDP_STARTED: u32 = 2;

/// Poll `f` until it is true or the deadline passes (then fail with `what`).
fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hash(n: u8) -> [u8; 20] {
    [n; 20]
}

fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// A test's database and tracker, in a directory of its own.
struct Site {
    db: MariaDb,
    dir: PathBuf,
}

impl Site {
    fn start(test: &str) -> Site {
        let dir = fresh_dir(test);
        let db = MariaDb::start(&dir.join("db"));
        Site { db, dir }
    }

    fn user(&self, id: u64, passkey: &str, extra: &str) {
        self.db.sql(&format!(
            "INSERT INTO rt_users SET id = {id}, passkey = '{passkey}'{extra}"
        ));
    }

    fn torrent(&self, id: u64, info_hash: [u8; 20], extra: &str) {
        self.db.sql(&format!(
            "INSERT INTO rt_torrents SET id = {id}, info_hash = UNHEX('{}'){extra}",
            hex(&info_hash)
        ));
    }

    /// uploaded, downloaded, raw_uploaded, raw_downloaded, seed_seconds,
    /// completed of one user on one torrent (zeros: no row).
    fn credits(&self, user: u64, torrent: u64) -> [u64; 6] {
        let row = self.db.sql(&format!(
            "SELECT uploaded, downloaded, raw_uploaded, raw_downloaded, seed_seconds, completed \
             FROM rt_credits WHERE user_id = {user} AND torrent_id = {torrent}"
        ));
        let mut out = [0; 6];
        for (o, v) in out.iter_mut().zip(row.split_whitespace()) {
            *o = v.parse().unwrap();
        }
        out
    }

    fn config(&self, extra: &str) -> PathBuf {
        let ledger = self.dir.join("credits.journal");
        self.config_with(&format!("ledger = \"{}\"\n{extra}", ledger.display()))
    }

    /// The test's config: `[private]` on its database, then `more`.
    fn config_with(&self, more: &str) -> PathBuf {
        let path = self.dir.join("tracker.toml");
        std::fs::write(
            &path,
            format!(
                "[private]\nenabled = true\ndatabase = \"{}\"\nsync_interval = 1\n\
                 flush_interval = 1\nnode = \"test-node\"\n{more}",
                self.db.url(),
            ),
        )
        .unwrap();
        path
    }

    fn tracker(&self, extra: &str) -> Started {
        self.tracker_env(extra, None)
    }

    fn tracker_env(&self, extra: &str, env: Option<(&str, &str)>) -> Started {
        start_with_config(&self.config(extra), &["--http", "127.0.0.1:0"], env)
    }

    /// Batches rt_batches holds for the test's node, and how many distinct.
    fn batches(&self) -> (u64, u64) {
        let row = self
            .db
            .sql("SELECT COUNT(*), COUNT(DISTINCT batch) FROM rt_batches WHERE node = 'test-node'");
        let v: Vec<u64> = row.split_whitespace().map(|x| x.parse().unwrap()).collect();
        (v[0], v[1])
    }
}

/// One client: a passkey, a torrent, a peer id (and port) of its own.
struct Peer<'a> {
    t: &'a Started,
    key: &'a str,
    info_hash: [u8; 20],
    id: u8,
}

fn peer<'a>(t: &'a Started, key: &'a str, info_hash: [u8; 20], id: u8) -> Peer<'a> {
    Peer {
        t,
        key,
        info_hash,
        id,
    }
}

impl Peer<'_> {
    /// An HTTP announce with these running totals; the whole reply.
    fn http(&self, event: &str, uploaded: u64, downloaded: u64, left: u64) -> String {
        let escaped: String = self.info_hash.iter().map(|b| format!("%{b:02X}")).collect();
        let event = if event.is_empty() {
            String::new()
        } else {
            format!("&event={event}")
        };
        http_get(
            self.t.http,
            &format!(
                "/{}/announce?info_hash={escaped}&peer_id=-RT0001-{:012}&port={}\
                 &uploaded={uploaded}&downloaded={downloaded}&left={left}&compact=1{event}",
                self.key,
                self.id,
                6000 + u16::from(self.id)
            ),
        )
    }

    /// The same over UDP, the passkey in BEP 41 URLData; the reply bytes.
    fn udp(&self, event: u32, uploaded: u64, downloaded: u64, left: u64) -> Vec<u8> {
        let mut c = Client::new("127.0.0.1:0", self.t.udp);
        let cid = c.connect();
        let port = 7000 + u16::from(self.id);
        let (_, mut p) = c.announce_packet(cid, self.info_hash, event, left, 50, port);
        p[36..56].copy_from_slice(format!("-RT0001-{:012}", self.id).as_bytes());
        p[56..64].copy_from_slice(&downloaded.to_be_bytes());
        p[72..80].copy_from_slice(&uploaded.to_be_bytes());
        let path = format!("/{}/announce", self.key);
        p.extend_from_slice(&[2, path.len() as u8]);
        p.extend_from_slice(path.as_bytes());
        c.send(&p);
        c.recv()
    }
}

fn served(reply: &str) -> bool {
    reply.contains("8:intervali") && !reply.contains("failure reason")
}

fn udp_error(reply: &[u8]) -> Option<String> {
    (reply[..4] == 3u32.to_be_bytes()).then(|| String::from_utf8_lossy(&reply[8..]).into_owned())
}

fn metric(t: &Started, name: &str) -> f64 {
    let text = http_get(metrics_addr(t), "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(-1.0)
}

#[test]
fn the_site_s_users_and_torrents_decide_who_is_served() {
    let site = Site::start("db-members");
    site.user(1, SEEDER_KEY, "");
    site.user(3, "noLeechKey0123456789", ", can_leech = 0");
    site.torrent(10, hash(10), "");
    let t = site.tracker("");

    assert!(served(
        &peer(&t, SEEDER_KEY, hash(10), 1).http("started", 0, 0, 0)
    ));
    let r = peer(&t, "unknownKey0123456789", hash(10), 1).http("started", 0, 0, 0);
    assert!(r.contains("15:unknown passkey8:retry in5:never"), "{r}");
    let r = peer(&t, SEEDER_KEY, hash(11), 1).http("started", 0, 0, 0);
    assert!(
        r.contains("torrent not registered with this tracker"),
        "{r}"
    );
    let udp = peer(&t, SEEDER_KEY, hash(11), 1).udp(UDP_STARTED, 0, 0, 0);
    assert_eq!(
        udp_error(&udp).as_deref(),
        Some("torrent not registered with this tracker")
    );

    // A user who may not leech may seed.
    let r = peer(&t, "noLeechKey0123456789", hash(10), 3).http("started", 0, 0, 100);
    assert!(r.contains("your account may not download"), "{r}");
    assert!(served(
        &peer(&t, "noLeechKey0123456789", hash(10), 3).http("started", 0, 0, 0)
    ));

    // The site adds a user and a torrent: served within the sync interval.
    site.user(2, LEECHER_KEY, "");
    site.torrent(11, hash(11), "");
    until("the new user and torrent are served", || {
        served(&peer(&t, LEECHER_KEY, hash(11), 2).http("started", 0, 0, 100))
    });
    let udp = peer(&t, LEECHER_KEY, hash(11), 5).udp(UDP_STARTED, 0, 0, 100);
    assert_eq!(udp_error(&udp), None, "UDP with the passkey in URLData");

    // The user's third peer in the torrent is taken, the fourth refused
    // (with a retry: one of them may stop), over either protocol.
    assert!(served(
        &peer(&t, LEECHER_KEY, hash(11), 6).http("started", 0, 0, 100)
    ));
    let r = peer(&t, LEECHER_KEY, hash(11), 7).http("started", 0, 0, 100);
    assert!(
        r.contains("too many peers of your account in this torrent8:retry ini5e"),
        "{r}"
    );
    let udp = peer(&t, LEECHER_KEY, hash(11), 8).udp(UDP_STARTED, 0, 0, 100);
    assert_eq!(
        udp_error(&udp).as_deref(),
        Some("too many peers of your account in this torrent")
    );
    assert!(served(
        &peer(&t, LEECHER_KEY, hash(11), 6).http("stopped", 0, 0, 100)
    ));
    assert!(served(
        &peer(&t, LEECHER_KEY, hash(11), 7).http("started", 0, 0, 100)
    ));

    // Disabled by the site: refused after the next sync.
    site.db.sql("UPDATE rt_users SET enabled = 0 WHERE id = 1");
    until("the disabled user is refused", || {
        peer(&t, SEEDER_KEY, hash(10), 1)
            .http("", 0, 0, 0)
            .contains("unknown passkey")
    });
    // A deleted row leaves no trace for an incremental read; SIGHUP reads
    // every row again.
    site.db.sql("DELETE FROM rt_torrents WHERE id = 11");
    signal(&t.child, "-HUP");
    until("the deleted torrent is refused after SIGHUP", || {
        peer(&t, LEECHER_KEY, hash(11), 2)
            .http("", 0, 0, 100)
            .contains("not registered")
    });
    assert!(
        metric(
            &t,
            "ringtracker_error_responses_total{protocol=\"http\",reason=\"peer_limit\"}"
        ) >= 1.0
    );
    assert_eq!(metric(&t, "ringtracker_database_up"), 1.0);
    assert_eq!(metric(&t, "ringtracker_database_users"), 2.0);
}

#[test]
fn credits_reach_rt_credits_with_factors_seed_time_and_snatches() {
    let site = Site::start("db-credits");
    site.user(1, SEEDER_KEY, "");
    site.user(2, LEECHER_KEY, "");
    site.torrent(10, hash(10), "");
    site.torrent(11, hash(11), ", download_factor = 0");
    site.torrent(12, hash(12), ", upload_factor = 2");
    let t = site.tracker("");

    // Torrent 10 over HTTP: the seeder uploads what the leecher downloads.
    assert!(served(
        &peer(&t, SEEDER_KEY, hash(10), 1).http("started", 0, 0, 0)
    ));
    assert!(served(
        &peer(&t, LEECHER_KEY, hash(10), 2).http("started", 0, 0, 1000)
    ));
    assert!(served(
        &peer(&t, SEEDER_KEY, hash(10), 1).http("", 1000, 0, 0)
    ));
    for _ in 0..2 {
        // A retransmitted `completed` is one snatch.
        assert!(served(&peer(&t, LEECHER_KEY, hash(10), 2).http(
            "completed",
            0,
            1000,
            0
        )));
    }
    // Freeleech torrent 11 over UDP: raw bytes kept, nothing credited down.
    assert_eq!(
        udp_error(&peer(&t, LEECHER_KEY, hash(11), 2).udp(UDP_STARTED, 0, 0, 500)),
        None
    );
    assert_eq!(
        udp_error(&peer(&t, LEECHER_KEY, hash(11), 2).udp(UDP_NONE, 40, 500, 0)),
        None
    );
    // Double upload on torrent 12.
    assert!(served(
        &peer(&t, SEEDER_KEY, hash(12), 1).http("started", 0, 0, 0)
    ));
    assert!(served(
        &peer(&t, SEEDER_KEY, hash(12), 1).http("", 300, 0, 0)
    ));

    until("the credits are flushed", || {
        site.credits(2, 10)[5] == 1 && site.credits(1, 12)[0] == 600 && site.credits(2, 11)[2] == 40
    });
    // (Seed time may have a second in it: it is checked below.)
    assert_eq!(site.credits(1, 10)[..4], [1000, 0, 1000, 0]);
    assert_eq!(site.credits(2, 10)[..4], [0, 1000, 0, 1000]);
    assert_eq!(site.credits(2, 10)[5], 1, "one snatch");
    assert_eq!(site.credits(2, 11), [40, 0, 40, 500, 0, 0], "freeleech");
    assert_eq!(site.credits(1, 12)[..4], [600, 0, 300, 0]);

    // Seed time grows for a seeder that keeps announcing.
    until("seed time is credited", || {
        assert!(served(
            &peer(&t, SEEDER_KEY, hash(10), 1).http("", 1000, 0, 0)
        ));
        site.credits(1, 10)[4] > 0
    });
    let (batches, distinct) = site.batches();
    assert_eq!(batches, distinct);
    assert!(metric(&t, "ringtracker_database_batches_applied_total") >= 1.0);
    assert!(metric(&t, "ringtracker_database_last_flush_age_seconds") >= 0.0);
}

/// With no `private.ledger`, the credit journal lives in `[storage]
/// state_dir` (the Debian package's /var/lib/ringtracker): the database
/// config needs no journal line, and credits flow through it.
#[test]
fn a_config_without_a_ledger_keeps_its_credit_journal_in_the_state_directory() {
    let site = Site::start("db-state-dir");
    site.user(1, SEEDER_KEY, "");
    site.torrent(10, hash(10), "");
    let state = site.dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let path = site.config_with(&format!("[storage]\nstate_dir = \"{}\"\n", state.display()));
    assert!(!std::fs::read_to_string(&path).unwrap().contains("ledger"));
    let t = start_with_config(&path, &["--http", "127.0.0.1:0"], None);
    let seeder = peer(&t, SEEDER_KEY, hash(10), 1);
    assert!(served(&seeder.http("started", 0, 0, 0)));
    assert!(served(&seeder.http("", 700, 0, 0)));
    until("the credit is flushed", || site.credits(1, 10)[0] == 700);
    let journal = state.join("credits.journal");
    assert!(
        std::fs::metadata(&journal).is_ok_and(|m| m.len() > 0),
        "{} holds the journal",
        journal.display()
    );
}

#[test]
fn the_database_killed_mid_run_gets_every_credit_once() {
    let mut site = Site::start("db-outage");
    site.user(1, SEEDER_KEY, "");
    site.torrent(10, hash(10), "");
    let t = site.tracker("");
    assert!(served(
        &peer(&t, SEEDER_KEY, hash(10), 1).http("started", 0, 0, 0)
    ));
    assert!(served(
        &peer(&t, SEEDER_KEY, hash(10), 1).http("", 100, 0, 0)
    ));
    until("the first credits are flushed", || {
        site.credits(1, 10)[0] == 100
    });

    site.db.kill();
    until("the tracker sees the database down", || {
        metric(&t, "ringtracker_database_up") == 0.0
    });
    // Announces are answered all the while, from the users last read.
    for total in [300, 600, 1000] {
        assert!(served(
            &peer(&t, SEEDER_KEY, hash(10), 1).http("", total, 0, 0)
        ));
    }
    assert!(metric(&t, "ringtracker_ledger_pending_credits") >= 1.0);
    site.db.restart();
    until("every credit arrives", || site.credits(1, 10)[0] >= 1000);
    until("nothing is pending", || {
        metric(&t, "ringtracker_ledger_pending_credits") == 0.0
    });
    assert_eq!(site.credits(1, 10)[..3], [1000, 0, 1000], "each byte once");
}

#[test]
fn credits_pending_past_the_bound_spill_to_the_journal_while_the_database_is_down() {
    let mut site = Site::start("db-spill");
    site.user(1, SEEDER_KEY, "");
    for n in 10..13 {
        site.torrent(u64::from(n), hash(n), "");
    }
    let t = site.tracker("max_pending_credits = 1\n");
    for n in 10..13 {
        assert!(served(
            &peer(&t, SEEDER_KEY, hash(n), 1).http("started", 0, 0, 0)
        ));
    }
    site.db.kill();
    until("the tracker sees the database down", || {
        metric(&t, "ringtracker_database_up") == 0.0
    });
    for n in 10..13 {
        assert!(served(&peer(&t, SEEDER_KEY, hash(n), 1).http(
            "",
            100 * u64::from(n),
            0,
            0
        )));
    }
    until("a batch spills", || {
        metric(&t, "ringtracker_database_spilled_batches_total") >= 1.0
    });
    site.db.restart();
    until("every credit arrives", || {
        (10u64..13).all(|n| site.credits(1, n)[0] == 100 * n)
    });
    let (batches, distinct) = site.batches();
    assert_eq!(batches, distinct);
}

#[test]
fn a_commit_whose_answer_was_lost_is_not_applied_again() {
    let site = Site::start("db-lost-commit");
    site.user(1, SEEDER_KEY, "");
    site.torrent(10, hash(10), "");
    let t = site.tracker_env("", Some(("RINGTRACKER_TEST_LOSE_COMMIT", "1")));
    assert!(served(
        &peer(&t, SEEDER_KEY, hash(10), 1).http("started", 0, 0, 0)
    ));
    assert!(served(
        &peer(&t, SEEDER_KEY, hash(10), 1).http("", 700, 0, 0)
    ));
    until("the batch is known applied", || {
        metric(&t, "ringtracker_database_batches_skipped_total") >= 1.0
    });
    assert!(served(
        &peer(&t, SEEDER_KEY, hash(10), 1).http("", 800, 0, 0)
    ));
    until("the next credit arrives", || site.credits(1, 10)[0] >= 800);
    assert_eq!(
        site.credits(1, 10)[0],
        800,
        "the lost commit's batch counted once"
    );
}

#[test]
fn the_tracker_killed_between_flushes_credits_every_byte_once() {
    let site = Site::start("db-sigkill");
    site.user(1, SEEDER_KEY, "");
    site.user(2, LEECHER_KEY, "");
    site.torrent(10, hash(10), "");
    let mut t = site.tracker("");
    assert!(served(
        &peer(&t, SEEDER_KEY, hash(10), 1).http("started", 0, 0, 0)
    ));
    assert!(served(
        &peer(&t, LEECHER_KEY, hash(10), 2).http("started", 0, 0, 5000)
    ));
    assert!(served(
        &peer(&t, SEEDER_KEY, hash(10), 1).http("", 100, 0, 0)
    ));
    until("the first batch is applied", || {
        site.credits(1, 10)[0] == 100
    });
    // Reported after the last flush, then the tracker dies.
    assert!(served(
        &peer(&t, SEEDER_KEY, hash(10), 1).http("", 250, 0, 0)
    ));
    assert!(served(
        &peer(&t, LEECHER_KEY, hash(10), 2).http("", 0, 250, 4750)
    ));
    t.child.kill().unwrap();
    t.child.wait().unwrap();
    drop(t);

    let t = site.tracker("");
    // The clients go on with their running totals.
    assert!(served(
        &peer(&t, SEEDER_KEY, hash(10), 1).http("", 400, 0, 0)
    ));
    assert!(served(
        &peer(&t, LEECHER_KEY, hash(10), 2).http("", 0, 400, 4600)
    ));
    until("the credits after the restart arrive", || {
        site.credits(1, 10)[0] >= 400 && site.credits(2, 10)[1] >= 400
    });
    let applied = metric(&t, "ringtracker_database_flushes_total");
    until("two more flushes", || {
        metric(&t, "ringtracker_database_flushes_total") >= applied + 2.0
    });
    assert_eq!(
        site.credits(1, 10)[..3],
        [400, 0, 400],
        "no byte twice, none lost"
    );
    assert_eq!(site.credits(2, 10)[1], 400);
    let (batches, distinct) = site.batches();
    assert_eq!(batches, distinct);
}

/// Bytes the libtorrent script's seeder serves (tests/e2e/libtorrent_swarm.py).
const SWARM_BYTES: u64 = 4 * 1024 * 1024 + 12345;

#[test]
fn libtorrent_swarms_through_passkey_urls_and_both_users_are_credited() {
    let site = Site::start("db-libtorrent");
    site.user(1, SEEDER_KEY, "");
    site.user(2, LEECHER_KEY, "");
    let t = site.tracker("");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/libtorrent_swarm.py");
    for (torrent, scheme, addr) in [(1u64, "udp", t.udp), (2, "http", t.http)] {
        let work = site.dir.join(scheme);
        let url = |key: &str| format!("{scheme}://{addr}/{key}/announce");
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(url(SEEDER_KEY))
            .arg(&work)
            .args(["db", &url(LEECHER_KEY)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with libtorrent (make test installs python3-libtorrent)");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let hex = line
            .strip_prefix("info_hash ")
            .unwrap_or_else(|| panic!("the script said {line:?}"))
            .trim()
            .to_string();
        let mut info_hash = [0u8; 20];
        for (i, b) in info_hash.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        // The site registers the torrent; the clients start once it is served.
        site.torrent(torrent, info_hash, "");
        until("the new torrent is served", || {
            served(&peer(&t, SEEDER_KEY, info_hash, 99).http("stopped", 0, 0, 0))
        });
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"go\n").unwrap();
        let ports = live_ports(&mut out);
        written_back(&site, &t, torrent, info_hash, ports);
        stdin.write_all(b"leave\n").unwrap();
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "stopped", "{scheme}");
        until("the leecher's row is gone", || {
            peer_rows(&site, torrent).len() == 1 && history(&site, 2, torrent).starts_with("0 0 ")
        });
        assert!(peer_rows(&site, torrent)[0].starts_with(&format!("1 {} 1 ", ports.0)));
        stdin.write_all(b"end\n").unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        assert!(child.wait().unwrap().success(), "{scheme}: {rest}");
        until("both users are credited", || {
            let (seeder, leecher) = (site.credits(1, torrent), site.credits(2, torrent));
            seeder[2] >= SWARM_BYTES && leecher[3] >= SWARM_BYTES && leecher[5] == 1
        });
        assert_eq!(
            site.credits(2, torrent)[1],
            site.credits(2, torrent)[3],
            "factor 1"
        );
    }
    // A real client's peer id names it in the metrics.
    let by_libtorrent = "ringtracker_announces_by_client_total{client=\"libtorrent\"}";
    assert!(
        metric(&t, by_libtorrent) >= 4.0,
        "libtorrent's announces counted as its"
    );
}

/// The script's `live SEEDER_PORT LEECHER_PORT` line (after its download
/// lines).
fn live_ports(out: &mut impl BufRead) -> (u16, u16) {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the script ended");
        if let Some(ports) = line.strip_prefix("live ") {
            let (s, l) = ports.trim().split_once(' ').unwrap();
            return (s.parse().unwrap(), l.parse().unwrap());
        }
    }
}

/// With both libtorrent clients live: their rows, the torrent's counts as
/// a scrape gives them, the snatch and the leecher's completion.
fn written_back(site: &Site, t: &Started, torrent: u64, info_hash: [u8; 20], ports: (u16, u16)) {
    until("both clients are in rt_peers as seeders", || {
        let rows = peer_rows(site, torrent);
        rows.len() == 2
            && rows[0].starts_with(&format!("1 {} 1 ", ports.0))
            && rows[1].starts_with(&format!("2 {} 1 ", ports.1))
    });
    // (UDP scrapes are refused in private mode: they carry no passkey.)
    let scrape = http_get(
        t.http,
        &format!(
            "/{SEEDER_KEY}/scrape?info_hash={}",
            info_hash
                .iter()
                .map(|b| format!("%{b:02X}"))
                .collect::<String>()
        ),
    );
    assert!(
        scrape.contains("8:completei2e") && scrape.contains("10:incompletei0e"),
        "{scrape}"
    );
    until("rt_torrent_stats matches the scrape", || {
        torrent_stats(site, torrent) == "2 0 1"
    });
    assert!(
        history(site, 2, torrent).ends_with(" 1 1"),
        "first announce and completion set"
    );
}

/// The worked example of docs/PRIVATE.md, as written there: a site's own
/// tables behind views, credits carried into them by triggers.
#[test]
fn a_site_s_own_tables_work_through_the_documented_views_and_triggers() {
    let site = Site::start("db-views");
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/PRIVATE.md"))
            .unwrap();
    let section = &doc[doc.find("## Mapping a site").unwrap()..];
    let blocks: Vec<&str> = section
        .split("```sql\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    let (views, triggers) = blocks[1].split_once("DELIMITER //").unwrap();
    site.db.sql(
        "DROP TABLE rt_users, rt_torrents;\
         CREATE TABLE users (id BIGINT UNSIGNED PRIMARY KEY, passkey CHAR(32) NOT NULL UNIQUE, \
           banned BOOL NOT NULL DEFAULT 0, can_download BOOL NOT NULL DEFAULT 1, \
           uploaded BIGINT UNSIGNED NOT NULL DEFAULT 0, downloaded BIGINT UNSIGNED NOT NULL DEFAULT 0, \
           seedtime BIGINT UNSIGNED NOT NULL DEFAULT 0, updated_at TIMESTAMP(6) NOT NULL \
           DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), KEY (updated_at));\
         CREATE TABLE torrents (id BIGINT UNSIGNED PRIMARY KEY, info_hash BINARY(20) NOT NULL UNIQUE, \
           status TINYINT NOT NULL DEFAULT 1, free BOOL NOT NULL DEFAULT 0, doubleup BOOL NOT NULL DEFAULT 0, \
           updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), \
           KEY (updated_at));\
         CREATE TABLE snatches (user_id BIGINT UNSIGNED, torrent_id BIGINT UNSIGNED, \
           completed_at DATETIME, PRIMARY KEY (user_id, torrent_id));",
    );
    site.db.sql(views);
    site.db.sql(&format!("DELIMITER //{triggers}"));
    let key = "siteKey0123456789siteKey01234567";
    site.db
        .sql(&format!("INSERT INTO users SET id = 1, passkey = '{key}'"));
    site.db.sql(&format!(
        "INSERT INTO torrents SET id = 7, info_hash = UNHEX('{}'), free = 1",
        hex(&hash(7))
    ));
    let t = site.tracker("");
    let p = peer(&t, key, hash(7), 1);
    assert!(served(&p.http("started", 0, 0, 100)));
    assert!(served(&p.http("completed", 300, 100, 0)));
    until("the trigger credits the site's user", || {
        site.db
            .sql("SELECT uploaded, downloaded FROM users WHERE id = 1")
            .split_whitespace()
            .collect::<Vec<_>>()
            == ["300", "0"]
    });
    assert_eq!(site.db.sql("SELECT COUNT(*) FROM snatches").trim(), "1");
    // A ban in the site's table is seen through the view.
    site.db.sql("UPDATE users SET banned = 1 WHERE id = 1");
    until("the banned user is refused", || {
        p.http("", 300, 100, 0).contains("unknown passkey")
    });
}

#[test]
fn a_cheating_client_cannot_stop_anyone_s_credits() {
    let site = Site::start("db-cheat");
    let (cheater, honest, refused) = (
        "cheaterKey0123456789",
        "honestKey0123456789",
        "refusedKey0123456789",
    );
    site.user(1, cheater, "");
    site.user(2, honest, "");
    site.user(3, refused, "");
    site.torrent(10, hash(10), "");
    // The cheater's total is already near the top of its column, and the
    // site keeps raw_downloaded in a narrower column than ours.
    site.db.sql(
        "INSERT INTO rt_credits SET user_id = 1, torrent_id = 10, uploaded = 18446744073709551000;\
         ALTER TABLE rt_credits MODIFY raw_downloaded SMALLINT UNSIGNED NOT NULL DEFAULT 0",
    );
    let t = site.tracker("");
    let c = peer(&t, cheater, hash(10), 1);
    assert!(served(&c.http("started", u64::MAX, 0, 0)));
    assert!(served(&c.http("started", u64::MAX, 0, 0)));
    let h = peer(&t, honest, hash(10), 2);
    assert!(served(&h.http("started", 0, 0, 5)));
    until("the cheater's sum saturates at the column's top", || {
        site.credits(1, 10)[..3] == [u64::MAX, 0, 1 << 30]
    });
    assert!(metric(&t, "ringtracker_ledger_implausible_reports_total ") >= 1.0);
    // A batch the database refuses (1 MB into a SMALLINT) is set aside...
    assert!(served(
        &peer(&t, refused, hash(10), 3).http("started", 0, 1_000_000, 5)
    ));
    until("the refused batch is set aside", || {
        metric(&t, "ringtracker_database_refused_batches_total ") >= 1.0
    });
    // ... and another user's credit arrives all the same.
    assert!(served(&h.http("", 1000, 0, 5)));
    until("the honest user's upload is credited", || {
        site.credits(2, 10)[2] == 1000
    });
    assert_eq!(site.credits(3, 10), [0; 6]);
    assert_eq!(metric(&t, "ringtracker_database_set_aside_batches "), 1.0);
}

#[test]
fn a_site_view_with_bad_rows_serves_the_good_ones_and_withdraws_the_bad() {
    let site = Site::start("db-bad-rows");
    // The site's own table behind the view: integer factors, a nullable
    // factor, an id that may be negative.
    site.db.sql(
        "DROP TABLE rt_users;\
         CREATE TABLE members (id BIGINT PRIMARY KEY, pk VARCHAR(64), active INT NOT NULL DEFAULT 1, \
           up_factor INT NULL DEFAULT 1, updated_at TIMESTAMP(6) NOT NULL \
           DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), KEY (updated_at));\
         CREATE VIEW rt_users AS SELECT id, pk AS passkey, active AS enabled, 1 AS can_leech, \
           1 AS download_factor, up_factor AS upload_factor, updated_at FROM members;\
         INSERT INTO members (id, pk) VALUES (1, 'goodKey0123456789'), (2, 'blankKey0123456789');\
         INSERT INTO members (id, pk, up_factor) VALUES (3, 'nullKey0123456789', NULL), \
           (-4, 'negativeKey0123456789', 1), (5, 'doubleKey0123456789', 2);",
    );
    site.torrent(10, hash(10), "");
    site.torrent(11, hash(11), "");
    let t = site.tracker("");
    let refused = |key: &str, id: u8| {
        peer(&t, key, hash(10), id)
            .http("started", 0, 0, 5)
            .contains("unknown passkey")
    };
    // The good rows are served though others in the same read are bad.
    assert!(served(
        &peer(&t, "goodKey0123456789", hash(10), 1).http("started", 0, 0, 5)
    ));
    assert!(served(
        &peer(&t, "blankKey0123456789", hash(10), 2).http("started", 0, 0, 5)
    ));
    let double = peer(&t, "doubleKey0123456789", hash(10), 5);
    assert!(served(&double.http("started", 0, 0, 5)));
    assert!(refused("nullKey0123456789", 3));
    assert!(refused("negativeKey0123456789", 4));
    assert!(metric(&t, "ringtracker_database_bad_rows_total ") >= 2.0);
    // The integer factor counts.
    assert!(served(&double.http("", 100, 0, 5)));
    until("the double upload is credited", || {
        site.credits(5, 10)[..3] == [200, 0, 100]
    });
    // The site blanks a passkey, and a torrent's info_hash goes bad: both
    // keys are withdrawn at the next read.
    site.db.sql(
        "UPDATE members SET pk = '' WHERE id = 2;\
         ALTER TABLE rt_torrents MODIFY info_hash VARBINARY(32) NOT NULL;\
         UPDATE rt_torrents SET info_hash = UNHEX('0b0b') WHERE id = 11",
    );
    until("the blanked passkey is refused", || {
        refused("blankKey0123456789", 2)
    });
    until("the bad info_hash is no longer registered", || {
        peer(&t, "goodKey0123456789", hash(11), 1)
            .http("started", 0, 0, 5)
            .contains("not registered")
    });
    // And across a full read (SIGHUP) too.
    signal(&t.child, "-HUP");
    assert!(served(
        &peer(&t, "goodKey0123456789", hash(10), 1).http("", 0, 0, 5)
    ));
    assert!(refused("blankKey0123456789", 2));
}

#[test]
fn an_old_rt_batches_waits_for_its_migration_and_a_lost_journal_s_successor_is_credited() {
    let site = Site::start("db-epoch");
    site.user(1, SEEDER_KEY, "");
    site.torrent(10, hash(10), "");
    // rt_batches as made before journal epochs, with a batch 1 of another
    // journal of this node in it.
    site.db.sql(
        "DROP TABLE rt_batches;\
         CREATE TABLE rt_batches (node VARCHAR(64) NOT NULL, batch BIGINT UNSIGNED NOT NULL, \
           applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), PRIMARY KEY (node, batch));\
         INSERT INTO rt_batches (node, batch) VALUES ('test-node', 1)",
    );
    let mut t = site.tracker("");
    let p = peer(&t, SEEDER_KEY, hash(10), 1);
    assert!(served(&p.http("started", 0, 0, 0)));
    assert!(served(&p.http("", 500, 0, 0)));
    wait_for_line(&mut t.stderr, "rt_batches has no epoch column");
    // The operator runs the migration; the credits waiting flow, and the
    // old batch 1 (epoch 0) is not taken for this journal's batch 1.
    let migration = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/schema/mysql-epoch.sql"),
    )
    .unwrap();
    site.db.sql(&migration);
    until("the first journal's credit", || {
        site.credits(1, 10)[2] == 500
    });
    common::tracker::stop_with(&mut t.child, "-TERM");
    drop(t);
    // The journal is lost: the next one numbers its batches from 1 again,
    // under an epoch of its own, and is credited.
    std::fs::remove_file(site.dir.join("credits.journal")).unwrap();
    let t = site.tracker("");
    let p = peer(&t, SEEDER_KEY, hash(10), 2);
    assert!(served(&p.http("started", 0, 0, 0)));
    assert!(served(&p.http("", 300, 0, 0)));
    until("the second journal's credit", || {
        site.credits(1, 10)[2] == 800
    });
    let epochs = site
        .db
        .sql("SELECT COUNT(DISTINCT epoch) FROM rt_batches WHERE node = 'test-node'");
    assert_eq!(epochs.trim(), "3", "the old rows' and two journals'");
}

/// rt_peers rows of one torrent: user, port, seeder, agent, hex ip.
fn peer_rows(site: &Site, torrent: u64) -> Vec<String> {
    site.db
        .sql(&format!(
            "SELECT user_id, port, seeder, agent, HEX(ip), node FROM rt_peers \
             WHERE torrent_id = {torrent} ORDER BY user_id, port"
        ))
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>().join(" "))
        .collect()
}

/// active, seeding, left, first_announce set, completed_at set.
fn history(site: &Site, user: u64, torrent: u64) -> String {
    site.db
        .sql(&format!(
            "SELECT active, seeding, `left`, first_announce IS NOT NULL, completed_at IS NOT NULL \
             FROM rt_credits WHERE user_id = {user} AND torrent_id = {torrent}"
        ))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn torrent_stats(site: &Site, torrent: u64) -> String {
    site.db
        .sql(&format!(
            "SELECT seeders, leechers, times_completed FROM rt_torrent_stats WHERE torrent_id = {torrent}"
        ))
        .trim()
        .replace('\t', " ")
}

/// An HTTP announce with a User-Agent header.
fn announce_as(t: &Started, key: &str, info_hash: [u8; 20], id: u8, agent: &str, left: u64) {
    use std::io::Read;
    let escaped: String = info_hash.iter().map(|b| format!("%{b:02X}")).collect();
    let mut s = std::net::TcpStream::connect(t.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /{key}/announce?info_hash={escaped}&peer_id=-RT0001-{id:012}&port={}&uploaded=0\
         &downloaded=0&left={left}&compact=1&event=started HTTP/1.1\r\nHost: t\r\n\
         User-Agent: {agent}\r\nConnection: close\r\n\r\n",
        6000 + u16::from(id)
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(served(&reply), "{reply}");
}

#[test]
fn peers_counts_and_history_are_written_back_and_a_restart_rewrites_this_node_s_rows() {
    let site = Site::start("db-write-back");
    site.user(1, SEEDER_KEY, "");
    site.user(2, LEECHER_KEY, "");
    site.torrent(10, hash(10), "");
    let mut t = site.tracker("");
    // The seeder over HTTP with its client's agent (a byte outside
    // printable ASCII becomes '?'), the leecher over UDP.
    announce_as(&t, SEEDER_KEY, hash(10), 1, "qBittorrent/5.0.1é", 0);
    let leecher = peer(&t, LEECHER_KEY, hash(10), 2);
    assert!(udp_error(&leecher.udp(UDP_STARTED, 0, 0, 1000)).is_none());
    until("both peers are in rt_peers", || {
        peer_rows(&site, 10).len() == 2
    });
    assert_eq!(
        peer_rows(&site, 10),
        [
            "1 6001 1 qBittorrent/5.0.1?? 7F000001 test-node",
            "2 7002 0  7F000001 test-node"
        ]
    );
    until("the counts are written", || {
        torrent_stats(&site, 10) == "1 1 0"
    });
    assert_eq!(history(&site, 1, 10), "1 1 0 1 0");
    assert_eq!(history(&site, 2, 10), "1 0 1000 1 0");

    // The leecher completes: a snatch, and a second seeder.
    assert!(udp_error(&leecher.udp(1, 0, 1000, 0)).is_none());
    until("the snatch is counted", || {
        torrent_stats(&site, 10) == "2 0 1"
    });
    assert_eq!(history(&site, 2, 10), "1 1 0 1 1");
    assert_eq!(peer_rows(&site, 10)[1], "2 7002 1  7F000001 test-node");
    // And stops: its row goes, its history stays, inactive.
    assert!(udp_error(&leecher.udp(3, 0, 1000, 0)).is_none());
    until("the stopped peer's row is gone", || {
        peer_rows(&site, 10).len() == 1
    });
    until("its user is inactive", || {
        history(&site, 2, 10) == "0 0 0 1 1"
    });
    assert_eq!(torrent_stats(&site, 10), "1 0 1");
    // A cheat loops completed → stopped under fresh peer ids: its user
    // completed before, so the torrent's snatches stay one.
    for id in 20..23 {
        let cheat = peer(&t, LEECHER_KEY, hash(10), id);
        assert!(udp_error(&cheat.udp(1, 0, 0, 0)).is_none());
        assert!(udp_error(&cheat.udp(3, 0, 0, 0)).is_none());
    }
    until("the loops are credited", || site.credits(2, 10)[5] >= 2);
    let flushes = metric(&t, "ringtracker_database_flushes_total");
    until("two more flushes", || {
        metric(&t, "ringtracker_database_flushes_total") >= flushes + 2.0
    });
    assert_eq!(torrent_stats(&site, 10), "1 0 1", "one snatch per user");

    // Rows this node wrote before a crash that no live peer backs, and
    // another tracker's row.
    site.db.sql(
        "INSERT INTO rt_peers (torrent_id, user_id, peer_id, ip, port, node) VALUES \
         (10, 2, 'stale-peer-id-000000', UNHEX('7F000001'), 9, 'test-node'), \
         (10, 2, 'other-node-peer-0000', UNHEX('7F000001'), 9, 'other-node')",
    );
    t.child.kill().unwrap();
    t.child.wait().unwrap();
    drop(t);
    site.user(3, "thirdKey0123456789", "");
    let t = site.tracker("");
    // A snatch right after the start, most likely in the first flush
    // (whose connection is new): counted all the same.
    let third = peer(&t, "thirdKey0123456789", hash(10), 3);
    assert!(served(&third.http("completed", 0, 100, 0)));
    until("the third user's snatch is counted", || {
        torrent_stats(&site, 10).ends_with(" 2") && history(&site, 3, 10).ends_with(" 1 1")
    });
    assert!(served(&third.http("stopped", 0, 100, 0)));
    until(
        "the restart's first flush rewrites this node's rows",
        || !peer_rows(&site, 10).iter().any(|r| r.contains("test-node")),
    );
    assert_eq!(peer_rows(&site, 10), ["2 9 0  7F000001 other-node"]);
    // The seeder's next announce brings its row back, once.
    announce_as(&t, SEEDER_KEY, hash(10), 1, "qBittorrent/5.0.1", 0);
    until("the seeder's row is back", || {
        peer_rows(&site, 10).len() == 2
    });
    let flushes = metric(&t, "ringtracker_database_flushes_total");
    until("two more flushes", || {
        metric(&t, "ringtracker_database_flushes_total") >= flushes + 2.0
    });
    let rows = site
        .db
        .sql("SELECT COUNT(*) FROM rt_peers WHERE node = 'test-node'");
    assert_eq!(rows.trim(), "1", "no duplicate, no stale row");
    assert_eq!(torrent_stats(&site, 10), "1 0 2");
    assert!(metric(&t, "ringtracker_database_write_back_rows_total") > 0.0);
}

#[test]
fn credits_flow_while_the_write_back_tables_are_missing_and_rows_follow_the_migration() {
    let site = Site::start("db-write-back-migration");
    site.db.sql(
        "DROP TABLE rt_peers, rt_torrent_stats; ALTER TABLE rt_credits DROP COLUMN first_announce, \
         DROP COLUMN completed_at, DROP COLUMN active, DROP COLUMN seeding, DROP COLUMN `left`",
    );
    site.user(1, SEEDER_KEY, "");
    site.torrent(10, hash(10), "");
    let mut t = site.tracker("");
    assert!(served(
        &peer(&t, SEEDER_KEY, hash(10), 1).http("started", 0, 0, 0)
    ));
    assert!(served(
        &peer(&t, SEEDER_KEY, hash(10), 1).http("", 100, 0, 0)
    ));
    until("credits arrive without write-back's tables", || {
        site.credits(1, 10)[0] == 100
    });
    wait_for_line(&mut t.stderr, "contrib/schema/mysql-writeback.sql");
    let migration =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/schema/mysql-writeback.sql");
    site.db.sql(&std::fs::read_to_string(migration).unwrap());
    // Taken at the next flush, without a restart.
    wait_for_line(&mut t.stderr, "write-back's tables are there");
    assert!(served(
        &peer(&t, SEEDER_KEY, hash(10), 1).http("", 200, 0, 0)
    ));
    until("the seeder's row after the migration", || {
        peer_rows(&site, 10).len() == 1
    });
    until("and its credits", || site.credits(1, 10)[0] == 200);
}

/// docs/PRIVATE.md's UNIT3D block, as written there, on UNIT3D-shaped
/// tables: `peers`, the counters of `torrents` and `history` fill through
/// the triggers on write-back's tables.
#[test]
fn a_unit3d_site_s_peers_torrents_and_history_fill_through_the_documented_triggers() {
    let site = Site::start("db-unit3d");
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/PRIVATE.md"))
            .unwrap();
    let section = &doc[doc.find("### A UNIT3D site").unwrap()..];
    let block = section
        .split("```sql\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    let (views, triggers) = block.split_once("DELIMITER //").unwrap();
    site.db.sql(
        "DROP TABLE rt_users, rt_torrents;\
         CREATE TABLE users (id BIGINT UNSIGNED PRIMARY KEY, passkey CHAR(32) NOT NULL UNIQUE, \
           can_download BOOL NOT NULL DEFAULT 1, uploaded BIGINT UNSIGNED NOT NULL DEFAULT 0, \
           downloaded BIGINT UNSIGNED NOT NULL DEFAULT 0, updated_at TIMESTAMP(6) NOT NULL \
           DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6), KEY (updated_at));\
         CREATE TABLE torrents (id BIGINT UNSIGNED PRIMARY KEY, info_hash BINARY(20) NOT NULL UNIQUE, \
           status TINYINT NOT NULL DEFAULT 1, free SMALLINT NOT NULL DEFAULT 0, \
           doubleup BOOL NOT NULL DEFAULT 0, seeders INT UNSIGNED NOT NULL DEFAULT 0, \
           leechers INT UNSIGNED NOT NULL DEFAULT 0, times_completed INT UNSIGNED NOT NULL DEFAULT 0, \
           updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) \
           ON UPDATE CURRENT_TIMESTAMP(6), KEY (updated_at));\
         CREATE TABLE peers (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, peer_id BINARY(20) NOT NULL, \
           ip VARBINARY(16) NOT NULL, port SMALLINT UNSIGNED NOT NULL, agent VARCHAR(64) NOT NULL, \
           uploaded BIGINT UNSIGNED NOT NULL, downloaded BIGINT UNSIGNED NOT NULL, \
           `left` BIGINT UNSIGNED NOT NULL, seeder BOOL NOT NULL, torrent_id BIGINT UNSIGNED NOT NULL, \
           user_id BIGINT UNSIGNED NOT NULL, created_at TIMESTAMP(6) NULL, updated_at TIMESTAMP(6) NULL, \
           active BOOL NOT NULL DEFAULT 1, connectable BOOL NOT NULL DEFAULT 0, \
           UNIQUE KEY (user_id, torrent_id, peer_id));\
         CREATE TABLE history (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, \
           user_id BIGINT UNSIGNED NOT NULL, torrent_id BIGINT UNSIGNED NOT NULL, \
           uploaded BIGINT UNSIGNED NOT NULL DEFAULT 0, actual_uploaded BIGINT UNSIGNED NOT NULL DEFAULT 0, \
           downloaded BIGINT UNSIGNED NOT NULL DEFAULT 0, actual_downloaded BIGINT UNSIGNED NOT NULL DEFAULT 0, \
           seedtime BIGINT UNSIGNED NOT NULL DEFAULT 0, seeder BOOL NOT NULL DEFAULT 0, \
           active BOOL NOT NULL DEFAULT 0, completed_at TIMESTAMP NULL, created_at TIMESTAMP NULL, \
           updated_at TIMESTAMP NULL, UNIQUE KEY (user_id, torrent_id));",
    );
    site.db.sql(views);
    site.db.sql(&format!("DELIMITER //{triggers}"));
    let (seeder_key, leecher_key) = (
        "unit3dSeeder0123456789abcdefghij",
        "unit3dLeecher123456789abcdefghij",
    );
    for (id, key) in [(1, seeder_key), (2, leecher_key)] {
        site.db.sql(&format!(
            "INSERT INTO users SET id = {id}, passkey = '{key}'"
        ));
    }
    site.db.sql(&format!(
        "INSERT INTO torrents SET id = 7, info_hash = UNHEX('{}'), free = 50",
        hex(&hash(7))
    ));
    let t = site.tracker("");
    let seeder = peer(&t, seeder_key, hash(7), 1);
    let leecher = peer(&t, leecher_key, hash(7), 2);
    assert!(served(&seeder.http("started", 0, 0, 0)));
    assert!(served(&leecher.http("started", 0, 0, 1000)));
    let unit3d = |q: &str| {
        site.db
            .sql(q)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    until("UNIT3D's peers and counters", || {
        unit3d("SELECT COUNT(*) FROM peers") == "2"
            && unit3d("SELECT seeders, leechers FROM torrents WHERE id = 7") == "1 1"
    });
    assert_eq!(
        unit3d("SELECT user_id, port, seeder, HEX(ip) FROM peers ORDER BY user_id"),
        "1 6001 1 7F000001 2 6002 0 7F000001"
    );
    // The leecher completes (half freeleech) and leaves.
    assert!(served(&leecher.http("completed", 0, 1000, 0)));
    assert!(served(&leecher.http("stopped", 0, 1000, 0)));
    until("the snatch, the history and the peer gone", || {
        unit3d("SELECT seeders, leechers, times_completed FROM torrents WHERE id = 7") == "1 0 1"
            && unit3d("SELECT COUNT(*) FROM peers") == "1"
            && unit3d(
                "SELECT downloaded, actual_downloaded, active, completed_at IS NOT NULL \
                 FROM history WHERE user_id = 2",
            ) == "500 1000 0 1"
    });
    assert_eq!(unit3d("SELECT downloaded FROM users WHERE id = 2"), "500");
    assert_eq!(
        unit3d("SELECT seeder, active FROM history WHERE user_id = 1"),
        "1 1"
    );
}

/// `[private]` on the site's database with `sync_interval = 600` (only the
/// API or a SIGHUP changes what is served during a test), and `[admin]`.
fn api_config(site: &Site) -> PathBuf {
    let path = site.dir.join("tracker.toml");
    std::fs::write(
        &path,
        format!(
            "[private]\nenabled = true\ndatabase = \"{}\"\nsync_interval = 600\n\
             flush_interval = 1\nnode = \"test-node\"\nledger = \"{}\"\n{}",
            site.db.url(),
            site.dir.join("credits.journal").display(),
            admin::section(&site.dir),
        ),
    )
    .unwrap();
    path
}

/// A full read of the site's tables (SIGHUP), waited for.
fn read_again(t: &mut Started) {
    signal(&t.child, "-HUP");
    wait_for_line(&mut t.stderr, "torrents served");
}

#[test]
fn the_management_api_changes_users_torrents_and_freeleech_at_once() {
    let site = Site::start("admin-db");
    site.user(1, SEEDER_KEY, "");
    site.user(2, LEECHER_KEY, "");
    site.torrent(10, hash(1), "");
    let mut t = start_with_config(&api_config(&site), &["--http", "127.0.0.1:0"], None);
    let api = admin::addr(&t);
    let new = hash(2);
    // The peers (re-made after each read: a read borrows the log).
    let seeder = |t: &Started, event: &str| peer(t, SEEDER_KEY, new, 1).http(event, 0, 0, 0);
    let on_new =
        |t: &Started, event: &str, down| peer(t, LEECHER_KEY, new, 2).http(event, 0, down, 100);
    let on_old =
        |t: &Started, event: &str, down| peer(t, LEECHER_KEY, hash(1), 3).http(event, 0, down, 100);
    let user1 =
        |t: &Started, event: &str, down| peer(t, SEEDER_KEY, hash(1), 4).http(event, 0, down, 100);
    assert!(
        !served(&seeder(&t, "started")),
        "torrent 20 is not registered"
    );
    let body = format!(r#"{{"info_hash": "{}"}}"#, hex(&new));
    assert_eq!(admin::call(api, "PUT", "/api/torrents/20", &body).0, 200);
    assert!(served(&seeder(&t, "started")), "served without a sync");

    // A token frees user 2's download on torrent 20 only; the site's
    // table frees all of user 1's (personal freeleech).
    assert!(served(&on_new(&t, "started", 0)));
    assert!(served(&on_old(&t, "started", 0)));
    assert!(served(&user1(&t, "started", 0)));
    let (status, body) = admin::call(
        api,
        "PUT",
        "/api/freeleech-tokens/2/20",
        r#"{"until": null}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin::call(
        api,
        "PUT",
        "/api/freeleech-tokens/2/999",
        r#"{"until": null}"#,
    );
    assert_eq!(status, 404, "{body}");
    let (status, body) = admin::call(api, "PUT", "/api/freeleech-tokens/2/10", r#"{"until": 5}"#);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("until:"),
        "{body}"
    );
    // Personal freeleech through the API, put and taken back.
    let path = "/api/users/2/personal-freeleech";
    assert_eq!(
        admin::call(api, "PUT", path, r#"{"until": 4102444800}"#).0,
        200
    );
    assert_eq!(admin::call(api, "DELETE", path, "").0, 200);
    assert_eq!(admin::call(api, "DELETE", path, "").0, 404);
    site.db
        .sql("INSERT INTO rt_freeleech_tokens (user_id, torrent_id) VALUES (1, 0)");
    read_again(&mut t);
    assert!(
        served(&seeder(&t, "")),
        "the API's torrent outlives a full read"
    );
    on_new(&t, "", 1000);
    on_old(&t, "", 500);
    user1(&t, "", 700);
    until("credits of the three sessions", || {
        site.credits(2, 20)[3] == 1000
            && site.credits(2, 10)[3] == 500
            && site.credits(1, 10)[3] == 700
    });
    assert_eq!(
        site.credits(2, 20)[1],
        0,
        "the token zeroes the credited download"
    );
    assert_eq!(site.credits(2, 10)[1], 500, "on that torrent only");
    assert_eq!(
        site.credits(1, 10)[1],
        0,
        "personal freeleech from rt_freeleech_tokens"
    );

    let (status, body) = admin::call(api, "GET", &format!("/api/torrents/{}", hex(&new)), "");
    assert_eq!(
        (status, body["id"].as_u64(), body["seeders"].as_u64()),
        (200, Some(20), Some(1))
    );
    let mut users: Vec<u64> = (body["peers"].as_array().unwrap().iter())
        .map(|p| p["user_id"].as_u64().unwrap())
        .collect();
    users.sort_unstable();
    assert_eq!(users, [1, 2], "{body}");
    let (status, body) = admin::call(api, "GET", "/api/users/2", "");
    assert_eq!(
        (status, body["peers"].as_array().map(Vec::len)),
        (200, Some(2)),
        "{body}"
    );

    // A ban: refused on the next announce, its peers gone from the swarms;
    // the site's older row does not bring it back at a full read, a newer
    // one does.
    let (status, body) = admin::call(api, "DELETE", "/api/users/2", "");
    assert_eq!(
        (status, body["peers_removed"].as_u64()),
        (200, Some(2)),
        "{body}"
    );
    assert!(on_new(&t, "", 1000).contains("failure reason"));
    let (_, body) = admin::call(api, "GET", &format!("/api/torrents/{}", hex(&new)), "");
    assert_eq!(body["peers"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(admin::call(api, "DELETE", "/api/users/2", "").0, 404);
    read_again(&mut t);
    assert!(!served(&on_new(&t, "", 1000)), "the API's change is newer");
    site.db
        .sql("UPDATE rt_users SET download_factor = 1.5 WHERE id = 2");
    read_again(&mut t);
    assert!(
        served(&on_new(&t, "started", 1000)),
        "the site's newer row wins"
    );

    let (status, body) = admin::call(api, "DELETE", "/api/torrents/20", "");
    assert_eq!(
        (status, body["peers_removed"].as_u64()),
        (200, Some(2)),
        "{body}"
    );
    assert!(!served(&seeder(&t, "")), "refused on the next announce");
    assert_eq!(admin::call(api, "DELETE", "/api/torrents/20", "").0, 404);
}
