//! The sending and receiving engine: one thread, one connected UDP socket
//! per source address, `sendmmsg` batches out, `epoll` + `recvmmsg` in.
//!
//! Every request has a slot (its transaction id names the slot and a
//! generation) holding its kind and its *intended* send time. In open loop
//! the intended time is the schedule (start + i / rate), not the moment the
//! generator got round to sending, so a stalled server's queueing delay is
//! counted (no coordinated omission). Requests older than the timeout are
//! lost; a reply that comes later is counted as late, not as on time.
//!
//! Three numbers, so that an overload run reads right: *on time* (replies
//! within the timeout to requests scheduled in the measured window, the
//! latency histogram's population), *goodput* (every valid reply that
//! arrived during the measured window, late or not: what the server
//! delivered) and *lost* (requests with no reply within the timeout; those
//! answered later are also counted in `late`).

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::SmallRng;

use crate::workload::{self, Kind, ReplyCheck, Workload};

/// Connection ids are used for at most this long (BEP 15: one minute).
const CID_LIFETIME: Duration = Duration::from_secs(55);
const REQUEST_BUF: usize = 16 + 20 * 74;
const REPLY_BUF: usize = 2048;

#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Keep `inflight` requests outstanding, as fast as replies come.
    Closed { inflight: usize },
    /// Send `rate` requests per second on a fixed schedule.
    Open { rate: f64 },
    /// Announce every peer once (event started), `inflight` at a time.
    Once { inflight: usize },
}

pub struct RunConfig {
    pub target: SocketAddr,
    pub mode: Mode,
    pub warmup: Duration,
    pub duration: Duration,
    pub timeout: Duration,
    pub batch: usize,
    /// First source address; source i is this + i.
    pub first_source: Ipv4Addr,
    /// Open loop: sleep until the next send instead of polling.
    pub idle_wait: bool,
}

