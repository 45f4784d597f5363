//! The portable UDP worker: `poll` + `recvmmsg` + `sendmmsg` on plain
//! sockets, no io_uring.
//!
//! It exists for two reasons: kernels or containers without io_uring
//! (`udp.backend = "mmsg"`), and as the baseline the io_uring driver is
//! measured against (`make bench` runs both). It shares everything but the
//! system calls with the io_uring worker: the same sockets, the same engine
//! (`Engine::handle_udp_batch`), the same counters.
//!
//! Per wake-up it drains each readable socket in batches: one `recvmmsg`
//! for up to `BATCH` datagrams, handed to the engine as one batch (each
//! answered into its own reply slot), then one `sendmmsg` for the replies.
#![allow(unsafe_code)] // the kernel interface; each block says why it holds

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::WorkerSetup;
use super::msg::{
    CONTROL_LEN, Control, NAME_LEN, Name, ReplySlot, parse_local_addr, parse_sockaddr,
};
use crate::engine::Engine;
use crate::engine::batch::UdpBatch;
use crate::stats::{Counter, WorkerStats};

/// Datagrams per recvmmsg and replies per sendmmsg.
const BATCH: usize = 64;
/// Largest datagram read, more than the engine takes (`MAX_REQUEST_LEN`);
/// longer ones are cut (MSG_TRUNC) and dropped as oversized.
const RECV_LEN: usize = 2048;
/// One receive buffer with its header, name and control space.
#[repr(C)]
struct RecvSlot {
    iov: libc::iovec,
    name: Name,
    control: Control,
    buf: [u8; RECV_LEN],
}

struct Worker {
    recv: Box<[RecvSlot]>,
    recv_hdrs: Box<[libc::mmsghdr]>,
    replies: Box<[ReplySlot]>,
    send_hdrs: Box<[libc::mmsghdr]>,
    engine: Engine,
}

/// Run a worker until `stop` is set. `ready` is told whether set-up worked.
pub fn run(setup: WorkerSetup, ready: std::sync::mpsc::Sender<io::Result<()>>) {
    for s in &setup.sockets {
        if let Err(e) = s.set_nonblocking(true) {
            let _ = ready.send(Err(e));
            return;
        }
    }
    let mut w = Worker {
        recv: (0..BATCH)
            .map(|_| RecvSlot {
                // SAFETY: all-zero is a valid iovec (null, 0).
                iov: unsafe { std::mem::zeroed() },
                name: Name([0; NAME_LEN]),
                control: Control([0; CONTROL_LEN]),
                buf: [0; RECV_LEN],
            })
            .collect(),
        // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths).
        recv_hdrs: (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect(),
        replies: (0..BATCH).map(|_| ReplySlot::new()).collect(),
        // SAFETY: as above.
        send_hdrs: (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect(),
        engine: Engine::new(setup.engine, Instant::now()),
    };
    for r in w.replies.iter_mut() {
        r.link();
    }
    let _ = ready.send(Ok(()));
    let mut pollfds: Vec<libc::pollfd> = setup
        .sockets
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !setup.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = w
            .engine
            .poll_timeout()
            .map_or(crate::engine::TICK, |t| t.saturating_duration_since(now))
            .min(crate::engine::TICK);
        // SAFETY: `pollfds` is a valid array of its length.
        let n = unsafe {
            libc::poll(
                pollfds.as_mut_ptr(),
                pollfds.len() as libc::nfds_t,
                wait.as_millis() as i32,
            )
        };
        if n > 0 {
            for p in &pollfds {
                if p.revents & libc::POLLIN != 0 {
                    w.drain(p.fd);
                }
            }
        }
        w.engine.handle_timeout(Instant::now());
    }
}

/// Wait up to 100 ms for room in `fd`'s send buffer.
fn wait_writable(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, 100) > 0 }
}

impl Worker {
    fn stats(&self) -> &WorkerStats {
        self.engine.stats()
    }

