//! What both io_uring drivers (UDP and HTTP) need besides their own state:
//! queueing an entry, the periodic tick, cancelling everything at shutdown,
//! and containing a panic of the core to the request that caused it.

use io_uring::squeue::Entry;
use io_uring::types::{CancelBuilder, Timespec};
use io_uring::{SubmissionQueue, Submitter, opcode};

use crate::stats::{Counter, WorkerStats};

/// How often a worker wakes when idle: expiry sweeps, timeouts, shutdown.
pub const TICK: Timespec = Timespec::new().nsec(250_000_000);

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

/// Queue the tick timeout with `user_data`.
pub fn push_tick(sq: &mut SubmissionQueue<'_>, submitter: &Submitter<'_>, user_data: u64) {
    let entry = opcode::Timeout::new(&TICK).build().user_data(user_data);
    // SAFETY: the entry points only at TICK, a constant that lives forever.
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

/// Run the core on one datagram; a panic (a bug) costs that datagram, is
/// counted as `internal_error` and logged by the panic hook, and the worker
/// goes on serving: a dead worker would leave its SO_REUSEPORT socket
/// bound and silently drop every client the kernel hashes to it.
pub fn contain<T>(stats: &WorkerStats, f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(_) => {
            stats.add(Counter::InternalError, 1);
            None
        }
    }
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
