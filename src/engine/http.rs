//! The HTTP frontend's logic, sans I/O: one parsed request head (with the
//! connection's peer address and the time) in, one complete HTTP response
//! appended to a caller-owned buffer out. The io_uring driver only moves
//! bytes and keeps connections.
//!
//! Client mistakes in an announce or scrape are answered `200 OK` with a
//! bencoded `failure reason`: clients such as libtorrent ignore the body of
//! any other status. Only requests that are not tracker requests at all get
//! an HTTP error status (404 here; 400/405/413/431 from the head parser).

use crate::protocol::client_software::{ClientSoftware, client_software};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arrayvec::ArrayVec;
use rand::Rng;

use super::policy::{self, Announcer, Denied};
use crate::protocol::InfoHash;
use crate::protocol::bencode::{self, AnnounceReplyHead, PeerFormat, RetryIn, ScrapeEntry};
use crate::protocol::gzip::{GzipEncoder, shared_level};
use crate::protocol::http::{self, Endpoint, HeadError, RequestHead};
use crate::tracker::access::AccessRules;
use crate::tracker::announce::{AnnounceParams, Tracker, check_passkey};
use crate::tracker::change::SwarmChange;
use crate::tracker::peer_set::{V4, V6};
use crate::tracker::refusal::Refusal;
use crate::tracker::swarm::Picks;

/// The operator's HTTP settings (from `[http]`).
#[derive(Debug, Clone, Default)]
pub struct HttpPolicy {
    /// Answer a scrape without `info_hash` with every torrent.
    pub full_scrape: bool,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Scrape bodies of at least this many bytes are gzipped for clients
    /// that accept it; `None`: never (`http.gzip`).
    pub gzip_min_bytes: Option<usize>,
}

/// How long (tracker seconds) a worker reuses the full scrape it built:
/// walking and sorting every torrent per request would let a few clients
/// keep a core busy, and one shared body per worker bounds its memory
/// however many connections are sending it.
pub const FULL_SCRAPE_MAX_AGE: u32 = 30;

/// Buffers one worker reuses for every request: peers picked by the
/// swarm and the bencoded body, so steady state allocates nothing. They
/// carry no result from one call to the next (that is the `HttpOutcome`),
/// only the last full scrape, which is shared on purpose.
#[derive(Default)]
pub struct Buffers {
    peers: Vec<u8>,
    body: Vec<u8>,
    hashes: ArrayVec<InfoHash, { http::MAX_SCRAPE_HASHES }>,
    files: Vec<(InfoHash, ScrapeEntry)>,
    /// The last full scrape.
    full_scrape: Option<FullScrape>,
    /// The worker's gzip encoder (made at its first use: UDP workers and
    /// servers without gzip never need its ~300 KiB) and the compressed
    /// body it wrote last.
    gzip: Option<GzipEncoder>,
    gzipped: Vec<u8>,
}

/// A full scrape's body, shared by every request until it is
/// `FULL_SCRAPE_MAX_AGE` old, and its gzip form, made for the first
/// request that accepts it and shared likewise.
struct FullScrape {
    built: u32,
    plain: Arc<[u8]>,
    gzipped: Option<Arc<[u8]>>,
}

/// What a request asked for (counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequestKind {
    /// Another path, or a banned client's request.
    #[default]
    Other,
    /// `/announce`.
    Announce,
    /// `/scrape`.
    Scrape,
}

/// What became of one request, besides the response appended to `out`.
#[must_use]
#[derive(Debug, Clone, Default)]
pub struct HttpOutcome {
    /// The connection stays open after the response.
    pub keep_alive: bool,
    /// What the request asked for.
    pub kind: RequestKind,
    /// Why it got a `failure reason`, if it did.
    pub failure: Option<HttpFailure>,
    /// The shared body that follows the head appended to `out` (a full
    /// scrape), sent by the caller after it.
    pub tail: Option<Arc<[u8]>>,
    /// What cluster mode publishes of an announce.
    pub published: Option<SwarmChange>,
    /// A served announce's client software.
    pub client: Option<ClientSoftware>,
    /// A gzipped body's length plain and compressed.
    pub gzipped: Option<(usize, usize)>,
}

/// Why a request got a `failure reason`: the policy chain's answers
/// (`Denied`: a refusal, or the rate limit, which HTTP answers where UDP
/// drops) and the HTTP frontend's own reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFailure {
    /// A query the client can fix (a missing or malformed parameter).
    BadRequest,
    /// The policy chain said no (or the passkey of a scrape is unknown).
    Denied(Denied),
    /// A scrape without `info_hash` while full scrape is off.
    FullScrapeDisabled,
}

