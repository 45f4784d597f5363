//! The HTTP worker: one thread, one io_uring, one SO_REUSEPORT listener per
//! `--http` address, and a slab of connections.
//!
//! Every connection has at most one operation in flight: a `Recv` into its
//! read buffer or a `Send` of its write buffer. A received chunk is parsed
//! for the complete request heads it holds (pipelining); each is answered
//! by the worker's engine (`Engine::handle_http_request`) into the write
//! buffer, in order, and the buffer goes out in one `Send`. Parsing stops
//! once `OUTPUT_BOUND` bytes wait to go out: the rest of the pipeline
//! waits in the read buffer until the client has read, so a client that
//! never reads pins one bounded buffer, not every answer it asked for. A
//! full scrape's body is shared by the worker's connections and copied
//! into the write buffer `OUTPUT_BOUND` at a time. Then the connection
//! reads again, or closes (`Connection: close`, HTTP/1.0, an error).
//!
//! Slow and idle clients cost a pending `Recv` and two small buffers, not a
//! thread: a 250 ms tick closes connections idle longer than the timeout, or
//! whose request head has not completed within it (slowloris). Past the
//! connection cap, new connections are closed at once; existing ones are
//! unharmed.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use io_uring::types::{Fd, Timespec};
use io_uring::{IoUring, SubmissionQueue, Submitter, cqueue, opcode};
use rustls::ServerConnection;

use super::ring::{push, push_cancel_all, push_wakeup, submit_and_wait};
use super::tls::{self, TlsConfig};
use crate::engine::{Engine, EngineSetup};
use crate::protocol::http::{MAX_HEAD_BYTES, parse_head};
use crate::stats::{Counter, WorkerStats};
use crate::tracker::address_cap::{AddressCap, Held};

/// Read buffer per connection: one maximal request head plus a pipelined
/// follower's start.
const READ_BUF: usize = MAX_HEAD_BYTES + 1024;

/// Answers waiting to go out per connection before the worker stops
/// parsing its pipelined requests. One answer may overshoot it (an
/// announce of `max_numwant` peers as dictionaries); a shared full scrape
/// body is sent in pieces of this size.
pub const OUTPUT_BOUND: usize = 64 * 1024;

const TAG_ACCEPT: u64 = 1 << 56;
const TAG_RECV: u64 = 2 << 56;
const TAG_SEND: u64 = 3 << 56;
const TAG_TICK: u64 = 4 << 56;
const TAG_CANCEL: u64 = 5 << 56;
const TAG_MASK: u64 = 0xff << 56;

