//! The portable UDP worker: `poll` + `recvmmsg` + `sendmmsg` on plain
//! sockets, no io_uring.
//!
//! It exists for two reasons: kernels or containers without io_uring
//! (`udp.backend = "mmsg"`), and as the baseline the io_uring driver is
//! measured against (`make bench` runs both). It shares everything but the
//! system calls with the io_uring worker: the same sockets, the same
//! `handle_datagram`, the same counters.
//!
//! Per wake-up it drains each readable socket in batches: one `recvmmsg`
//! for up to `BATCH` datagrams, each answered into its own reply slot, then
//! one `sendmmsg` for the replies.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::WorkerSetup;
use super::msg::{
    CONTROL_LEN, Control, NAME_LEN, Name, ReplySlot, parse_local_addr, parse_sockaddr,
};
use super::ring::contain;
use crate::stats::{Counter, WorkerStats};
use crate::tracker::Tracker;
use crate::tracker::udp::{UdpOutcome, handle_datagram};

/// Datagrams per recvmmsg and replies per sendmmsg.
const BATCH: usize = 64;
/// Largest datagram read; longer ones are cut (MSG_TRUNC) and dropped.
const RECV_LEN: usize = 2048;
const TICK: Duration = Duration::from_millis(250);

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
    tracker: Arc<Tracker>,
    stats: Arc<[WorkerStats]>,
    index: usize,
    rng: SmallRng,
    started: Instant,
}

/// Run a worker until `stop` is set. `ready` is told whether set-up worked.
pub fn run(setup: WorkerSetup, ready: std::sync::mpsc::Sender<io::Result<()>>) {
    for s in &setup.sockets {
        if let Err(e) = s.set_nonblocking(true) {
            let _ = ready.send(Err(e));
            return;
        }
    }
    let mut seed = [0u8; 32];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut seed);
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
        tracker: setup.tracker.clone(),
        stats: setup.stats.clone(),
        index: setup.index,
        rng: SmallRng::from_seed(seed),
        started: setup.started,
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
    let mut next_tick = Instant::now() + TICK;
    while !setup.stop.load(Ordering::Relaxed) {
        let wait = next_tick.saturating_duration_since(Instant::now());
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
        if Instant::now() >= next_tick {
            next_tick += TICK;
            let now = w.now();
            let dropped = w.tracker.sweep(setup.sweep_per_tick, now);
            w.stats().add(Counter::SweptPeers, dropped as u64);
        }
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
        &self.stats[self.index]
    }

    fn now(&self) -> u32 {
        self.started.elapsed().as_secs() as u32
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
            let now = self.now();
            let mut replies = 0;
            for i in 0..got {
                replies += self.answer(i, replies, now);
            }
            self.send(fd, replies);
            if got < BATCH {
                return;
            }
        }
    }

    /// Handle received datagram `i`, writing its reply (if any) into reply
    /// slot `next`. Returns 1 if a reply was queued.
    fn answer(&mut self, i: usize, next: usize, now: u32) -> usize {
        let stats = &self.stats[self.index];
        let hdr = &self.recv_hdrs[i];
        let slot = &self.recv[i];
        let len = hdr.msg_len as usize;
        stats.add(Counter::Received, 1);
        stats.add(Counter::BytesIn, len as u64);
        if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            stats.add(Counter::DropOversized, 1);
            return 0;
        }
        let name = &slot.name.0[..(hdr.msg_hdr.msg_namelen as usize).min(NAME_LEN)];
        let control = &slot.control.0[..hdr.msg_hdr.msg_controllen.min(CONTROL_LEN)];
        let Some(src) = parse_sockaddr(name) else {
            stats.add(Counter::DropNoAddress, 1);
            return 0;
        };
        let reply = &mut self.replies[next];
        let (tracker, rng) = (&self.tracker, &mut self.rng);
        let payload = &slot.buf[..len.min(RECV_LEN)];
        let Some(outcome) = contain(stats, || {
            handle_datagram(tracker, payload, src, now, rng, &mut reply.buf)
        }) else {
            return 0;
        };
        match outcome {
            UdpOutcome::Reply { len, kind } => {
                stats.count_reply(kind);
                reply.address(name, parse_local_addr(control), len);
                self.send_hdrs[next].msg_hdr = reply.msg;
                1
            }
            UdpOutcome::Drop(why) => {
                stats.count_drop(why);
                0
            }
        }
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
                self.stats[self.index].add(Counter::BytesOut, u64::from(h.msg_len));
            }
            self.stats().add(Counter::Sent, n as u64);
            sent += n as usize;
        }
    }
}
