//! The UDP worker: one thread, one io_uring, one SO_REUSEPORT socket per
//! listening address, all registered with the ring.
//!
//! - Receiving: one multishot RecvMsg per socket over a shared provided-
//!   buffer ring. Each completion carries one datagram with its source
//!   address and its IP_PKTINFO / IPV6_PKTINFO (the local address it came
//!   to). The buffer goes back to the ring as soon as the datagram is
//!   answered. When a multishot ends (ENOBUFS when every buffer was in use,
//!   or any error) it is counted and armed again.
//! - Answering: `tracker::udp::handle_datagram` writes the reply straight
//!   into a free send slot: a preallocated buffer with its own msghdr,
//!   iovec, address and control message, which stay put until the send
//!   completes. Replies are queued as SendMsg entries and go to the kernel
//!   in one `io_uring_enter` with the wait for the next completions. Nothing
//!   is allocated per packet.
//! - Timing: a 250 ms timeout entry wakes the loop to sweep a few shards of
//!   the swarm table and to notice shutdown.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use io_uring::types::{Fixed, RecvMsgOut};
use io_uring::{IoUring, SubmissionQueue, Submitter, cqueue, opcode};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use socket2::Socket;

use super::WorkerSetup;
use super::buf_ring::BufRing;
use super::msg::{CONTROL_LEN, NAME_LEN, ReplySlot, parse_local_addr, parse_sockaddr};
use super::ring::{contain, push, push_cancel_all, push_tick, submit_and_wait};
use crate::stats::{Counter, WorkerStats};
use crate::tracker::Tracker;
use crate::tracker::udp::{UdpOutcome, handle_datagram};

/// Bytes per receive buffer: the io_uring_recvmsg_out header, the source
/// address, the control message and a payload of up to ~1.9 KB (a 74-hash
/// scrape is 1496 bytes; anything longer than the payload room is dropped
/// and counted as oversized).
const RECV_BUF_LEN: usize = 2048;

const TAG_RECV: u64 = 1 << 32;
const TAG_SEND: u64 = 2 << 32;
const TAG_TICK: u64 = 3 << 32;
const TAG_CANCEL: u64 = 4 << 32;
const TAG_MASK: u64 = 0xffff_ffff << 32;

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
    tracker: Arc<Tracker>,
    stats: Arc<[WorkerStats]>,
    index: usize,
    rng: SmallRng,
    started: Instant,
    sweep_per_tick: usize,
    /// Operations the kernel still holds (receives, sends, the tick).
    inflight: usize,
}

/// Check once, before any worker starts, that io_uring can be used here.
pub fn probe() -> io::Result<()> {
    IoUring::new(8).map(drop)
}

/// Run a worker until `stop` is set. `ready` is told whether set-up worked.
pub fn run(setup: WorkerSetup, ready: std::sync::mpsc::Sender<io::Result<()>>) {
    let stop = setup.stop.clone();
    match Ring::new(setup) {
        Ok(mut ring) => {
            let _ = ready.send(Ok(()));
            if let Err(e) = ring.serve(&stop) {
                tracing::error!("udp worker {} stopped: {e}", ring.worker.index);
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
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_coop_taskrun()
            .setup_cqsize(cq_entries)
            .build(sq_entries)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(cq_entries)
                    .build(sq_entries)
            })?;
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
        let mut seed = [0u8; 32];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut seed);
        Ok(Ring {
            ring,
            worker: Worker {
                bufs,
                free_slots: (0..setup.send_slots as u32).rev().collect(),
                slots,
                recv_msgs,
                sockets: setup.sockets,
                tracker: setup.tracker,
                stats: setup.stats,
                index: setup.index,
                rng: SmallRng::from_seed(seed),
                started: setup.started,
                sweep_per_tick: setup.sweep_per_tick,
                inflight: 0,
            },
        })
    }

    fn serve(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let w = &mut self.worker;
        let (submitter, mut sq, mut cq) = self.ring.split();
        for i in 0..w.sockets.len() {
            w.arm_recv(i, &mut sq, &submitter);
        }
        w.arm_tick(&mut sq, &submitter);
        let mut stopping = false;
        loop {
            sq.sync();
            // Submit every queued reply and sleep until the next completion.
            // (Waiting for a batch with a timeout, or with IORING_ENTER's
            // min_wait, cost more CPU per reply: docs/PERFORMANCE.md.)
            submit_and_wait(&submitter, w.stats())?;
            cq.sync();
            let now = w.now();
            for cqe in &mut cq {
                let (tag, idx) = (
                    cqe.user_data() & TAG_MASK,
                    (cqe.user_data() & 0xffff_ffff) as usize,
                );
                match tag {
                    TAG_RECV => w.on_recv(
                        idx,
                        cqe.result(),
                        cqe.flags(),
                        now,
                        &mut sq,
                        &submitter,
                        stopping,
                    ),
                    TAG_SEND => w.on_send(idx, cqe.result()),
                    TAG_TICK => {
                        w.inflight -= 1;
                        if stop.load(Ordering::Relaxed) {
                            if !stopping {
                                stopping = true;
                                push_cancel_all(&mut sq, &submitter, TAG_CANCEL);
                            }
                        } else {
                            w.on_tick(now);
                            w.arm_tick(&mut sq, &submitter);
                        }
                    }
                    _ => {}
                }
            }
            cq.sync();
            w.bufs.publish();
            if stopping && w.inflight == 0 {
                // Hand the sockets back now: a ring lets go of registered
                // files only in its asynchronous teardown, after the process
                // may have exited, and a tracker restarted at once would
                // find its port still taken.
                submitter.unregister_files()?;
                return Ok(());
            }
        }
    }
}

