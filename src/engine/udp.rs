//! The UDP frontend's logic, sans I/O: one datagram in (with its source
//! address and the time), one reply written into a caller-owned buffer, or a
//! reason it was dropped. The backends only move the bytes.
//!
//! A request whose connection id is not valid for its source address is
//! dropped without a reply: answering would let a spoofed source aim our
//! replies at a victim, and a well-behaved client simply connects again
//! when its request times out.

use crate::protocol::client_software::{ClientSoftware, client_software};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use arrayvec::ArrayVec;

use super::policy::{self, Announcer, Denied};
use crate::protocol::udp::{
    self, AnnouncePeek, AnnounceRequest, DropReason, Request, RequestError,
};
use crate::tracker::access::{AccessRules, passkey_in_path};
use crate::tracker::announce::{AnnounceParams, PeerPrefetch, Tracker};
use crate::tracker::change::SwarmChange;
use crate::tracker::refusal::Refusal;
use crate::tracker::swarm::Picks;

/// Largest UDP payload that fits one unfragmented 1500-byte Ethernet frame.
pub const MAX_REPLY_V4: usize = 1500 - 20 - 8;
/// The same for IPv6.
pub const MAX_REPLY_V6: usize = 1500 - 40 - 8;
/// A reply buffer must hold this much.
pub const REPLY_BUFFER_LEN: usize = MAX_REPLY_V4;
/// The longest datagram either backend takes in: a scrape of 96 hashes
/// (BEP 15 clients send at most 74; the first 74 are answered). Anything
/// longer is dropped and counted as oversized (`drop_oversized`).
pub const MAX_REQUEST_LEN: usize = 16 + 96 * 20;
const PRIVATE_SCRAPE: &str = "private tracker: scrape over HTTP with your passkey";

/// What a reply is (counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// A connection id.
    Connect,
    /// An announce's peers, to this client software.
    Announce(ClientSoftware),
    /// A scrape's counts.
    Scrape,
    /// An error packet, and why.
    Error(UdpError),
}

/// Why a datagram got an error packet: the UDP frontend's own reasons
/// beside the policy chain's refusals (a rate-limited announce is dropped,
/// `UdpDrop::RateLimited`, not answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpError {
    /// A request the client can fix (an unknown event, a scrape without
    /// hashes).
    BadRequest,
    /// Refused by the access rules or private mode.
    Refused(Refusal),
    /// A scrape to a private tracker (it carries no passkey).
    PrivateScrape,
}

/// Why a datagram got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpDrop {
    /// Not a BEP 15 request (the parser's reason).
    Malformed(DropReason),
    /// Unknown, expired or issued to another address.
    BadConnectionId,
    /// From a banned address: no reply of any kind.
    Banned,
    /// Over the address's rate limit (connects or announces).
    RateLimited,
    /// Longer than `MAX_REQUEST_LEN`.
    Oversized,
}

/// What became of one datagram.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpOutcome {
    /// Send `out[..len]` back to the source, from the address it came to.
    Reply {
        /// The reply's length.
        len: usize,
        /// What it is (counters).
        kind: ReplyKind,
        /// What cluster mode publishes of an announce.
        published: Option<SwarmChange>,
    },
    /// No reply, and why.
    Drop(UdpDrop),
}

/// What an announce asks of the swarm, as it came from `ip` (the source,
/// canonical); `picks` choose the reply's peers.
fn announce_params(a: &AnnounceRequest<'_>, ip: IpAddr, picks: Picks) -> AnnounceParams {
    AnnounceParams {
        info_hash: a.info_hash,
        peer_id: a.peer_id,
        ip,
        port: a.port,
        event: a.event,
        left: a.left,
        uploaded: a.uploaded,
        downloaded: a.downloaded,
        numwant: a.num_want,
        picks,
        both_families: false,
    }
}

