//! What the process asks of the kernel before it serves: enough file
//! descriptors for every HTTP connection it may accept, and its ports
//! back after a crash.
#![allow(unsafe_code)] // the kernel interface; each block says why it holds

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// File descriptors for everything besides HTTP connections: sockets and
/// rings per worker, the metrics listener and its connections, the
/// database and Redis connections, snapshots and journals.
pub const FD_RESERVE: u64 = 1024;

/// The open-file limit is below what the configuration needs and may not
/// be raised that far.
#[derive(Debug, thiserror::Error)]
#[error(
    "http.max_connections × workers ({max_connections} × {workers}) needs {need} open files \
     (with {FD_RESERVE} for everything else), but the hard RLIMIT_NOFILE is {hard}: \
     raise it (LimitNOFILE= in the unit, ulimit -Hn) or lower http.max_connections"
)]
pub struct FdLimitError {
    /// `http.max_connections`.
    pub max_connections: u64,
    /// HTTP workers.
    pub workers: u64,
    /// Descriptors that needs.
    pub need: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raise the soft RLIMIT_NOFILE to `max_connections × workers` plus the
/// reserve if it is lower: within the hard limit as anyone may, past it
/// only with CAP_SYS_RESOURCE (root). Where even that fails, a default
/// `max_connections` (`fit`) is lowered to what the hard limit carries,
/// with one INFO line naming both numbers, and an operator's own value is
/// an error. Returns the connections each worker may hold.
pub fn ensure_fd_limit(max_connections: u64, workers: u64, fit: bool) -> Result<u64, FdLimitError> {
    let need = max_connections
        .saturating_mul(workers)
        .saturating_add(FD_RESERVE);
    let (soft, hard) = get_nofile();
    if soft >= need {
        return Ok(max_connections);
    }
    let raised = set_nofile(need, hard.max(need)).or_else(|_| set_nofile(need, hard));
    if raised.is_ok() && get_nofile().0 >= need {
        tracing::info!("open-file limit raised from {soft} to {need}");
        return Ok(max_connections);
    }
    let fits = hard.saturating_sub(FD_RESERVE) / workers.max(1);
    if fit && fits > 0 && set_nofile(hard, hard).is_ok() {
        // INFO, not WARN: the default adapts to the machine, as documented.
        tracing::info!(
            "http.max_connections × workers ({max_connections} × {workers}) needs {need} open files, \
             but the hard RLIMIT_NOFILE is {hard}: each worker takes at most {fits} connections"
        );
        return Ok(fits);
    }
    Err(FdLimitError {
        max_connections,
        workers,
        need,
        hard,
    })
}

fn get_nofile() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a live, writable rlimit of the size the call expects.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return (0, 0);
    }
    (lim.rlim_cur, lim.rlim_max)
}

fn set_nofile(soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `lim` is a live rlimit, read by the call only.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Tries of a bind whose address is in use, and the wait between them: a
/// tracker that was just killed may hold its ports a few milliseconds
/// after it is reaped (io_uring releases its files asynchronously).
const BIND_TRIES: u32 = 5;
const BIND_WAIT: Duration = Duration::from_millis(500);

/// `bind()`, tried again while the address is in use, up to `BIND_TRIES`
/// times `BIND_WAIT` apart (as nginx does). A bind that worked after a
/// wait is logged once; one that never did fails with its error alone
/// (the start's one-line reason).
pub fn retry_in_use<T>(addr: SocketAddr, mut bind: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut tries = 1;
    loop {
        match bind() {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries < BIND_TRIES => {
                tries += 1;
                std::thread::sleep(BIND_WAIT);
            }
            Ok(bound) if tries > 1 => {
                tracing::warn!("{addr} was in use; bound at try {tries} of {BIND_TRIES}");
                return Ok(bound);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_already_high_enough_is_kept() {
        assert_eq!(ensure_fd_limit(0, 0, false).unwrap(), 0);
        assert!(get_nofile().0 >= FD_RESERVE);
    }

    #[test]
    fn a_bind_that_stays_in_use_fails_after_the_tries() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut calls = 0;
        let r: io::Result<()> = retry_in_use(addr, || {
            calls += 1;
            if calls < 3 {
                Err(io::ErrorKind::AddrInUse.into())
            } else {
                Ok(())
            }
        });
        assert!(r.is_ok());
        assert_eq!(calls, 3);
        let r: io::Result<()> = retry_in_use(addr, || Err(io::ErrorKind::PermissionDenied.into()));
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
    }
}