/// Write a bencoded `failure reason` into `body`; returns `why`.
fn fail(
    body: &mut Vec<u8>,
    why: HttpFailure,
    message: &str,
    retry: Option<RetryIn>,
) -> HttpFailure {
    bencode::write_failure(body, message, retry);
    why
}

/// The client's address: the connection's peer, or, when that is a trusted
/// proxy, the rightmost `X-Forwarded-For` address that is not itself a
/// trusted proxy (the leftmost ones are whatever the client wrote), else
/// `X-Real-IP`.
pub fn client_ip(peer: IpAddr, head: &RequestHead<'_>, policy: &HttpPolicy) -> IpAddr {
    let peer = peer.to_canonical();
    let trusted = |ip: &IpAddr| {
        policy
            .trusted_proxies
            .iter()
            .any(|t| t.to_canonical() == *ip)
    };
    if !trusted(&peer) {
        return peer;
    }
    let parse = |b: &[u8]| -> Option<IpAddr> {
        std::str::from_utf8(b)
            .ok()?
            .trim()
            .parse::<IpAddr>()
            .ok()
            .map(|ip| ip.to_canonical())
    };
    if let Some(list) = head.forwarded_for {
        for part in list.rsplit(|&b| b == b',') {
            match parse(part) {
                Some(ip) if !trusted(&ip) => return ip,
                Some(_) => continue,
                None => break,
            }
        }
    }
    head.real_ip.and_then(parse).unwrap_or(peer)
}

/// Append the response to `head` to `out`.
#[allow(clippy::too_many_arguments)]
pub fn handle_request(
    tracker: &Tracker,
    policy: &HttpPolicy,
    head: &RequestHead<'_>,
    peer: SocketAddr,
    now: u32,
    rng: &mut impl Rng,
    buffers: &mut Buffers,
    out: &mut Vec<u8>,
) -> HttpOutcome {
    let keep_alive = head.keep_alive;
    let rules = tracker.rules();
    let seen = client_ip(peer.ip(), head, policy);
    if rules.banned(seen) {
        // Nothing at all: no reply, and the connection is closed.
        return HttpOutcome::default();
    }
    buffers.body.clear();
    let mut outcome = HttpOutcome {
        keep_alive,
        ..HttpOutcome::default()
    };
    match http::endpoint(head.target) {
        Endpoint::Unknown => {
            let minor = head.minor_version;
            respond(out, minor, 404, "Not Found", b"not found\n", keep_alive);
            return outcome;
        }
        Endpoint::Announce { passkey, query } => {
            outcome.kind = RequestKind::Announce;
            let who = Announcer {
                seen,
                passkey,
                claimed: None,
                agent: head.user_agent.unwrap_or_default(),
            };
            match announce(tracker, &rules, who, query, now, rng, buffers) {
                Ok((published, client)) => {
                    (outcome.published, outcome.client) = (published, Some(client));
                }
                Err(why) => outcome.failure = Some(why),
            }
        }
        Endpoint::Scrape { passkey, query } => {
            outcome.kind = RequestKind::Scrape;
            let gzip_from = policy.gzip_min_bytes.filter(|_| head.accepts_gzip);
            let answered = match check_passkey(&rules, passkey) {
                Ok(()) => scrape(tracker, policy, query, now, gzip_from, buffers),
                Err(r) => Err(fail(
                    &mut buffers.body,
                    HttpFailure::Denied(Denied::Refused(r)),
                    r.message(),
                    Some(retry_in(r)),
                )),
            };
            match answered {
                Ok(scraped) => {
                    let (minor, keep) = (head.minor_version, keep_alive);
                    send_scrape(
                        out,
                        (minor, keep),
                        scraped,
                        gzip_from,
                        buffers,
                        &mut outcome,
                    );
                    return outcome;
                }
                Err(why) => outcome.failure = Some(why),
            }
        }
    }
    let minor = head.minor_version;
    respond(out, minor, 200, "OK", &buffers.body, keep_alive);
    outcome
}

