//! The portable HTTP worker (`http.backend = "epoll"`, and `"auto"` where
//! io_uring is blocked): one thread, epoll readiness through `mio`,
//! non-blocking sockets, and the same `engine::http_conn::HttpConn` per
//! connection as the io_uring worker. It only moves bytes: it reads into
//! `recv_buf` when a connection's `Step` is `Recv`, writes `to_send` when
//! it is `Send`, and waits for readiness only when the socket would block.
//!
//! mio registers sockets edge-triggered: a readiness event comes once per
//! change, not while data waits. So a connection is served until its
//! socket would block (the kernel then reports the next change), or at
//! most `TURNS` steps per pass, so one client pipelining without pause
//! cannot starve the others; a connection that used its turns with work
//! left goes on a list of its own and gets its next pass after this
//! wake-up's events, without waiting for an event that would not come.
//! A listener is likewise accepted from until it would block; one whose
//! accept fails (EMFILE) pauses until the next tick (`HttpEndpoint`).
//! The same tick as the io_uring worker's runs the engine's timers and
//! closes idle and slowloris connections.

use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::http::HttpWorkerSetup;
use super::socket::{AcceptError, accept_error};
use crate::engine::http_conn::Step;
use crate::engine::http_endpoint::HttpEndpoint;
use crate::engine::{Engine, TICK};

/// Steps one connection may take per pass.
const TURNS: usize = 16;
/// Tokens from here on are listeners; below, connection slots.
const LISTENER: usize = 1 << 40;

/// A connection's socket and what it waits for.
struct EpollIo {
    stream: TcpStream,
    /// What the connection does when it is served next.
    next: Step,
    /// The readiness it is registered for.
    interest: Interest,
}

struct Worker {
    poll: Poll,
    listeners: Vec<TcpListener>,
    engine: Engine,
    endpoint: HttpEndpoint<EpollIo>,
}

/// Run an HTTP worker on epoll until `stop` is set.
pub fn run(setup: HttpWorkerSetup, ready: std::sync::mpsc::Sender<io::Result<()>>) {
    let (stop, index) = (setup.stop.clone(), setup.index);
    let mut w = match Worker::new(setup) {
        Ok(w) => w,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    if let Err(e) = w.serve(&stop) {
        tracing::error!("http worker {index} stopped: {e}");
    }
}

impl Worker {
    /// The poll with the listeners registered, and the worker's engine.
    fn new(setup: HttpWorkerSetup) -> io::Result<Worker> {
        let poll = Poll::new()?;
        let endpoint = setup.endpoint();
        let mut listeners = Vec::new();
        for (i, s) in setup.listeners.into_iter().enumerate() {
            s.set_nonblocking(true)?;
            let mut l = TcpListener::from_std(s.into());
            poll.registry()
                .register(&mut l, Token(LISTENER + i), Interest::READABLE)?;
            listeners.push(l);
        }
        Ok(Worker {
            poll,
            listeners,
            engine: Engine::new(setup.engine, Instant::now()),
            endpoint,
        })
    }

    fn serve(&mut self, stop: &std::sync::atomic::AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let until = self
                .engine
                .poll_timeout()
                .map_or(next_tick, |t| t.min(next_tick));
            // Unfinished connections are served now, not after a wait.
            let wait = if self.endpoint.has_unfinished() {
                Duration::ZERO
            } else {
                until.saturating_duration_since(now)
            };
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token().0 {
                    t if t >= LISTENER => self.accept_all(t - LISTENER),
                    slot => self.serve_conn(slot),
                }
            }
            for slot in self.endpoint.take_unfinished() {
                self.serve_conn(slot);
            }
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + TICK;
                self.on_tick(now);
            }
        }
        // Stopping: every connection closes with the worker.
        for slot in 0..self.endpoint.slots() {
            self.finish(slot);
        }
        Ok(())
    }

    /// Accept until the listener would block (edge-triggered: the next
    /// event comes only after that) or an accept fails (then the listener
    /// pauses until the tick).
    fn accept_all(&mut self, listener: usize) {
        if self.endpoint.paused(listener) {
            return;
        }
        loop {
            let (mut stream, peer) = match self.listeners[listener].accept() {
                Ok(accepted) => accepted,
                Err(e) => match accept_error(&e) {
                    AcceptError::Drained => return,
                    AcceptError::Retry => continue,
                    AcceptError::Failed => {
                        self.endpoint
                            .accept_failed(listener, &e, self.engine.stats());
                        return;
                    }
                },
            };
            let now = self.engine.tracker_secs(Instant::now());
            let registry = self.poll.registry();
            // A refused connection is closed by dropping `stream`.
            let _ = self
                .endpoint
                .admit(listener, peer, now, self.engine.stats(), |slot| {
                    registry
                        .register(&mut stream, Token(slot), Interest::READABLE)
                        .ok()?;
                    Some(EpollIo {
                        stream,
                        next: Step::Recv,
                        interest: Interest::READABLE,
                    })
                });
        }
    }

    /// A connection is ready (or unfinished): take up to `TURNS` steps.
    fn serve_conn(&mut self, slot: usize) {
        let Some(c) = self.endpoint.get_mut(slot) else {
            return;
        };
        let mut step = c.io.next;
        for _ in 0..TURNS {
            let io = match step {
                Step::Close => break,
                Step::Recv => c.io.stream.read(c.http.recv_buf()),
                Step::Send => c.io.stream.write(c.http.to_send()),
            };
            step = match io {
                Ok(0) => Step::Close,
                Ok(n) if step == Step::Recv => {
                    c.http.on_received(n, Instant::now(), &mut self.engine)
                }
                Ok(n) => c.http.on_sent(n, Instant::now(), &mut self.engine),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => step,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.io.next = step;
                    return self.wait_for(slot, step);
                }
                Err(_) => Step::Close,
            };
        }
        c.io.next = step;
        match step {
            Step::Close => self.finish(slot),
            // Out of turns with work left: no event will say so.
            _ => {
                self.endpoint.unfinished(slot);
                self.wait_for(slot, step);
            }
        }
    }

    /// Register the connection for the readiness its next step needs.
    fn wait_for(&mut self, slot: usize, step: Step) {
        let Some(c) = self.endpoint.get_mut(slot) else {
            return;
        };
        let interest = if step == Step::Send {
            Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if interest != c.io.interest {
            c.io.interest = interest;
            let changed = self
                .poll
                .registry()
                .reregister(&mut c.io.stream, Token(slot), interest);
            if changed.is_err() {
                self.finish(slot);
            }
        }
    }

    fn on_tick(&mut self, now: Instant) {
        // HTTP workers share the table's expiry with the UDP workers.
        self.engine.handle_timeout(now);
        let secs = self.engine.tracker_secs(now);
        for slot in self.endpoint.timed_out(secs, self.engine.stats()) {
            self.finish(slot);
        }
        let due: Vec<usize> = self.endpoint.resume_due().collect();
        for listener in due {
            self.accept_all(listener);
        }
    }

    /// Close and free a connection.
    fn finish(&mut self, slot: usize) {
        if let Some(mut io) = self.endpoint.remove(slot) {
            let _ = self.poll.registry().deregister(&mut io.stream);
        }
    }
}
