//! Cluster mode over real sockets and real Redis: several tracker nodes
//! (the binary, each on its own loopback ports) share their swarms
//! through one redis-server, or a Redis Cluster of three masters, that the
//! test starts in a temporary directory. Every wait is a poll with a
//! deadline.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::redis::{Redis, redis_cluster};
use common::tracker::{Started, addr_after, http_get, metrics_addr, start_with_config, stop_with};
use common::{Client, fresh_dir};
use ringtracker::cluster::mac::ClusterMac;
use ringtracker::cluster::message::MessageBuilder;
use ringtracker::tracker::change::{ChangeKind, SwarmChange};
use ringtracker::tracker::table::PeerAddr;

const DEADLINE: Duration = Duration::from_secs(60);
const STARTED: u32 = 2;
const STOPPED: u32 = 3;
const COMPLETED: u32 = 1;

/// One node: the binary with `[cluster]` on, UDP and HTTP on IPv4 and IPv6.
struct Node {
    t: Started,
    config: PathBuf,
    udp6: SocketAddr,
    http6: SocketAddr,
}

fn write_config(dir: &Path, name: &str, redis: &[String], redis_cluster: bool) -> PathBuf {
    let secret = dir.join("secret");
    if !secret.exists() {
        std::fs::write(&secret, [7u8; 32]).unwrap();
    }
    let urls: Vec<String> = redis.iter().map(|u| format!("\"{u}\"")).collect();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[cluster]\nenabled = true\nnode = \"{name}\"\nredis = [{}]\nredis_cluster = {redis_cluster}\n\
             secret_file = \"{}\"\nflush_interval_ms = 20\n",
            urls.join(", "),
            secret.display()
        ),
    )
    .unwrap();
    config
}

impl Node {
    fn start(dir: &Path, name: &str, redis: &[String], redis_cluster: bool) -> Node {
        let config = write_config(dir, name, redis, redis_cluster);
        Node::start_from(config)
    }

    fn start_from(config: PathBuf) -> Node {
        Node::start_env(config, None)
    }

    fn start_env(config: PathBuf, env: Option<(&str, &str)>) -> Node {
        let args = [
            "--udp",
            "[::1]:0",
            "--http",
            "127.0.0.1:0",
            "--http",
            "[::1]:0",
        ];
        let mut t = start_with_config(&config, &args, env);
        // The rest of the listening lines come before this one.
        let mut log = t.early_log.clone();
        while !log.contains("worker(s) started") {
            log.push_str(&t.stderr.next_line().expect("start-up log"));
        }
        let v6 = |needle: &str| {
            let at = log
                .find(needle)
                .unwrap_or_else(|| panic!("{needle} not logged:\n{log}"));
            addr_after(&log[at..], needle.trim_end_matches('[')).expect("address")
        };
        Node {
            udp6: v6("listening on udp ["),
            http6: v6("listening on http ["),
            t,
            config,
        }
    }

    fn udp4(&self) -> SocketAddr {
        self.t.udp
    }

    fn http4(&self) -> SocketAddr {
        self.t.http
    }

    fn metric(&self, name: &str) -> u64 {
        let text = http_get(metrics_addr(&self.t), "/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0)
    }
}

/// A test's Redis and nodes in a directory of its own, all stopped and
/// removed when dropped.
struct Cluster {
    nodes: Vec<Node>,
    redis: Redis,
    dir: PathBuf,
}

impl Cluster {
    /// One redis-server and a node for each of `names` on it.
    fn start(test: &str, names: &[&str]) -> Cluster {
        let dir = fresh_dir(test);
        let redis = Redis::start(&dir.join("redis"));
        let mut c = Cluster {
            nodes: Vec::new(),
            redis,
            dir,
        };
        for name in names {
            let node = c.node(name, None);
            c.nodes.push(node);
        }
        c
    }

