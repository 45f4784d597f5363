//! The HTTP worker on io_uring: one thread, one ring, one SO_REUSEPORT
//! listener per `--http` (and `[tls] listen`) address, and a slab of
//! connections.
//!
//! Every connection has at most one operation in flight: a `Recv` into its
//! receive buffer or a `Send` of what it has to send. What a connection
//! does with the bytes (framing, pipelining, keep-alive, the output bound,
//! TLS) is `engine::http_conn::HttpConn`, sans I/O; this worker only moves
//! bytes and does the `Step` it is told.
//!
//! Slow and idle clients cost a pending `Recv` and two small buffers, not a
//! thread: a 250 ms tick closes connections idle longer than the timeout, or
//! whose request head has not completed within it (slowloris). Past the
//! connection cap, new connections are closed at once; existing ones are
//! unharmed.
#![allow(unsafe_code)] // the kernel interface; each block says why it holds

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use io_uring::types::{Fd, Timespec};
use io_uring::{IoUring, SubmissionQueue, Submitter, cqueue, opcode};

use super::ring::{push, push_cancel_all, push_wakeup, serve_or_drain, submit_and_wait};
use super::tls::TlsConfig;
use crate::engine::http_conn::Step;
use crate::engine::http_endpoint::{HttpEndpoint, TlsListeners};
use crate::engine::{Engine, EngineSetup};
use crate::stats::{Counter, WorkerStats};
use crate::tracker::address_cap::AddressCap;

const TAG_ACCEPT: u64 = 1 << 56;
const TAG_RECV: u64 = 2 << 56;
const TAG_SEND: u64 = 3 << 56;
const TAG_TICK: u64 = 4 << 56;
const TAG_CANCEL: u64 = 5 << 56;
const TAG_MASK: u64 = 0xff << 56;

/// What an HTTP worker thread is given: its listeners (HTTP, then HTTPS),
/// its engine, and its connection limits.
pub struct HttpWorkerSetup {
    /// Its number (thread `http-N`).
    pub index: usize,
    /// One SO_REUSEPORT listener per address.
    pub listeners: Vec<socket2::Socket>,
    /// Its engine.
    pub engine: EngineSetup,
    /// Set at shutdown.
    pub stop: Arc<AtomicBool>,
    /// Connections it may hold.
    pub max_connections: usize,
    /// Tests only: fail as a broken ring would, once accepts are armed.
    pub forced_failure: bool,
    /// Connections per client address, shared by the HTTP workers.
    pub address_cap: Arc<AddressCap>,
    /// Seconds a connection may idle or take to send a head.
    pub idle_timeout: u32,
    /// HTTPS: listeners from this index on speak TLS with this config.
    pub tls: Option<(usize, TlsConfig)>,
}

impl HttpWorkerSetup {
    /// The worker's admission and listener state.
    pub(super) fn endpoint<T>(&self) -> HttpEndpoint<T> {
        HttpEndpoint::new(
            self.listeners.len(),
            self.max_connections,
            self.address_cap.clone(),
            self.idle_timeout,
            self.tls.as_ref().map(|(first, config)| TlsListeners {
                first: *first,
                config: config.clone(),
            }),
        )
    }
}

/// A connection's fd and its operation in flight.
struct UringIo {
    fd: OwnedFd,
    /// An operation of ours is in the kernel.
    busy: bool,
    /// Closing: shut down, waiting for the operation in flight.
    closing: bool,
}

struct Worker {
    listeners: Vec<socket2::Socket>,
    engine: Engine,
    endpoint: HttpEndpoint<UringIo>,
    /// The tick's timeout, read by the kernel when the entry is submitted.
    tick: Timespec,
    /// Operations in the kernel besides connection ones (accepts, tick).
    armed: usize,
    forced_failure: bool,
}

fn user_data(tag: u64, slot: usize, generation: u32) -> u64 {
    tag | (u64::from(generation & 0xff_ffff) << 32) | slot as u64
}

