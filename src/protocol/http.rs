//! HTTP/1.x tracker requests, sans I/O: the request head (via `httparse`),
//! the path (`/announce`, `/scrape`, optionally behind a `/<passkey>`), and
//! the BEP 3 query string of an announce or a BEP 48 scrape.
//!
//! Query values are percent-decoded strictly: a `%` not followed by two hex
//! digits is an error, `+` is a literal plus (as real clients mean it), and
//! `info_hash` / `peer_id` must decode to exactly 20 bytes. Parsing borrows
//! from the request buffer and allocates nothing.

use std::fmt;
use std::net::IpAddr;

use arrayvec::ArrayVec;
use percent_encoding::percent_decode;

use super::{Event, InfoHash, PeerId};

/// The longest request head accepted (request line and headers).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// The most headers accepted in one request.
pub const MAX_HEADERS: usize = 32;
/// The most info hashes answered in one HTTP scrape.
pub const MAX_SCRAPE_HASHES: usize = 128;

/// A complete request head.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// The request target: path and query.
    pub target: &'a [u8],
    /// Whether the connection stays open after the reply (HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// HTTP/1.0 or 1.1 (the minor version), for the reply's status line.
    pub minor_version: u8,
    /// Bytes of the buffer the head took; a pipelined request may follow.
    pub len: usize,
    /// `X-Forwarded-For` and `X-Real-IP`, only to be believed from a
    /// configured proxy.
    pub forwarded_for: Option<&'a [u8]>,
    /// `X-Real-IP`, likewise.
    pub real_ip: Option<&'a [u8]>,
    /// `User-Agent` (private mode's `rt_peers.agent`).
    pub user_agent: Option<&'a [u8]>,
    /// `Accept-Encoding` accepts gzip (big scrapes are then compressed).
    pub accepts_gzip: bool,
}

/// Why a request head was refused; each maps to a status code and a close.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum HeadError {
    /// Not HTTP/1.x: 400.
    NotHttp,
    /// Head larger than `MAX_HEAD_BYTES` or with too many headers: 431.
    TooLarge,
    /// Anything but GET: 405.
    MethodNotAllowed,
    /// A request with a body (trackers take none): 413.
    HasBody,
}

impl HeadError {
    /// The status code and reason phrase this error is answered with.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            HeadError::NotHttp => (400, "Bad Request"),
            HeadError::TooLarge => (431, "Request Header Fields Too Large"),
            HeadError::MethodNotAllowed => (405, "Method Not Allowed"),
            HeadError::HasBody => (413, "Content Too Large"),
        }
    }
}

/// Parse the head at the start of `buf`: `Ok(None)` while it is incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<RequestHead<'_>>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > MAX_HEAD_BYTES {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::NotHttp),
    };
    if len > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let (Some(method), Some(path), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(HeadError::NotHttp);
    };
    if method != "GET" {
        return Err(HeadError::MethodNotAllowed);
    }
    let mut keep_alive = minor_version >= 1;
    let (mut forwarded_for, mut real_ip, mut user_agent) = (None, None, None);
    let mut gzip = super::gzip::GzipAcceptance::default();
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            if h.value.trim_ascii() != b"0" {
                return Err(HeadError::HasBody);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HeadError::HasBody);
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            forwarded_for = Some(h.value);
        } else if name.eq_ignore_ascii_case("x-real-ip") {
            real_ip = Some(h.value);
        } else if name.eq_ignore_ascii_case("user-agent") {
            user_agent = Some(h.value);
        } else if name.eq_ignore_ascii_case("accept-encoding") {
            gzip.add(h.value);
        }
    }
    Ok(Some(RequestHead {
        target: path.as_bytes(),
        keep_alive,
        minor_version,
        len,
        forwarded_for,
        real_ip,
        user_agent,
        accepts_gzip: gzip.accepts(),
    }))
}