/// Append a scrape's answer, `(minor, keep_alive)`: the shared full
/// scrape's head (its body is the outcome's tail) or the body in
/// `buffers`, gzipped when the client accepts it and it has `gzip_from`
/// bytes.
fn send_scrape(
    out: &mut Vec<u8>,
    (minor, keep): (u8, bool),
    scraped: Scraped,
    gzip_from: Option<usize>,
    buffers: &mut Buffers,
    outcome: &mut HttpOutcome,
) {
    let (sent, gzip) = match scraped {
        Scraped::Shared {
            body,
            gzipped,
            plain_len,
        } => {
            respond_head(
                out,
                minor,
                body.len(),
                keep,
                Coding::Negotiated { gzip: gzipped },
            );
            outcome.gzipped = gzipped.then_some((plain_len, body.len()));
            outcome.tail = Some(body);
            return;
        }
        Scraped::InBody => match gzip_from {
            Some(min) if buffers.body.len() >= min => {
                buffers.gzipped.clear();
                let encoder = buffers.gzip.get_or_insert_with(GzipEncoder::default);
                if encoder.encode(&buffers.body, &mut buffers.gzipped) {
                    outcome.gzipped = Some((buffers.body.len(), buffers.gzipped.len()));
                    (&buffers.gzipped, true)
                } else {
                    (&buffers.body, false)
                }
            }
            _ => (&buffers.body, false),
        },
    };
    respond_head(out, minor, sent.len(), keep, Coding::Negotiated { gzip });
    out.extend_from_slice(sent);
}

/// Append the response for a head that could not be parsed; the connection
/// is closed after it.
pub fn reject(out: &mut Vec<u8>, error: HeadError) {
    let (code, reason) = error.status();
    let body = format!("{reason}\n");
    respond(out, 1, code, reason, body.as_bytes(), false);
}

/// What a 200's body is coded with.
#[derive(Clone, Copy)]
enum Coding {
    /// The same whatever the request accepts (announces, errors).
    Fixed,
    /// Chosen by `Accept-Encoding` (scrapes): `Vary` says so to caches.
    Negotiated {
        /// Sent gzipped.
        gzip: bool,
    },
}

fn respond(out: &mut Vec<u8>, minor: u8, code: u16, reason: &str, body: &[u8], keep_alive: bool) {
    let _ = write!(out, "HTTP/1.{minor} {code} {reason}\r\n");
    headers(out, minor, body.len(), keep_alive, Coding::Fixed);
    out.extend_from_slice(body);
}

/// A 200's status line and headers, for a body of `len` bytes.
fn respond_head(out: &mut Vec<u8>, minor: u8, len: usize, keep: bool, coding: Coding) {
    let _ = write!(out, "HTTP/1.{minor} 200 OK\r\n");
    headers(out, minor, len, keep, coding);
}

fn headers(out: &mut Vec<u8>, minor: u8, len: usize, keep: bool, coding: Coding) {
    let _ = write!(
        out,
        "Content-Type: text/plain\r\nContent-Length: {len}\r\n{}{}\r\n",
        match coding {
            Coding::Fixed => "",
            Coding::Negotiated { gzip: false } => "Vary: Accept-Encoding\r\n",
            Coding::Negotiated { gzip: true } => {
                "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n"
            }
        },
        if keep {
            if minor == 0 {
                "Connection: keep-alive\r\n"
            } else {
                ""
            }
        } else {
            "Connection: close\r\n"
        },
    );
}

/// Write the announce's reply (or its failure) into `buffers.body`;
/// returns what cluster mode publishes of it, or why it failed.
#[allow(clippy::too_many_arguments)]
fn announce(
    tracker: &Tracker,
    rules: &AccessRules,
    who: Announcer<'_>,
    query: &[u8],
    now: u32,
    rng: &mut impl Rng,
    buffers: &mut Buffers,
) -> Result<(Option<SwarmChange>, ClientSoftware), HttpFailure> {
    let body = &mut buffers.body;
    let q = http::parse_announce(query)
        .map_err(|e| fail(body, HttpFailure::BadRequest, &e.to_string(), None))?;
    // The `ip` parameter is known once the query is parsed.
    let who = Announcer {
        claimed: q.ip,
        ..who
    };
    let ip = policy::peer_ip(tracker, &who);
    let params = AnnounceParams {
        info_hash: q.info_hash,
        peer_id: q.peer_id,
        ip,
        port: q.port,
        event: q.event,
        left: q.left,
        uploaded: q.uploaded,
        downloaded: q.downloaded,
        numwant: q.numwant,
        picks: Picks::draw(rng),
        both_families: tracker.policy().dual_stack_replies,
    };
    // Room for numwant peers of the longer family: dual-stack replies mix.
    let room = tracker.policy().max_numwant * V6;
    buffers.peers.resize(room, 0);
    let a = policy::announce(tracker, rules, &who, &params, now, &mut buffers.peers).map_err(
        |denied| {
            let (message, retry) = match denied {
                // Temporary: BEP 31 asks the client to come back in a minute.
                Denied::RateLimited => ("rate limit exceeded", RetryIn::Minutes(1)),
                // Permanent ones: BEP 31 tells the client not to come back.
                Denied::Refused(r) => (r.message(), retry_in(r)),
            };
            fail(body, HttpFailure::Denied(denied), message, Some(retry))
        },
    )?;
    let (own, rest) = buffers.peers.split_at(a.peers * a.peer_len);
    let (peers4, peers6) = if ip.is_ipv4() {
        (own, &rest[..a.other_peers * V6])
    } else {
        (&rest[..a.other_peers * V4], own)
    };
    let reply = AnnounceReplyHead {
        complete: a.seeders,
        incomplete: a.leechers,
        downloaded: a.downloaded,
        interval: tracker.policy().reply_interval(params.picks.interval),
        min_interval: tracker.policy().min_interval,
        external_ip: Some(who.seen),
    };
    let format = if q.compact {
        PeerFormat::Compact
    } else {
        PeerFormat::Dictionaries {
            v6_first: ip.is_ipv6(),
        }
    };
    bencode::write_announce(body, &reply, peers4, peers6, format);
    Ok((a.change, client_software(&params.peer_id)))
}

