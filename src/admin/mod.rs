//! The management API (`[admin]`, docs/API.md), sans I/O: a request's
//! bytes in, the whole response out. `net::admin` serves it on the
//! operator listener's thread; the clocks come in as arguments.
//!
//! Changes act on the same shared state the workers read — the site
//! directory, the access rules' API changes, the ledger and the swarm
//! table — each under its own short lock, so the next announce sees them
//! and no announce waits for a request.

mod body;
mod freeleech;
mod lists;
mod members;
mod reads;
pub mod request;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

use crate::config::AdminToken;
use crate::tracker::Tracker;
use request::{Frame, Request};

/// The most a request's head may be.
pub const MAX_HEAD: usize = 8 * 1024;

/// The most a request may be, head and body.
pub const MAX_REQUEST: usize = 64 * 1024;

/// What the API says to a request's bytes so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The whole HTTP response.
    Response(Vec<u8>),
    /// Ask again once the request holds this many bytes.
    NeedBytes(usize),
}

/// The two clocks a request is served at.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Unix seconds (what the site's `updated_at` is compared with).
    pub unix: f64,
    /// Tracker seconds (peer ages).
    pub now: u32,
}

/// An answer before it is written: a status and its JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The body, serialized.
    pub body: Vec<u8>,
}

impl Reply {
    /// 200 with `body` (a `json!` value, or a serializable struct: a long
    /// peer list is written straight, not built as a `Value` first).
    fn ok(body: impl serde::Serialize) -> Reply {
        Reply {
            status: 200,
            body: serde_json::to_vec(&body).unwrap_or_default(),
        }
    }

    fn error(status: u16, message: impl std::fmt::Display) -> Reply {
        let body = json!({ "error": message.to_string() });
        Reply {
            status,
            body: serde_json::to_vec(&body).unwrap_or_default(),
        }
    }

    /// 507: one of the API's bounds is reached. Logged the first time
    /// (the caller sees every one).
    fn full(message: impl std::fmt::Display) -> Reply {
        static LOGGED: AtomicBool = AtomicBool::new(false);
        if !LOGGED.swap(true, Ordering::Relaxed) {
            tracing::warn!("admin: {message} (logged once; each request gets 507)");
        }
        Reply::error(507, message)
    }
}

/// The API over one tracker.
pub struct AdminApi {
    tracker: Arc<Tracker>,
    token: AdminToken,
}

impl AdminApi {
    /// Serve `tracker`'s state to requests bearing `token`.
    pub fn new(tracker: Arc<Tracker>, token: AdminToken) -> AdminApi {
        AdminApi { tracker, token }
    }

    /// The whole response to the request in `buf`, or how many bytes it
    /// needs first.
    pub fn answer(&self, buf: &[u8], clock: Clock) -> Outcome {
        let reply = match request::frame(buf, MAX_HEAD, MAX_REQUEST) {
            Frame::Partial => return Outcome::NeedBytes(buf.len() + 1),
            Frame::Body(n) => return Outcome::NeedBytes(n),
            Frame::Bad(status, why) => Reply::error(status, why),
            Frame::Complete(r) if !r.bearer.is_some_and(|t| self.token.matches(t)) => {
                Reply::error(401, "send Authorization: Bearer <admin.token_file's token>")
            }
            Frame::Complete(r) => self.route(&r, clock),
        };
        Outcome::Response(response(&reply))
    }

    fn route(&self, r: &Request<'_>, clock: Clock) -> Reply {
        let mut parts = r.path.strip_prefix("/api/").unwrap_or("").split('/');
        let segs: [&str; 4] = std::array::from_fn(|_| parts.next().unwrap_or(""));
        if parts.next().is_some() {
            return Reply::error(404, "no such endpoint");
        }
        let body = r.body;
        match (r.method, segs) {
            ("GET", ["users", id, "", ""]) => self.get_user(id, clock),
            ("PUT", ["users", id, "", ""]) => self.put_user(id, body, clock),
            ("DELETE", ["users", id, "", ""]) => self.delete_user(id, clock),
            ("PUT", ["users", id, "personal-freeleech", ""]) => {
                self.freeleech(id, None, Some(body), clock)
            }
            ("DELETE", ["users", id, "personal-freeleech", ""]) => {
                self.freeleech(id, None, None, clock)
            }
            ("PUT", ["freeleech-tokens", user, torrent, ""]) => {
                self.freeleech(user, Some(torrent), Some(body), clock)
            }
            ("DELETE", ["freeleech-tokens", user, torrent, ""]) => {
                self.freeleech(user, Some(torrent), None, clock)
            }
            ("GET", ["torrents", "", "", ""]) => self.top_torrents(r.query),
            ("GET", ["torrents", hash, "", ""]) => self.get_torrent(hash, r.query, clock),
            ("PUT", ["torrents", id, "", ""]) => self.put_torrent(id, body, clock),
            ("DELETE", ["torrents", id, "", ""]) => self.delete_torrent(id, clock),
            ("PUT", [list @ ("allow" | "deny"), hash, "", ""]) => {
                self.list(list, hash, true, clock)
            }
            ("DELETE", [list @ ("allow" | "deny"), hash, "", ""]) => {
                self.list(list, hash, false, clock)
            }
            (
                _,
                [
                    "users" | "torrents" | "allow" | "deny" | "freeleech-tokens",
                    ..,
                ],
            ) => Reply::error(405, "method not allowed here (see docs/API.md)"),
            _ => Reply::error(404, "no such endpoint"),
        }
    }
}

/// A path id: a positive integer.
fn path_id(field: &str, s: &str) -> Result<u64, Reply> {
    s.parse::<u64>()
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| Reply::error(400, format!("{field}: must be a positive integer")))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        507 => "Insufficient Storage",
        _ => "Error",
    }
}

/// The whole HTTP response for `reply`.
fn response(reply: &Reply) -> Vec<u8> {
    let body = &reply.body;
    let challenge = if reply.status == 401 {
        "WWW-Authenticate: Bearer\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\n{challenge}Connection: close\r\n\r\n",
        reply.status,
        reason(reply.status),
        body.len() + 1
    )
    .into_bytes();
    out.extend_from_slice(body);
    out.push(b'\n');
    out
}