/// Ahead of `handle_datagram` with the same `picks`: ask for the cache
/// lines the swarm update and reply of the announce `peek` came from will
/// touch (the batch pipeline's second pass). Changes nothing.
pub fn prefetch_peers(tracker: &Tracker, peek: &AnnouncePeek, src: SocketAddr, picks: Picks) {
    tracker.prefetch_peers(&PeerPrefetch {
        info_hash: peek.info_hash,
        ip: src.ip().to_canonical(),
        port: peek.port,
        seeder: peek.left == 0,
        numwant: peek.num_want,
        picks,
    });
}

/// A reply of `len` bytes that publishes nothing.
fn reply(len: usize, kind: ReplyKind) -> UdpOutcome {
    UdpOutcome::Reply {
        len,
        kind,
        published: None,
    }
}

/// Handle one datagram from `src` at tracker time `now` under `rules`
/// (loaded once per batch); an announce's reply takes its peers where
/// `picks` say. `out` must be at least `REPLY_BUFFER_LEN` bytes.
pub fn handle_datagram(
    tracker: &Tracker,
    rules: &AccessRules,
    packet: &[u8],
    src: SocketAddr,
    now: u32,
    picks: Picks,
    out: &mut [u8],
) -> UdpOutcome {
    debug_assert!(out.len() >= REPLY_BUFFER_LEN);
    if packet.len() > MAX_REQUEST_LEN {
        return UdpOutcome::Drop(UdpDrop::Oversized);
    }
    let ip = src.ip().to_canonical();
    if rules.banned(ip) {
        return UdpOutcome::Drop(UdpDrop::Banned);
    }
    let request = match udp::parse_request(packet) {
        Ok(r) => r,
        Err(RequestError::Unanswerable(reason)) => {
            return UdpOutcome::Drop(UdpDrop::Malformed(reason));
        }
        Err(RequestError::Answerable {
            connection_id,
            transaction_id,
            message,
        }) => {
            if !tracker.connection_ids().is_valid(connection_id, ip, now) {
                return UdpOutcome::Drop(UdpDrop::BadConnectionId);
            }
            let len = udp::write_error(out, transaction_id, message);
            return reply(len, ReplyKind::Error(UdpError::BadRequest));
        }
    };
    match request {
        Request::Connect { transaction_id } => {
            if !tracker.connect_allowed(ip, now) {
                return UdpOutcome::Drop(UdpDrop::RateLimited);
            }
            let id = tracker.connection_ids().issue(ip, now);
            reply(
                udp::write_connect(out, transaction_id, id),
                ReplyKind::Connect,
            )
        }
        Request::Announce(a) => {
            if !tracker.connection_ids().is_valid(a.connection_id, ip, now) {
                return UdpOutcome::Drop(UdpDrop::BadConnectionId);
            }
            announce(tracker, rules, &a, ip, now, picks, out)
        }
        Request::Scrape(s) => {
            if !tracker.connection_ids().is_valid(s.connection_id, ip, now) {
                return UdpOutcome::Drop(UdpDrop::BadConnectionId);
            }
            if rules.private() {
                // A UDP scrape carries no options, so no passkey: the counts
                // of a private tracker's torrents are for its members.
                let len = udp::write_error(out, s.transaction_id, PRIVATE_SCRAPE);
                return reply(len, ReplyKind::Error(UdpError::PrivateScrape));
            }
            let mut len = udp::write_scrape_header(out, s.transaction_id);
            for hash in s.info_hashes() {
                let c = tracker.scrape(&hash);
                udp::write_scrape_entry(&mut out[len..], c.seeders, c.completed, c.leechers);
                len += udp::SCRAPE_ENTRY_LEN;
            }
            reply(len, ReplyKind::Scrape)
        }
    }
}