/// Where a scrape's answer is.
enum Scraped {
    /// In `Buffers::body`.
    InBody,
    /// A full scrape's shared body (gzipped: of `plain_len` bytes before).
    Shared {
        body: Arc<[u8]>,
        gzipped: bool,
        plain_len: usize,
    },
}

/// Write the scrape's body into `buffers.body`, or take the shared body
/// of a full scrape (no `info_hash`; gzipped if it has `gzip_from`
/// bytes); `Err`: a failure was written.
fn scrape(
    tracker: &Tracker,
    policy: &HttpPolicy,
    query: &[u8],
    now: u32,
    gzip_from: Option<usize>,
    buffers: &mut Buffers,
) -> Result<Scraped, HttpFailure> {
    let body = &mut buffers.body;
    http::parse_scrape(query, &mut buffers.hashes)
        .map_err(|e| fail(body, HttpFailure::BadRequest, &e.to_string(), None))?;
    if buffers.hashes.is_empty() {
        if !policy.full_scrape {
            let message = "full scrape is disabled: name info_hash";
            return Err(fail(body, HttpFailure::FullScrapeDisabled, message, None));
        }
        let full = full_scrape(tracker, now, &mut buffers.full_scrape);
        let plain_len = full.plain.len();
        let body = match gzip_from {
            Some(min) if plain_len >= min => full.gzipped(),
            _ => None,
        };
        return Ok(match body {
            Some(body) => Scraped::Shared {
                body,
                gzipped: true,
                plain_len,
            },
            None => Scraped::Shared {
                body: full.plain.clone(),
                gzipped: false,
                plain_len,
            },
        });
    }
    buffers.files.clear();
    for h in &buffers.hashes {
        let c = tracker.scrape(h);
        buffers.files.push((
            *h,
            ScrapeEntry {
                complete: c.seeders,
                downloaded: c.completed,
                incomplete: c.leechers,
            },
        ));
    }
    bencode::write_scrape(body, &buffers.files);
    Ok(Scraped::InBody)
}

impl FullScrape {
    /// The gzip form, made on first use (None if deflate failed).
    fn gzipped(&mut self) -> Option<Arc<[u8]>> {
        if self.gzipped.is_none() {
            // An encoder and a buffer of its own, freed with the scrape:
            // the per-request ones stay small; made once per build.
            let mut out = Vec::new();
            let level = shared_level(self.plain.len());
            if GzipEncoder::new(level).encode(&self.plain, &mut out) {
                self.gzipped = Some(out.into());
            }
        }
        self.gzipped.clone()
    }
}

/// Every torrent's counts, rebuilt when the worker's copy is older than
/// `FULL_SCRAPE_MAX_AGE`.
fn full_scrape<'a>(
    tracker: &Tracker,
    now: u32,
    cache: &'a mut Option<FullScrape>,
) -> &'a mut FullScrape {
    if let Some(full) = cache
        && now.saturating_sub(full.built) < FULL_SCRAPE_MAX_AGE
    {
        return cache.as_mut().expect("just matched");
    }
    // Built in buffers of its own, freed after: the per-request buffers
    // stay small.
    // Torrents with peers only: the idle ones' counts (up to
    // `tracker.max_idle_torrents`, which anyone can fill) are answered by
    // a scrape that names them, not listed here.
    let mut files = Vec::new();
    tracker.table().for_each(|hash, t| {
        files.push((
            *hash,
            ScrapeEntry {
                complete: t.seeders() as u32,
                downloaded: t.downloaded,
                incomplete: t.leechers() as u32,
            },
        ));
    });
    files.sort_unstable_by_key(|f| f.0);
    let mut body = Vec::new();
    bencode::write_scrape(&mut body, &files);
    cache.insert(FullScrape {
        built: now,
        plain: body.into(),
        gzipped: None,
    })
}

