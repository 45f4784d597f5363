//! One HTTP (or HTTPS) connection, sans I/O: framing, pipelining,
//! keep-alive, the output bound, timeouts and the TLS plumbing. A backend
//! owns the socket and moves bytes: it receives into `recv_buf`, reports
//! `on_received`, sends `to_send`, reports `on_sent`, and does what the
//! returned `Step` says. Every HTTP backend drives this one state machine.
//!
//! A received chunk is parsed for the complete request heads it holds
//! (pipelining); each is answered by the worker's engine
//! (`Engine::handle_http_request`) into the write buffer, in order.
//! Parsing stops once `OUTPUT_BOUND` bytes wait to go out: the rest of the
//! pipeline waits in the read buffer until the client has read, so a
//! client that never reads pins one bounded buffer, not every answer it
//! asked for. A full scrape's body is shared by the worker's connections
//! and copied into the write buffer `OUTPUT_BOUND` at a time. Then the
//! connection reads again, or closes (`Connection: close`, HTTP/1.0, an
//! error). Over TLS (rustls, itself sans I/O) the read and write buffers
//! hold plaintext and the backend moves ciphertext.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rustls::ServerConnection;

use super::Engine;
use crate::protocol::http::{MAX_HEAD_BYTES, parse_head};
use crate::stats::Counter;

/// Read buffer per connection: one maximal request head plus a pipelined
/// follower's start.
const READ_BUF: usize = MAX_HEAD_BYTES + 1024;
/// Ciphertext read per receive: one TLS record and its overhead.
const TLS_READ_BUF: usize = 16 * 1024 + 512;

/// Answers that may wait in a connection's write buffer before it stops
/// parsing pipelined requests (the buffer then holds at most this plus one
/// answer).
pub const OUTPUT_BOUND: usize = 64 * 1024;

/// What the backend does next for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send `to_send()`.
    Send,
    /// Receive into `recv_buf()`.
    Recv,
    /// Close the connection.
    Close,
}

/// TLS state of an HTTPS connection: the plaintext side uses the
/// connection's `read` and `write` buffers as for HTTP.
struct TlsConn {
    session: ServerConnection,
    /// Ciphertext received.
    input: Box<[u8]>,
    /// Plaintext of the last responses while `write` holds their ciphertext.
    spare: Vec<u8>,
    /// The peer ended its side: answer what was read, then close.
    peer_closed: bool,
}

/// One HTTP connection, sans I/O: its buffers, framing, pipelining, output
/// bound, deadlines and TLS. The backend receives into `recv_buf`, sends
/// `to_send`, and does the `Step` each report returns.
pub struct HttpConn {
    peer: SocketAddr,
    read: Box<[u8]>,
    filled: usize,
    write: Vec<u8>,
    sent: usize,
    /// A shared body still to send after `write` (a full scrape), and how
    /// much of it has been copied into `write`.
    tail: Option<(Arc<[u8]>, usize)>,
    /// Close once the write buffer is out.
    close_after_write: bool,
    last_active: u32,
    /// When the first byte of a not yet complete request head arrived.
    head_started: Option<u32>,
    tls: Option<Box<TlsConn>>,
}