/// What a request target asks for.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Endpoint<'a> {
    /// `[/<passkey>]/announce?<query>`.
    Announce {
        /// The path's first segment, if the URL has one.
        passkey: Option<&'a [u8]>,
        /// The query string (after `?`).
        query: &'a [u8],
    },
    /// `[/<passkey>]/scrape?<query>`.
    Scrape {
        /// The path's first segment, if the URL has one.
        passkey: Option<&'a [u8]>,
        /// The query string (after `?`).
        query: &'a [u8],
    },
    /// Anything else: 404.
    Unknown,
}

/// Split `/announce?…`, `/scrape?…`, `/<passkey>/announce?…` and
/// `/<passkey>/scrape?…`.
pub fn endpoint(target: &[u8]) -> Endpoint<'_> {
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(i) => (&target[..i], &target[i + 1..]),
        None => (target, &b""[..]),
    };
    let Some(path) = path.strip_prefix(b"/") else {
        return Endpoint::Unknown;
    };
    let (passkey, last) = match path.iter().position(|&b| b == b'/') {
        None => (None, path),
        Some(i) if !path[..i].is_empty() && !path[i + 1..].contains(&b'/') => {
            (Some(&path[..i]), &path[i + 1..])
        }
        Some(_) => return Endpoint::Unknown,
    };
    match last {
        b"announce" => Endpoint::Announce { passkey, query },
        b"scrape" => Endpoint::Scrape { passkey, query },
        _ => Endpoint::Unknown,
    }
}

/// A client's mistake in the query: answered with a `failure reason`.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum QueryError {
    /// A required parameter is absent.
    Missing(&'static str),
    /// A parameter's value cannot be decoded.
    Invalid(&'static str),
    /// A parameter is given twice.
    Duplicate(&'static str),
    /// A scrape names more than `MAX_SCRAPE_HASHES` torrents.
    TooManyHashes,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Missing(p) => write!(f, "missing {p}"),
            QueryError::Invalid(p) => write!(f, "invalid {p}"),
            QueryError::Duplicate(p) => write!(f, "duplicate {p}"),
            QueryError::TooManyHashes => {
                write!(f, "too many info hashes (at most {MAX_SCRAPE_HASHES})")
            }
        }
    }
}

/// An announce's query, decoded (BEP 3, BEP 7, BEP 23).
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct AnnounceQuery {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The client's peer id.
    pub peer_id: PeerId,
    /// The port it listens on.
    pub port: u16,
    /// Bytes uploaded this session.
    pub uploaded: u64,
    /// Bytes downloaded this session.
    pub downloaded: u64,
    /// Bytes left (0: a seeder).
    pub left: u64,
    /// The event, if any.
    pub event: Event,
    /// BEP 23: compact unless the client sent `compact=0`.
    pub compact: bool,
    /// `no_peer_id=1`: the client wants no peer ids in a dictionary reply.
    pub no_peer_id: bool,
    /// As sent (negative or 0: the default); clamped to the i32 range.
    pub numwant: i32,
    /// The `ip` parameter, if it parsed; used only when policy allows.
    pub ip: Option<IpAddr>,
}

/// `name=value` pairs of a query string, values still encoded.
fn pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    query
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(i) => (&p[..i], &p[i + 1..]),
            None => (p, &b""[..]),
        })
}

fn escapes_valid(v: &[u8]) -> bool {
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' {
            match v.get(i + 1..i + 3) {
                Some(h) if h.iter().all(u8::is_ascii_hexdigit) => i += 3,
                _ => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

/// Decode exactly 20 bytes.
fn decode20(v: &[u8], name: &'static str) -> Result<[u8; 20], QueryError> {
    if !escapes_valid(v) {
        return Err(QueryError::Invalid(name));
    }
    let mut out = [0u8; 20];
    let mut n = 0;
    for b in percent_decode(v) {
        if n == 20 {
            return Err(QueryError::Invalid(name));
        }
        out[n] = b;
        n += 1;
    }
    if n == 20 {
        Ok(out)
    } else {
        Err(QueryError::Invalid(name))
    }
}

/// Decode a short textual value (numbers, event, ip) into `buf`.
fn decode_text<'b>(
    v: &[u8],
    buf: &'b mut ArrayVec<u8, 64>,
    name: &'static str,
) -> Result<&'b str, QueryError> {
    if !escapes_valid(v) {
        return Err(QueryError::Invalid(name));
    }
    buf.clear();
    for b in percent_decode(v) {
        buf.try_push(b).map_err(|_| QueryError::Invalid(name))?;
    }
    std::str::from_utf8(buf).map_err(|_| QueryError::Invalid(name))
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), QueryError> {
    if slot.is_some() {
        return Err(QueryError::Duplicate(name));
    }
    *slot = Some(value);
    Ok(())
}

