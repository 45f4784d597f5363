//! The UDP worker: one thread, one io_uring, one SO_REUSEPORT socket per
//! listening address, all registered with the ring.
//!
//! - Receiving: one multishot RecvMsg per socket over a shared provided-
//!   buffer ring. Each completion carries one datagram with its source
//!   address and its IP_PKTINFO / IPV6_PKTINFO (the local address it came
//!   to). When a multishot ends (ENOBUFS when every buffer was in use, or
//!   any error) it is counted and armed again once the batch is answered.
//! - Answering: every datagram of one wake-up's completions is collected
//!   with a free send slot (a preallocated buffer with its own msghdr,
//!   iovec, address and control message, which stay put until the send
//!   completes) and the whole batch goes to the engine
//!   (`Engine::handle_udp_batch`), which writes each reply straight into
//!   its slot. Replies are queued as Send/SendMsg entries and go to the
//!   kernel in one `io_uring_enter` with the wait for the next completions;
//!   the receive buffers go back to the ring after the batch. Nothing is
//!   allocated per packet.
//! - Timing: a timeout entry wakes the loop when the engine's next timer is
//!   due (the expiry sweep), and at least every 250 ms to notice shutdown.
#![allow(unsafe_code)] // the kernel interface; each block says why it holds

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use io_uring::types::{Fixed, RecvMsgOut, Timespec};
use io_uring::{IoUring, SubmissionQueue, Submitter, cqueue, opcode};
use socket2::Socket;

use super::WorkerSetup;
use super::buf_ring::BufRing;
use super::msg::{CONTROL_LEN, LocalAddr, NAME_LEN, ReplySlot, parse_local_addr, parse_sockaddr};
use super::ring::{push, push_cancel_all, push_wakeup, serve_or_drain, submit_and_wait};
use crate::engine::Engine;
use crate::engine::batch::UdpBatch;
use crate::stats::{Counter, WorkerStats};

/// Bytes per receive buffer: the io_uring_recvmsg_out header, the source
/// address, the control message and a payload of up to 1940 bytes, more
/// than the engine takes (`MAX_REQUEST_LEN`; a longer datagram is dropped
/// and counted as oversized, here if it was truncated, else there).
const RECV_BUF_LEN: usize = 2048;

const TAG_RECV: u64 = 1 << 32;
const TAG_SEND: u64 = 2 << 32;
const TAG_TICK: u64 = 3 << 32;
const TAG_CANCEL: u64 = 4 << 32;
const TAG_MASK: u64 = 0xffff_ffff << 32;

/// A received datagram waiting for the batch to be answered: where it is
/// and the send slot set aside for its reply.
#[derive(Clone, Copy)]
struct Pending {
    socket: u32,
    bid: u16,
    slot: u32,
    src: SocketAddr,
    /// The local address it came to (wildcard sockets only).
    local: Option<LocalAddr>,
    /// Where the payload and the raw source address are in the buffer.
    payload: Range,
    name: Range,
}

#[derive(Clone, Copy)]
struct Range {
    start: u16,
    len: u16,
}

impl Range {
    /// `part`'s place in `whole` (a subslice of it).
    fn within(whole: &[u8], part: &[u8]) -> Range {
        Range {
            start: (part.as_ptr() as usize - whole.as_ptr() as usize) as u16,
            len: part.len() as u16,
        }
    }

    fn of<'a>(&self, whole: &'a [u8]) -> &'a [u8] {
        &whole[usize::from(self.start)..][..usize::from(self.len)]
    }
}

/// Everything the loop owns besides the ring. Field order is drop order:
/// the ring (in `run`) is dropped before any of this memory.
struct Worker {
    bufs: BufRing,
    slots: Box<[ReplySlot]>,
    free_slots: Vec<u32>,
    /// One msghdr per socket: the multishot receive reads its name and
    /// control lengths for every datagram, so it must stay put.
    recv_msgs: Box<[libc::msghdr]>,
    sockets: Vec<Socket>,
    /// The datagrams of the current wake-up (at most one per buffer).
    pending: Vec<Pending>,
    /// Sockets whose multishot receive ended in this wake-up.
    rearm: Vec<bool>,
    engine: Engine,
    /// The tick's timeout, read by the kernel when the entry is submitted.
    tick: Timespec,
    /// Operations the kernel still holds (receives, sends, the tick).
    inflight: usize,
    /// Tests only: fail once every receive is armed (`WorkerSetup`).
    forced_failure: bool,
}