    /// A node on this cluster's Redis (with an environment variable).
    fn node(&self, name: &str, env: Option<(&str, &str)>) -> Node {
        let config = write_config(&self.dir, name, &[self.redis.url()], false);
        Node::start_env(config, env)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.clear();
        self.redis.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Leechers `node` counts in torrent `info_hash` (a UDP scrape).
fn leechers(node: &Node, info_hash: [u8; 20]) -> u32 {
    let mut c = Client::new("127.0.0.1:0", node.udp4());
    let cid = c.connect();
    c.scrape(cid, &[info_hash])[0].2
}

fn hash(i: u8) -> [u8; 20] {
    [i; 20]
}

/// Announce `port` (a leecher unless `left` is 0) at `server` from a fresh
/// client; the reply's peers' ports.
fn announce(server: SocketAddr, info_hash: [u8; 20], event: u32, left: u64, port: u16) -> Vec<u16> {
    let bind = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let mut c = Client::new(bind, server);
    let cid = c.connect();
    let r = c.announce(cid, info_hash, event, left, 50, port);
    r.peers.iter().map(|p| p.port()).collect()
}

/// Poll `check` until it holds or the deadline passes.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HTTP announce (non-compact, so the peers read as text).
fn http_announce(server: SocketAddr, info_hash: [u8; 20], port: u16) -> String {
    let q: String = info_hash.iter().map(|b| format!("%{b:02x}")).collect();
    let target = format!(
        "/announce?info_hash={q}&peer_id=-RT0001-httphttphttp&port={port}&uploaded=0&downloaded=0&left=5&compact=0"
    );
    http_get(server, &target)
}

/// The spread scenario: peers announced at A over UDP and HTTP, IPv4 and
/// IPv6, are returned by B and C over both; stopped at A, gone from B.
fn spread(nodes: &[Node], torrent: u8) {
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    // At A: a UDP peer on IPv4 and one on IPv6, an HTTP peer on IPv4.
    announce(a.udp4(), hash(torrent), STARTED, 10, 7001);
    announce(a.udp6, hash(torrent), STARTED, 0, 7002);
    http_announce(a.http4(), hash(torrent), 7003);
    for other in [b, c] {
        eventually("A's IPv4 peers at the other nodes over UDP", || {
            let ports = announce(other.udp4(), hash(torrent), STARTED, 10, 8000);
            ports.contains(&7001) && ports.contains(&7003)
        });
        eventually("A's IPv6 peer at the other nodes over UDP", || {
            announce(other.udp6, hash(torrent), STARTED, 10, 8001).contains(&7002)
        });
        eventually("A's peers at the other nodes over HTTP", || {
            http_announce(other.http4(), hash(torrent), 8002).contains("4:porti7001e")
                && http_announce(other.http6, hash(torrent), 8003).contains("4:porti7002e")
        });
    }
    // Stopped at A: gone from B.
    announce(a.udp4(), hash(torrent), STOPPED, 10, 7001);
    eventually("A's stopped peer gone from B", || {
        !announce(b.udp4(), hash(torrent), 0, 10, 8000).contains(&7001)
    });
}

#[test]
fn a_peer_announced_at_one_node_is_served_by_the_others() {
    let c = Cluster::start("cluster-spread", &["a", "b", "c"]);
    spread(&c.nodes, 1);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    assert!(b.metric("ringtracker_cluster_changes_total{direction=\"in\"}") >= 4);
    assert!(a.metric("ringtracker_cluster_messages_total{direction=\"out\"}") >= 1);
    assert_eq!(a.metric("ringtracker_cluster_redis_up"), 1);
    // The old name, kept for one release (CHANGELOG.md).
    assert_eq!(a.metric("ringtracker_cluster_engine_up"), 1);
    // The stats page's figures.
    let json = http_get(metrics_addr(&b.t), "/stats.json");
    assert!(json.contains("\"cluster\":{\"up\":1,"), "{json}");
}

#[test]
fn the_stats_page_shows_the_cluster_in_a_real_browser() {
    let c = Cluster::start("cluster-page", &["a", "b"]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    announce(a.udp4(), hash(13), STARTED, 10, 7901);
    eventually("A's peer at B", || {
        b.metric("ringtracker_cluster_changes_total{direction=\"in\"}") >= 1
    });
    let url = format!("http://{}/", metrics_addr(&b.t));
    let dom = common::browser_dom(&url, &c.dir.join("chromium"));
    assert!(
        dom.contains("<div class=\"tiles\" id=\"cluster\">"),
        "shown: {dom}"
    );
    assert!(dom.contains("id=\"cluster-redis\">up<"), "{dom}");
    assert!(dom.contains("id=\"cluster-in\">1<"), "{dom}");
    assert!(dom.contains(" ms / "), "the lag: {dom}");
}

#[test]
fn downloads_and_connection_ids_are_cluster_wide() {
    let cluster = Cluster::start("cluster-counts", &["a", "b", "c"]);
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    announce(a.udp4(), hash(2), STARTED, 10, 7101);
    announce(a.udp4(), hash(2), COMPLETED, 0, 7101);
    announce(b.udp4(), hash(2), STARTED, 10, 7102);
    announce(b.udp4(), hash(2), COMPLETED, 0, 7102);
    let mut client = Client::new("127.0.0.1:0", c.udp4());
    eventually("downloaded 2 at C", || {
        let cid = client.connect();
        client.scrape(cid, &[hash(2)]) == vec![(2, 2, 0)]
    });
    // A connection id from A is good at B (anycast moves clients).
    let mut at_a = Client::new("127.0.0.1:0", a.udp4());
    let cid = at_a.connect();
    let from = at_a.socket.local_addr().unwrap().to_string();
    drop(at_a);
    let mut at_b = Client::new(&from, b.udp4());
    let reply = at_b.announce(cid, hash(2), STARTED, 10, 50, 7103);
    assert_eq!(reply.seeders, 2, "answered with the cluster's counts");
}

#[test]
fn nodes_serve_through_a_redis_restart_and_converge_after_it() {
    let mut c = Cluster::start("cluster-outage", &["a", "b"]);
    let (a, b) = (c.nodes.remove(0), c.nodes.remove(0));
    announce(a.udp4(), hash(3), STARTED, 10, 7201);
    eventually("A's peer at B", || {
        announce(b.udp4(), hash(3), 0, 10, 8200).contains(&7201)
    });
    c.redis.kill();
    // Every node keeps answering, with its own and the last-known peers.
    eventually("A notices Redis is down", || {
        a.metric("ringtracker_cluster_redis_up") == 0
    });
    assert!(announce(b.udp4(), hash(3), 0, 10, 8200).contains(&7201));
    assert!(announce(a.udp4(), hash(3), 0, 10, 7202).contains(&7201));
    // Back, empty: a new announce at A reaches B.
    c.redis.restart();
    eventually("A reconnects", || {
        a.metric("ringtracker_cluster_redis_up") == 1
    });
    eventually("a new announce at A reaches B", || {
        announce(a.udp4(), hash(4), STARTED, 10, 7203);
        announce(b.udp4(), hash(4), 0, 10, 8201).contains(&7203)
    });
    assert!(a.metric("ringtracker_cluster_reconnects_total") >= 1);
}

#[test]
fn a_node_restarted_after_redis_came_back_empty_serves_the_others_peers() {
    let mut c = Cluster::start("cluster-empty-restart", &[]);
    // A writes checkpoints only when it (re)connects: the periodic one
    // cannot stand in for the one at its reconnect.
    let a = c.node("a", Some(("RINGTRACKER_TEST_CHECKPOINT_SECS", "3600")));
    let b = c.node("b", None);
    announce(a.udp4(), hash(12), STARTED, 10, 7601);
    eventually("A's peer at B", || {
        announce(b.udp4(), hash(12), 0, 10, 8600).contains(&7601)
    });
    c.redis.kill();
    eventually("A notices Redis is down", || {
        a.metric("ringtracker_cluster_redis_up") == 0
    });
    c.redis.restart();
    // A's checkpoint at its reconnect reaches the empty Redis (its first
    // try may meet the checkpoint thread's stale connection).
    eventually("A's checkpoint in the empty Redis", || {
        c.redis
            .cli(&["EXISTS", "ringtracker:checkpoint:{a}"])
            .trim()
            == "1"
    });
    // B restarts within the minute; nobody announces at A again.
    let config = b.config.clone();
    drop(b);
    let b = Node::start_from(config);
    eventually("B serves A's peer after its restart", || {
        leechers(&b, hash(12)) >= 1
    });
    drop((a, b));
}

#[test]
fn a_restarted_node_serves_the_others_peers_before_anyone_reannounces() {
    let mut c = Cluster::start("cluster-restart", &["a", "b"]);
    let (a, mut b) = (c.nodes.remove(0), c.nodes.remove(0));
    for port in 7301..7311 {
        announce(a.udp4(), hash(5), STARTED, 10, port);
    }
    eventually("A's peers at B", || {
        announce(b.udp4(), hash(5), 0, 10, 8300).len() >= 10
    });
    stop_with(&mut b.t.child, "-TERM");
    let config = b.config.clone();
    drop(b);
    let b = Node::start_from(config);
    // Nobody announces at A again: B has A's peers from Redis.
    eventually("B serves A's peers after its restart", || {
        leechers(&b, hash(5)) >= 10
    });
    drop((a, b));
}

/// A torrent's completed count outlives its swarm on every node, and a
/// node that rejoins learns it from another's checkpoint alone.
#[test]
fn completed_counts_of_empty_swarms_survive_a_rejoin() {
    let c = Cluster::start("cluster-idle", &[]);
    // A checkpoints every second (a test hook; 60 s otherwise).
    let a = c.node("a", Some(("RINGTRACKER_TEST_CHECKPOINT_SECS", "1")));
    let b = c.node("b", None);
    let scrape = |node: &Node| {
        let mut client = Client::new("127.0.0.1:0", node.udp4());
        let cid = client.connect();
        client.scrape(cid, &[hash(13)])[0]
    };
    announce(a.udp4(), hash(13), STARTED, 10, 7901);
    announce(a.udp4(), hash(13), COMPLETED, 0, 7901);
    eventually("the download counted at B", || scrape(&b) == (1, 1, 0));
    announce(a.udp4(), hash(13), STOPPED, 0, 7901);
    eventually("the swarm gone at B, its count kept", || {
        scrape(&b) == (0, 1, 0)
    });
    assert_eq!(scrape(&a), (0, 1, 0));
    // Two checkpoints of A after the stop; then the stream is emptied, so
    // B, restarted, has only A's checkpoint to learn from.
    let written = a.metric("ringtracker_cluster_checkpoints_written_total");
    eventually("A checkpoints twice", || {
        a.metric("ringtracker_cluster_checkpoints_written_total") >= written + 2
    });
    let config = b.config.clone();
    drop(b);
    c.redis
        .cli(&["XTRIM", "ringtracker:{changes}", "MAXLEN", "0"]);
    let b = Node::start_from(config);
    eventually("B knows the count again from A's checkpoint", || {
        scrape(&b) == (0, 1, 0)
    });
    drop((a, b));
}

#[test]
fn a_node_that_missed_trimmed_entries_catches_up_from_checkpoints() {
    let c = Cluster::start("cluster-trimmed", &[]);
    // A checkpoints every second (a test hook; 60 s otherwise).
    let a = c.node("a", Some(("RINGTRACKER_TEST_CHECKPOINT_SECS", "1")));
    eventually("A's first checkpoint", || {
        a.metric("ringtracker_cluster_checkpoints_written_total") >= 1
    });
    let b = c.node("b", None);
    eventually("B has caught up at its start and reads the stream", || {
        b.metric("ringtracker_cluster_checkpoints_loaded_total") >= 1
    });
    common::tracker::signal(&b.t.child, "-STOP");
    // B's read waiting in Redis takes the next message (it lands in B's
    // socket): a decoy, sent and flushed first.
    let sent = a.metric("ringtracker_cluster_messages_total{direction=\"out\"}");
    announce(a.udp4(), hash(11), STARTED, 10, 7800);
    eventually("A flushes the decoy", || {
        a.metric("ringtracker_cluster_messages_total{direction=\"out\"}") > sent
    });
    for port in 7801..7806 {
        announce(a.udp4(), hash(10), STARTED, 10, port);
    }
    // Two checkpoints later A's peers are in one; then the entries B has
    // not read are trimmed away.
    let written = a.metric("ringtracker_cluster_checkpoints_written_total");
    eventually("A checkpoints its peers", || {
        a.metric("ringtracker_cluster_checkpoints_written_total") >= written + 2
    });
    c.redis
        .cli(&["XTRIM", "ringtracker:{changes}", "MAXLEN", "0"]);
    common::tracker::signal(&b.t.child, "-CONT");
    // A's next message shows B the gap in A's message numbers.
    announce(a.udp4(), hash(12), STARTED, 10, 7810);
    eventually("B has A's peers from the checkpoint", || {
        leechers(&b, hash(10)) >= 5
    });
    assert!(b.metric("ringtracker_cluster_resyncs_total") >= 1);
    drop((a, b));
}

#[test]
fn garbage_on_the_stream_is_skipped_and_counted() {
    let c = Cluster::start("cluster-garbage", &["a", "b"]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let stream = "ringtracker:{changes}";
    c.redis.cli(&["XADD", stream, "*", "m", "not a message"]);
    c.redis.cli(&["XADD", stream, "*", "other", "field"]);
    c.redis.cli(&["XADD", stream, "*", "m", "RTC1\u{5}xxxxx"]);
    eventually("three skipped at B", || {
        b.metric("ringtracker_cluster_skipped_messages_total") == 3
    });
    // And the stream still works.
    announce(a.udp4(), hash(6), STARTED, 10, 7401);
    eventually("A's peer at B after the garbage", || {
        announce(b.udp4(), hash(6), 0, 10, 8400).contains(&7401)
    });
}

/// A message of `node` (run 42, number `seq`) putting 127.0.0.9:`port` in
/// torrent 66 as a seeder, tagged with `key`.
fn message_from(key: &ClusterMac, node: &str, seq: u64, port: u16) -> Vec<u8> {
    let mut b = MessageBuilder::new();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    b.start(node, (42, seq), now_ms);
    let [hi, lo] = port.to_be_bytes();
    b.push(&SwarmChange {
        info_hash: ringtracker::protocol::InfoHash(hash(66)),
        addr: PeerAddr::V4([127, 0, 0, 9, hi, lo]),
        kind: ChangeKind::Seeder,
        completed: false,
    });
    b.finish(key).to_vec()
}

#[test]
fn forged_messages_and_checkpoints_are_refused_and_authentic_ones_applied() {
    let c = Cluster::start("cluster-hostile", &["a"]);
    let a = &c.nodes[0];
    let stream = "ringtracker:{changes}";
    let rejected = |node: &Node, reason: &str| {
        node.metric(&format!(
            "ringtracker_cluster_rejected_total{{reason=\"{reason}\"}}"
        ))
    };
    // Someone who may write to Redis, without the secret: a message under
    // another key, and one in the old untagged format.
    let forger = ClusterMac::from_secret(&[9; 32]);
    c.redis.cli_with(
        &["XADD", stream, "*", "m"],
        &message_from(&forger, "evil", 0, 6666),
    );
    let mut untagged = message_from(&forger, "evil", 1, 6667);
    untagged.truncate(untagged.len() - 32);
    untagged[..4].copy_from_slice(b"RTC1");
    c.redis.cli_with(&["XADD", stream, "*", "m"], &untagged);
    eventually("both refused at A", || {
        rejected(a, "unauthenticated") == 1 && rejected(a, "foreign") == 1
    });
    // A forged checkpoint, read by a node that joins.
    let zeros = "0".repeat(64);
    c.redis.cli(&[
        "SET",
        "ringtracker:checkpoint:{evil}",
        &format!("1 1 0-0 {zeros}"),
    ]);
    c.redis
        .cli(&["SET", "ringtracker:checkpoint:{evil}:1:0", "RTSNAP"]);
    c.redis
        .cli(&["SADD", "ringtracker:{changes}:nodes", "evil"]);
    let b = c.node("b", None);
    eventually("the forged checkpoint refused at B", || {
        rejected(&b, "checkpoint") >= 1
    });
    // A message under the cluster's own secret is applied, once.
    let key = ClusterMac::from_secret(&[7; 32]);
    let authentic = message_from(&key, "friend", 0, 7777);
    c.redis.cli_with(&["XADD", stream, "*", "m"], &authentic);
    eventually("the authentic peer served at A", || {
        announce(a.udp4(), hash(66), STARTED, 10, 8801).contains(&7777)
    });
    c.redis.cli_with(&["XADD", stream, "*", "m"], &authentic);
    eventually("its replay refused", || rejected(a, "replayed") == 1);
    let peers = announce(b.udp4(), hash(66), STARTED, 10, 8802);
    assert!(
        !peers.contains(&6666) && !peers.contains(&6667),
        "{peers:?}"
    );
    assert!(!announce(a.udp4(), hash(66), 0, 10, 8801).contains(&6666));
    drop(b);
}

#[test]
fn peers_spread_through_a_redis_cluster_of_three_masters() {
    let dir = fresh_dir("cluster-redis-cluster");
    let masters = redis_cluster(&dir.join("redis"));
    let urls: Vec<String> = masters.iter().map(|r| r.url()).collect();
    let nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|n| Node::start(&dir, n, &urls, true))
        .collect();
    spread(&nodes, 7);
    drop(nodes);
    drop(masters);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_password_in_the_redis_url_is_used() {
    let dir = fresh_dir("cluster-password");
    let redis = Redis::start_with(&dir.join("redis"), &["--requirepass", "s3cret"]);
    let url = format!("redis://:s3cret@127.0.0.1:{}", redis.port);
    let a = Node::start(&dir, "a", std::slice::from_ref(&url), false);
    let b = Node::start(&dir, "b", &[url], false);
    announce(a.udp4(), hash(9), STARTED, 10, 7701);
    eventually("A's peer at B through a password-protected Redis", || {
        announce(b.udp4(), hash(9), 0, 10, 8700).contains(&7701)
    });
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn peers_spread_over_tls_to_redis() {
    let dir = fresh_dir("cluster-tls");
    // A certificate for 127.0.0.1, trusted by the nodes through
    // SSL_CERT_FILE (the system roots are read from there when it is set).
    let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.join("redis.pem"), dir.join("redis.key"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    let port = common::redis::free_port().to_string();
    let tls = [
        "--tls-port",
        &port,
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
        "--tls-auth-clients",
        "no",
    ];
    let redis = Redis::start_with(&dir.join("redis"), &tls);
    let url = format!("rediss://127.0.0.1:{port}");
    let trust = Some(("SSL_CERT_FILE", cert.to_str().unwrap()));
    let a = Node::start_env(
        write_config(&dir, "a", std::slice::from_ref(&url), false),
        trust,
    );
    let b = Node::start_env(write_config(&dir, "b", &[url], false), trust);
    announce(a.udp4(), hash(14), STARTED, 10, 7951);
    eventually("A's peer at B through TLS", || {
        announce(b.udp4(), hash(14), 0, 10, 8950).contains(&7951)
    });
    assert_eq!(b.metric("ringtracker_cluster_redis_up"), 1);
    drop((a, b, redis));
    let _ = std::fs::remove_dir_all(&dir);
}

/// contrib/grafana/ringtracker.json queries only metrics a tracker
/// exports: checked against a live /metrics of a node with every feature
/// the dashboard shows (cluster mode and snapshots).
#[test]
fn the_grafana_dashboard_queries_only_exported_metrics() {
    let dashboard = include_str!("../contrib/grafana/ringtracker.json");
    let parsed: serde_json::Value = serde_json::from_str(dashboard).expect("valid JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() > 10));
    let c = Cluster::start("cluster-grafana", &[]);
    let config = write_config(&c.dir, "a", &[c.redis.url()], false);
    let mut text = std::fs::read_to_string(&config).unwrap();
    let snapshot = c.dir.join("swarms.snap");
    text.push_str(&format!(
        "[storage]\nsnapshot = \"{}\"\n",
        snapshot.display()
    ));
    std::fs::write(&config, text).unwrap();
    let a = Node::start_from(config);
    let metrics = http_get(metrics_addr(&a.t), "/metrics");
    let exported: std::collections::HashSet<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut queried: Vec<&str> = dashboard
        .match_indices("ringtracker_")
        .map(|(at, _)| {
            let rest = &dashboard[at..];
            let end = rest
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    queried.sort();
    queried.dedup();
    assert!(queried.len() > 20, "{queried:?}");
    for name in queried {
        assert!(
            exported.contains(name),
            "the dashboard queries {name}, not exported"
        );
    }
}

#[test]
fn the_tracker_starts_and_serves_without_its_engine() {
    let dir = fresh_dir("cluster-no-engine");
    let nobody = format!("redis://127.0.0.1:{}", common::redis::free_port());
    let a = Node::start(&dir, "a", &[nobody], false);
    assert_eq!(
        announce(a.udp4(), hash(8), STARTED, 10, 7601),
        Vec::<u16>::new()
    );
    assert_eq!(announce(a.udp4(), hash(8), STARTED, 10, 7602), vec![7601]);
    assert_eq!(a.metric("ringtracker_cluster_redis_up"), 0);
    drop(a);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cluster_mode_needs_a_secret_of_32_bytes() {
    let dir = fresh_dir("cluster-secret");
    let config = write_config(&dir, "a", &["redis://127.0.0.1:1".into()], false);
    std::fs::write(dir.join("secret"), b"short").unwrap();
    let out = common::tracker::bin()
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cluster.secret_file"), "{err}");
    assert!(err.contains("at least 32"), "{err}");
    std::fs::remove_file(dir.join("secret")).unwrap();
    let out = common::tracker::bin()
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cluster.secret_file") && err.contains("cannot read"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