impl HttpConn {
    /// A connection from `peer` accepted at tracker time `now`, over TLS
    /// with `tls` if given (fails if rustls cannot start a session).
    pub fn new(
        peer: SocketAddr,
        now: u32,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<HttpConn, rustls::Error> {
        let tls = match tls {
            Some(config) => Some(Box::new(TlsConn {
                session: ServerConnection::new(config)?,
                input: vec![0; TLS_READ_BUF].into_boxed_slice(),
                spare: Vec::new(),
                peer_closed: false,
            })),
            None => None,
        };
        Ok(HttpConn {
            peer,
            read: vec![0; READ_BUF].into_boxed_slice(),
            filled: 0,
            write: Vec::new(),
            sent: 0,
            tail: None,
            close_after_write: false,
            last_active: now,
            // A TLS handshake is held to the same deadline as a request
            // head: a client trickling handshake bytes is a slowloris too.
            head_started: tls.as_ref().map(|_| now),
            tls,
        })
    }

    /// Where the next receive goes (a heap buffer that does not move while
    /// the connection lives: an io_uring receive may point into it).
    pub fn recv_buf(&mut self) -> &mut [u8] {
        match &mut self.tls {
            Some(t) => &mut t.input[..],
            None => &mut self.read[self.filled..],
        }
    }

    /// What waits to be sent (a heap buffer left untouched until
    /// `on_sent`).
    pub fn to_send(&self) -> &[u8] {
        &self.write[self.sent..]
    }

    /// `n` (> 0) bytes arrived in `recv_buf` at `at`: answer every
    /// complete request.
    // Inlined into the backend's completion handler: without it the move
    // out of net/http.rs cost 2-3% of HTTP replies/s (docs/PERFORMANCE.md).
    #[inline]
    pub fn on_received(&mut self, n: usize, at: Instant, engine: &mut Engine) -> Step {
        let stats = engine.stats();
        stats.add(Counter::BytesIn, n as u64);
        match &mut self.tls {
            Some(t) => {
                if receive(&mut t.session, &t.input[..n]).is_err() {
                    // The alert goes out with the next write, then we close.
                    // Counted, never logged one by one: garbage on the TLS
                    // port costs a counter, not a log line.
                    stats.add(Counter::TlsFailed, 1);
                    self.close_after_write = true;
                }
            }
            None => self.filled += n,
        }
        self.last_active = engine.tracker_secs(at);
        self.process(at, engine);
        self.next_step()
    }

    /// `n` (> 0) bytes of `to_send` went out at `at`.
    #[inline]
    pub fn on_sent(&mut self, n: usize, at: Instant, engine: &mut Engine) -> Step {
        engine.stats().add(Counter::BytesOut, n as u64);
        self.last_active = engine.tracker_secs(at);
        self.sent += n;
        if self.sent < self.write.len() {
            return Step::Send;
        }
        self.write.clear();
        self.sent = 0;
        if self.tail.is_some() {
            return self.next_step();
        }
        if self.close_after_write {
            return Step::Close;
        }
        // Pipelined requests may already be waiting in the read buffer.
        self.process(at, engine);
        self.next_step()
    }

    /// Whether the connection has had its time at tracker time `now`
    /// (see `timed_out`).
    pub fn timed_out(&self, now: u32, timeout: u32) -> bool {
        timed_out(self.last_active, self.head_started, now, timeout)
    }

    /// Answer every complete request head in the read buffer, in order.
    #[inline]
    fn process(&mut self, at: Instant, engine: &mut Engine) {
        if let Some(t) = &mut self.tls {
            let (n, closed) = pull(&mut t.session, &mut self.read[self.filled..]);
            self.filled += n;
            t.peer_closed |= closed;
        }
        let mut consumed = 0;
        // Whether what is left in the read buffer is an incomplete head (we
        // wait for the client), not answers held back by the bound (the
        // client waits for us).
        let mut incomplete = false;
        // A shared body goes out before the next answer: stop after it.
        while !self.close_after_write && self.tail.is_none() && self.write.len() < OUTPUT_BOUND {
            match parse_head(&self.read[consumed..self.filled]) {
                Ok(Some(head)) => {
                    let reply = engine.handle_http_request(at, &head, self.peer, &mut self.write);
                    self.tail = reply.tail.map(|body| (body, 0));
                    consumed += head.len;
                    self.close_after_write = !reply.keep_alive;
                }
                Ok(None) => {
                    incomplete = true;
                    break;
                }
                Err(e) => {
                    engine.reject_http(e, &mut self.write);
                    self.close_after_write = true;
                    consumed = self.filled;
                }
            }
        }
        if self.close_after_write {
            consumed = self.filled;
        }
        self.read.copy_within(consumed..self.filled, 0);
        self.filled -= consumed;
        // A peer that closed its side after pipelining still gets every
        // answer: close once nothing complete is left to answer.
        if incomplete && self.tls.as_ref().is_some_and(|t| t.peer_closed) {
            self.close_after_write = true;
        }
        let handshaking = self
            .tls
            .as_ref()
            .is_some_and(|t| t.session.is_handshaking());
        if !handshaking {
            let now = engine.tracker_secs(at);
            self.head_started = match (self.filled, self.head_started) {
                (0, _) => None,
                _ if !incomplete => None,
                (_, Some(t)) if consumed == 0 => Some(t),
                _ => Some(now),
            };
        }
    }

    /// Send what is written, else read more (or close).
    #[inline]
    fn next_step(&mut self) -> Step {
        fill_from_tail(&mut self.write, &mut self.tail);
        if let Some(t) = &mut self.tls {
            // `write` holds the plaintext just produced: send its ciphertext
            // (and whatever the handshake needs) instead.
            t.spare.clear();
            let closing = self.close_after_write && self.tail.is_none();
            push(&mut t.session, &self.write, closing, &mut t.spare);
            std::mem::swap(&mut self.write, &mut t.spare);
        }
        if !self.write.is_empty() {
            Step::Send
        } else if self.close_after_write {
            Step::Close
        } else {
            Step::Recv
        }
    }
}

/// Copy the next piece of a shared body into `write`, up to
/// `OUTPUT_BOUND` pending; the tail is gone once all of it was copied.
fn fill_from_tail(write: &mut Vec<u8>, tail: &mut Option<(Arc<[u8]>, usize)>) {
    let Some((body, copied)) = tail else {
        return;
    };
    let room = OUTPUT_BOUND.saturating_sub(write.len());
    let piece = &body[*copied..(*copied + room).min(body.len())];
    write.extend_from_slice(piece);
    *copied += piece.len();
    if *copied == body.len() {
        *tail = None;
    }
}

/// Whether a connection has had its time: idle (nothing received or sent)
/// for longer than `timeout`, or a request head begun longer than `timeout`
/// ago and still not complete (a client trickling bytes to hold the
/// connection open). Seconds of tracker time.
fn timed_out(last_active: u32, head_started: Option<u32>, now: u32, timeout: u32) -> bool {
    let stalled_head = head_started.is_some_and(|t| now.saturating_sub(t) > timeout);
    stalled_head || now.saturating_sub(last_active) > timeout
}

/// Feed ciphertext received from the socket. An error is a TLS protocol
/// failure: the alert for the peer is queued, send it and close.
fn receive(tls: &mut ServerConnection, mut data: &[u8]) -> Result<(), rustls::Error> {
    while !data.is_empty() {
        match tls.read_tls(&mut data) {
            Ok(_) => {}
            // rustls holds as much as it will buffer: the plaintext must be
            // read first, which a client flooding requests never allows.
            Err(e) => return Err(rustls::Error::General(e.to_string())),
        }
        tls.process_new_packets()?;
    }
    Ok(())
}

/// Move decrypted bytes into `buf`; returns how many, and whether the peer
/// closed its side (close_notify or a broken stream).
fn pull(tls: &mut ServerConnection, buf: &mut [u8]) -> (usize, bool) {
    let mut n = 0;
    while n < buf.len() {
        match tls.reader().read(&mut buf[n..]) {
            Ok(0) => return (n, true),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => return (n, true),
        }
    }
    (n, false)
}

/// Encrypt `plain` (and a close_notify if `closing`) into `out`, which the
/// backend then sends as is, with anything rustls has to say on its own
/// (handshake messages, alerts).
fn push(tls: &mut ServerConnection, mut plain: &[u8], closing: bool, out: &mut Vec<u8>) {
    loop {
        if !drain(tls, out) {
            return;
        }
        if plain.is_empty() {
            break;
        }
        // rustls takes plaintext up to its buffer limit (64 KiB) at a
        // time: encrypt in turns with draining, or the rest is lost.
        match tls.writer().write(plain) {
            Ok(0) | Err(_) => return,
            Ok(n) => plain = &plain[n..],
        }
    }
    if closing {
        tls.send_close_notify();
        drain(tls, out);
    }
}

/// Move every record rustls has ready into `out`; false if it failed.
fn drain(tls: &mut ServerConnection, out: &mut Vec<u8>) -> bool {
    while tls.wants_write() {
        if tls.write_tls(out).is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::{OUTPUT_BOUND, fill_from_tail, timed_out};
    use std::sync::Arc;

    #[test]
    fn a_shared_body_is_copied_a_bounded_piece_at_a_time() {
        let body: Arc<[u8]> = (0..OUTPUT_BOUND * 2 + 10).map(|i| i as u8).collect();
        let mut tail = Some((body.clone(), 0));
        let mut write = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        let mut sent = Vec::new();
        while tail.is_some() {
            fill_from_tail(&mut write, &mut tail);
            assert!(write.len() <= OUTPUT_BOUND);
            sent.append(&mut write);
        }
        assert_eq!(&sent[19..], &body[..]);
        // Nothing to copy: nothing happens.
        fill_from_tail(&mut write, &mut tail);
        assert!(write.is_empty());
    }

    #[test]
    fn idle_connections_time_out() {
        assert!(
            !timed_out(100, None, 130, 30),
            "exactly the timeout is kept"
        );
        assert!(timed_out(100, None, 131, 30));
    }

    #[test]
    fn a_trickled_head_times_out_even_while_bytes_arrive() {
        // Bytes keep arriving (last_active is fresh), but the head that
        // started at 100 is still incomplete 31 s later.
        assert!(timed_out(130, Some(100), 131, 30));
        assert!(!timed_out(130, Some(100), 130, 30));
        assert!(!timed_out(130, Some(125), 131, 30));
    }
}