/// Parse an announce query string.
pub fn parse_announce(query: &[u8]) -> Result<AnnounceQuery, QueryError> {
    let mut info_hash = None;
    let mut peer_id = None;
    let (mut port, mut uploaded, mut downloaded, mut left) = (None, None, None, None);
    let mut event = None;
    let (mut compact, mut no_peer_id, mut numwant, mut ip) = (true, false, 0i32, None);
    let mut buf = ArrayVec::new();
    for (name, value) in pairs(query) {
        match name {
            b"info_hash" => set_once(
                &mut info_hash,
                InfoHash(decode20(value, "info_hash")?),
                "info_hash",
            )?,
            b"peer_id" => set_once(&mut peer_id, PeerId(decode20(value, "peer_id")?), "peer_id")?,
            b"port" => {
                let p = decode_text(value, &mut buf, "port")?
                    .parse::<u16>()
                    .map_err(|_| QueryError::Invalid("port"))?;
                set_once(&mut port, p, "port")?;
            }
            b"uploaded" | b"downloaded" | b"left" => {
                let (slot, n) = match name {
                    b"uploaded" => (&mut uploaded, "uploaded"),
                    b"downloaded" => (&mut downloaded, "downloaded"),
                    _ => (&mut left, "left"),
                };
                let v = decode_text(value, &mut buf, n)?
                    .parse::<u64>()
                    .map_err(|_| QueryError::Invalid(n))?;
                set_once(slot, v, n)?;
            }
            b"event" => {
                let e = match decode_text(value, &mut buf, "event")? {
                    "started" => Event::Started,
                    "completed" => Event::Completed,
                    "stopped" => Event::Stopped,
                    // BEP 21's "paused" is an ordinary announce to a tracker.
                    "" | "empty" | "paused" => Event::None,
                    _ => return Err(QueryError::Invalid("event")),
                };
                set_once(&mut event, e, "event")?;
            }
            b"compact" => compact = decode_text(value, &mut buf, "compact")? != "0",
            b"no_peer_id" => no_peer_id = decode_text(value, &mut buf, "no_peer_id")? == "1",
            b"numwant" => {
                let n = decode_text(value, &mut buf, "numwant")?
                    .parse::<i64>()
                    .map_err(|_| QueryError::Invalid("numwant"))?;
                numwant = n.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
            }
            // Malformed `ip` is ignored like a missing one: it is only a hint.
            b"ip" => {
                ip = decode_text(value, &mut buf, "ip")
                    .ok()
                    .and_then(|s| s.parse().ok());
            }
            // key, trackerid, supportcrypto, corrupt, …: not needed.
            _ => {}
        }
    }
    Ok(AnnounceQuery {
        info_hash: info_hash.ok_or(QueryError::Missing("info_hash"))?,
        peer_id: peer_id.ok_or(QueryError::Missing("peer_id"))?,
        port: port.ok_or(QueryError::Missing("port"))?,
        uploaded: uploaded.unwrap_or(0),
        downloaded: downloaded.unwrap_or(0),
        left: left.ok_or(QueryError::Missing("left"))?,
        event: event.unwrap_or(Event::None),
        compact,
        no_peer_id,
        numwant,
        ip,
    })
}

