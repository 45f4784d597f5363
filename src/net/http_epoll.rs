//! The portable HTTP worker (`http.backend = "epoll"`, and `"auto"` where
//! io_uring is blocked): one thread, epoll readiness through `mio`,
//! non-blocking sockets, and the same `engine::http_conn::HttpConn` per
//! connection as the io_uring worker. It only moves bytes: it reads into
//! `recv_buf` when a connection's `Step` is `Recv`, writes `to_send` when
//! it is `Send`, and waits for readiness only when the socket would block.
//!
//! A connection is served at most `TURNS` steps per wake-up, so one client
//! pipelining without pause cannot starve the others (level-triggered
//! readiness brings it back on the next wait). The same tick as the
//! io_uring worker's runs the engine's timers and closes idle and
//! slowloris connections.

use std::io::{self, Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::http::HttpWorkerSetup;
use crate::engine::Engine;
use crate::engine::http_conn::{HttpConn, Step};
use crate::stats::Counter;
use crate::tracker::address_cap::{AddressCap, Held};

/// How often idle connections are looked for (as the io_uring worker).
const TICK: Duration = Duration::from_millis(250);
/// Steps one connection may take per wake-up.
const TURNS: usize = 16;
/// Tokens from here on are listeners; below, connection slots.
const LISTENER: usize = 1 << 40;

struct Conn {
    stream: TcpStream,
    http: HttpConn,
    held: Option<Held>,
    /// The readiness it is registered for.
    interest: Interest,
}

struct Worker {
    poll: Poll,
    listeners: Vec<TcpListener>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    open: usize,
    engine: Engine,
    max_connections: usize,
    address_cap: std::sync::Arc<AddressCap>,
    idle_timeout: u32,
    tls: Option<(usize, super::tls::TlsConfig)>,
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
            conns: Vec::new(),
            free: Vec::new(),
            open: 0,
            engine: Engine::new(setup.engine, Instant::now()),
            max_connections: setup.max_connections,
            address_cap: setup.address_cap,
            idle_timeout: setup.idle_timeout,
            tls: setup.tls,
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
            match self
                .poll
                .poll(&mut events, Some(until.saturating_duration_since(now)))
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token().0 {
                    t if t >= LISTENER => self.accept_all(t - LISTENER),
                    slot => self.ready(slot),
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + TICK;
                self.on_tick(now);
            }
        }
        // Stopping: every connection closes with the worker.
        for slot in 0..self.conns.len() {
            self.finish(slot);
        }
        Ok(())
    }

    fn accept_all(&mut self, listener: usize) {
        loop {
            let (mut stream, peer) = match self.listeners[listener].accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return, // WouldBlock: all taken; else try later
            };
            if self.open >= self.max_connections {
                self.engine.stats().add(Counter::HttpRefused, 1);
                continue; // dropping `stream` closes it
            }
            let Ok(held) = self.address_cap.acquire(peer.ip()) else {
                self.engine.stats().add(Counter::HttpRefusedAddress, 1);
                continue;
            };
            let tls = match &self.tls {
                Some((from, config)) if listener >= *from => Some(config.load_full()),
                _ => None,
            };
            let now = self.engine.tracker_secs(Instant::now());
            let Ok(http) = HttpConn::new(peer, now, tls) else {
                if let Some(h) = held {
                    self.address_cap.release(h);
                }
                continue;
            };
            let slot = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let registered =
                self.poll
                    .registry()
                    .register(&mut stream, Token(slot), Interest::READABLE);
            if registered.is_err() {
                if let Some(h) = held {
                    self.address_cap.release(h);
                }
                self.free.push(slot);
                continue;
            }
            self.engine.stats().add(Counter::HttpConnections, 1);
            self.conns[slot] = Some(Conn {
                stream,
                http,
                held,
                interest: Interest::READABLE,
            });
            self.open += 1;
        }
    }

    /// A connection is readable or writable: take up to `TURNS` steps.
    fn ready(&mut self, slot: usize) {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let mut step = if c.interest == Interest::WRITABLE {
            Step::Send
        } else {
            Step::Recv
        };
        for _ in 0..TURNS {
            let io = match step {
                Step::Close => break,
                Step::Recv => c.stream.read(c.http.recv_buf()),
                Step::Send => c.stream.write(c.http.to_send()),
            };
            step = match io {
                Ok(0) => Step::Close,
                Ok(n) if step == Step::Recv => {
                    c.http.on_received(n, Instant::now(), &mut self.engine)
                }
                Ok(n) => c.http.on_sent(n, Instant::now(), &mut self.engine),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => step,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return self.wait_for(slot, step);
                }
                Err(_) => Step::Close,
            };
        }
        match step {
            Step::Close => self.finish(slot),
            // Out of turns: readiness (level-triggered) brings it back.
            other => self.wait_for(slot, other),
        }
    }

    /// Register the connection for the readiness its next step needs.
    fn wait_for(&mut self, slot: usize, step: Step) {
        let Some(c) = self.conns[slot].as_mut() else {
            return;
        };
        let interest = if step == Step::Send {
            Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if interest != c.interest {
            c.interest = interest;
            let changed = self
                .poll
                .registry()
                .reregister(&mut c.stream, Token(slot), interest);
            if changed.is_err() {
                self.finish(slot);
            }
        }
    }

    fn on_tick(&mut self, now: Instant) {
        // HTTP workers share the table's expiry with the UDP workers.
        self.engine.handle_timeout(now);
        let secs = self.engine.tracker_secs(now);
        for slot in 0..self.conns.len() {
            let expired = self.conns[slot]
                .as_ref()
                .is_some_and(|c| c.http.timed_out(secs, self.idle_timeout));
            if expired {
                self.engine.stats().add(Counter::HttpTimeouts, 1);
                self.finish(slot);
            }
        }
    }

    /// Close and free a connection.
    fn finish(&mut self, slot: usize) {
        if let Some(mut c) = self.conns[slot].take() {
            let _ = self.poll.registry().deregister(&mut c.stream);
            if let Some(h) = c.held {
                self.address_cap.release(h);
            }
            self.free.push(slot);
            self.open -= 1;
        }
    }
}