/// BEP 31 `retry in` for a refusal.
fn retry_in(r: Refusal) -> RetryIn {
    r.retry_minutes().map_or(RetryIn::Never, RetryIn::Minutes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::http::parse_head;
    use crate::tracker::announce::AnnouncePolicy;
    use crate::tracker::connection_id::ConnectionIdIssuer;
    use crate::tracker::table::SwarmTable;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn tracker() -> Tracker {
        Tracker::new(
            AnnouncePolicy::default(),
            SwarmTable::new(16, [1, 2]),
            ConnectionIdIssuer::new([9; 16]),
        )
    }

    fn get(t: &Tracker, policy: &HttpPolicy, peer: &str, request: &str) -> (String, Vec<u8>) {
        let head = parse_head(request.as_bytes()).unwrap().unwrap();
        let mut out = Vec::new();
        let mut buffers = Buffers::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let outcome = handle_request(
            t,
            policy,
            &head,
            peer.parse().unwrap(),
            0,
            &mut rng,
            &mut buffers,
            &mut out,
        );
        if let Some(tail) = outcome.tail {
            out.extend_from_slice(&tail);
        }
        let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        (
            String::from_utf8_lossy(&out[..split]).into_owned(),
            out[split..].to_vec(),
        )
    }

    fn announce_req(hash: char, port: u16, left: u64, extra: &str) -> String {
        let h: String = std::iter::repeat_n(hash, 20).collect();
        format!(
            "GET /announce?info_hash={h}&peer_id=-XX0001-abcdefghijkl&port={port}&left={left}{extra} HTTP/1.1\r\nHost: x\r\n\r\n"
        )
    }

    #[test]
    fn two_peers_meet_over_http() {
        let t = tracker();
        let p = HttpPolicy::default();
        let (_, body) = get(&t, &p, "127.0.0.1:5000", &announce_req('a', 6881, 0, ""));
        assert!(
            body.starts_with(b"d8:completei1e10:downloadedi0e11:external ip4:\x7f\x00\x00\x01")
        );
        let (head, body) = get(&t, &p, "127.0.0.2:5000", &announce_req('a', 6882, 10, ""));
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(!head.contains("Connection: close"));
        let mut peers = b"5:peers6:".to_vec();
        peers.extend_from_slice(&[127, 0, 0, 1, 0x1a, 0xe1]);
        assert!(
            body.windows(peers.len()).any(|w| w == peers),
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert!(body.windows(13).any(|w| w == b"incompletei1e"));
        assert!(body.windows(15).any(|w| w == b"min intervali90"));
    }

    #[test]
    fn ipv6_peers_go_in_peers6() {
        let t = tracker();
        let p = HttpPolicy::default();
        get(&t, &p, "[::1]:5000", &announce_req('b', 6881, 0, ""));
        let (_, body) = get(&t, &p, "[::2]:5000", &announce_req('b', 6882, 10, ""));
        assert!(
            body.windows(10).any(|w| w == b"5:peers0:6"),
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert!(body.windows(11).any(|w| w == b"6:peers618:"));
    }

    /// A torrent with an IPv4 seeder (127.0.0.1:6881) and an IPv6 one
    /// ([::1]:6882), asked by a leecher at `asker` with `extra` params.
    fn mixed_swarm_reply(t: &Tracker, asker: &str, extra: &str) -> Vec<u8> {
        let p = HttpPolicy::default();
        get(t, &p, "127.0.0.1:5000", &announce_req('m', 6881, 0, ""));
        get(t, &p, "[::1]:5000", &announce_req('m', 6882, 0, ""));
        // Port 0: served, never stored, so each asker sees the two seeders.
        get(t, &p, asker, &announce_req('m', 0, 10, extra)).1
    }

    fn has(body: &[u8], part: &[u8]) -> bool {
        body.windows(part.len()).any(|w| w == part)
    }

    const V4_SEEDER: &[u8] = b"5:peers6:\x7f\x00\x00\x01\x1a\xe1";
    const V6_SEEDER: &[u8] = b"6:peers618:\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\x1a\xe2";

    #[test]
    fn dual_stack_replies_list_both_families_own_first() {
        let t = tracker();
        let body = mixed_swarm_reply(&t, "127.0.0.2:5000", "");
        assert!(has(&body, V4_SEEDER) && has(&body, V6_SEEDER), "{body:?}");
        assert!(has(&body, b"completei2e"));
        let body = mixed_swarm_reply(&t, "[::2]:5000", "");
        assert!(has(&body, V4_SEEDER) && has(&body, V6_SEEDER), "{body:?}");
        // One wanted: the asker's own family only.
        let body = mixed_swarm_reply(&t, "[::3]:5000", "&numwant=1");
        assert!(
            has(&body, b"5:peers0:") && has(&body, V6_SEEDER),
            "{body:?}"
        );
        let body = mixed_swarm_reply(&t, "127.0.0.3:5000", "&numwant=1");
        assert!(
            has(&body, V4_SEEDER) && !has(&body, b"6:peers6"),
            "{body:?}"
        );
        // compact=0: one list, the asker's family first.
        let body = mixed_swarm_reply(&t, "[::4]:5000", "&compact=0&numwant=2");
        let listed = b"5:peersld2:ip3:::14:porti6882eed2:ip9:127.0.0.14:porti6881eee";
        assert!(has(&body, listed), "{}", String::from_utf8_lossy(&body));
    }

    #[test]
    fn dual_stack_replies_can_be_turned_off() {
        let t = Tracker::new(
            AnnouncePolicy {
                dual_stack_replies: false,
                ..AnnouncePolicy::default()
            },
            SwarmTable::new(16, [1, 2]),
            ConnectionIdIssuer::new([9; 16]),
        );
        let body = mixed_swarm_reply(&t, "127.0.0.2:5000", "");
        assert!(
            has(&body, V4_SEEDER) && !has(&body, b"6:peers6"),
            "{body:?}"
        );
        let body = mixed_swarm_reply(&t, "[::2]:5000", "");
        assert!(
            has(&body, b"5:peers0:") && has(&body, V6_SEEDER),
            "{body:?}"
        );
    }

    #[test]
    fn client_errors_are_200_with_failure_reason() {
        let t = tracker();
        let p = HttpPolicy::default();
        let (head, body) = get(
            &t,
            &p,
            "127.0.0.1:1",
            "GET /announce?info_hash=x HTTP/1.1\r\n\r\n",
        );
        assert!(head.starts_with("HTTP/1.1 200 OK"));
        assert_eq!(body, b"d14:failure reason17:invalid info_hashe");
        let (head, _) = get(&t, &p, "127.0.0.1:1", "GET /favicon.ico HTTP/1.0\r\n\r\n");
        assert!(head.starts_with("HTTP/1.0 404 Not Found") && head.contains("Connection: close"));
    }

    #[test]
    fn scrape_and_full_scrape() {
        let t = tracker();
        let mut p = HttpPolicy::default();
        get(
            &t,
            &p,
            "127.0.0.1:1",
            &announce_req('c', 1, 0, "&event=completed"),
        );
        let h: String = std::iter::repeat_n('c', 20).collect();
        let z: String = std::iter::repeat_n('z', 20).collect();
        let (_, body) = get(
            &t,
            &p,
            "127.0.0.1:1",
            &format!("GET /scrape?info_hash={z}&info_hash={h} HTTP/1.1\r\n\r\n"),
        );
        let expected = format!(
            "d5:filesd20:{h}d8:completei1e10:downloadedi1e10:incompletei0ee20:{z}d8:completei0e10:downloadedi0e10:incompletei0eeee"
        );
        assert_eq!(String::from_utf8_lossy(&body), expected);
        let (_, body) = get(&t, &p, "127.0.0.1:1", "GET /scrape HTTP/1.1\r\n\r\n");
        assert!(String::from_utf8_lossy(&body).contains("full scrape is disabled"));
        p.full_scrape = true;
        let (_, body) = get(&t, &p, "127.0.0.1:1", "GET /scrape HTTP/1.1\r\n\r\n");
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!("d5:filesd20:{h}d8:completei1e10:downloadedi1e10:incompletei0eeee")
        );
    }

    /// `request` from 127.0.0.1 at tracker time `now` with the worker's
    /// `buffers`: the response as text, and the outcome.
    fn request_at(
        t: &Tracker,
        p: &HttpPolicy,
        now: u32,
        request: &str,
        rng: &mut SmallRng,
        buffers: &mut Buffers,
    ) -> (String, HttpOutcome) {
        let head = parse_head(request.as_bytes()).unwrap().unwrap();
        let mut out = Vec::new();
        let peer = "127.0.0.1:1".parse().unwrap();
        let outcome = handle_request(t, p, &head, peer, now, rng, buffers, &mut out);
        (String::from_utf8(out).unwrap(), outcome)
    }

    #[test]
    fn a_full_scrape_is_shared_until_it_is_too_old() {
        let t = tracker();
        let p = HttpPolicy {
            full_scrape: true,
            ..HttpPolicy::default()
        };
        let mut buffers = Buffers::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let mut at = |now: u32, request: &str, buffers: &mut Buffers| {
            let (out, outcome) = request_at(&t, &p, now, request, &mut rng, buffers);
            (out, outcome.tail)
        };
        let full = "GET /scrape HTTP/1.1\r\n\r\n";
        at(0, &announce_req('a', 1, 0, ""), &mut buffers);
        let (head, first) = at(10, full, &mut buffers);
        let first = first.expect("a full scrape's body is shared");
        let length = format!(
            "Content-Length: {}\r\nVary: Accept-Encoding\r\n\r\n",
            first.len()
        );
        assert!(head.ends_with(&length), "{head}");
        at(11, &announce_req('b', 1, 0, ""), &mut buffers);
        let (_, again) = at(10 + FULL_SCRAPE_MAX_AGE - 1, full, &mut buffers);
        assert!(Arc::ptr_eq(&first, &again.unwrap()), "reused while young");
        let (_, fresh) = at(10 + FULL_SCRAPE_MAX_AGE, full, &mut buffers);
        let fresh = fresh.unwrap();
        assert!(fresh.len() > first.len(), "rebuilt with the new torrent");
        // Other answers carry their body in `out`.
        let (head, tail) = at(41, &announce_req('a', 1, 0, ""), &mut buffers);
        assert!(tail.is_none() && head.ends_with('e'));
    }

    #[test]
    fn a_full_scrape_is_gzipped_once_per_build_and_only_when_accepted() {
        let t = tracker();
        let p = HttpPolicy {
            full_scrape: true,
            gzip_min_bytes: Some(0),
            ..HttpPolicy::default()
        };
        let mut buffers = Buffers::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let mut at = |now: u32, request: &str, buffers: &mut Buffers| {
            let (out, outcome) = request_at(&t, &p, now, request, &mut rng, buffers);
            (out, outcome.tail, outcome.gzipped)
        };
        at(0, &announce_req('a', 1, 0, ""), &mut buffers);
        let gz = "GET /scrape HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n";
        let (head, first, counted) = at(10, gz, &mut buffers);
        let first = first.unwrap();
        assert!(head.contains("Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n"));
        assert_eq!(counted.map(|c| c.1), Some(first.len()));
        let (_, again, _) = at(11, gz, &mut buffers);
        assert!(Arc::ptr_eq(&first, &again.unwrap()), "compressed once");
        let (head, plain, counted) = at(12, "GET /scrape HTTP/1.1\r\n\r\n", &mut buffers);
        assert!(!head.contains("Content-Encoding") && counted.is_none());
        let mut decoded = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&first[..]), &mut decoded)
            .unwrap();
        assert_eq!(decoded, &plain.unwrap()[..]);
        // gzip;q=0 is a refusal.
        let refused = "GET /scrape HTTP/1.1\r\nAccept-Encoding: gzip;q=0\r\n\r\n";
        let (head, _, _) = at(13, refused, &mut buffers);
        assert!(!head.contains("Content-Encoding"));
        // Failures stay plain whatever is accepted.
        let bad = "GET /scrape?info_hash=x HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n";
        let (text, _, _) = at(14, bad, &mut buffers);
        assert!(!text.contains("Content-Encoding") && text.ends_with("invalid info_hashe"));
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let policy = HttpPolicy {
            trusted_proxies: vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()],
            ..HttpPolicy::default()
        };
        let head = parse_head(
            b"GET / HTTP/1.1\r\nX-Forwarded-For: 6.6.6.6, 1.2.3.4, 10.0.0.2\r\nX-Real-IP: 5.5.5.5\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_ip(ip("10.0.0.1"), &head, &policy), ip("1.2.3.4"));
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &head, &policy),
            ip("1.2.3.4")
        );
        assert_eq!(
            client_ip(ip("9.9.9.9"), &head, &policy),
            ip("9.9.9.9"),
            "untrusted peer"
        );
        let head = parse_head(b"GET / HTTP/1.1\r\nX-Real-IP: 5.5.5.5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(client_ip(ip("10.0.0.1"), &head, &policy), ip("5.5.5.5"));
        let head = parse_head(b"GET / HTTP/1.1\r\nX-Forwarded-For: junk\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(client_ip(ip("10.0.0.1"), &head, &policy), ip("10.0.0.1"));
    }

    #[test]
    fn refused_torrents_are_told_never_to_retry() {
        use crate::tracker::access::{AccessMode, AccessRules};
        let t = tracker();
        t.set_access(AccessRules::new(
            AccessMode::Deny,
            [InfoHash([b'x'; 20])].into_iter().collect(),
        ));
        let p = HttpPolicy::default();
        let (_, body) = get(&t, &p, "127.0.0.1:1", &announce_req('x', 1, 0, ""));
        assert_eq!(
            body,
            b"d14:failure reason35:torrent not allowed on this tracker8:retry in5:nevere"
        );
        let (_, body) = get(&t, &p, "127.0.0.1:1", &announce_req('y', 1, 0, ""));
        assert!(body.starts_with(b"d8:complete"));
    }

    #[test]
    fn private_mode_needs_a_registered_passkey_in_the_path() {
        use crate::tracker::access::AccessRules;
        let t = tracker();
        t.set_access(
            AccessRules::default()
                .with_passkeys([b"abcdef0123456789".to_vec()].into_iter().collect()),
        );
        let p = HttpPolicy::default();
        let (_, body) = get(&t, &p, "127.0.0.1:1", &announce_req('k', 1, 0, ""));
        assert_eq!(
            body,
            b"d14:failure reason15:unknown passkey8:retry in5:nevere"
        );
        let with_key =
            announce_req('k', 1, 0, "").replace("/announce?", "/abcdef0123456789/announce?");
        let (_, body) = get(&t, &p, "127.0.0.1:1", &with_key);
        assert!(
            body.starts_with(b"d8:complete"),
            "{}",
            String::from_utf8_lossy(&body)
        );
        let wrong = with_key.replace("abcdef0123456789", "abcdef0123456788");
        let (_, body) = get(&t, &p, "127.0.0.1:1", &wrong);
        assert!(body.starts_with(b"d14:failure reason15:unknown passkey"));
        let h: String = std::iter::repeat_n('k', 20).collect();
        let (_, body) = get(
            &t,
            &p,
            "127.0.0.1:1",
            &format!("GET /scrape?info_hash={h} HTTP/1.1\r\n\r\n"),
        );
        assert!(body.starts_with(b"d14:failure reason15:unknown passkey"));
        let (_, body) = get(
            &t,
            &p,
            "127.0.0.1:1",
            &format!("GET /abcdef0123456789/scrape?info_hash={h} HTTP/1.1\r\n\r\n"),
        );
        assert!(body.starts_with(b"d5:files"));
    }

    #[test]
    fn over_the_rate_limit_announces_are_asked_to_retry() {
        use crate::tracker::announce::Limits;
        use crate::tracker::peer_set::AddrHasher;
        use crate::tracker::rate_limit::RateLimiter;
        let t = tracker().with_limits(Limits {
            connects: None,
            announces: Some(RateLimiter::new(1, 1, 64, AddrHasher::new(1, 1))),
        });
        let p = HttpPolicy::default();
        let (_, body) = get(&t, &p, "127.0.0.1:1", &announce_req('r', 1, 0, ""));
        assert!(body.starts_with(b"d8:complete"));
        let (_, body) = get(&t, &p, "127.0.0.1:1", &announce_req('r', 1, 0, ""));
        assert_eq!(
            body,
            b"d14:failure reason19:rate limit exceeded8:retry ini1ee"
        );
    }

    #[test]
    fn banned_clients_get_nothing() {
        use crate::tracker::access::{AccessRules, parse_ban_list};
        let t = tracker();
        t.set_access(AccessRules::default().with_bans(parse_ban_list("127.0.0.9").unwrap()));
        let request = announce_req('b', 1, 0, "");
        let head = parse_head(request.as_bytes()).unwrap().unwrap();
        let mut out = Vec::new();
        let outcome = handle_request(
            &t,
            &HttpPolicy::default(),
            &head,
            "127.0.0.9:5".parse().unwrap(),
            0,
            &mut SmallRng::seed_from_u64(1),
            &mut Buffers::default(),
            &mut out,
        );
        assert!(!outcome.keep_alive && out.is_empty());
    }

    #[test]
    fn rejected_heads_close() {
        let mut out = Vec::new();
        reject(&mut out, HeadError::TooLarge);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 431 ") && s.contains("Connection: close"));
    }
}
