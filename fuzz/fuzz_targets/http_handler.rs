//! The HTTP request handler on a sequence of request heads from a few
//! sources, with its invariants: every response is a well-formed HTTP/1.x
//! response whose Content-Length is its body's (a shared full scrape
//! included), and every 200 answer's body is one bencoded dictionary.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use ringtracker::engine::http::{Buffers, HttpPolicy, handle_request};
use ringtracker::protocol::http::parse_head;
use ringtracker::tracker::Tracker;
use ringtracker::tracker::announce::AnnouncePolicy;
use ringtracker::tracker::connection_id::ConnectionIdIssuer;
use ringtracker::tracker::table::SwarmTable;

fuzz_target!(|data: &[u8]| {
    let Some((&settings, mut rest)) = data.split_first() else {
        return;
    };
    let tracker = Tracker::new(
        AnnouncePolicy::default(),
        SwarmTable::new(4, [1, 2]),
        ConnectionIdIssuer::new([3; 16]),
    );
    let policy = HttpPolicy {
        full_scrape: settings & 1 == 1,
        trusted_proxies: vec!["127.0.0.2".parse().unwrap()],
        // Every scrape body gzipped (for a client that asks) or none.
        gzip_min_bytes: (settings & 2 == 2).then_some(0),
    };
    let mut rng = SmallRng::seed_from_u64(u64::from(settings));
    let mut buffers = Buffers::default();
    let mut out = Vec::new();
    let mut now = 100;
    // Each record: source, two length bytes, that many bytes.
    while let [source, hi, lo, tail @ ..] = rest {
        let n = (usize::from(*hi) << 8 | usize::from(*lo)).min(tail.len());
        let (buf, next) = tail.split_at(n);
        rest = next;
        now += u32::from(source >> 6);
        let Ok(Some(head)) = parse_head(buf) else {
            continue;
        };
        let peer: SocketAddr = if source & 1 == 0 {
            SocketAddr::from(([127, 0, 0, source & 7], 6881))
        } else {
            format!("[::{source}]:6881").parse().unwrap()
        };
        out.clear();
        let outcome = handle_request(
            &tracker,
            &policy,
            &head,
            peer,
            now,
            &mut rng,
            &mut buffers,
            &mut out,
        );
        check_response(&out, outcome.tail.as_deref());
    }
});

fn check_response(out: &[u8], tail: Option<&[u8]>) {
    if out.is_empty() {
        return; // a banned client: nothing at all
    }
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head")
        + 4;
    let head = std::str::from_utf8(&out[..end]).expect("an ASCII head");
    assert!(head.starts_with("HTTP/1."), "{head}");
    let status: u16 = head[9..12].parse().expect("a status code");
    let declared: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a Content-Length")
        .parse()
        .expect("a length");
    let mut body = out[end..].to_vec();
    if let Some(t) = tail {
        assert!(body.is_empty(), "a shared body follows the head alone");
        body.extend_from_slice(t);
    }
    assert_eq!(declared, body.len(), "{head}");
    if head.contains("Content-Encoding: gzip\r\n") {
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain)
            .expect("a valid gzip body");
        body = plain;
    }
    if status == 200 {
        let rest = bencoded_value(&body).expect("a bencoded value");
        assert!(rest.is_empty() && body[0] == b'd', "one dictionary");
    }
}

/// Skip one bencoded value; what follows it.
fn bencoded_value(b: &[u8]) -> Option<&[u8]> {
    match *b.first()? {
        b'i' => {
            let end = b.iter().position(|&c| c == b'e')?;
            std::str::from_utf8(&b[1..end]).ok()?.parse::<i64>().ok()?;
            Some(&b[end + 1..])
        }
        b'l' | b'd' => {
            let mut rest = &b[1..];
            while *rest.first()? != b'e' {
                rest = bencoded_value(rest)?;
            }
            Some(&rest[1..])
        }
        b'0'..=b'9' => {
            let colon = b.iter().position(|&c| c == b':')?;
            let len: usize = std::str::from_utf8(&b[..colon]).ok()?.parse().ok()?;
            b.get(colon + 1 + len..)
        }
        _ => None,
    }
}
