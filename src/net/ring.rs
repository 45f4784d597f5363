//! What both io_uring drivers (UDP and HTTP) need besides their own state:
//! queueing an entry, submitting and waiting, cancelling everything at
//! shutdown.
#![allow(unsafe_code)] // the kernel interface; each block says why it holds

use std::io;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use io_uring::squeue::Entry;
use io_uring::types::{CancelBuilder, Timespec};
use io_uring::{IoUring, SubmissionQueue, Submitter, opcode};

use crate::engine::{Engine, TICK};
use crate::stats::{Counter, WorkerStats};

/// A worker's ring of `sq_entries` (and `cq_entries` completions, if
/// given): one thread submits and reaps, so the kernel may defer its work
/// to our waits; a kernel without those flags gets a plain ring.
pub fn build(sq_entries: u32, cq_entries: Option<u32>) -> io::Result<IoUring> {
    let sized = |mut b: io_uring::Builder| {
        if let Some(n) = cq_entries {
            b.setup_cqsize(n);
        }
        b
    };
    let mut tuned = IoUring::builder();
    tuned
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun();
    sized(tuned)
        .build(sq_entries)
        .or_else(|_| sized(IoUring::builder()).build(sq_entries))
}

/// Run a worker's loop, `serve(stop)`, until `stop` is set. If the loop
/// fails, operations may still be in the kernel, writing into the worker's
/// buffers: the loop runs once more in stopping mode, which cancels every
/// operation and waits for each to end. Returns false when even that
/// failed: the caller must then leak its ring and buffers rather than free
/// memory the kernel may still use (the process exits: its health check
/// sees the worker gone).
pub fn serve_or_drain(
    name: &str,
    stop: &AtomicBool,
    mut serve: impl FnMut(&AtomicBool) -> io::Result<()>,
) -> bool {
    let Err(e) = serve(stop) else {
        return true;
    };
    tracing::error!("{name} stopped: {e}");
    match serve(&AtomicBool::new(true)) {
        Ok(()) => {
            tracing::info!("{name}: ring drained, nothing in flight");
            true
        }
        Err(e) => {
            tracing::error!("{name}: ring not drained ({e}), left to the kernel");
            false
        }
    }
}

/// Submit everything queued and sleep until at least one completion,
/// counting the enter and the entries submitted (their ratio is the
/// submission batch). An interrupted wait, or a full completion queue (reap
/// it, then submit again), is not an error.
pub fn submit_and_wait(submitter: &Submitter<'_>, stats: &WorkerStats) -> std::io::Result<()> {
    let submitted = match submitter.submit_and_wait(1) {
        Ok(submitted) => submitted,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => 0,
        Err(e) => return Err(e),
    };
    stats.add(Counter::RingEnters, 1);
    stats.add(Counter::RingSubmitted, submitted as u64);
    Ok(())
}

/// Queue a timeout entry that wakes the loop when `engine`'s next timer is
/// due, at most `TICK` after `now`. `ts` is where the kernel reads the
/// timeout from when the entry is submitted: a field of the worker, which
/// outlives the ring.
pub fn push_wakeup(
    sq: &mut SubmissionQueue<'_>,
    submitter: &Submitter<'_>,
    engine: &Engine,
    now: Instant,
    ts: &mut Timespec,
    user_data: u64,
) {
    let wait = engine
        .poll_timeout()
        .map_or(TICK, |t| t.saturating_duration_since(now))
        .clamp(Duration::from_millis(1), TICK);
    *ts = Timespec::from(wait);
    let entry = opcode::Timeout::new(ts).build().user_data(user_data);
    // SAFETY: `ts` lives in the worker, which outlives the ring, and is not
    // written again before this entry is submitted (the next wake-up is
    // armed only after this one completes).
    unsafe { push(sq, submitter, &entry) };
}

/// Queue a cancel of every operation of the ring (shutdown).
pub fn push_cancel_all(sq: &mut SubmissionQueue<'_>, submitter: &Submitter<'_>, user_data: u64) {
    let entry = opcode::AsyncCancel2::new(CancelBuilder::any())
        .build()
        .user_data(user_data);
    // SAFETY: a cancel entry references no memory of ours.
    unsafe { push(sq, submitter, &entry) };
}

/// Queue an entry, submitting first if the submission queue is full (it is
/// sized for every slot plus the receives, so this is a safety net).
///
/// # Safety
/// Whatever `entry` points to must stay valid until its completion.
pub unsafe fn push(sq: &mut SubmissionQueue<'_>, submitter: &Submitter<'_>, entry: &Entry) {
    loop {
        // SAFETY: forwarded from the caller.
        if unsafe { sq.push(entry) }.is_ok() {
            return;
        }
        sq.sync();
        let _ = submitter.submit();
        sq.sync();
    }
}
