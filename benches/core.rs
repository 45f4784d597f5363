//! Criterion benchmarks of the sans-I/O core: parsing, reply building, and
//! announces into swarms of 1, 100 and 100k peers, scrape of 74 hashes,
//! an HTTP scrape body plain and gzipped, and cluster mode's apply of
//! another node's change.
//! `make bench` runs them; numbers go to docs/BENCHMARKS.md.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use ringtracker::engine::policy::{self, Announcer};
use ringtracker::engine::udp::{UdpOutcome, handle_datagram};
use ringtracker::protocol::{InfoHash, udp};
use ringtracker::tracker::connection_id::ConnectionIdIssuer;
use ringtracker::tracker::swarm::Picks;
use ringtracker::tracker::table::SwarmTable;
use ringtracker::tracker::{AnnounceParams, AnnouncePolicy, Tracker};

fn tracker() -> Tracker {
    Tracker::new(
        AnnouncePolicy::default(),
        SwarmTable::new(1024, [1, 2]),
        ConnectionIdIssuer::new([3; 16]),
    )
}

fn announce_packet(cid: u64, hash: [u8; 20], port: u16) -> Vec<u8> {
    let mut p = cid.to_be_bytes().to_vec();
    p.extend_from_slice(&1u32.to_be_bytes());
    p.extend_from_slice(&5u32.to_be_bytes());
    p.extend_from_slice(&hash);
    p.extend_from_slice(&[1; 20]);
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(&100u64.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(&(-1i32).to_be_bytes());
    p.extend_from_slice(&port.to_be_bytes());
    p
}

/// Fill swarm `hash` with `n` seeders at distinct addresses.
fn fill(t: &Tracker, hash: [u8; 20], n: u32, rng: &mut SmallRng) {
    let mut out = vec![0u8; 2048];
    for i in 0..n {
        let ip = (0x0a00_0000 + i).to_be_bytes();
        let p = AnnounceParams {
            info_hash: ringtracker::protocol::InfoHash(hash),
            peer_id: ringtracker::protocol::PeerId([1; 20]),
            ip: std::net::Ipv4Addr::from(ip).into(),
            port: 6881,
            event: ringtracker::protocol::Event::Started,
            left: 0,
            uploaded: 0,
            downloaded: 0,
            numwant: 0,
            picks: Picks::draw(rng),
            both_families: false,
        };
        let who = Announcer {
            seen: p.ip,
            passkey: None,
            claimed: None,
            agent: b"",
        };
        policy::announce(t, &t.rules(), &who, &p, 0, &mut out)
            .expect("no access rules in the bench");
    }
}

fn benches(c: &mut Criterion) {
    let t = tracker();
    let mut rng = SmallRng::seed_from_u64(1);
    let src: SocketAddr = "192.0.2.1:7000".parse().unwrap();
    let cid = t.connection_ids().issue(src.ip(), 0);
    let packet = announce_packet(cid, [9; 20], 7000);
    let mut out = vec![0u8; 2048];

    c.bench_function("parse_announce", |b| {
        b.iter(|| udp::parse_request(black_box(&packet)))
    });
    c.bench_function("connection_id_check", |b| {
        b.iter(|| t.connection_ids().is_valid(black_box(cid), src.ip(), 1))
    });
    c.bench_function("write_announce_header", |b| {
        b.iter(|| udp::write_announce_header(&mut out, black_box(5), 1800, 10, 20))
    });

    for (n, hash) in [(1u32, [11u8; 20]), (100, [12; 20]), (100_000, [13; 20])] {
        fill(&t, hash, n, &mut rng);
        let packet = announce_packet(cid, hash, 7000);
        c.bench_function(&format!("udp_announce_swarm_{n}"), |b| {
            b.iter(|| {
                let o = handle_datagram(
                    &t,
                    &t.rules(),
                    black_box(&packet),
                    src,
                    1,
                    Picks::draw(&mut rng),
                    &mut out,
                );
                assert!(matches!(o, UdpOutcome::Reply { .. }));
            })
        });
    }

    let mut scrape = cid.to_be_bytes().to_vec();
    scrape.extend_from_slice(&2u32.to_be_bytes());
    scrape.extend_from_slice(&5u32.to_be_bytes());
    for i in 0..74u8 {
        scrape.extend_from_slice(&[i; 20]);
    }
    c.bench_function("udp_scrape_74", |b| {
        b.iter(|| {
            handle_datagram(
                &t,
                &t.rules(),
                black_box(&scrape),
                src,
                1,
                Picks::draw(&mut rng),
                &mut out,
            )
        })
    });
}

/// HTTP scrape bodies gzipped per request (`http.gzip`): a 40-torrent
/// body (about 2.8 KB, random info hashes) by the worker's reused encoder,
/// against writing it plain.
fn gzip_scrape(c: &mut Criterion) {
    use ringtracker::protocol::bencode::{ScrapeEntry, write_scrape};
    use ringtracker::protocol::gzip::GzipEncoder;
    let mut files: Vec<(InfoHash, ScrapeEntry)> = (0..40u32)
        .map(|i| {
            // Random-looking, as SHA-1 info hashes are.
            let h: [u8; 20] = std::array::from_fn(|j| {
                (((i * 20 + j as u32) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
            });
            let e = ScrapeEntry {
                complete: i,
                downloaded: 3 * i,
                incomplete: i / 2,
            };
            (InfoHash(h), e)
        })
        .collect();
    // A scrape body lists its torrents in info-hash order.
    files.sort_unstable_by_key(|f| f.0);
    let (mut body, mut gz) = (Vec::new(), Vec::new());
    let mut encoder = GzipEncoder::default();
    c.bench_function("http_scrape_body_40_plain", |b| {
        b.iter(|| {
            body.clear();
            write_scrape(&mut body, black_box(&files));
        })
    });
    c.bench_function("http_scrape_body_40_gzip", |b| {
        b.iter(|| {
            body.clear();
            write_scrape(&mut body, black_box(&files));
            gz.clear();
            encoder.encode(&body, &mut gz)
        })
    });
}

/// Cluster mode: applying another node's changes (the sync thread's cost
/// per change) into a table of 1M torrents, each change a refresh of one
/// of 2M peers, as the steady state carries.
fn cluster_apply(c: &mut Criterion) {
    use ringtracker::cluster::apply::apply_remote;
    use ringtracker::tracker::change::{ChangeKind, SwarmChange};
    use ringtracker::tracker::table::PeerAddr;
    let t = tracker();
    let change = |i: u32| {
        let mut hash = [0u8; 20];
        hash[..4].copy_from_slice(&(i % 1_000_000).wrapping_mul(2_654_435_761).to_le_bytes());
        let ip = (0x0a00_0000 + i).to_be_bytes();
        SwarmChange {
            info_hash: ringtracker::protocol::InfoHash(hash),
            addr: PeerAddr::V4([ip[0], ip[1], ip[2], ip[3], 0x1a, 0xe1]),
            kind: ChangeKind::Leecher,
            completed: false,
        }
    };
    for i in 0..2_000_000 {
        apply_remote(&t, &change(i), 0);
    }
    let mut i = 0u32;
    c.bench_function("cluster_apply_change_1m_torrents", |b| {
        b.iter(|| {
            i = (i + 7_919) % 2_000_000;
            apply_remote(&t, black_box(&change(i)), 1)
        })
    });
}

criterion_group!(core, benches, gzip_scrape, cluster_apply);
criterion_main!(core);