/// Check once, before any worker starts, that io_uring can be used here.
pub fn probe() -> io::Result<()> {
    IoUring::new(8).map(drop)
}

/// Run a worker until `stop` is set. `ready` is told whether set-up worked.
pub fn run(setup: WorkerSetup, ready: std::sync::mpsc::Sender<io::Result<()>>) {
    let (stop, name) = (setup.stop.clone(), format!("udp worker {}", setup.index));
    match Ring::new(setup) {
        Ok(mut ring) => {
            let _ = ready.send(Ok(()));
            if !serve_or_drain(&name, &stop, |stop| ring.serve(stop)) {
                std::mem::forget(ring);
            }
        }
        Err(e) => {
            let _ = ready.send(Err(e));
        }
    }
}

/// The ring and the worker state; `ring` is declared first so it is dropped
/// (and the kernel lets go of our memory) before the buffers are freed.
struct Ring {
    ring: IoUring,
    worker: Worker,
}

impl Ring {
    fn new(setup: WorkerSetup) -> io::Result<Ring> {
        let sq_entries = (setup.send_slots + setup.sockets.len() + 4).next_power_of_two() as u32;
        let cq_entries = (sq_entries + u32::from(setup.recv_buffers)).next_power_of_two() * 2;
        let ring = super::ring::build(sq_entries, Some(cq_entries))?;
        let fds: Vec<i32> = setup.sockets.iter().map(|s| s.as_raw_fd()).collect();
        ring.submitter().register_files(&fds)?;
        let bufs = BufRing::register(&ring.submitter(), setup.recv_buffers, RECV_BUF_LEN, 0)?;

        let mut slots: Box<[ReplySlot]> = (0..setup.send_slots).map(|_| ReplySlot::new()).collect();
        for s in slots.iter_mut() {
            s.link();
        }
        let recv_msgs = setup
            .sockets
            .iter()
            .map(|_| {
                // SAFETY: all-zero is a valid msghdr; only the two lengths
                // matter to a multishot receive.
                let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
                m.msg_namelen = NAME_LEN as libc::socklen_t;
                m.msg_controllen = CONTROL_LEN;
                m
            })
            .collect();
        Ok(Ring {
            ring,
            worker: Worker {
                bufs,
                free_slots: (0..setup.send_slots as u32).rev().collect(),
                slots,
                recv_msgs,
                pending: Vec::with_capacity(usize::from(setup.recv_buffers)),
                rearm: vec![false; setup.sockets.len()],
                sockets: setup.sockets,
                engine: Engine::new(setup.engine, Instant::now()),
                tick: Timespec::new(),
                inflight: 0,
                forced_failure: setup.forced_failure,
            },
        })
    }

