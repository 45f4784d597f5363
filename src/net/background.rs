//! Threads that work behind the workers' backs (the snapshot writer, SIGHUP
//! reloads) run at the lowest CPU priority (nice 19): they use what the
//! workers leave. At normal priority a snapshot of a large table, sharing a
//! core with a worker, took half of it for a second or more, and the
//! worker's socket overflowed (the soak saw 2,000 datagrams dropped per
//! snapshot at half of max). A lock such a thread holds is no inversion
//! risk: a worker that waits on it sleeps, and the core is then idle for
//! the background thread to finish.
#![allow(unsafe_code)] // the kernel interface; each block says why it holds

/// Lower the calling thread to nice 19 (Linux: a thread's own nice value).
pub fn yield_cpu_to_workers() {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    // SAFETY: setpriority on our own thread id with a valid nice value.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) };
    if rc != 0 {
        tracing::debug!(
            "background thread keeps its priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_background_thread_runs_at_nice_19_and_others_keep_theirs() {
        let nice = |tid: i32| -> i64 {
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
            // Field 19 (nice), counted after the command name's parenthesis.
            let rest = stat.rsplit(')').next().unwrap();
            rest.split_whitespace().nth(16).unwrap().parse().unwrap()
        };
        let background = std::thread::spawn(move || {
            super::yield_cpu_to_workers();
            // SAFETY: gettid takes no arguments.
            nice(unsafe { libc::gettid() })
        })
        .join()
        .unwrap();
        assert_eq!(background, 19);
        // SAFETY: gettid takes no arguments.
        assert_eq!(nice(unsafe { libc::gettid() }), 0);
    }
}