/// Run an announce whose connection id checked out, from `ip` (the
/// source, canonical), through the policy chain, writing the reply into
/// `out`.
#[inline]
fn announce(
    tracker: &Tracker,
    rules: &AccessRules,
    a: &AnnounceRequest<'_>,
    ip: IpAddr,
    now: u32,
    picks: Picks,
    out: &mut [u8],
) -> UdpOutcome {
    // The passkey travels in BEP 41 URLData: the path of the tracker URL,
    // `/<passkey>/announce`.
    let mut url = ArrayVec::new();
    let mut passkey = None;
    if rules.private() {
        udp::url_data(a.options, &mut url);
        passkey = passkey_in_path(&url);
    }
    let who = Announcer {
        seen: ip,
        passkey,
        claimed: (ip.is_ipv4() && a.ip != 0).then(|| IpAddr::V4(Ipv4Addr::from(a.ip))),
        agent: b"",
    };
    let params = announce_params(a, policy::peer_ip(tracker, &who), picks);
    let limit = if ip.is_ipv4() {
        MAX_REPLY_V4
    } else {
        MAX_REPLY_V6
    };
    let room = &mut out[udp::ANNOUNCE_REPLY_HEADER_LEN..limit];
    let answer = match policy::announce(tracker, rules, &who, &params, now, room) {
        Ok(answer) => answer,
        Err(Denied::RateLimited) => return UdpOutcome::Drop(UdpDrop::RateLimited),
        Err(Denied::Refused(refusal)) => {
            let len = udp::write_error(out, a.transaction_id, refusal.message());
            return reply(len, ReplyKind::Error(UdpError::Refused(refusal)));
        }
    };
    udp::write_announce_header(
        out,
        a.transaction_id,
        tracker.policy().reply_interval(params.picks.interval),
        answer.leechers,
        answer.seeders,
    );
    UdpOutcome::Reply {
        len: udp::ANNOUNCE_REPLY_HEADER_LEN + answer.peers * answer.peer_len,
        kind: ReplyKind::Announce(client_software(&params.peer_id)),
        published: answer.change,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::udp::*;
    use crate::tracker::announce::AnnouncePolicy;
    use crate::tracker::connection_id::ConnectionIdIssuer;
    use crate::tracker::table::SwarmTable;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn tracker(max_numwant: usize) -> Tracker {
        Tracker::new(
            AnnouncePolicy {
                max_numwant,
                ..AnnouncePolicy::default()
            },
            SwarmTable::new(16, [1, 2]),
            ConnectionIdIssuer::new([9; 16]),
        )
    }

    struct Client {
        src: SocketAddr,
        rng: SmallRng,
        out: Vec<u8>,
    }

    impl Client {
        fn new(src: &str) -> Self {
            Client {
                src: src.parse().unwrap(),
                rng: SmallRng::seed_from_u64(4),
                out: vec![0; 2048],
            }
        }

        fn send(&mut self, t: &Tracker, packet: &[u8], now: u32) -> Option<&[u8]> {
            match handle_datagram(
                t,
                &t.rules(),
                packet,
                self.src,
                now,
                Picks::draw(&mut self.rng),
                &mut self.out,
            ) {
                UdpOutcome::Reply { len, .. } => Some(&self.out[..len]),
                UdpOutcome::Drop(_) => None,
            }
        }

        fn connect(&mut self, t: &Tracker, now: u32) -> u64 {
            let mut p = PROTOCOL_ID.to_be_bytes().to_vec();
            p.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 42]);
            let r = self.send(t, &p, now).unwrap();
            assert_eq!(r[..8], [0, 0, 0, 0, 0, 0, 0, 42]);
            u64::from_be_bytes(r[8..16].try_into().unwrap())
        }
    }

    fn announce(cid: u64, hash: u8, event: u32, left: u64, num_want: i32, port: u16) -> Vec<u8> {
        let mut p = cid.to_be_bytes().to_vec();
        p.extend_from_slice(&1u32.to_be_bytes());
        p.extend_from_slice(&77u32.to_be_bytes());
        p.extend_from_slice(&[hash; 20]);
        p.extend_from_slice(&[1; 20]);
        p.extend_from_slice(&0u64.to_be_bytes());
        p.extend_from_slice(&left.to_be_bytes());
        p.extend_from_slice(&0u64.to_be_bytes());
        p.extend_from_slice(&event.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&num_want.to_be_bytes());
        p.extend_from_slice(&port.to_be_bytes());
        p
    }

    fn counts(r: &[u8]) -> (u32, u32, usize) {
        let l = u32::from_be_bytes(r[12..16].try_into().unwrap());
        let s = u32::from_be_bytes(r[16..20].try_into().unwrap());
        (l, s, r.len() - 20)
    }

    #[test]
    fn an_announce_before_min_interval_is_answered_without_refreshing() {
        // min interval 900 s, peer timeout 3600 s.
        let t = tracker(200);
        let mut seeder = Client::new("10.0.0.1:5000");
        let mut leecher = Client::new("10.0.0.2:5000");
        let cs = seeder.connect(&t, 0);
        seeder
            .send(&t, &announce(cs, 1, 2, 0, -1, 6881), 0)
            .unwrap();
        let cl = leecher.connect(&t, 0);
        leecher
            .send(&t, &announce(cl, 1, 2, 100, -1, 6882), 0)
            .unwrap();
        // The seeder re-announces early (no event): served, with peers.
        let r = seeder
            .send(&t, &announce(cs, 1, 0, 0, -1, 6881), 100)
            .unwrap();
        assert_eq!(counts(r), (1, 1, 6));
        // The leecher re-announces early with `completed`: always applied.
        let r = leecher
            .send(&t, &announce(cl, 1, 1, 0, -1, 6882), 100)
            .unwrap();
        assert_eq!(counts(r), (0, 2, 0));
        // Just past the timeout of the first announce, only the stamp of the
        // `completed` one keeps a peer.
        t.sweep(16, 3601, |_| {});
        assert_eq!(t.scrape(&crate::protocol::InfoHash([1; 20])).seeders, 1);
    }

    #[test]
    fn seeder_and_leecher_meet() {
        let t = tracker(200);
        let mut seeder = Client::new("10.0.0.1:5000");
        let mut leecher = Client::new("10.0.0.2:5000");
        let cs = seeder.connect(&t, 0);
        let cl = leecher.connect(&t, 0);
        let r = seeder
            .send(&t, &announce(cs, 1, 2, 0, -1, 6881), 1)
            .unwrap();
        assert_eq!(counts(r), (0, 1, 0));
        let r = leecher
            .send(&t, &announce(cl, 1, 2, 100, -1, 6882), 2)
            .unwrap();
        assert_eq!(counts(r), (1, 1, 6));
        assert_eq!(r[20..26], [10, 0, 0, 1, 0x1a, 0xe1]);
        let interval = u32::from_be_bytes(r[8..12].try_into().unwrap());
        assert!(
            (1620..=1800).contains(&interval),
            "jittered by 10%: {interval}"
        );
    }

    #[test]
    fn invalid_connection_id_is_dropped_and_ipv6_gets_18_byte_peers() {
        let t = tracker(200);
        let mut a = Client::new("[2001:db8::1]:1");
        let mut b = Client::new("[2001:db8::2]:1");
        assert!(a.send(&t, &announce(123, 1, 2, 5, -1, 1), 0).is_none());
        let ca = a.connect(&t, 0);
        let cb = b.connect(&t, 0);
        a.send(&t, &announce(ca, 1, 2, 5, -1, 1000), 0).unwrap();
        // b's id is refused from a's address.
        assert!(a.send(&t, &announce(cb, 1, 2, 5, -1, 1000), 0).is_none());
        let r = b.send(&t, &announce(cb, 1, 2, 5, -1, 2000), 0).unwrap();
        assert_eq!(counts(r), (2, 0, 18));
        assert_eq!(r[20 + 15], 1);
        assert_eq!(r[36..38], 1000u16.to_be_bytes());
        // Expired after two minutes.
        assert!(b.send(&t, &announce(cb, 1, 2, 5, -1, 2000), 121).is_none());
    }

    #[test]
    fn ipv4_mapped_counts_as_ipv4() {
        let t = tracker(200);
        let mut a = Client::new("[::ffff:10.1.2.3]:9");
        let mut b = Client::new("10.1.2.4:9");
        let ca = a.connect(&t, 0);
        let cb = b.connect(&t, 0);
        a.send(&t, &announce(ca, 3, 2, 5, -1, 7000), 0).unwrap();
        let r = b.send(&t, &announce(cb, 3, 2, 5, -1, 7001), 0).unwrap();
        assert_eq!(counts(r), (2, 0, 6));
        assert_eq!(r[20..24], [10, 1, 2, 3]);
    }

    #[test]
    fn stopped_removes_and_completed_counts_in_scrape() {
        let t = tracker(200);
        let mut a = Client::new("10.0.0.1:1");
        let ca = a.connect(&t, 0);
        a.send(&t, &announce(ca, 5, 2, 10, -1, 1), 0).unwrap();
        let r = a.send(&t, &announce(ca, 5, 1, 0, -1, 1), 0).unwrap();
        assert_eq!(counts(r), (0, 1, 0));
        // Retransmitted completed does not count twice.
        a.send(&t, &announce(ca, 5, 1, 0, -1, 1), 0).unwrap();
        let mut scrape = ca.to_be_bytes().to_vec();
        scrape.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 3]);
        scrape.extend_from_slice(&[5; 20]);
        scrape.extend_from_slice(&[6; 20]);
        let r = a.send(&t, &scrape, 0).unwrap().to_vec();
        assert_eq!(
            r,
            [
                0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0
            ]
        );
        let r = a.send(&t, &announce(ca, 5, 3, 0, -1, 1), 0).unwrap();
        assert_eq!(counts(r), (0, 0, 0));
        // The swarm is gone, the count went with it.
        assert_eq!(t.scrape(&crate::protocol::InfoHash([5; 20])).seeders, 0);
    }

    #[test]
    fn numwant_edges() {
        let t = tracker(30);
        let mut rng_clients: Vec<Client> = (0..100)
            .map(|i| Client::new(&format!("10.0.{}.{}:1", i / 200, i % 200 + 1)))
            .collect();
        for c in rng_clients.iter_mut() {
            let id = c.connect(&t, 0);
            c.send(&t, &announce(id, 9, 2, 0, 0, 1), 0).unwrap();
        }
        let mut l = Client::new("10.9.9.9:1");
        let id = l.connect(&t, 0);
        for (numwant, expect) in [
            (-1, 30),
            (0, 30),
            (1, 1),
            (7, 7),
            (30, 30),
            (31, 30),
            (i32::MAX, 30),
        ] {
            let r = l.send(&t, &announce(id, 9, 0, 1, numwant, 1), 0).unwrap();
            assert_eq!(counts(r).2, expect * 6, "numwant {numwant}");
        }
    }

    #[test]
    fn replies_fit_one_datagram() {
        let t = tracker(10_000);
        for v6 in [false, true] {
            for i in 0..300u32 {
                let src = if v6 {
                    format!("[2001:db8::{:x}]:1", i + 1)
                } else {
                    format!("10.1.{}.{}:1", i / 250, i % 250 + 1)
                };
                let mut c = Client::new(&src);
                let id = c.connect(&t, 0);
                c.send(&t, &announce(id, 11, 2, 0, -1, 1), 0).unwrap();
            }
            let mut l = Client::new(if v6 {
                "[2001:db8::ffff]:1"
            } else {
                "10.9.9.9:1"
            });
            let id = l.connect(&t, 0);
            let r = l.send(&t, &announce(id, 11, 0, 1, 5000, 1), 0).unwrap();
            let (max, entry) = if v6 {
                (MAX_REPLY_V6, 18)
            } else {
                (MAX_REPLY_V4, 6)
            };
            assert!(r.len() <= max);
            assert_eq!(counts(r).2, (max - 20) / entry * entry);
        }
    }

    #[test]
    fn port_zero_is_served_but_not_stored() {
        let t = tracker(200);
        let mut a = Client::new("10.0.0.1:1");
        let mut b = Client::new("10.0.0.2:1");
        let ca = a.connect(&t, 0);
        let cb = b.connect(&t, 0);
        a.send(&t, &announce(ca, 4, 2, 0, -1, 5), 0).unwrap();
        let r = b.send(&t, &announce(cb, 4, 2, 10, -1, 0), 0).unwrap();
        assert_eq!(counts(r), (0, 1, 6));
    }

    /// Random datagrams, half of them with the valid connection id: no
    /// panic, and no reply that breaks the protocol's rules.
    #[test]
    fn garbage_never_panics_nor_replies_without_a_valid_id() {
        let t = tracker(200);
        let mut c = Client::new("10.0.0.1:1");
        let id = c.connect(&t, 0);
        let mut rng = SmallRng::seed_from_u64(8);
        for len in [0usize, 1, 15, 16, 17, 35, 36, 97, 98, 99, 1500] {
            for _ in 0..200 {
                let mut p = vec![0u8; len];
                rand::Rng::fill_bytes(&mut rng, &mut p);
                if len >= 16 && rand::RngExt::random_bool(&mut rng, 0.5) {
                    p[..8].copy_from_slice(&id.to_be_bytes());
                    p[8..12].copy_from_slice(
                        &(rand::RngExt::random_range(&mut rng, 0..4u32)).to_be_bytes(),
                    );
                }
                let Some(r) = c.send(&t, &p, 1) else {
                    continue;
                };
                // No reply without a valid connection id (a connect is the
                // one request that needs none: it carries the magic), and
                // every reply answers the request's transaction id.
                let connect = p[..8] == PROTOCOL_ID.to_be_bytes() && p[8..12] == [0; 4];
                assert!(connect || p[..8] == id.to_be_bytes(), "replied to {p:?}");
                assert_eq!(r[4..8], p[12..16], "transaction id of {p:?}");
            }
        }
    }

    #[test]
    fn refused_torrents_get_an_error_and_no_swarm() {
        use crate::tracker::access::{AccessMode, AccessRules};
        let t = tracker(200);
        let listed = crate::protocol::InfoHash([1; 20]);
        t.set_access(AccessRules::new(
            AccessMode::Allow,
            [listed].into_iter().collect(),
        ));
        let mut c = Client::new("10.0.0.1:1");
        let id = c.connect(&t, 0);
        let r = c.send(&t, &announce(id, 2, 2, 0, -1, 1), 0).unwrap();
        assert_eq!(r[..4], [0, 0, 0, 3]);
        assert_eq!(&r[8..], b"torrent not allowed on this tracker");
        assert_eq!(t.scrape(&crate::protocol::InfoHash([2; 20])).seeders, 0);
        let r = c.send(&t, &announce(id, 1, 2, 0, -1, 1), 0).unwrap();
        assert_eq!(counts(r), (0, 1, 0));
    }

    #[test]
    fn banned_addresses_get_nothing_and_filtered_clients_an_error() {
        use crate::tracker::access::{AccessMode, AccessRules, ClientFilter, parse_ban_list};
        let t = tracker(200);
        t.set_access(
            AccessRules::default()
                .with_bans(parse_ban_list("10.9.0.0/16").unwrap())
                .with_clients(ClientFilter {
                    mode: AccessMode::Deny,
                    prefixes: vec![vec![1, 1, 1]],
                }),
        );
        let mut banned = Client::new("10.9.1.1:1");
        let mut p = PROTOCOL_ID.to_be_bytes().to_vec();
        p.extend_from_slice(&[0; 8]);
        assert!(banned.send(&t, &p, 0).is_none(), "not even a connect");
        // The test announces carry peer id [1; 20]: a denied client.
        let mut c = Client::new("10.0.0.1:1");
        let id = c.connect(&t, 0);
        let r = c.send(&t, &announce(id, 5, 2, 0, -1, 1), 0).unwrap();
        assert_eq!(&r[8..], b"client software not allowed on this tracker");
    }

    #[test]
    fn private_mode_reads_the_passkey_from_url_data() {
        use crate::tracker::access::AccessRules;
        let t = tracker(200);
        t.set_access(
            AccessRules::default()
                .with_passkeys([b"abcdef0123456789".to_vec()].into_iter().collect()),
        );
        let mut c = Client::new("10.0.0.1:1");
        let id = c.connect(&t, 0);
        let r = c.send(&t, &announce(id, 7, 2, 0, -1, 1), 0).unwrap();
        assert_eq!(&r[8..], b"unknown passkey");
        // URLData in two chunks, as BEP 41 allows: "/abcdef0123456789" + "/announce".
        let mut p = announce(id, 7, 2, 0, -1, 1);
        p.extend_from_slice(&[2, 17]);
        p.extend_from_slice(b"/abcdef0123456789");
        p.extend_from_slice(&[1, 2, 9]);
        p.extend_from_slice(b"/announce");
        p.push(0);
        let r = c.send(&t, &p, 0).unwrap();
        assert_eq!(counts(r), (0, 1, 0));
        let mut scrape = id.to_be_bytes().to_vec();
        scrape.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 1]);
        scrape.extend_from_slice(&[7; 20]);
        let r = c.send(&t, &scrape, 0).unwrap();
        assert_eq!(r[..4], [0, 0, 0, 3]);
    }

    #[test]
    fn over_the_rate_limit_datagrams_are_dropped() {
        use crate::tracker::announce::Limits;
        use crate::tracker::peer_set::AddrHasher;
        use crate::tracker::rate_limit::RateLimiter;
        let t = tracker(200).with_limits(Limits {
            connects: Some(RateLimiter::new(1, 2, 1024, AddrHasher::new(3, 4))),
            announces: Some(RateLimiter::new(1, 3, 1024, AddrHasher::new(5, 6))),
        });
        let mut c = Client::new("10.0.0.1:1");
        let id = c.connect(&t, 0);
        c.connect(&t, 0);
        let mut p = PROTOCOL_ID.to_be_bytes().to_vec();
        p.extend_from_slice(&[0; 8]);
        assert_eq!(
            handle_datagram(
                &t,
                &t.rules(),
                &p,
                c.src,
                0,
                Picks::draw(&mut c.rng),
                &mut c.out,
            ),
            UdpOutcome::Drop(UdpDrop::RateLimited),
            "third connect in the same second"
        );
        for _ in 0..3 {
            assert!(c.send(&t, &announce(id, 1, 2, 0, -1, 1), 0).is_some());
        }
        assert!(c.send(&t, &announce(id, 1, 0, 0, -1, 1), 0).is_none());
        assert!(
            c.send(&t, &announce(id, 1, 0, 0, -1, 1), 1).is_some(),
            "refilled"
        );
        let mut other = Client::new("10.0.0.2:1");
        other.connect(&t, 0);
    }

    #[test]
    fn bad_scrape_gets_an_error_only_with_a_valid_id() {
        let t = tracker(200);
        let mut c = Client::new("10.0.0.1:1");
        let id = c.connect(&t, 0);
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 5]);
        let r = c.send(&t, &p, 0).unwrap();
        assert_eq!(r[..8], [0, 0, 0, 3, 0, 0, 0, 5]);
        assert_eq!(&r[8..], b"scrape without info hash");
        // With an invalid id: nothing at all.
        p[0] ^= 1;
        assert!(c.send(&t, &p, 0).is_none());
    }
}