    fn serve(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let w = &mut self.worker;
        let (submitter, mut sq, mut cq) = self.ring.split();
        for i in 0..w.sockets.len() {
            w.arm_recv(i, &mut sq, &submitter);
        }
        w.arm_tick(Instant::now(), &mut sq, &submitter);
        sq.sync();
        if std::mem::take(&mut w.forced_failure) {
            submitter.submit()?;
            return Err(io::Error::other("failure forced with operations in flight"));
        }
        let mut stopping = false;
        loop {
            sq.sync();
            // Submit every queued reply and sleep until the next completion.
            // (Waiting for a batch with a timeout, or with IORING_ENTER's
            // min_wait, cost more CPU per reply: docs/PERFORMANCE.md.)
            submit_and_wait(&submitter, w.engine.stats())?;
            cq.sync();
            let now = Instant::now();
            for cqe in &mut cq {
                let (tag, idx) = (
                    cqe.user_data() & TAG_MASK,
                    (cqe.user_data() & 0xffff_ffff) as usize,
                );
                match tag {
                    TAG_RECV => w.on_recv(idx, cqe.result(), cqe.flags()),
                    TAG_SEND => w.on_send(idx, cqe.result()),
                    TAG_TICK => {
                        w.inflight -= 1;
                        if stop.load(Ordering::Relaxed) {
                            if !stopping {
                                stopping = true;
                                push_cancel_all(&mut sq, &submitter, TAG_CANCEL);
                            }
                        } else {
                            w.engine.handle_timeout(now);
                            w.arm_tick(now, &mut sq, &submitter);
                        }
                    }
                    _ => {}
                }
            }
            cq.sync();
            w.answer_pending(now, &mut sq, &submitter);
            w.bufs.publish();
            if !stopping {
                w.rearm_ended(&mut sq, &submitter);
            }
            if stopping && w.inflight == 0 {
                // Hand the sockets back now: a ring lets go of registered
                // files only in its asynchronous teardown, after the process
                // may have exited, and a tracker restarted at once would
                // find its port still taken. The buffer group goes too:
                // nothing is in flight to take from it.
                submitter.unregister_buf_ring(w.bufs.group())?;
                submitter.unregister_files()?;
                return Ok(());
            }
        }
    }
}

impl Worker {
    fn stats(&self) -> &WorkerStats {
        self.engine.stats()
    }

    fn arm_recv(&mut self, socket: usize, sq: &mut SubmissionQueue<'_>, submitter: &Submitter<'_>) {
        let entry = opcode::RecvMsgMulti::new(
            Fixed(socket as u32),
            &self.recv_msgs[socket],
            self.bufs.group(),
        )
        .build()
        .user_data(TAG_RECV | socket as u64);
        // SAFETY: the msghdr lives in `recv_msgs` (a boxed slice, never moved)
        // and the buffers in `bufs`, both owned by this worker and dropped
        // only after the ring.
        unsafe { push(sq, submitter, &entry) };
        self.inflight += 1;
    }

    /// Arm the wake-up for the engine's next timer (at most `TICK` away).
    fn arm_tick(&mut self, now: Instant, sq: &mut SubmissionQueue<'_>, submitter: &Submitter<'_>) {
        push_wakeup(sq, submitter, &self.engine, now, &mut self.tick, TAG_TICK);
        self.inflight += 1;
    }

    /// Re-arm every multishot receive that ended in this wake-up, now that
    /// the batch's buffers are back in the ring.
    fn rearm_ended(&mut self, sq: &mut SubmissionQueue<'_>, submitter: &Submitter<'_>) {
        for socket in 0..self.rearm.len() {
            if std::mem::take(&mut self.rearm[socket]) {
                self.stats().add(Counter::RecvRearm, 1);
                self.arm_recv(socket, sq, submitter);
            }
        }
    }

    fn on_send(&mut self, slot: usize, result: i32) {
        self.inflight -= 1;
        self.free_slots.push(slot as u32);
        if result < 0 {
            self.stats().add(Counter::SendFailed, 1);
        } else {
            self.stats().add(Counter::Sent, 1);
            self.stats().add(Counter::BytesOut, result as u64);
        }
    }

