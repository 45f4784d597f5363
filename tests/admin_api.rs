//! The management API over real sockets, against the binary as an
//! operator runs it: the allow list changed at once and across SIGHUP,
//! passkey-file users put and withdrawn, refusals of bad requests, and a
//! burst of API clients beside a slow one while announces flow. Database
//! mode's users and torrents are in tests/private_db.rs.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;

use common::admin::{self, call, call_as};
use common::tracker::{Started, http_get, signal, start_with_config, wait_for_line};
use common::{Client, fresh_dir};

fn hex(h: [u8; 20]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// An HTTP announce of `info_hash` by peer `id` (passkey `key` in the
/// path if any); the whole reply.
fn announce(t: &Started, key: &str, info_hash: [u8; 20], id: u8, event: &str) -> String {
    let escaped: String = info_hash.iter().map(|b| format!("%{b:02X}")).collect();
    let path = if key.is_empty() {
        String::new()
    } else {
        format!("/{key}")
    };
    http_get(
        t.http,
        &format!(
            "{path}/announce?info_hash={escaped}&peer_id=-RT0001-{id:012}&port={}&left=0\
             &compact=1&event={event}",
            6000 + u16::from(id)
        ),
    )
}

fn served(reply: &str) -> bool {
    reply.contains("8:intervali") && !reply.contains("failure reason")
}

fn tracker(dir: &Path, config: &str) -> Started {
    let path = dir.join("tracker.toml");
    std::fs::write(&path, format!("{config}\n{}", admin::section(dir))).unwrap();
    start_with_config(&path, &["--http", "127.0.0.1:0"], None)
}

fn write_list(path: &Path, hashes: &[[u8; 20]]) {
    let text: String = hashes.iter().map(|h| hex(*h) + "\n").collect();
    std::fs::write(path, text).unwrap();
}

#[test]
fn the_allow_list_changes_at_once_and_outlives_a_reload_until_its_file_says_otherwise() {
    let dir = fresh_dir("admin-allow");
    let (a, b, c) = ([0xa1; 20], [0xb2; 20], [0xc3; 20]);
    let list = dir.join("allow.txt");
    write_list(&list, &[a]);
    let mut t = tracker(
        &dir,
        &format!(
            "[access]\nmode = \"allow\"\nlist = \"{}\"\n",
            list.display()
        ),
    );
    let api = admin::addr(&t);
    assert!(
        !served(&announce(&t, "", b, 1, "started")),
        "b is not listed yet"
    );
    let (status, body) = call(api, "PUT", &format!("/api/allow/{}", hex(b)), "");
    assert_eq!(
        (status, &body["listed"]),
        (200, &serde_json::json!(true)),
        "{body}"
    );
    assert!(
        served(&announce(&t, "", b, 1, "started")),
        "served on the next announce"
    );
    assert!(served(&announce(&t, "", a, 2, "started")));
    let (status, body) = call(api, "DELETE", &format!("/api/allow/{}", hex(a)), "");
    assert_eq!(
        (status, body["peers_removed"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    assert!(!served(&announce(&t, "", a, 2, "")), "a is refused at once");
    let (status, body) = call(api, "DELETE", &format!("/api/allow/{}", hex(c)), "");
    assert_eq!(status, 404, "c was never listed: {body}");

    // The file did not change its mind: both API changes stay.
    signal(&t.child, "-HUP");
    wait_for_line(&mut t.stderr, "access list reloaded");
    assert!(served(&announce(&t, "", b, 1, "")));
    assert!(!served(&announce(&t, "", a, 2, "")));
    // The file now lists b and c, not a: it changed its mind about both
    // hashes the API had changed, so from now on the file decides them.
    write_list(&list, &[b, c]);
    signal(&t.child, "-HUP");
    wait_for_line(
        &mut t.stderr,
        "2 management API changes to the lists dropped",
    );
    wait_for_line(&mut t.stderr, "access list reloaded");
    assert!(served(&announce(&t, "", c, 3, "")));
    assert!(served(&announce(&t, "", b, 1, "")));
    write_list(&list, &[c]);
    signal(&t.child, "-HUP");
    wait_for_line(&mut t.stderr, "access list reloaded");
    assert!(!served(&announce(&t, "", b, 1, "")), "the file took b off");

    let (status, body) = call(api, "GET", &format!("/api/torrents/{}", hex(c)), "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["seeders"].as_u64(), body["peers"][0]["port"].as_u64()),
        (Some(1), Some(6003))
    );
    assert_eq!(body["peers"][0]["ip"], "127.0.0.1");
    let (status, body) = call(api, "GET", "/api/torrents?top=5", "");
    assert_eq!(status, 200);
    assert_eq!(body["torrents"][0]["info_hash"], hex(c), "{body}");
}

#[test]
fn requests_without_the_token_or_with_bad_input_get_clear_errors() {
    let dir = fresh_dir("admin-refusals");
    let t = tracker(&dir, "");
    let api = admin::addr(&t);
    let path = format!("/api/torrents/{}", hex([1; 20]));
    let (status, body) = call_as(api, None, "GET", &path, "");
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("Bearer"));
    let (status, _) = call_as(
        api,
        Some("wrong-token-0123456789abcdefghijklmnop"),
        "GET",
        &path,
        "",
    );
    assert_eq!(status, 401);
    assert_eq!(
        call(api, "GET", &path, "").0,
        404,
        "no peers, not registered"
    );
    let (status, body) = call(api, "GET", "/api/torrents/xyz", "");
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("info_hash:"),
        "{body}"
    );
    let (status, body) = call(api, "PUT", &format!("/api/allow/{}", hex([1; 20])), "");
    assert_eq!(status, 409, "access.mode is off: {body}");
    let (status, body) = call(api, "PUT", "/api/users/7", r#"{"passkey": "x"}"#);
    assert_eq!(status, 409, "no private mode: {body}");
    assert_eq!(call(api, "GET", "/api/torrents?top=0", "").0, 400);
    assert_eq!(call(api, "GET", "/api/torrents?top=1001", "").0, 400);
    assert_eq!(call(api, "GET", "/api/nothing", "").0, 404);
    assert_eq!(call(api, "POST", "/api/allow/00", "").0, 405);
    let mut s = TcpStream::connect(api).unwrap();
    s.write_all(b"PUT /api/users/1 HTTP/1.1\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    let (head, _) = common::read_http_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    // A head ending in bare LFs is answered as soon as it ends, and so is
    // a request whose client half-closes right after it.
    let timeout = Some(std::time::Duration::from_secs(30)); // a failure, not a hang
    let mut s = TcpStream::connect(api).unwrap();
    s.set_read_timeout(timeout).unwrap();
    s.write_all(b"GET /api/torrents?top=1 HTTP/1.0\nAuthorization: Bearer x\n\n")
        .unwrap();
    let (head, _) = common::read_http_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let mut s = TcpStream::connect(api).unwrap();
    s.set_read_timeout(timeout).unwrap();
    let request = admin::request(Some(admin::TOKEN), "GET", "/api/torrents?top=1", "");
    s.write_all(request.as_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let (head, _) = common::read_http_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Junk that is not HTTP at all gets a 400, never a hang or a crash.
    let mut s = TcpStream::connect(api).unwrap();
    s.write_all(b"\x00\x01\x02 nonsense\r\n\r\n").unwrap();
    let (head, _) = common::read_http_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
}

#[test]
fn passkey_file_users_are_put_and_withdrawn_at_once() {
    let dir = fresh_dir("admin-passkeys");
    let keys = dir.join("passkeys.txt");
    std::fs::write(&keys, "fileKey0123456789abc\n").unwrap();
    let t = tracker(
        &dir,
        &format!(
            "[private]\nenabled = true\npasskeys = \"{}\"\n",
            keys.display()
        ),
    );
    let api = admin::addr(&t);
    let h = [0x5a; 20];
    let new_key = "apiKey0123456789abcdef";
    assert!(!served(&announce(&t, new_key, h, 1, "started")));
    let (status, body) = call(
        api,
        "PUT",
        "/api/users/9",
        &format!(r#"{{"passkey": "{new_key}"}}"#),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        served(&announce(&t, new_key, h, 1, "started")),
        "served at once"
    );
    assert!(served(&announce(
        &t,
        "fileKey0123456789abc",
        h,
        2,
        "started"
    )));
    let (status, body) = call(api, "GET", "/api/users/9", "");
    assert_eq!(
        (status, body["peers"][0]["port"].as_u64()),
        (200, Some(6001)),
        "{body}"
    );
    let (status, body) = call(
        api,
        "PUT",
        "/api/users/9",
        r#"{"passkey": "k", "can_leech": true}"#,
    );
    assert_eq!(status, 400, "a passkey file has no leech rights: {body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("can_leech:"),
        "{body}"
    );
    let (status, body) = call(api, "DELETE", "/api/users/9", "");
    assert_eq!(
        (status, body["peers_removed"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    assert!(
        !served(&announce(&t, new_key, h, 1, "")),
        "refused on the next announce"
    );
    let (_, torrent) = call(api, "GET", &format!("/api/torrents/{}", hex(h)), "");
    assert_eq!(
        torrent["peers"].as_array().unwrap().len(),
        1,
        "its peer left the swarm"
    );
    assert_eq!(call(api, "DELETE", "/api/users/9", "").0, 404);
}

#[test]
fn a_burst_of_api_clients_and_a_slow_one_do_not_stall_announces() {
    let dir = fresh_dir("admin-burst");
    let t = tracker(&dir, "");
    let api = admin::addr(&t);
    // A client that sends half a request and waits.
    let mut slow = TcpStream::connect(api).unwrap();
    slow.write_all(b"GET /api/torrents?top=10 HTTP/1.1\r\nAuthor")
        .unwrap();
    let mut udp = Client::new("127.0.0.1:0", t.udp);
    let cid = udp.connect();
    udp.announce(cid, [0x77; 20], 2, 0, 10, 7001);
    let burst: Vec<_> = (0..100)
        .map(|i| {
            std::thread::spawn(move || {
                let path = if i % 2 == 0 {
                    "/api/torrents?top=10".to_string()
                } else {
                    format!("/api/torrents/{}", hex([0x77; 20]))
                };
                call(api, "GET", &path, "").0
            })
        })
        .collect();
    // Announces are answered while the burst is served.
    for i in 0..200u16 {
        let reply = udp.announce(cid, [0x77; 20], 0, 0, 10, 7001 + i % 5);
        assert!(reply.seeders >= 1);
    }
    for b in burst {
        assert_eq!(b.join().unwrap(), 200, "every API client is answered");
    }
    drop(slow);
}

#[test]
fn the_api_speaks_https_with_a_certificate() {
    use std::io::Read;
    let dir = fresh_dir("admin-https");
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join("admin.pem"), dir.join("admin.key"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    let config = dir.join("tracker.toml");
    let tls = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    );
    std::fs::write(&config, admin::section(&dir) + &tls).unwrap();
    let t = start_with_config(&config, &["--http", "127.0.0.1:0"], None);
    assert!(
        t.early_log.contains("management API on https://"),
        "{}",
        t.early_log
    );
    let api = admin::addr(&t);
    for (token, status) in [(Some(admin::TOKEN), 200), (None, 401)] {
        let mut s = common::tls::tls_client(api, &c.cert.pem()).unwrap();
        let request = admin::request(token, "GET", "/api/torrents?top=1", "");
        s.write_all(request.as_bytes()).unwrap();
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
        assert_eq!(admin::parse(&reply).0, status);
    }
    // Plain HTTP to the HTTPS port gets no answer, and the next client is
    // served.
    let mut plain = TcpStream::connect(api).unwrap();
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    plain
        .write_all(admin::request(Some(admin::TOKEN), "GET", "/api/torrents?top=1", "").as_bytes())
        .unwrap();
    let mut junk = Vec::new();
    let _ = plain.read_to_end(&mut junk);
    assert!(!junk.starts_with(b"HTTP/1.1 200"));
    let mut s = common::tls::tls_client(api, &c.cert.pem()).unwrap();
    s.write_all(admin::request(Some(admin::TOKEN), "GET", "/api/torrents?top=1", "").as_bytes())
        .unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert_eq!(admin::parse(&reply).0, 200);
}