pub struct HttpWorkerSetup {
    pub index: usize,
    pub listeners: Vec<socket2::Socket>,
    pub engine: EngineSetup,
    pub stop: Arc<AtomicBool>,
    pub max_connections: usize,
    /// Tests only: fail as a broken ring would, once accepts are armed.
    pub forced_failure: bool,
    /// Connections per client address, shared by the HTTP workers.
    pub address_cap: Arc<AddressCap>,
    pub idle_timeout: u32,
    /// HTTPS: listeners from this index on speak TLS with this config.
    pub tls: Option<(usize, TlsConfig)>,
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

/// Ciphertext read per receive: one TLS record and its overhead.
const TLS_READ_BUF: usize = 16 * 1024 + 512;

struct Conn {
    fd: OwnedFd,
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
    /// An operation of ours is in the kernel.
    busy: bool,
    /// Closing: shut down, waiting for the operation in flight.
    closing: bool,
    last_active: u32,
    /// When the first byte of a not yet complete request head arrived.
    head_started: Option<u32>,
    generation: u32,
    tls: Option<Box<TlsConn>>,
    /// The connection's count against its address's cap.
    held: Option<Held>,
}

struct Worker {
    conns: Vec<Option<Conn>>,
    free: Vec<u32>,
    generations: Vec<u32>,
    open: usize,
    listeners: Vec<socket2::Socket>,
    engine: Engine,
    max_connections: usize,
    address_cap: Arc<AddressCap>,
    idle_timeout: u32,
    /// The tick's timeout, read by the kernel when the entry is submitted.
    tick: Timespec,
    /// Operations in the kernel besides connection ones (accepts, tick).
    armed: usize,
    tls: Option<(usize, TlsConfig)>,
    forced_failure: bool,
}

fn user_data(tag: u64, slot: usize, generation: u32) -> u64 {
    tag | (u64::from(generation & 0xff_ffff) << 32) | slot as u64
}

/// Run an HTTP worker until `stop` is set.
pub fn run(setup: HttpWorkerSetup, ready: std::sync::mpsc::Sender<io::Result<()>>) {
    let mut ring = match IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .build(1024)
        .or_else(|_| IoUring::new(1024))
    {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let stop = setup.stop.clone();
    let mut w = Worker {
        conns: Vec::new(),
        free: Vec::new(),
        generations: Vec::new(),
        open: 0,
        listeners: setup.listeners,
        engine: Engine::new(setup.engine, Instant::now()),
        max_connections: setup.max_connections,
        address_cap: setup.address_cap,
        idle_timeout: setup.idle_timeout,
        tick: Timespec::new(),
        armed: 0,
        tls: setup.tls,
        forced_failure: setup.forced_failure,
    };
    let _ = ready.send(Ok(()));
    match w.serve(&mut ring, &stop) {
        // Every operation has completed: the ring goes first, then the
        // connections (and their fds and buffers) with `w`.
        Ok(()) => drop(ring),
        Err(e) => {
            let index = setup.index;
            tracing::error!("http worker {index} stopped: {e}");
            // Operations may still be in the kernel, writing into the
            // connections' buffers: run the loop once more in stopping
            // mode, which cancels every operation, closes every connection
            // and waits for each to end. If the ring cannot even do that,
            // leak ring and connections rather than free memory the kernel
            // may still use (the process exits: main sees the worker gone).
            match w.serve(&mut ring, &AtomicBool::new(true)) {
                Ok(()) => {
                    tracing::info!("http worker {index}: ring drained, nothing in flight");
                    drop(ring);
                }
                Err(e) => {
                    tracing::error!(
                        "http worker {index}: ring not drained ({e}), left to the kernel"
                    );
                    std::mem::forget(ring);
                    std::mem::forget(w);
                }
            }
        }
    }
}

impl Worker {
    fn stats(&self) -> &WorkerStats {
        self.engine.stats()
    }

    /// Tracker seconds now (connection timeouts are kept in them).
    fn now(&self) -> u32 {
        self.engine.tracker_secs(Instant::now())
    }

    fn serve(&mut self, ring: &mut IoUring, stop: &AtomicBool) -> io::Result<()> {
        let (submitter, mut sq, mut cq) = ring.split();
        for i in 0..self.listeners.len() {
            self.arm_accept(i, &mut sq, &submitter);
        }
        self.arm_tick(&mut sq, &submitter);
        sq.sync();
        if std::mem::take(&mut self.forced_failure) {
            submitter.submit()?;
            return Err(io::Error::other("failure forced with operations in flight"));
        }
        let mut stopping = false;
        loop {
            sq.sync();
            submit_and_wait(&submitter, self.engine.stats())?;
            cq.sync();
            for cqe in &mut cq {
                let ud = cqe.user_data();
                let slot = (ud & 0xffff_ffff) as usize;
                let generation = ((ud >> 32) & 0xff_ffff) as u32;
                match ud & TAG_MASK {
                    TAG_ACCEPT => self.on_accept(
                        slot,
                        cqe.result(),
                        cqe.flags(),
                        stopping,
                        &mut sq,
                        &submitter,
                    ),
                    TAG_RECV => self.on_recv(slot, generation, cqe.result(), &mut sq, &submitter),
                    TAG_SEND => self.on_send(slot, generation, cqe.result(), &mut sq, &submitter),
                    TAG_TICK => {
                        self.armed -= 1;
                        if stop.load(Ordering::Relaxed) {
                            if !stopping {
                                stopping = true;
                                self.begin_shutdown(&mut sq, &submitter);
                            }
                        } else {
                            self.on_tick();
                            self.arm_tick(&mut sq, &submitter);
                        }
                    }
                    _ => {}
                }
            }
            cq.sync();
            if stopping && self.armed == 0 && self.open == 0 {
                return Ok(());
            }
        }
    }

    fn arm_accept(&mut self, i: usize, sq: &mut SubmissionQueue<'_>, submitter: &Submitter<'_>) {
        let entry = opcode::AcceptMulti::new(Fd(self.listeners[i].as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(TAG_ACCEPT, i, 0));
        // SAFETY: an accept references no memory of ours; the listener
        // outlives the ring's use of it (dropped after `serve` returns).
        unsafe { push(sq, submitter, &entry) };
        self.armed += 1;
    }

    /// Arm the wake-up for the engine's next timer (at most `TICK` away:
    /// connection timeouts and the stop flag are looked at every tick).
    fn arm_tick(&mut self, sq: &mut SubmissionQueue<'_>, submitter: &Submitter<'_>) {
        let now = Instant::now();
        push_wakeup(sq, submitter, &self.engine, now, &mut self.tick, TAG_TICK);
        self.armed += 1;
    }

    fn begin_shutdown(&mut self, sq: &mut SubmissionQueue<'_>, submitter: &Submitter<'_>) {
        // Stop accepting (the multishot accepts end with ECANCELED) and shut
        // every connection down: their pending operations complete and the
        // connections close as those completions arrive.
        push_cancel_all(sq, submitter, TAG_CANCEL);
        for slot in 0..self.conns.len() {
            self.close(slot);
        }
    }

    fn on_accept(
        &mut self,
        listener: usize,
        result: i32,
        flags: u32,
        stopping: bool,
        sq: &mut SubmissionQueue<'_>,
        submitter: &Submitter<'_>,
    ) {
        if !cqueue::more(flags) {
            self.armed -= 1;
            if !stopping {
                self.arm_accept(listener, sq, submitter);
            }
        }
        if result < 0 {
            return;
        }
        // SAFETY: a successful accept returned a new fd that nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(result) };
        if stopping || self.open >= self.max_connections {
            self.stats().add(Counter::HttpRefused, 1);
            return; // dropping `fd` closes it
        }
        let Some(peer) = peer_addr(&fd) else {
            return;
        };
        let Ok(held) = self.address_cap.acquire(peer.ip()) else {
            self.stats().add(Counter::HttpRefusedAddress, 1);
            return;
        };
        let tls = match &self.tls {
            Some((from, config)) if listener >= *from => {
                match ServerConnection::new(config.load_full()) {
                    Ok(session) => Some(Box::new(TlsConn {
                        session,
                        input: vec![0; TLS_READ_BUF].into_boxed_slice(),
                        spare: Vec::new(),
                        peer_closed: false,
                    })),
                    // rustls could not start a session: close (drop `fd`).
                    Err(_) => {
                        if let Some(h) = held {
                            self.address_cap.release(h);
                        }
                        return;
                    }
                }
            }
            _ => None,
        };
        self.stats().add(Counter::HttpConnections, 1);
        let slot = self.free.pop().map(|s| s as usize).unwrap_or_else(|| {
            self.conns.push(None);
            self.generations.push(0);
            self.conns.len() - 1
        });
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        let now = self.now();
        self.conns[slot] = Some(Conn {
            fd,
            peer,
            read: vec![0; READ_BUF].into_boxed_slice(),
            filled: 0,
            write: Vec::new(),
            sent: 0,
            tail: None,
            close_after_write: false,
            busy: false,
            closing: false,
            last_active: now,
            // A TLS handshake is held to the same deadline as a request
            // head: a client trickling handshake bytes is a slowloris too.
            head_started: tls.as_ref().map(|_| now),
            generation: self.generations[slot],
            tls,
            held,
        });
        self.open += 1;
        self.arm_recv(slot, sq, submitter);
    }

    fn arm_recv(&mut self, slot: usize, sq: &mut SubmissionQueue<'_>, submitter: &Submitter<'_>) {
        let c = self.conns[slot].as_mut().expect("live connection");
        let room = match &mut c.tls {
            Some(t) => &mut t.input[..],
            None => &mut c.read[c.filled..],
        };
        let entry = opcode::Recv::new(Fd(c.fd.as_raw_fd()), room.as_mut_ptr(), room.len() as u32)
            .build()
            .user_data(user_data(TAG_RECV, slot, c.generation));
        c.busy = true;
        // SAFETY: the read buffer (or the TLS input buffer) is a boxed slice
        // owned by the connection, which is not freed while `busy` (an
        // operation in flight).
        unsafe { push(sq, submitter, &entry) };
    }

    fn arm_send(&mut self, slot: usize, sq: &mut SubmissionQueue<'_>, submitter: &Submitter<'_>) {
        let c = self.conns[slot].as_mut().expect("live connection");
        let rest = &c.write[c.sent..];
        let entry = opcode::Send::new(Fd(c.fd.as_raw_fd()), rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(TAG_SEND, slot, c.generation));
        c.busy = true;
        // SAFETY: the write buffer is not touched (so not reallocated) while
        // `busy`, and the connection is not freed before the completion.
        unsafe { push(sq, submitter, &entry) };
    }

    /// An operation of the connection in `slot` completed with `result`:
    /// it is no longer busy, and it stays open (true) unless the operation
    /// failed, the peer closed, or we are closing it (then it is freed). A
    /// completion for a connection since replaced is ignored (false).
    fn settle(&mut self, slot: usize, generation: u32, result: i32, now: u32) -> bool {
        let Some(c) = conn_mut(&mut self.conns, slot, generation) else {
            return false;
        };
        c.busy = false;
        if c.closing || result <= 0 {
            self.finish(slot);
            return false;
        }
        c.last_active = now;
        true
    }

    fn on_recv(
        &mut self,
        slot: usize,
        generation: u32,
        result: i32,
        sq: &mut SubmissionQueue<'_>,
        submitter: &Submitter<'_>,
    ) {
        let now = self.now();
        if !self.settle(slot, generation, result, now) {
            return;
        }
        let stats = self.engine.stats();
        let c = self.conns[slot].as_mut().expect("settled connection");
        match &mut c.tls {
            Some(t) => {
                if tls::receive(&mut t.session, &t.input[..result as usize]).is_err() {
                    // The alert goes out with the next write, then we close.
                    // Counted, never logged one by one: garbage on the TLS
                    // port costs a counter, not a log line (the stats line
                    // and /metrics carry the count).
                    stats.add(Counter::TlsFailed, 1);
                    c.close_after_write = true;
                }
            }
            None => c.filled += result as usize,
        }
        stats.add(Counter::BytesIn, result as u64);
        self.process(slot, now);
        self.next_step(slot, sq, submitter);
    }

    fn on_send(
        &mut self,
        slot: usize,
        generation: u32,
        result: i32,
        sq: &mut SubmissionQueue<'_>,
        submitter: &Submitter<'_>,
    ) {
        let now = self.now();
        if !self.settle(slot, generation, result, now) {
            return;
        }
        let c = self.conns[slot].as_mut().expect("settled connection");
        c.sent += result as usize;
        self.engine.stats().add(Counter::BytesOut, result as u64);
        if c.sent < c.write.len() {
            self.arm_send(slot, sq, submitter);
            return;
        }
        c.write.clear();
        c.sent = 0;
        if c.tail.is_some() {
            self.next_step(slot, sq, submitter);
            return;
        }
        if c.close_after_write {
            self.finish(slot);
            return;
        }
        // Pipelined requests may already be waiting in the read buffer.
        self.process(slot, now);
        self.next_step(slot, sq, submitter);
    }

    /// Answer every complete request head in the read buffer, in order.
    fn process(&mut self, slot: usize, now: u32) {
        let Some(c) = self.conns[slot].as_mut() else {
            return;
        };
        if let Some(t) = &mut c.tls {
            let (n, closed) = tls::pull(&mut t.session, &mut c.read[c.filled..]);
            c.filled += n;
            t.peer_closed |= closed;
        }
        let at = Instant::now();
        let mut consumed = 0;
        // Whether what is left in the read buffer is an incomplete head (we
        // wait for the client), not answers held back by the bound (the
        // client waits for us).
        let mut incomplete = false;
        // A shared body goes out before the next answer: stop after it.
        while !c.close_after_write && c.tail.is_none() && c.write.len() < OUTPUT_BOUND {
            match parse_head(&c.read[consumed..c.filled]) {
                Ok(Some(head)) => {
                    let keep = self
                        .engine
                        .handle_http_request(at, &head, c.peer, &mut c.write);
                    c.tail = self.engine.take_http_tail().map(|body| (body, 0));
                    consumed += head.len;
                    c.close_after_write = !keep;
                }
                Ok(None) => {
                    incomplete = true;
                    break;
                }
                Err(e) => {
                    self.engine.reject_http(e, &mut c.write);
                    c.close_after_write = true;
                    consumed = c.filled;
                }
            }
        }
        if c.close_after_write {
            consumed = c.filled;
        }
        c.read.copy_within(consumed..c.filled, 0);
        c.filled -= consumed;
        // A peer that closed its side after pipelining still gets every
        // answer: close once nothing complete is left to answer.
        if incomplete && c.tls.as_ref().is_some_and(|t| t.peer_closed) {
            c.close_after_write = true;
        }
        let handshaking = c.tls.as_ref().is_some_and(|t| t.session.is_handshaking());
        if !handshaking {
            c.head_started = match (c.filled, c.head_started) {
                (0, _) => None,
                _ if !incomplete => None,
                (_, Some(t)) if consumed == 0 => Some(t),
                _ => Some(now),
            };
        }
    }

    /// Send what is written, else read more (or close).
    fn next_step(&mut self, slot: usize, sq: &mut SubmissionQueue<'_>, submitter: &Submitter<'_>) {
        let c = self.conns[slot].as_mut().expect("live connection");
        fill_from_tail(&mut c.write, &mut c.tail);
        if let Some(t) = &mut c.tls {
            // `write` holds the plaintext just produced: send its ciphertext
            // (and whatever the handshake needs) instead.
            t.spare.clear();
            let closing = c.close_after_write && c.tail.is_none();
            tls::push(&mut t.session, &c.write, closing, &mut t.spare);
            std::mem::swap(&mut c.write, &mut t.spare);
        }
        if !c.write.is_empty() {
            self.arm_send(slot, sq, submitter);
        } else if c.close_after_write {
            self.finish(slot);
        } else {
            self.arm_recv(slot, sq, submitter);
        }
    }

    fn on_tick(&mut self) {
        // HTTP workers share the table's expiry with the UDP workers (a
        // tracker may serve HTTP only).
        self.engine.handle_timeout(Instant::now());
        let now = self.now();
        let timeout = self.idle_timeout;
        for slot in 0..self.conns.len() {
            let Some(c) = &self.conns[slot] else {
                continue;
            };
            if timed_out(c.last_active, c.head_started, now, timeout) {
                self.stats().add(Counter::HttpTimeouts, 1);
                self.close(slot);
            }
        }
    }

    /// Close a connection: at once if nothing is in flight, else shut the
    /// socket down so the operation completes and `finish` runs then.
    fn close(&mut self, slot: usize) {
        let Some(c) = self.conns[slot].as_mut() else {
            return;
        };
        if c.busy {
            if !c.closing {
                c.closing = true;
                // SAFETY: shutdown on an fd we own.
                unsafe { libc::shutdown(c.fd.as_raw_fd(), libc::SHUT_RDWR) };
            }
        } else {
            self.finish(slot);
        }
    }

    /// Free a connection that has nothing in flight.
    fn finish(&mut self, slot: usize) {
        if let Some(c) = self.conns[slot].take() {
            debug_assert!(!c.busy);
            if let Some(h) = c.held {
                self.address_cap.release(h);
            }
            drop(c);
            self.free.push(slot as u32);
            self.open -= 1;
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

/// The connection in `slot` if it is still the one of `generation` (a
/// completion may arrive for a connection since closed and replaced).
fn conn_mut(conns: &mut [Option<Conn>], slot: usize, generation: u32) -> Option<&mut Conn> {
    conns
        .get_mut(slot)?
        .as_mut()
        .filter(|c| c.generation & 0xff_ffff == generation)
}

/// Whether a connection has had its time: idle (nothing received or sent)
/// for longer than `timeout`, or a request head begun longer than `timeout`
/// ago and still not complete (a client trickling bytes to hold the
/// connection open). Seconds of tracker time.
fn timed_out(last_active: u32, head_started: Option<u32>, now: u32, timeout: u32) -> bool {
    let stalled_head = head_started.is_some_and(|t| now.saturating_sub(t) > timeout);
    stalled_head || now.saturating_sub(last_active) > timeout
}

fn peer_addr(fd: &OwnedFd) -> Option<SocketAddr> {
    // Borrow the fd as a socket just to ask for its peer, then give it back.
    // SAFETY: the fd is a valid socket; `into_raw_fd` below returns
    // ownership to `fd` without closing it.
    let s = unsafe { socket2::Socket::from_raw_fd(fd.as_raw_fd()) };
    let addr = s.peer_addr().ok().and_then(|a| a.as_socket());
    let _ = s.into_raw_fd();
    addr
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