/// Parse a scrape query: every `info_hash`, sorted and without duplicates
/// (the order a bencoded `files` dictionary needs). None at all means a
/// full scrape, which the caller decides on.
pub fn parse_scrape(
    query: &[u8],
    out: &mut ArrayVec<InfoHash, MAX_SCRAPE_HASHES>,
) -> Result<(), QueryError> {
    out.clear();
    for (name, value) in pairs(query) {
        if name == b"info_hash" {
            let h = InfoHash(decode20(value, "info_hash")?);
            out.try_push(h).map_err(|_| QueryError::TooManyHashes)?;
        }
    }
    out.sort_unstable();
    let mut unique = 0;
    for i in 0..out.len() {
        if i == 0 || out[i] != out[unique - 1] {
            out[unique] = out[i];
            unique += 1;
        }
    }
    out.truncate(unique);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A";
    const HASH_BYTES: [u8; 20] = [
        0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf1, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
        0x12, 0x34, 0x56, 0x78, 0x9a,
    ];

    fn announce(extra: &str) -> String {
        format!(
            "info_hash={HASH}&peer_id=-qB4500-abcdefghijkl&port=6881&uploaded=0&downloaded=0&left=100{extra}"
        )
    }

    #[test]
    fn a_real_client_announce() {
        let q = parse_announce(announce("&event=started&compact=1&numwant=-1&key=abc").as_bytes())
            .unwrap();
        assert_eq!(q.info_hash, InfoHash(HASH_BYTES));
        assert_eq!(&q.peer_id.0, b"-qB4500-abcdefghijkl");
        assert_eq!((q.port, q.left, q.event), (6881, 100, Event::Started));
        assert!(q.compact);
        assert_eq!(q.numwant, -1);
    }

    #[test]
    fn either_hex_case_and_literal_plus() {
        // Lower-case only the hex digits of the escapes.
        let mut lower = String::new();
        let mut hex_left = 0;
        for c in HASH.chars() {
            if hex_left > 0 {
                lower.push(c.to_ascii_lowercase());
                hex_left -= 1;
            } else {
                lower.push(c);
                if c == '%' {
                    hex_left = 2;
                }
            }
        }
        assert_ne!(lower, HASH);
        let q = parse_announce(announce("").replace(HASH, &lower).as_bytes()).unwrap();
        assert_eq!(q.info_hash, InfoHash(HASH_BYTES));
        let q = parse_announce(
            announce("")
                .replace("-qB4500-abcdefghijkl", "-qB4500-abcdefghij+l")
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(&q.peer_id.0, b"-qB4500-abcdefghij+l");
    }

    #[test]
    fn bad_values() {
        for (extra, err) in [
            ("&port=65536", QueryError::Invalid("port")),
            ("&port=-1", QueryError::Invalid("port")),
            ("&left=abc", QueryError::Invalid("left")),
            ("&left=18446744073709551616", QueryError::Invalid("left")),
            ("&event=finished", QueryError::Invalid("event")),
            ("&numwant=x", QueryError::Invalid("numwant")),
            ("&info_hash=abc", QueryError::Invalid("info_hash")),
            ("&port=1", QueryError::Duplicate("port")),
        ] {
            let q = announce(extra);
            // A later duplicate of an earlier parameter must be refused even
            // when it is valid; a bad value is refused wherever it is.
            assert_eq!(parse_announce(q.as_bytes()), Err(err), "{extra}");
        }
        let dup = format!("{}&info_hash={HASH}", announce(""));
        assert_eq!(
            parse_announce(dup.as_bytes()),
            Err(QueryError::Duplicate("info_hash"))
        );
    }

    #[test]
    fn bad_escapes_and_lengths() {
        for hash in [
            "%zz4Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A",
            "%1",
            "%",
            &HASH[..HASH.len() - 3],
        ] {
            let q = announce("").replace(HASH, hash);
            assert_eq!(
                parse_announce(q.as_bytes()),
                Err(QueryError::Invalid("info_hash")),
                "{hash}"
            );
        }
        let long = format!("{HASH}%00");
        let q = announce("").replace(HASH, &long);
        assert_eq!(
            parse_announce(q.as_bytes()),
            Err(QueryError::Invalid("info_hash"))
        );
        let over = format!("{}&numwant={}", announce(""), "9".repeat(70));
        assert_eq!(
            parse_announce(over.as_bytes()),
            Err(QueryError::Invalid("numwant"))
        );
    }

    #[test]
    fn missing_parameters() {
        assert_eq!(parse_announce(b""), Err(QueryError::Missing("info_hash")));
        let q = announce("").replace("&port=6881", "");
        assert_eq!(
            parse_announce(q.as_bytes()),
            Err(QueryError::Missing("port"))
        );
        let q = announce("").replace("&left=100", "");
        assert_eq!(
            parse_announce(q.as_bytes()),
            Err(QueryError::Missing("left"))
        );
    }

    #[test]
    fn defaults_and_edges() {
        let q = parse_announce(
            announce("&compact=0&no_peer_id=1&numwant=99999999999&ip=::1").as_bytes(),
        )
        .unwrap();
        assert!(!q.compact && q.no_peer_id);
        assert_eq!(q.numwant, i32::MAX);
        assert_eq!(q.ip, Some("::1".parse().unwrap()));
        let q = parse_announce(announce("&event=&ip=not-an-ip&port=").as_bytes());
        assert_eq!(q, Err(QueryError::Invalid("port")));
        let q = parse_announce(announce("&event=&ip=not-an-ip").as_bytes()).unwrap();
        assert_eq!((q.event, q.ip), (Event::None, None));
    }

    #[test]
    fn scrape_hashes_sorted_and_unique() {
        let mut out = ArrayVec::new();
        let q = format!("info_hash={HASH}&info_hash=aaaaaaaaaaaaaaaaaaaa&info_hash={HASH}");
        parse_scrape(q.as_bytes(), &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0] < out[1]);
        parse_scrape(b"", &mut out).unwrap();
        assert!(out.is_empty());
        let many: Vec<String> = (0..=MAX_SCRAPE_HASHES)
            .map(|_| format!("info_hash={HASH}"))
            .collect();
        assert_eq!(
            parse_scrape(many.join("&").as_bytes(), &mut out),
            Err(QueryError::TooManyHashes)
        );
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint(b"/announce?a=b"),
            Endpoint::Announce {
                passkey: None,
                query: b"a=b"
            }
        );
        assert_eq!(
            endpoint(b"/scrape"),
            Endpoint::Scrape {
                passkey: None,
                query: b""
            }
        );
        assert_eq!(
            endpoint(b"/abcdef0123456789/announce?x"),
            Endpoint::Announce {
                passkey: Some(b"abcdef0123456789"),
                query: b"x"
            }
        );
        for t in [
            &b"/"[..],
            b"/stats",
            b"announce",
            b"/a/b/announce",
            b"//announce",
            b"/announce/",
        ] {
            assert_eq!(
                endpoint(t),
                Endpoint::Unknown,
                "{}",
                String::from_utf8_lossy(t)
            );
        }
    }

    #[test]
    fn heads() {
        let r = b"GET /announce?x HTTP/1.1\r\nHost: t\r\n\r\nGET /scrape HTTP/1.1\r\n";
        let h = parse_head(r).unwrap().unwrap();
        assert_eq!(h.target, b"/announce?x");
        assert!(h.keep_alive);
        assert_eq!(
            &r[h.len..h.len + 3],
            b"GET",
            "the pipelined request follows"
        );
        assert_eq!(parse_head(&r[h.len..]), Ok(None), "incomplete");

        let h = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let h = parse_head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let h = parse_head(
            b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4, 5.6.7.8\r\nX-Real-IP: 9.9.9.9\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.forwarded_for, Some(&b"1.2.3.4, 5.6.7.8"[..]));
        assert_eq!(h.real_ip, Some(&b"9.9.9.9"[..]));

        assert_eq!(
            parse_head(b"\x16\x03\x01garbage\r\n\r\n"),
            Err(HeadError::NotHttp)
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\n\r\n"),
            Err(HeadError::MethodNotAllowed)
        );
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"),
            Err(HeadError::HasBody)
        );
        let big = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(parse_head(big.as_bytes()), Err(HeadError::TooLarge));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("H{i}: v\r\n")).collect();
        let r = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse_head(r.as_bytes()), Err(HeadError::TooLarge));
    }
}
