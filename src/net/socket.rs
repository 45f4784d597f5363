//! UDP socket set-up: SO_REUSEPORT so every worker has a socket of its own
//! on the same address, IPV6_V6ONLY so each family has its own socket, and
//! packet-info control messages so a reply can leave from the very address
//! the request arrived on.
#![allow(unsafe_code)] // the kernel interface; each block says why it holds

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

/// Fail if anything already holds `addr`, even another SO_REUSEPORT group
/// (a second ringtracker would otherwise silently share the port and split
/// the traffic). Binds and drops a socket without SO_REUSEPORT.
pub fn check_udp_free(addr: SocketAddr) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())
}

/// Bind one UDP socket of a worker's set.
pub fn bind_udp(addr: SocketAddr, recv_buffer: u32) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    if recv_buffer > 0 {
        // Best effort: the kernel silently caps it at net.core.rmem_max.
        let _ = socket.set_recv_buffer_size(recv_buffer as usize);
    }
    // Only a wildcard socket needs to learn (and reply from) the address a
    // datagram came to; a socket bound to one address replies from it
    // anyway, and skipping the control messages saves work per packet.
    if addr.ip().is_unspecified() {
        if addr.is_ipv6() {
            set_int_option(&socket, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
        } else {
            set_int_option(&socket, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
        }
    }
    socket.bind(&addr.into())?;
    Ok(socket)
}

fn set_int_option(socket: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and we pass its exact size; the fd is
    // owned by `socket` and open for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Fail if anything already listens on TCP `addr` (see `check_udp_free`).
/// SO_REUSEADDR keeps connections of an earlier run (TIME_WAIT) from ever
/// blocking a restart, while any socket still listening there makes the
/// probe's `listen` fail.
pub fn check_tcp_free(addr: SocketAddr) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    // Binding alone can succeed beside a SO_REUSEADDR listener; listening
    // cannot.
    socket.listen(1)
}

/// Bind and listen on one TCP socket of a worker's set.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket)
}

/// What a failed `accept` means for the listener, whatever the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    /// No connection waits: wait for readiness.
    Drained,
    /// This connection went (reset before it was taken) or a signal came:
    /// take the next one.
    Retry,
    /// The process cannot take connections now (EMFILE, ENFILE, ENOBUFS,
    /// ...): a try at once fails again, so the listener pauses.
    Failed,
}

/// What a failed accept means for the listener.
pub fn accept_error(e: &io::Error) -> AcceptError {
    match e.kind() {
        io::ErrorKind::WouldBlock => AcceptError::Drained,
        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => AcceptError::Retry,
        _ => AcceptError::Failed,
    }
}