/// Run an HTTP worker until `stop` is set.
pub fn run(setup: HttpWorkerSetup, ready: std::sync::mpsc::Sender<io::Result<()>>) {
    let mut ring = match super::ring::build(1024, None) {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let stop = setup.stop.clone();
    let endpoint = setup.endpoint();
    let mut w = Worker {
        listeners: setup.listeners,
        engine: Engine::new(setup.engine, Instant::now()),
        endpoint,
        tick: Timespec::new(),
        armed: 0,
        forced_failure: setup.forced_failure,
    };
    let _ = ready.send(Ok(()));
    let name = format!("http worker {}", setup.index);
    if serve_or_drain(&name, &stop, |stop| w.serve(&mut ring, stop)) {
        // Every operation has completed (in stopping mode, every connection
        // closed): the ring goes first, then the connections (and their
        // fds and buffers) with `w`.
        drop(ring);
    } else {
        std::mem::forget(ring);
        std::mem::forget(w);
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
                    tag @ (TAG_RECV | TAG_SEND) => {
                        let done = (slot, generation, cqe.result());
                        self.on_done(tag == TAG_RECV, done, &mut sq, &submitter);
                    }
                    TAG_TICK => {
                        self.armed -= 1;
                        if stop.load(Ordering::Relaxed) {
                            if !stopping {
                                stopping = true;
                                self.begin_shutdown(&mut sq, &submitter);
                            }
                        } else {
                            self.on_tick();
                            self.resume_accepts(&mut sq, &submitter);
                            self.arm_tick(&mut sq, &submitter);
                        }
                    }
                    _ => {}
                }
            }
            cq.sync();
            if stopping && self.armed == 0 && self.endpoint.open() == 0 {
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
        for slot in 0..self.endpoint.slots() {
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
            let error = (result < 0).then(|| io::Error::from_raw_os_error(-result));
            let failed = error
                .as_ref()
                .filter(|e| super::socket::accept_error(e) == super::socket::AcceptError::Failed);
            if let Some(error) = failed
                && !stopping
            {
                // EMFILE and the like: the connection waits in the backlog
                // and an accept armed now would fail at once, again and
                // again. The tick arms it next.
                self.endpoint
                    .accept_failed(listener, error, self.engine.stats());
            } else if !stopping {
                self.arm_accept(listener, sq, submitter);
            }
        }
        if result < 0 {
            return;
        }
        // SAFETY: a successful accept returned a new fd that nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(result) };
        if stopping {
            self.stats().add(Counter::HttpRefused, 1);
            return; // dropping `fd` closes it
        }
        let Some(peer) = peer_addr(&fd) else {
            return;
        };
        let now = self.now();
        let io = UringIo {
            fd,
            busy: false,
            closing: false,
        };
        // A refused connection is closed by dropping `io`.
        let admitted = self
            .endpoint
            .admit(listener, peer, now, self.engine.stats(), |_| Some(io));
        if let Ok(slot) = admitted {
            self.arm_recv(slot, sq, submitter);
        }
    }

    fn arm_recv(&mut self, slot: usize, sq: &mut SubmissionQueue<'_>, submitter: &Submitter<'_>) {
        let c = self.endpoint.get_mut(slot).expect("live connection");
        let room = c.http.recv_buf();
        let entry = opcode::Recv::new(
            Fd(c.io.fd.as_raw_fd()),
            room.as_mut_ptr(),
            room.len() as u32,
        )
        .build()
        .user_data(user_data(TAG_RECV, slot, c.generation));
        c.io.busy = true;
        // SAFETY: the receive buffer is a boxed slice owned by the
        // connection (`HttpConn::recv_buf`), which is not freed while
        // `busy` (an operation in flight).
        unsafe { push(sq, submitter, &entry) };
    }

    fn arm_send(&mut self, slot: usize, sq: &mut SubmissionQueue<'_>, submitter: &Submitter<'_>) {
        let c = self.endpoint.get_mut(slot).expect("live connection");
        let rest = c.http.to_send();
        let entry = opcode::Send::new(Fd(c.io.fd.as_raw_fd()), rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(TAG_SEND, slot, c.generation));
        c.io.busy = true;
        // SAFETY: what `to_send` points into is not touched (so not
        // reallocated) until `on_sent`, which runs after this completion,
        // and the connection is not freed before it.
        unsafe { push(sq, submitter, &entry) };
    }

    /// An operation of the connection in `slot` completed with `result`:
    /// it is no longer busy, and it stays open (true) unless the operation
    /// failed, the peer closed, or we are closing it (then it is freed). A
    /// completion for a connection since replaced is ignored (false).
    fn settle(&mut self, slot: usize, generation: u32, result: i32) -> bool {
        let Some(c) = self.endpoint.get_current(slot, generation) else {
            return false;
        };
        c.io.busy = false;
        if c.io.closing || result <= 0 {
            self.finish(slot);
            return false;
        }
        true
    }

    /// A connection's receive (`received`) or send completed: `(slot,
    /// generation, result)`. The connection says what it does next.
    fn on_done(
        &mut self,
        received: bool,
        (slot, generation, result): (usize, u32, i32),
        sq: &mut SubmissionQueue<'_>,
        submitter: &Submitter<'_>,
    ) {
        if !self.settle(slot, generation, result) {
            return;
        }
        let c = self.endpoint.get_mut(slot).expect("settled connection");
        let (n, now, engine) = (result as usize, Instant::now(), &mut self.engine);
        let step = if received {
            c.http.on_received(n, now, engine)
        } else {
            c.http.on_sent(n, now, engine)
        };
        self.step(slot, step, sq, submitter);
    }

    /// Do what the connection asks for next.
    fn step(
        &mut self,
        slot: usize,
        step: Step,
        sq: &mut SubmissionQueue<'_>,
        submitter: &Submitter<'_>,
    ) {
        match step {
            Step::Send => self.arm_send(slot, sq, submitter),
            Step::Recv => self.arm_recv(slot, sq, submitter),
            Step::Close => self.finish(slot),
        }
    }

    fn on_tick(&mut self) {
        // HTTP workers share the table's expiry with the UDP workers (a
        // tracker may serve HTTP only).
        self.engine.handle_timeout(Instant::now());
        let now = self.now();
        for slot in self.endpoint.timed_out(now, self.engine.stats()) {
            self.close(slot);
        }
    }

    /// At a tick: arm again the accepts paused after a failure.
    fn resume_accepts(&mut self, sq: &mut SubmissionQueue<'_>, submitter: &Submitter<'_>) {
        let due: Vec<usize> = self.endpoint.resume_due().collect();
        for listener in due {
            self.arm_accept(listener, sq, submitter);
        }
    }

    /// Close a connection: at once if nothing is in flight, else shut the
    /// socket down so the operation completes and `finish` runs then.
    fn close(&mut self, slot: usize) {
        let Some(c) = self.endpoint.get_mut(slot) else {
            return;
        };
        if c.io.busy {
            if !c.io.closing {
                c.io.closing = true;
                // SAFETY: shutdown on an fd we own.
                unsafe { libc::shutdown(c.io.fd.as_raw_fd(), libc::SHUT_RDWR) };
            }
        } else {
            self.finish(slot);
        }
    }

    /// Free a connection that has nothing in flight.
    fn finish(&mut self, slot: usize) {
        if let Some(io) = self.endpoint.remove(slot) {
            debug_assert!(!io.busy);
            drop(io); // closes the fd
        }
    }
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
