//! SIGINT / SIGTERM (stop) and SIGHUP (reload) without async-signal-safety
//! puzzles: the signals are blocked in every thread (workers inherit the
//! mask) and the main thread waits for them with `sigtimedwait`, which
//! doubles as the timer for the periodic stats line.
#![allow(unsafe_code)] // the kernel interface; each block says why it holds

use std::time::Duration;

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill the zeroed set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Block SIGINT, SIGTERM and SIGHUP in this thread and every thread it
/// spawns afterwards. Call before starting workers.
pub fn block_termination_signals() {
    let set = termination_set();
    // SAFETY: `set` is an initialised sigset_t; a null old-set is allowed.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Wait up to `timeout` for SIGINT, SIGTERM or SIGHUP; returns the signal
/// number if one arrived.
pub fn wait_for_signal(timeout: Duration) -> Option<i32> {
    let set = termination_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos()),
    };
    // SAFETY: all pointers are to initialised locals; a null siginfo is allowed.
    let rc = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (rc > 0).then_some(rc)
}

/// The signal that asks for a reload.
pub const SIGHUP: i32 = libc::SIGHUP;