    /// Answer everything queued on `fd`, a batch at a time.
    fn drain(&mut self, fd: i32) {
        loop {
            for (slot, hdr) in self.recv.iter_mut().zip(self.recv_hdrs.iter_mut()) {
                slot.iov.iov_base = slot.buf.as_mut_ptr().cast();
                slot.iov.iov_len = RECV_LEN;
                let m = &mut hdr.msg_hdr;
                m.msg_name = slot.name.0.as_mut_ptr().cast();
                m.msg_namelen = NAME_LEN as libc::socklen_t;
                m.msg_iov = &mut slot.iov;
                m.msg_iovlen = 1;
                m.msg_control = slot.control.0.as_mut_ptr().cast();
                m.msg_controllen = CONTROL_LEN;
                m.msg_flags = 0;
            }
            // SAFETY: every header points at live buffers of this worker.
            let got = unsafe {
                libc::recvmmsg(
                    fd,
                    self.recv_hdrs.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if got <= 0 {
                let e = io::Error::last_os_error();
                if got < 0 && e.kind() != io::ErrorKind::WouldBlock {
                    self.stats().add(Counter::RecvError, 1);
                }
                return;
            }
            let got = got as usize;
            let replies = self.answer(got);
            self.send(fd, replies);
            if got < BATCH {
                return;
            }
        }
    }

    /// Hand the `got` datagrams just received to the engine as one batch;
    /// returns how many replies are queued in `send_hdrs`.
    fn answer(&mut self, got: usize) -> usize {
        let stats = self.engine.stats();
        let mut batch = MmsgBatch {
            order: [0; BATCH],
            len: 0,
            sources: [None; BATCH],
            recv: &self.recv,
            recv_hdrs: &self.recv_hdrs,
            replies: &mut self.replies,
            send_hdrs: &mut self.send_hdrs,
            queued: 0,
        };
        for i in 0..got {
            let hdr = &self.recv_hdrs[i];
            stats.add(Counter::Received, 1);
            stats.add(Counter::BytesIn, u64::from(hdr.msg_len));
            if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                stats.add(Counter::DropOversized, 1);
                continue;
            }
            let Some(src) = parse_sockaddr(name_of(&self.recv[i], hdr)) else {
                stats.add(Counter::DropNoAddress, 1);
                continue;
            };
            batch.order[batch.len] = i as u8;
            batch.sources[batch.len] = Some(src);
            batch.len += 1;
        }
        self.engine.handle_udp_batch(Instant::now(), &mut batch);
        batch.queued
    }

    /// Send the first `count` queued replies.
    fn send(&mut self, fd: i32, count: usize) {
        let mut sent = 0;
        while sent < count {
            // SAFETY: headers `sent..count` point into live reply slots.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.send_hdrs[sent..].as_mut_ptr(),
                    (count - sent) as u32,
                    0,
                )
            };
            if n <= 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock && wait_writable(fd) {
                    // The socket's send buffer is full (on loopback it holds
                    // replies until the client reads them): wait for room,
                    // as the io_uring backend does, rather than drop.
                    continue;
                }
                // An error for this reply (or no room for a long time):
                // count it and go on with the rest.
                self.stats().add(Counter::SendFailed, 1);
                sent += 1;
                continue;
            }
            for h in &self.send_hdrs[sent..sent + n as usize] {
                self.stats().add(Counter::BytesOut, u64::from(h.msg_len));
            }
            self.stats().add(Counter::Sent, n as u64);
            sent += n as usize;
        }
    }
}

/// The raw source address of a received datagram.
fn name_of<'a>(slot: &'a RecvSlot, hdr: &libc::mmsghdr) -> &'a [u8] {
    &slot.name.0[..(hdr.msg_hdr.msg_namelen as usize).min(NAME_LEN)]
}

/// One recvmmsg's datagrams as the engine sees them: datagram `i` of the
/// batch is received slot `order[i]`, and its reply goes into the reply
/// slot of the same index.
struct MmsgBatch<'a> {
    order: [u8; BATCH],
    len: usize,
    sources: [Option<SocketAddr>; BATCH],
    recv: &'a [RecvSlot],
    recv_hdrs: &'a [libc::mmsghdr],
    replies: &'a mut [ReplySlot],
    send_hdrs: &'a mut [libc::mmsghdr],
    /// Replies queued in `send_hdrs[..queued]`.
    queued: usize,
}

impl UdpBatch for MmsgBatch<'_> {
    fn len(&self) -> usize {
        self.len
    }

    fn payload(&self, i: usize) -> &[u8] {
        let r = usize::from(self.order[i]);
        let len = self.recv_hdrs[r].msg_len as usize;
        &self.recv[r].buf[..len.min(RECV_LEN)]
    }

    fn exchange(&mut self, i: usize) -> (&[u8], SocketAddr, &mut [u8]) {
        let r = usize::from(self.order[i]);
        let len = self.recv_hdrs[r].msg_len as usize;
        let src = self.sources[i].expect("collected with its source");
        (
            &self.recv[r].buf[..len.min(RECV_LEN)],
            src,
            &mut self.replies[r].buf,
        )
    }

    fn complete(&mut self, i: usize, reply: Option<usize>) {
        let Some(len) = reply else {
            return;
        };
        let r = usize::from(self.order[i]);
        let hdr = &self.recv_hdrs[r];
        let slot = &self.recv[r];
        let control = &slot.control.0[..hdr.msg_hdr.msg_controllen.min(CONTROL_LEN)];
        let reply = &mut self.replies[r];
        reply.address(name_of(slot, hdr), parse_local_addr(control), len);
        self.send_hdrs[self.queued].msg_hdr = reply.msg;
        self.queued += 1;
    }
}
