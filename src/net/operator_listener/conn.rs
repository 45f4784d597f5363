//! One connection of an operator listener (`operator_listener`): the
//! request's bytes kept within the service's bounds, the service asked at
//! most a few times (once the head has ended, then once the body it asked
//! for is in: a client that trickles a byte at a time costs a scan of
//! what is new, never a parse of everything again), the answer written,
//! and then the connection drained until the client closes, so an answer
//! sent before the whole request was read (413) is not lost to a reset.
//! Plain TCP or TLS (rustls over the same non-blocking socket).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use rustls::ServerConnection;

use super::{Answer, Service};

/// One connection, from accept to close.
pub(super) struct Conn {
    stream: TcpStream,
    /// HTTPS: the TLS state (which then holds the answer until written).
    tls: Option<Box<ServerConnection>>,
    /// When it is closed, done or not.
    pub deadline: Instant,
    /// The request so far (at most `S::MAX_REQUEST` bytes).
    request: Vec<u8>,
    /// How much of `request` was searched for the head's end.
    scanned: usize,
    head_done: bool,
    /// The service asked for this many bytes before it is asked again.
    wait_for: usize,
    /// The client closed its side.
    eof: bool,
    answered: bool,
    /// The answer (plain connections) and how much of it went.
    out: Vec<u8>,
    sent: usize,
    /// Answered and shut down for writing: reading what is left.
    draining: bool,
}

enum Phase {
    Open,
    Done,
}

impl Conn {
    pub(super) fn new(
        stream: TcpStream,
        tls: Option<Box<ServerConnection>>,
        deadline: Instant,
    ) -> Conn {
        Conn {
            stream,
            tls,
            deadline,
            request: Vec::new(),
            scanned: 0,
            head_done: false,
            wait_for: 0,
            eof: false,
            answered: false,
            out: Vec::new(),
            sent: 0,
            draining: false,
        }
    }

    pub(super) fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// What the poll waits for.
    pub(super) fn interest(&self) -> i16 {
        // At EOF the socket stays readable: only a write is waited for.
        match &self.tls {
            _ if self.draining => libc::POLLIN,
            Some(tls) if tls.wants_write() && self.eof => libc::POLLOUT,
            Some(tls) if tls.wants_write() => libc::POLLIN | libc::POLLOUT,
            Some(_) => libc::POLLIN,
            None if self.answered => libc::POLLOUT,
            None => libc::POLLIN,
        }
    }

    /// Move what the socket allows; false once the connection is done.
    pub(super) fn step<S: Service>(&mut self, service: &S) -> bool {
        let phase = if self.draining {
            self.drain()
        } else if self.tls.is_some() {
            self.step_tls(service)
        } else {
            self.step_plain(service)
        };
        matches!(phase, Ok(Phase::Open))
    }

    fn step_plain<S: Service>(&mut self, service: &S) -> io::Result<Phase> {
        if !self.answered {
            let mut buf = [0u8; 2048];
            while !self.eof {
                match self.stream.read(&mut buf) {
                    Ok(0) => self.eof = true,
                    Ok(n) => self.keep::<S>(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            match self.ask(service) {
                Some(out) => (self.out, self.answered) = (out, true),
                None if self.eof => return Ok(Phase::Done),
                None => return Ok(Phase::Open),
            }
        }
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Phase::Open),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.finish()
    }

    /// The answer is out: close, or if the client may still be sending,
    /// shut down writing and drain (closing with unread bytes would reset
    /// the connection, and the client could lose the answer).
    fn finish(&mut self) -> io::Result<Phase> {
        if self.eof {
            return Ok(Phase::Done);
        }
        self.stream.shutdown(Shutdown::Write)?;
        self.draining = true;
        self.drain()
    }

    /// Read and drop what the client still sends, until it closes.
    fn drain(&mut self) -> io::Result<Phase> {
        let mut buf = [0u8; 2048];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(Phase::Done),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Phase::Open),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Keep what fits of `bytes` in the request.
    fn keep<S: Service>(&mut self, bytes: &[u8]) {
        let room = S::MAX_REQUEST.saturating_sub(self.request.len());
        self.request
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// The answer, if the service is to be asked now and has one.
    fn ask<S: Service>(&mut self, service: &S) -> Option<Vec<u8>> {
        if !self.head_done {
            // The head ends at an empty line, CRLF or bare LF (httparse
            // takes both): "\n\n" or "\n\r\n".
            let from = self.scanned.saturating_sub(2);
            let new = &self.request[from..];
            let ended =
                new.windows(2).any(|w| w == b"\n\n") || new.windows(3).any(|w| w == b"\n\r\n");
            self.scanned = self.request.len();
            let stuck = self.request.len() >= S::MAX_HEAD || self.eof;
            if !ended && !stuck {
                return None;
            }
            // Asked once for the head; from now on only for the body.
            self.head_done = true;
        } else if self.request.len() < self.wait_for && !self.eof {
            return None;
        }
        match service.answer(&self.request) {
            Answer::Done(out) => Some(out),
            // More than the bound, or no more than there is: a service
            // that asks for that has answered already; close.
            Answer::Wait(n) if n > S::MAX_REQUEST || n <= self.request.len() => {
                self.eof = true;
                None
            }
            Answer::Wait(n) => {
                self.wait_for = n;
                None
            }
        }
    }

    /// `step` over TLS: ciphertext in, the request's plaintext kept, the
    /// answer handed to rustls with a close_notify, ciphertext out.
    fn step_tls<S: Service>(&mut self, service: &S) -> io::Result<Phase> {
        let Some(mut tls) = self.tls.take() else {
            return Ok(Phase::Done);
        };
        let phase = self.tls_io(&mut tls, service);
        self.tls = Some(tls);
        phase
    }

    fn tls_io<S: Service>(&mut self, tls: &mut ServerConnection, service: &S) -> io::Result<Phase> {
        while !self.eof {
            match tls.read_tls(&mut self.stream) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = tls.process_new_packets() {
                let _ = tls.write_tls(&mut self.stream); // the alert, if it goes
                return Err(io::Error::other(e));
            }
            let mut buf = [0u8; 2048];
            loop {
                match tls.reader().read(&mut buf) {
                    Ok(n) if n > 0 => self.keep::<S>(&buf[..n]),
                    // close_notify (0), or a FIN without one: answer what
                    // came.
                    Ok(_) => {
                        self.eof = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        self.eof = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        if !self.answered && !tls.is_handshaking() {
            match self.ask(service) {
                Some(out) => {
                    tls.writer().write_all(&out)?;
                    tls.send_close_notify();
                    self.answered = true;
                }
                None if self.eof => return Ok(Phase::Done),
                None => {}
            }
        }
        while tls.wants_write() {
            match tls.write_tls(&mut self.stream) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Phase::Open),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        match (self.answered, self.eof) {
            (true, _) => self.finish(),
            (false, true) => Ok(Phase::Done),
            (false, false) => Ok(Phase::Open),
        }
    }
}