/// Wait at most `wait_ns` for events on `ep` (0: only look). The timeout
/// has nanosecond resolution (epoll_pwait2, Linux 5.11), so an open-loop
/// driver can sleep until its next send is due rather than spin.
pub fn epoll_wait_ns(ep: i32, events: &mut [libc::epoll_event], wait_ns: u64) -> usize {
    let ts = libc::timespec {
        tv_sec: (wait_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (wait_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `events` is a valid buffer of its length, `ts` a valid
    // timespec; a null signal mask means none is changed.
    let n = unsafe {
        libc::syscall(
            libc::SYS_epoll_pwait2,
            ep,
            events.as_mut_ptr(),
            events.len() as libc::c_int,
            &ts as *const libc::timespec,
            std::ptr::null::<libc::sigset_t>(),
            0usize,
        )
    };
    n.max(0) as usize
}

/// How long an open-loop driver that sent `scheduled` requests at `rate`
/// may sleep at `now` (ns since its start): until a whole batch is due
/// (waking for each request would cost as much as spinning), at most 1 ms;
/// a reply ends the sleep early. A request then leaves up to one batch
/// interval after its scheduled time, which its latency includes. 0 unless
/// `idle_wait` is on and the mode is open.
pub fn idle_ns(cfg: &RunConfig, scheduled: u64, now: u64) -> u64 {
    match cfg.mode {
        Mode::Open { rate } if cfg.idle_wait => {
            let next = ((scheduled + cfg.batch as u64 - 1) as f64 / rate * 1e9) as u64;
            next.saturating_sub(now).min(1_000_000)
        }
        _ => 0,
    }
}

#[derive(Default, Debug, Clone, serde::Serialize)]
pub struct Counts {
    pub sent: u64,
    pub connects: u64,
    pub announces: u64,
    pub scrapes: u64,
    pub errors: u64,
    pub invalid: u64,
    pub lost: u64,
    /// Valid replies, arriving in the measured window, to requests no
    /// longer pending: timed out (or, from a faulty server, answered
    /// already).
    pub late: u64,
    /// Valid replies (any kind, on time or late) that arrived during the
    /// measured window: the goodput's numerator.
    pub arrived: u64,
    pub peers_received: u64,
    /// Requests the schedule wanted but no slot was free for.
    pub overrun: u64,
    /// Every reply in the whole run, warm-up included (for CPU per reply).
    pub replies_total: u64,
    /// HTTP: connections the server closed that were opened again.
    pub reconnects: u64,
}

pub struct RunResult {
    pub counts: Counts,
    /// Latency of successful replies in the measured window, microseconds.
    pub latency_us: Histogram<u64>,
    pub measured: Duration,
    /// How far behind its schedule the generator fell at worst (open loop).
    pub max_lag: Duration,
}

struct Slot {
    kind: Kind,
    /// The low bits of `use_count`, carried in the transaction id.
    generation: u16,
    /// Times this slot was taken: tells a deadline entry from an earlier
    /// use of the slot apart even when the short generation has wrapped.
    use_count: u64,
    active: bool,
    source: u32,
    intended_ns: u64,
}

struct Source {
    socket: UdpSocket,
    cid: Option<(u64, Instant)>,
    connecting: bool,
    /// Once mode: the next of this source's peers to announce.
    cursor: u32,
}

/// Callbacks the run reports progress to.
pub trait Progress {
    fn tick(&mut self, elapsed: Duration, replies: u64);
}

const SLOT_BITS: u32 = 22;

pub fn run(
    cfg: &RunConfig,
    w: &Workload,
    rng: &mut SmallRng,
    progress: &mut dyn Progress,
) -> io::Result<RunResult> {
    let sources = open_sources(cfg, w.config.sources)?;
    let epoll = Epoll::new(&sources)?;
    let capacity = match cfg.mode {
        Mode::Closed { inflight } | Mode::Once { inflight } => inflight,
        Mode::Open { rate } => ((rate * cfg.timeout.as_secs_f64() * 1.5) as usize).max(1024),
    }
    .min(1 << SLOT_BITS);
    let mut engine = Engine {
        cfg,
        w,
        sources,
        slots: (0..capacity)
            .map(|_| Slot {
                kind: Kind::Connect,
                generation: 0,
                use_count: 0,
                active: false,
                source: 0,
                intended_ns: 0,
            })
            .collect(),
        free: (0..capacity as u32).rev().collect(),
        deadlines: VecDeque::with_capacity(capacity),
        counts: Counts::default(),
        hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        start: Instant::now(),
        measure_from_ns: cfg.warmup.as_nanos() as u64,
        end_ns: (cfg.warmup + cfg.duration).as_nanos() as u64,
        next_source: 0,
        send: Batch::new(cfg.batch, REQUEST_BUF),
        recv: Batch::new(cfg.batch, REPLY_BUF),
        scheduled: 0,
        max_lag_ns: 0,
    };
    engine.run(rng, &epoll, progress)?;
    let elapsed = engine.now_ns();
    let measured =
        Duration::from_nanos(elapsed.min(engine.end_ns) - elapsed.min(engine.measure_from_ns));
    Ok(RunResult {
        counts: engine.counts,
        latency_us: engine.hist,
        measured,
        max_lag: Duration::from_nanos(engine.max_lag_ns),
    })
}

fn open_sources(cfg: &RunConfig, n: u32) -> io::Result<Vec<Source>> {
    let base = u32::from(cfg.first_source);
    (0..n)
        .map(|i| {
            let ip = Ipv4Addr::from(base + i);
            let socket = UdpSocket::bind((ip, 0))
                .map_err(|e| io::Error::new(e.kind(), format!("bind {ip}: {e}")))?;
            socket.connect(cfg.target)?;
            socket.set_nonblocking(true)?;
            set_buffer(&socket, libc::SO_RCVBUF, 4 << 20);
            set_buffer(&socket, libc::SO_SNDBUF, 4 << 20);
            Ok(Source {
                socket,
                cid: None,
                connecting: false,
                cursor: 0,
            })
        })
        .collect()
}

fn set_buffer(socket: &UdpSocket, option: i32, bytes: i32) {
    // SAFETY: a c_int option value of the stated size on an open socket.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
    }
}

/// Buffers, iovecs and mmsghdrs for one sendmmsg / recvmmsg call.
#[derive(Default)]
struct Batch {
    bufs: Vec<u8>,
    buf_len: usize,
    lens: Vec<usize>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    /// Per message: the slot it belongs to (sending).
    slots: Vec<u32>,
}

impl Batch {
    fn new(n: usize, buf_len: usize) -> Batch {
        Batch {
            bufs: vec![0; n * buf_len],
            buf_len,
            lens: Vec::with_capacity(n),
            // SAFETY: all-zero iovec / mmsghdr are valid (null, 0) values.
            iovs: (0..n).map(|_| unsafe { std::mem::zeroed() }).collect(),
            // SAFETY: as above.
            msgs: (0..n).map(|_| unsafe { std::mem::zeroed() }).collect(),
            slots: Vec::with_capacity(n),
        }
    }

    fn capacity(&self) -> usize {
        self.iovs.len()
    }

    fn next_buf(&mut self) -> &mut [u8] {
        let i = self.lens.len();
        &mut self.bufs[i * self.buf_len..(i + 1) * self.buf_len]
    }

    /// Point the headers at the buffers; `lens[i]` bytes each (or the
    /// whole buffer when receiving).
    fn prepare(&mut self, count: usize, receiving: bool) {
        for i in 0..count {
            self.iovs[i].iov_base = self.bufs[i * self.buf_len..].as_mut_ptr().cast();
            self.iovs[i].iov_len = if receiving {
                self.buf_len
            } else {
                self.lens[i]
            };
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_name = std::ptr::null_mut();
            h.msg_namelen = 0;
            self.msgs[i].msg_len = 0;
        }
    }
}

struct Epoll {
    fd: i32,
}

impl Epoll {
    fn new(sources: &[Source]) -> io::Result<Epoll> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let ep = Epoll { fd };
        for (i, s) in sources.iter().enumerate() {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: both fds are open and `ev` is initialised.
            let rc = unsafe {
                libc::epoll_ctl(ep.fd, libc::EPOLL_CTL_ADD, s.socket.as_raw_fd(), &mut ev)
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(ep)
    }

    /// Ready source indexes into `out`, waiting at most `wait_ns`.
    fn poll(&self, events: &mut [libc::epoll_event], wait_ns: u64) -> usize {
        epoll_wait_ns(self.fd, events, wait_ns)
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own this fd.
        unsafe { libc::close(self.fd) };
    }
}

struct Engine<'a> {
    cfg: &'a RunConfig,
    w: &'a Workload,
    sources: Vec<Source>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// (slot, use_count, deadline) in send order.
    deadlines: VecDeque<(u32, u64, u64)>,
    counts: Counts,
    hist: Histogram<u64>,
    start: Instant,
    measure_from_ns: u64,
    end_ns: u64,
    next_source: usize,
    send: Batch,
    recv: Batch,
    /// Open loop: requests scheduled so far.
    scheduled: u64,
    max_lag_ns: u64,
}

impl Engine<'_> {
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn inflight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn once_done(&self) -> bool {
        (0..self.sources.len() as u32)
            .all(|s| self.sources[s as usize].cursor >= self.w.peers_of_source(s))
    }

    fn run(
        &mut self,
        rng: &mut SmallRng,
        epoll: &Epoll,
        progress: &mut dyn Progress,
    ) -> io::Result<()> {
        let mut events =
            vec![libc::epoll_event { events: 0, u64: 0 }; self.sources.len().min(1024)];
        let mut last_tick = 0u64;
        loop {
            let now = self.now_ns();
            let sending = match self.cfg.mode {
                Mode::Once { .. } => !self.once_done() && now < self.end_ns,
                _ => now < self.end_ns,
            };
            if sending {
                self.send_due(now, rng)?;
            } else if self.inflight() == 0
                || now > self.end_ns + 2 * self.cfg.timeout.as_nanos() as u64
            {
                break;
            }
            let wait = if sending {
                idle_ns(self.cfg, self.scheduled, self.now_ns())
            } else {
                0
            };
            let ready = epoll.poll(&mut events, wait);
            for e in &events[..ready] {
                self.receive(e.u64 as usize)?;
            }
            self.expire(self.now_ns());
            if now - last_tick > 100_000_000 {
                last_tick = now;
                progress.tick(Duration::from_nanos(now), self.counts.replies_total);
            }
        }
        // Whatever is still outstanding now is lost.
        let now = u64::MAX;
        self.expire(now);
        Ok(())
    }

    /// Send what the mode allows right now.
    fn send_due(&mut self, now: u64, rng: &mut SmallRng) -> io::Result<()> {
        let mut budget = match self.cfg.mode {
            Mode::Closed { inflight } | Mode::Once { inflight } => {
                inflight.saturating_sub(self.inflight())
            }
            Mode::Open { rate } => {
                let due = ((now as f64 / 1e9) * rate) as u64;
                let behind = due.saturating_sub(self.scheduled);
                if behind > 0 {
                    let intended = (self.scheduled as f64 / rate * 1e9) as u64;
                    self.max_lag_ns = self.max_lag_ns.max(now.saturating_sub(intended));
                }
                behind as usize
            }
        };
        // Visit each source at most once per call, so a source waiting for
        // its connect reply does not stall the others.
        let mut visited = 0;
        while budget > 0 && visited < self.sources.len() {
            let s = self.next_source;
            self.next_source = (self.next_source + 1) % self.sources.len();
            visited += 1;
            let sent = self.send_batch(s, budget, now, rng)?;
            budget -= sent;
        }
        Ok(())
    }

    fn intended(&mut self, now: u64) -> u64 {
        match self.cfg.mode {
            Mode::Open { rate } => {
                let t = (self.scheduled as f64 / rate * 1e9) as u64;
                self.scheduled += 1;
                t
            }
            _ => now,
        }
    }

    fn take_slot(&mut self, kind: Kind, source: usize, intended: u64) -> Option<u32> {
        let Some(slot) = self.free.pop() else {
            self.counts.overrun += 1;
            return None;
        };
        let s = &mut self.slots[slot as usize];
        s.kind = kind;
        s.use_count += 1;
        s.generation = (s.use_count & ((1 << (32 - SLOT_BITS)) - 1)) as u16;
        s.active = true;
        s.source = source as u32;
        s.intended_ns = intended;
        self.deadlines.push_back((
            slot,
            s.use_count,
            intended + self.cfg.timeout.as_nanos() as u64,
        ));
        Some((u32::from(s.generation) << SLOT_BITS) | slot)
    }

    /// Up to `budget` requests from source `s` in one sendmmsg.
    fn send_batch(
        &mut self,
        s: usize,
        budget: usize,
        now: u64,
        rng: &mut SmallRng,
    ) -> io::Result<usize> {
        self.send.lens.clear();
        self.send.slots.clear();
        let fresh = self.sources[s]
            .cid
            .filter(|(_, at)| at.elapsed() < CID_LIFETIME)
            .map(|(cid, _)| cid);
        match fresh {
            None => {
                if self.sources[s].connecting {
                    return Ok(0);
                }
                // Connects are not part of the schedule: they do not move
                // the open-loop clock.
                let Some(tid) = self.take_slot(Kind::Connect, s, now) else {
                    return Ok(0);
                };
                self.sources[s].connecting = true;
                let len = workload::write_connect(self.send.next_buf(), tid);
                self.send.lens.push(len);
                self.send.slots.push(tid);
            }
            Some(cid) => {
                let n = budget.min(self.send.capacity());
                for _ in 0..n {
                    let (kind, peer) = match self.cfg.mode {
                        Mode::Once { .. } => {
                            let src = &mut self.sources[s];
                            if src.cursor >= self.w.peers_of_source(s as u32) {
                                break;
                            }
                            let k = s as u32 + src.cursor * self.w.config.sources;
                            src.cursor += 1;
                            (Kind::Announce, k)
                        }
                        _ => (
                            self.w.random_kind(rng),
                            self.w.random_peer_of_source(s as u32, rng),
                        ),
                    };
                    let intended = self.intended(now);
                    let Some(tid) = self.take_slot(kind, s, intended) else {
                        break;
                    };
                    let once = matches!(self.cfg.mode, Mode::Once { .. });
                    let w = self.w;
                    let buf = self.send.next_buf();
                    let len = match kind {
                        Kind::Scrape => w.write_scrape(buf, cid, tid, rng),
                        _ => w.write_announce(buf, cid, tid, peer, once.then_some(2), rng),
                    };
                    self.send.lens.push(len);
                    self.send.slots.push(tid);
                }
            }
        }
        let count = self.send.lens.len();
        if count == 0 {
            return Ok(0);
        }
        self.send.prepare(count, false);
        let fd = self.sources[s].socket.as_raw_fd();
        // SAFETY: `msgs[..count]` point at live iovecs and buffers of `send`.
        let rc = unsafe { libc::sendmmsg(fd, self.send.msgs.as_mut_ptr(), count as u32, 0) };
        let sent = if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(e);
            }
            0
        } else {
            rc as usize
        };
        // Requests the kernel did not take go back (their slots are freed
        // and not counted as lost).
        for &tid in &self.send.slots[sent..] {
            let slot = &mut self.slots[(tid & ((1 << SLOT_BITS) - 1)) as usize];
            slot.active = false;
            if slot.kind == Kind::Connect {
                self.sources[s].connecting = false;
            }
            self.free.push(tid & ((1 << SLOT_BITS) - 1));
        }
        if matches!(self.cfg.mode, Mode::Open { .. }) {
            // The schedule moves on regardless: unsent requests are overrun.
            self.counts.overrun += (count - sent) as u64;
        }
        self.counts.sent += sent as u64;
        Ok(count)
    }

    fn receive(&mut self, s: usize) -> io::Result<()> {
        // Borrow the receive batch out of `self` while replies are handled
        // (moving the Vecs does not allocate).
        let mut recv = std::mem::take(&mut self.recv);
        let result = self.receive_into(s, &mut recv);
        self.recv = recv;
        result
    }

    fn receive_into(&mut self, s: usize, recv: &mut Batch) -> io::Result<()> {
        let fd = self.sources[s].socket.as_raw_fd();
        loop {
            let cap = recv.capacity();
            recv.prepare(cap, true);
            // SAFETY: `msgs` point at live iovecs and buffers of `recv`.
            let rc = unsafe {
                libc::recvmmsg(
                    fd,
                    recv.msgs.as_mut_ptr(),
                    cap as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(()),
                    // ICMP port unreachable from an earlier send: the server
                    // is not there (yet). Keep going; requests time out.
                    io::ErrorKind::ConnectionRefused => Ok(()),
                    _ => Err(e),
                };
            }
            let now = self.now_ns();
            let scrape_hashes = self.w.config.scrape_hashes;
            for i in 0..rc as usize {
                let len = recv.msgs[i].msg_len as usize;
                let start = i * recv.buf_len;
                self.on_reply(s, &recv.bufs[start..start + len], now, scrape_hashes);
            }
            if (rc as usize) < cap {
                return Ok(());
            }
        }
    }

    fn on_reply(&mut self, s: usize, reply: &[u8], now: u64, scrape_hashes: usize) {
        self.counts.replies_total += 1;
        let arrived_in_window = now >= self.measure_from_ns && now < self.end_ns;
        let Some(tid) = workload::reply_tid(reply) else {
            self.counts.invalid += 1;
            return;
        };
        let index = (tid & ((1 << SLOT_BITS) - 1)) as usize;
        let generation = (tid >> SLOT_BITS) as u16;
        let Some(slot) = self.slots.get_mut(index) else {
            self.counts.invalid += 1;
            return;
        };
        if slot.source as usize != s && slot.generation == generation {
            self.counts.invalid += 1;
            return;
        }
        if !slot.active || slot.generation != generation {
            // The request timed out (its slot may already serve another):
            // not on time, but delivered.
            if arrived_in_window && workload::is_reply(reply) {
                self.counts.late += 1;
                self.counts.arrived += 1;
            }
            return;
        }
        slot.active = false;
        let (kind, intended) = (slot.kind, slot.intended_ns);
        self.free.push(index as u32);
        let measured = intended >= self.measure_from_ns && intended < self.end_ns;
        let check = workload::check_reply(kind, reply, scrape_hashes);
        if kind == Kind::Connect {
            self.sources[s].connecting = false;
        }
        match check {
            ReplyCheck::Connect(cid) => {
                self.sources[s].cid = Some((cid, Instant::now()));
                self.counts.connects += u64::from(measured);
            }
            ReplyCheck::Announce { peers } => {
                if measured {
                    self.counts.announces += 1;
                    self.counts.peers_received += peers as u64;
                }
            }
            ReplyCheck::Scrape => self.counts.scrapes += u64::from(measured),
            ReplyCheck::Error => {
                self.counts.errors += 1;
                // An error to an announce usually means a stale connection id.
                self.sources[s].cid = None;
            }
            ReplyCheck::Invalid => self.counts.invalid += 1,
        }
        let valid = !matches!(check, ReplyCheck::Error | ReplyCheck::Invalid);
        if valid && arrived_in_window {
            self.counts.arrived += 1;
        }
        if measured && valid {
            let us = (now.saturating_sub(intended) / 1000).max(1);
            let _ = self.hist.record(us);
        }
    }

    fn expire(&mut self, now: u64) {
        while let Some(&(slot, use_count, deadline)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            let s = &mut self.slots[slot as usize];
            if s.active && s.use_count == use_count {
                s.active = false;
                if s.kind == Kind::Connect {
                    self.sources[s.source as usize].connecting = false;
                }
                let measured = s.intended_ns >= self.measure_from_ns && s.intended_ns < self.end_ns;
                if measured || matches!(self.cfg.mode, Mode::Once { .. }) {
                    self.counts.lost += 1;
                }
                self.free.push(slot);
            }
        }
    }
}
