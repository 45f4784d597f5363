//! The metrics listener (`--metrics ADDR`): `/metrics`, `/health`, the
//! stats page and its data. An operator's endpoint, not a client one: one
//! plain thread, blocking sockets, one request per connection, short
//! timeouts so a stuck client holds it for two seconds at most. Nothing
//! here touches the workers' path; it only reads counters and the table.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::{MetricsState, respond};
use crate::storage::snapshotter::unix_now;

const MAX_HEAD: usize = 8 * 1024;

/// Bind `addr` and serve it on a thread of its own; returns the bound
/// address (port 0 resolved).
pub fn spawn(addr: SocketAddr, state: Arc<MetricsState>) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => {
                        if let Err(e) = serve(s, &state) {
                            tracing::debug!("metrics connection: {e}");
                        }
                    }
                    Err(e) => tracing::debug!("metrics accept: {e}"),
                }
            }
        })?;
    Ok(bound)
}

fn serve(mut s: TcpStream, state: &MetricsState) -> io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; MAX_HEAD];
    let mut filled = 0;
    let (method, path) = loop {
        let n = s.read(&mut buf[filled..])?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..filled]) {
            Ok(httparse::Status::Complete(_)) => {
                let method = req.method.unwrap_or("").to_string();
                let path = req.path.unwrap_or("/");
                let path = path.split('?').next().unwrap_or("/").to_string();
                break (method, path);
            }
            Ok(httparse::Status::Partial) if filled < buf.len() => continue,
            _ => {
                return write_response(
                    &mut s,
                    400,
                    "Bad Request",
                    "text/plain",
                    b"bad request\n",
                    true,
                );
            }
        }
    };
    if method != "GET" && method != "HEAD" {
        return write_response(
            &mut s,
            405,
            "Method Not Allowed",
            "text/plain",
            b"GET only\n",
            true,
        );
    }
    let r = respond(state, &path, unix_now());
    write_response(
        &mut s,
        r.status,
        r.reason,
        r.content_type,
        &r.body,
        method == "GET",
    )
}

fn write_response(
    s: &mut TcpStream,
    status: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
    with_body: bool,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if with_body {
        out.extend_from_slice(body);
    }
    s.write_all(&out)
}
