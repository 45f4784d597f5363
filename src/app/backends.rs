//! Which backend carries each frontend: io_uring where the kernel allows
//! it, the portable one (mmsg, epoll) otherwise, or a clear error when the
//! operator forced io_uring and it will not run.

use std::io;

use crate::config::{Config, HttpBackend, UdpBackend};
use crate::net::udp;

/// The oldest kernel with everything the UDP path uses (multishot
/// RecvMsg arrived in 6.0; provided-buffer rings in 5.19).
pub const MIN_KERNEL: (u32, u32) = (6, 0);

/// Why io_uring cannot carry a frontend the operator put on it.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "io_uring is not available ({source}) and {user}: check /proc/sys/kernel/io_uring_disabled \
         (it must be 0) and the kernel version (ringtracker needs Linux {}.{} or newer, this is \
         {kernel}); containers may block io_uring in their seccomp profile",
        MIN_KERNEL.0, MIN_KERNEL.1
    )]
    IoUringUnavailable {
        source: io::Error,
        kernel: String,
        /// Who needs it, and the way around if there is one.
        user: &'static str,
    },
    #[error(
        "Linux {kernel} is too old: ringtracker needs {}.{} or newer for multishot receives \
         (or run without io_uring: udp.backend = \"mmsg\")",
        MIN_KERNEL.0, MIN_KERNEL.1
    )]
    KernelTooOld { kernel: String },
}

/// The backends `config` runs on (see `backends`).
pub(super) fn choose(config: &Config) -> Result<(UdpBackend, HttpBackend), BackendError> {
    let serves_http = !config.http.listen.is_empty() || !config.tls.listen.is_empty();
    backends(
        config.udp.backend,
        config.http.backend,
        !config.udp.listen.is_empty(),
        serves_http,
    )
}

/// The UDP and HTTP backends to run. `auto` takes io_uring where the probe
/// succeeds (for UDP also on Linux 6.0+) and the portable backend
/// otherwise (mmsg, epoll), with one WARN line saying why; a forced
/// io_uring that does not work stops the start.
fn backends(
    udp: UdpBackend,
    http: HttpBackend,
    serves_udp: bool,
    serves_http: bool,
) -> Result<(UdpBackend, HttpBackend), BackendError> {
    let udp_may = serves_udp && udp != UdpBackend::Mmsg;
    let http_may = serves_http && http != HttpBackend::Epoll;
    if !udp_may && !http_may {
        return Ok((udp, http));
    }
    let kernel = kernel_release();
    let probe = udp::probe();
    let too_old = !kernel_at_least(&kernel, MIN_KERNEL);
    if let Err(source) = &probe {
        let forced = if udp_may && udp == UdpBackend::IoUring {
            Some("udp.backend = \"io_uring\" needs it (or leave udp.backend at \"auto\")")
        } else if http_may && http == HttpBackend::IoUring {
            Some("http.backend = \"io_uring\" needs it (or leave http.backend at \"auto\")")
        } else {
            None
        };
        if let Some(user) = forced {
            return Err(BackendError::IoUringUnavailable {
                source: io::Error::new(source.kind(), source.to_string()),
                kernel,
                user,
            });
        }
    }
    // Why io_uring will not carry UDP here, if it will not.
    let udp_blocked = match &probe {
        Err(e) => Some(format!("io_uring_setup failed: {e}")),
        Ok(()) if too_old => Some(format!(
            "Linux {kernel} is older than {}.{}",
            MIN_KERNEL.0, MIN_KERNEL.1
        )),
        Ok(()) => None,
    };
    let udp = match (udp, udp_blocked) {
        (UdpBackend::IoUring, Some(_)) if serves_udp => {
            return Err(BackendError::KernelTooOld { kernel });
        }
        (UdpBackend::Auto, Some(why)) if serves_udp => {
            warn_fallback(&why, "UDP on the mmsg backend (poll + recvmmsg/sendmmsg)");
            UdpBackend::Mmsg
        }
        (UdpBackend::Auto, _) => UdpBackend::IoUring,
        (chosen, _) => chosen,
    };
    let http = match (http, &probe) {
        (HttpBackend::Auto, Err(e)) if serves_http => {
            let why = format!("io_uring_setup failed: {e}");
            warn_fallback(&why, "HTTP on the epoll backend");
            HttpBackend::Epoll
        }
        (HttpBackend::Auto, _) => HttpBackend::IoUring,
        (chosen, _) => chosen,
    };
    Ok((udp, http))
}

/// One WARN line: a frontend falls back from io_uring, and why.
fn warn_fallback(why: &str, instead: &str) {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map_or_else(|_| "absent".into(), |s| s.trim().to_string());
    tracing::warn!(
        "io_uring unavailable ({why}; kernel.io_uring_disabled = {disabled}; Linux {}): {instead}",
        kernel_release()
    );
}

/// `uname -r`, as the kernel reports it.
pub(crate) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn kernel_at_least(release: &str, min: (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => (major, minor) >= min,
        // Unparseable: let io_uring itself say no.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert!(kernel_at_least("6.18.44-fc-v669", (6, 0)));
        assert!(kernel_at_least("6.0.0", (6, 0)));
        assert!(!kernel_at_least("5.19.17-generic", (6, 0)));
        assert!(kernel_at_least("garbage", (6, 0)));
    }
}
