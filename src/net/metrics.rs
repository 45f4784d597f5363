//! The metrics listener (`--metrics ADDR`): `/metrics`, `/health`, the
//! stats page and its data, served by `operator_listener`'s poll loop.
//! Nothing here touches the workers' path; it only reads counters and the
//! table.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use super::operator_listener::{self, Answer, Service};
use crate::clock::unix_now;
use crate::metrics::{MetricsState, respond};

const MAX_HEAD: usize = 8 * 1024;

struct Metrics(Arc<MetricsState>);

impl Service for Metrics {
    const NAME: &'static str = "metrics";
    const MAX_HEAD: usize = MAX_HEAD;
    const MAX_REQUEST: usize = MAX_HEAD;
    const MAX_CLIENTS: usize = 64;

    fn answer(&self, request: &[u8]) -> Answer {
        // Asked once the head ended, or stopped short of its end.
        let bad = || response(400, "Bad Request", "text/plain", b"bad request\n", true);
        Answer::Done(answer(request, &self.0).unwrap_or_else(bad))
    }
}

/// Bind `addr` and serve it on a thread of its own; returns the bound
/// address (port 0 resolved).
pub fn spawn(addr: SocketAddr, state: Arc<MetricsState>) -> io::Result<SocketAddr> {
    operator_listener::spawn(addr, Metrics(state), None)
}

/// The whole answer to the request head in `head`, or `None` while it is
/// incomplete (and shorter than `MAX_HEAD`).
fn answer(head: &[u8], state: &MetricsState) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let (method, path) = match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {
            let path = req.path.unwrap_or("/");
            (
                req.method.unwrap_or(""),
                path.split('?').next().unwrap_or("/"),
            )
        }
        Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => return None,
        _ => {
            let bad = response(400, "Bad Request", "text/plain", b"bad request\n", true);
            return Some(bad);
        }
    };
    Some(match method {
        "GET" | "HEAD" => {
            let r = respond(state, path, unix_now());
            response(r.status, r.reason, r.content_type, &r.body, method == "GET")
        }
        _ => response(405, "Method Not Allowed", "text/plain", b"GET only\n", true),
    })
}

/// The whole response; a HEAD gets the head a GET would (its length too).
pub(super) fn response(
    status: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
    with: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if with {
        out.extend_from_slice(body);
    }
    out
}
