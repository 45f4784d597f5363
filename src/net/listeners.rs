//! The sockets every worker serves: bound before anything runs (so a bad
//! address fails the start), one SO_REUSEPORT socket per worker and
//! address.

use std::io;
use std::net::SocketAddr;

use super::{Addresses, limits, socket};
use crate::config::Config;

/// A bind that failed, naming the address.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind {proto} {addr}: {source}")]
pub struct BindError {
    /// `udp` or `http`.
    pub proto: &'static str,
    /// The address.
    pub addr: SocketAddr,
    /// What the OS said.
    pub source: io::Error,
}

/// Every configured address bound, per worker.
pub struct Listeners {
    /// The addresses bound, with ephemeral ports resolved (the server's
    /// `Addresses` once taken).
    pub addrs: Addresses,
    /// Per UDP worker, its sockets (none when nothing serves UDP).
    pub udp_sockets: Vec<Vec<socket2::Socket>>,
    /// Per HTTP worker, its HTTP listeners and then its HTTPS ones.
    pub http_sockets: Vec<Vec<socket2::Socket>>,
    /// Per HTTP worker, the index of its first HTTPS listener.
    pub tls_from: Vec<usize>,
}

impl Listeners {
    /// Bind `config`'s UDP, HTTP and HTTPS addresses for `workers` workers.
    pub fn bind(config: &Config, workers: usize) -> Result<Listeners, BindError> {
        let (udp, udp_sockets) = bind_all(&config.udp.listen, workers, Proto::Udp, |a| {
            socket::bind_udp(a, config.udp.socket_recv_buffer)
        })?;
        let (http, mut http_sockets) =
            bind_all(&config.http.listen, workers, Proto::Tcp, socket::bind_tcp)?;
        let (https, https_sockets) =
            bind_all(&config.tls.listen, workers, Proto::Tcp, socket::bind_tcp)?;
        // Each HTTP worker serves its HTTPS sockets too, after its HTTP ones.
        let tls_from = http_sockets.iter().map(Vec::len).collect();
        for (mine, more) in http_sockets.iter_mut().zip(https_sockets) {
            mine.extend(more);
        }
        let udp_sockets = if udp_sockets.iter().all(Vec::is_empty) {
            Vec::new()
        } else {
            udp_sockets
        };
        Ok(Listeners {
            addrs: Addresses { udp, http, https },
            udp_sockets,
            http_sockets,
            tls_from,
        })
    }

    /// How many workers of each kind will serve (UDP, HTTP).
    pub fn serving(&self) -> (usize, usize) {
        let count = |s: &[Vec<socket2::Socket>]| s.iter().filter(|s| !s.is_empty()).count();
        (count(&self.udp_sockets), count(&self.http_sockets))
    }
}

#[derive(Clone, Copy)]
enum Proto {
    Udp,
    Tcp,
}

/// Bind `workers` sockets on every address: after checking that nobody
/// holds it yet, each worker gets its own SO_REUSEPORT socket; port 0 is
/// resolved by the first bind and the other workers join that port.
/// Returns the resolved addresses and, per worker, its sockets.
#[allow(clippy::type_complexity)]
fn bind_all(
    wanted: &[SocketAddr],
    workers: usize,
    proto: Proto,
    bind: impl Fn(SocketAddr) -> io::Result<socket2::Socket>,
) -> Result<(Vec<SocketAddr>, Vec<Vec<socket2::Socket>>), BindError> {
    let name = match proto {
        Proto::Udp => "udp",
        Proto::Tcp => "http",
    };
    let mut addrs = Vec::new();
    let mut sockets: Vec<Vec<socket2::Socket>> = (0..workers).map(|_| Vec::new()).collect();
    for &first in wanted {
        let err = |addr, source| BindError {
            proto: name,
            addr,
            source,
        };
        if first.port() != 0 {
            limits::retry_in_use(first, || match proto {
                Proto::Udp => socket::check_udp_free(first),
                Proto::Tcp => socket::check_tcp_free(first),
            })
            .map_err(|e| err(first, e))?;
        }
        let mut addr = first;
        for worker_sockets in sockets.iter_mut() {
            let s = limits::retry_in_use(addr, || bind(addr)).map_err(|e| err(addr, e))?;
            if addr.port() == 0 {
                addr = s
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .ok_or_else(|| err(addr, io::Error::other("no local address after bind")))?;
            }
            worker_sockets.push(s);
        }
        addrs.push(addr);
    }
    Ok((addrs, sockets))
}