impl Worker {
    fn stats(&self) -> &WorkerStats {
        &self.stats[self.index]
    }

    fn now(&self) -> u32 {
        self.started.elapsed().as_secs() as u32
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

    fn arm_tick(&mut self, sq: &mut SubmissionQueue<'_>, submitter: &Submitter<'_>) {
        push_tick(sq, submitter, TAG_TICK);
        self.inflight += 1;
    }

    fn on_tick(&mut self, now: u32) {
        let dropped = self.tracker.sweep(self.sweep_per_tick, now);
        self.stats().add(Counter::SweptPeers, dropped as u64);
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

    #[allow(clippy::too_many_arguments)]
    fn on_recv(
        &mut self,
        socket: usize,
        result: i32,
        flags: u32,
        now: u32,
        sq: &mut SubmissionQueue<'_>,
        submitter: &Submitter<'_>,
        stopping: bool,
    ) {
        if !cqueue::more(flags) {
            self.inflight -= 1;
        }
        if result >= 0 {
            if let Some(bid) = cqueue::buffer_select(flags) {
                self.answer(socket, bid, result as usize, now, sq, submitter);
                self.bufs.recycle(bid);
            } else {
                self.stats().add(Counter::RecvError, 1);
            }
        } else if result == -libc::ENOBUFS {
            self.stats().add(Counter::RecvEnobufs, 1);
        } else if result != -libc::ECANCELED {
            self.stats().add(Counter::RecvError, 1);
        }
        if !cqueue::more(flags) && !stopping {
            self.stats().add(Counter::RecvRearm, 1);
            // Buffers recycled so far must be visible before the new receive
            // looks for one.
            self.bufs.publish();
            self.arm_recv(socket, sq, submitter);
        }
    }

    /// Handle the datagram in buffer `bid` and queue its reply, if any.
    fn answer(
        &mut self,
        socket: usize,
        bid: u16,
        len: usize,
        now: u32,
        sq: &mut SubmissionQueue<'_>,
        submitter: &Submitter<'_>,
    ) {
        let stats = &self.stats[self.index];
        let Ok(msg) = RecvMsgOut::parse(self.bufs.buffer(bid, len), &self.recv_msgs[socket]) else {
            stats.add(Counter::RecvError, 1);
            return;
        };
        stats.add(Counter::Received, 1);
        stats.add(Counter::BytesIn, u64::from(msg.incoming_payload_len()));
        if msg.is_payload_truncated() {
            stats.add(Counter::DropOversized, 1);
            return;
        }
        let Some(src) = parse_sockaddr(msg.name_data()) else {
            stats.add(Counter::DropNoAddress, 1);
            return;
        };
        let Some(slot_index) = self.free_slots.pop() else {
            stats.add(Counter::DropNoSendSlot, 1);
            return;
        };
        let slot = &mut self.slots[slot_index as usize];
        let (tracker, rng) = (&self.tracker, &mut self.rng);
        let Some(outcome) = contain(stats, || {
            handle_datagram(tracker, msg.payload_data(), src, now, rng, &mut slot.buf)
        }) else {
            self.free_slots.push(slot_index);
            return;
        };
        match outcome {
            UdpOutcome::Reply { len, kind } => {
                stats.count_reply(kind);
                let local = parse_local_addr(msg.control_data());
                slot.address(msg.name_data(), local, len);
                let entry = if local.is_some() {
                    // A wildcard socket: the control message picks the
                    // source address, so this needs the full sendmsg.
                    opcode::SendMsg::new(Fixed(socket as u32), &slot.msg).build()
                } else {
                    // Bound to one address: a plain send with a destination
                    // skips copying and checking a msghdr per packet.
                    opcode::Send::new(Fixed(socket as u32), slot.buf.as_ptr(), len as u32)
                        .dest_addr(slot.name.0.as_ptr().cast())
                        .dest_addr_len(slot.msg.msg_namelen)
                        .build()
                }
                .user_data(TAG_SEND | u64::from(slot_index));
                // SAFETY: the slot (msghdr, iovec, name, control, buffer)
                // that either entry points into is not touched again until
                // this send completes: it is off the
                // free list until `on_send`. Slots outlive the ring.
                unsafe { push(sq, submitter, &entry) };
                self.inflight += 1;
            }
            UdpOutcome::Drop(why) => {
                stats.count_drop(why);
                self.free_slots.push(slot_index);
            }
        }
    }
}
