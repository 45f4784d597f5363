//! The management API's requests. The bytes as a connection sent them
//! (mostly refused: no token, or not HTTP); then, split at the first
//! newline into "METHOD /path" and a body, as a request that carries the
//! token, against a tracker in each mode (public with an allow list, a
//! passkey file, a site's database), so routes and JSON bodies are
//! reached. Every request gets a whole HTTP response and nothing panics.
#![no_main]

use std::collections::HashSet;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use ringtracker::admin::{AdminApi, Clock, Outcome};
use ringtracker::config::AdminToken;
use ringtracker::tracker::Tracker;
use ringtracker::tracker::access::{AccessMode, AccessRules};
use ringtracker::tracker::announce::AnnouncePolicy;
use ringtracker::tracker::connection_id::ConnectionIdIssuer;
use ringtracker::tracker::site::{SiteDirectory, TorrentRow, UserRow};
use ringtracker::tracker::table::SwarmTable;

const TOKEN: &[u8] = b"fuzz-token-0123456789abcdefghijklmnop";

fn tracker(mode: u8) -> Arc<Tracker> {
    let t = Tracker::new(
        AnnouncePolicy::default(),
        SwarmTable::new(4, [1, 2]),
        ConnectionIdIssuer::new([0; 16]),
    );
    let rules = match mode % 3 {
        0 => AccessRules::new(AccessMode::Allow, Default::default()),
        1 => AccessRules::default().with_passkeys(Default::default()),
        _ => {
            let site = SiteDirectory::default();
            site.apply_users([UserRow {
                id: 1,
                passkey: b"abcdef0123456789".to_vec(),
                enabled: true,
                can_leech: true,
                download_factor: 1.0,
                upload_factor: 1.0,
                updated: 0.0,
            }]);
            site.apply_torrents([TorrentRow {
                id: 1,
                info_hash: vec![1; 20],
                enabled: true,
                download_factor: 1.0,
                upload_factor: 1.0,
                updated: 0.0,
            }]);
            site.retain_only(&HashSet::from([1]), &HashSet::from([1]));
            AccessRules::default().with_site(Some(Arc::new(site)))
        }
    };
    t.set_access(rules);
    Arc::new(t)
}

fn whole(answer: Outcome) {
    let Outcome::Response(out) = answer else {
        panic!("a whole request gets an answer");
    };
    assert!(out.starts_with(b"HTTP/1.1 "));
}

fuzz_target!(|bytes: &[u8]| {
    let Some((&mode, rest)) = bytes.split_first() else {
        return;
    };
    let api = AdminApi::new(tracker(mode), AdminToken::new(TOKEN.to_vec()));
    let clock = Clock {
        unix: 1_700_000_000.0,
        now: 100,
    };
    let _ = api.answer(rest, clock);
    let (line, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let mut request = line.to_vec();
    request.extend_from_slice(b" HTTP/1.1\r\nAuthorization: Bearer ");
    request.extend_from_slice(TOKEN);
    request.extend_from_slice(format!("\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
    request.extend_from_slice(body);
    match api.answer(&request, clock) {
        Outcome::Response(out) => assert!(out.starts_with(b"HTTP/1.1 ")),
        // Only more bytes than the request has can be asked for.
        Outcome::NeedBytes(n) => assert!(n > request.len()),
    }
    whole(api.answer(b"GET /api/torrents?top=3 HTTP/1.1\r\n\r\n", clock));
});