    fn on_recv(&mut self, socket: usize, result: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.inflight -= 1;
            self.rearm[socket] = true;
        }
        if result >= 0 {
            match cqueue::buffer_select(flags) {
                Some(bid) => {
                    self.bufs.taken(bid);
                    self.collect(socket, bid, result as u32);
                }
                None => self.stats().add(Counter::RecvError, 1),
            }
        } else if result == -libc::ENOBUFS {
            self.stats().add(Counter::RecvEnobufs, 1);
        } else if result != -libc::ECANCELED {
            self.stats().add(Counter::RecvError, 1);
        }
    }

    /// Keep the datagram in buffer `bid` for this wake-up's batch, with a
    /// send slot for its reply; or count why it is dropped at once.
    fn collect(&mut self, socket: usize, bid: u16, len: u32) {
        let stats = self.engine.stats();
        let buf = self.bufs.buffer(bid, len as usize);
        let drop = match RecvMsgOut::parse(buf, &self.recv_msgs[socket]) {
            Err(()) => Some(Counter::RecvError),
            Ok(msg) => {
                stats.add(Counter::Received, 1);
                stats.add(Counter::BytesIn, u64::from(msg.incoming_payload_len()));
                if msg.is_payload_truncated() {
                    Some(Counter::DropOversized)
                } else {
                    match (parse_sockaddr(msg.name_data()), self.free_slots.pop()) {
                        (None, _) => Some(Counter::DropNoAddress),
                        (Some(_), None) => Some(Counter::DropNoSendSlot),
                        (Some(src), Some(slot)) => {
                            self.pending.push(Pending {
                                socket: socket as u32,
                                bid,
                                slot,
                                src,
                                local: parse_local_addr(msg.control_data()),
                                payload: Range::within(buf, msg.payload_data()),
                                name: Range::within(buf, msg.name_data()),
                            });
                            None
                        }
                    }
                }
            }
        };
        if let Some(counter) = drop {
            stats.add(counter, 1);
            self.bufs.recycle(bid);
        }
    }

    /// Answer the datagrams collected in this wake-up and give their
    /// receive buffers back.
    fn answer_pending<'q>(
        &mut self,
        now: Instant,
        sq: &mut SubmissionQueue<'q>,
        submitter: &Submitter<'q>,
    ) {
        if self.pending.is_empty() {
            return;
        }
        let mut batch = RingBatch {
            pending: &self.pending,
            bufs: &self.bufs,
            slots: &mut self.slots,
            free_slots: &mut self.free_slots,
            sq,
            submitter,
            queued: 0,
        };
        self.engine.handle_udp_batch(now, &mut batch);
        self.inflight += batch.queued;
        for p in self.pending.drain(..) {
            self.bufs.recycle(p.bid);
        }
    }
}

/// One wake-up's datagrams as the engine sees them: payloads in the
/// provided buffers, replies in the send slots set aside for them.
struct RingBatch<'a, 'q> {
    pending: &'a [Pending],
    bufs: &'a BufRing,
    slots: &'a mut [ReplySlot],
    free_slots: &'a mut Vec<u32>,
    sq: &'a mut SubmissionQueue<'q>,
    submitter: &'a Submitter<'q>,
    /// Sends queued (operations now in the kernel's hands).
    queued: usize,
}

impl UdpBatch for RingBatch<'_, '_> {
    fn len(&self) -> usize {
        self.pending.len()
    }

    fn payload(&self, i: usize) -> &[u8] {
        let p = &self.pending[i];
        p.payload.of(self.bufs.buffer(p.bid, RECV_BUF_LEN))
    }

    fn exchange(&mut self, i: usize) -> (&[u8], SocketAddr, &mut [u8]) {
        let p = &self.pending[i];
        let payload = p.payload.of(self.bufs.buffer(p.bid, RECV_BUF_LEN));
        (payload, p.src, &mut self.slots[p.slot as usize].buf)
    }

    fn complete(&mut self, i: usize, reply: Option<usize>) {
        let p = self.pending[i];
        let Some(len) = reply else {
            self.free_slots.push(p.slot);
            return;
        };
        let name = p.name.of(self.bufs.buffer(p.bid, RECV_BUF_LEN));
        let slot = &mut self.slots[p.slot as usize];
        slot.address(name, p.local, len);
        let socket = Fixed(p.socket);
        let entry = if p.local.is_some() {
            // A wildcard socket: the control message picks the source
            // address, so this needs the full sendmsg.
            opcode::SendMsg::new(socket, &slot.msg).build()
        } else {
            // Bound to one address: a plain send with a destination skips
            // copying and checking a msghdr per packet.
            opcode::Send::new(socket, slot.buf.as_ptr(), len as u32)
                .dest_addr(slot.name.0.as_ptr().cast())
                .dest_addr_len(slot.msg.msg_namelen)
                .build()
        }
        .user_data(TAG_SEND | u64::from(p.slot));
        // SAFETY: the slot (msghdr, iovec, name, control, buffer) that
        // either entry points into is not touched again until this send
        // completes: it is off the free list until `on_send`. Slots outlive
        // the ring.
        unsafe { push(self.sq, self.submitter, &entry) };
        self.queued += 1;
    }
}
