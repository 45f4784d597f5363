//! The management API's listener (`[admin] listen`): the operator
//! listener's poll loop (bounded connections, request size and deadline)
//! around `admin::AdminApi`, on a thread of its own. It reads the clocks
//! and moves bytes; what a request does is `admin`'s.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::operator_listener::{self, Answer, Service};
use crate::admin::{AdminApi, Clock, MAX_HEAD, MAX_REQUEST, Outcome};

struct Admin {
    api: AdminApi,
    /// Tracker time zero.
    started: Instant,
}

impl Service for Admin {
    const NAME: &'static str = "admin";
    const MAX_HEAD: usize = MAX_HEAD;
    const MAX_REQUEST: usize = MAX_REQUEST;
    // A site's hooks come in bursts (a batch of uploads, a mass ban): room
    // for a few hundred at once, each at most 64 KiB.
    const MAX_CLIENTS: usize = 256;

    fn answer(&self, request: &[u8]) -> Answer {
        let clock = Clock {
            unix: crate::clock::unix_ms() as f64 / 1000.0,
            now: self.started.elapsed().as_secs() as u32,
        };
        match self.api.answer(request, clock) {
            Outcome::Response(out) => Answer::Done(out),
            Outcome::NeedBytes(n) => Answer::Wait(n),
        }
    }
}

/// Bind `addr` and serve `api` there (over TLS with `tls`); returns the
/// bound address.
pub fn spawn(
    addr: SocketAddr,
    api: AdminApi,
    started: Instant,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> io::Result<SocketAddr> {
    operator_listener::spawn(addr, Admin { api, started }, tls)
}
