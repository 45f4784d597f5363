//! Socket-message plumbing shared by the UDP drivers (io_uring and
//! recvmmsg/sendmmsg): decoding the raw source address and packet-info
//! control message the kernel hands us (plain byte parsing, no pointer
//! casts), and `ReplySlot`, one reply with the msghdr that addresses it.
#![allow(unsafe_code)] // the kernel interface; each block says why it holds

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::engine::udp::REPLY_BUFFER_LEN;

/// Room for the largest source address (sockaddr_in6).
pub const NAME_LEN: usize = std::mem::size_of::<libc::sockaddr_in6>();
/// Room for one packet-info control message of either family.
pub const CONTROL_LEN: usize = 64;
const CMSG_HEADER_LEN: usize = std::mem::size_of::<libc::cmsghdr>();

/// The local address a datagram arrived on, from its packet-info message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalAddr {
    /// An IPv4 address.
    V4([u8; 4]),
    /// An IPv6 address and the interface it came in on.
    V6 {
        /// The address.
        addr: [u8; 16],
        /// The interface index (a reply names it, for link-local addresses).
        ifindex: u32,
    },
}

/// Room for a control message (packet info), aligned as the kernel wants.
#[repr(C, align(8))]
pub struct Control(pub [u8; CONTROL_LEN]);

/// Room for a socket address.
#[repr(C, align(4))]
pub struct Name(pub [u8; NAME_LEN]);

/// One reply and its addressing. Its msghdr points into itself, so slots
/// live in a boxed slice that is never moved or resized, and `link` is
/// called once they are in place.
#[repr(C)]
pub struct ReplySlot {
    /// The header a `SendMsg` / `sendmmsg` reads (points into this slot).
    pub msg: libc::msghdr,
    /// The one buffer: `buf`, up to the reply's length.
    pub iov: libc::iovec,
    /// The destination.
    pub name: Name,
    /// The source address's packet info.
    pub control: Control,
    /// The reply.
    pub buf: [u8; REPLY_BUFFER_LEN],
}

impl Default for ReplySlot {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplySlot {
    /// An empty slot (call `link` once it is in place).
    pub fn new() -> ReplySlot {
        ReplySlot {
            // SAFETY: msghdr and iovec are plain C structs for which all
            // zeroes (null pointers, zero lengths) is a valid value.
            msg: unsafe { std::mem::zeroed() },
            // SAFETY: as above.
            iov: unsafe { std::mem::zeroed() },
            name: Name([0; NAME_LEN]),
            control: Control([0; CONTROL_LEN]),
            buf: [0; REPLY_BUFFER_LEN],
        }
    }

    /// Point the msghdr at this slot's own fields (after it has its final
    /// address).
    pub fn link(&mut self) {
        self.iov.iov_base = self.buf.as_mut_ptr().cast();
        self.msg.msg_name = self.name.0.as_mut_ptr().cast();
        self.msg.msg_iov = &mut self.iov;
        self.msg.msg_iovlen = 1;
        self.msg.msg_control = self.control.0.as_mut_ptr().cast();
        self.msg.msg_flags = 0;
    }

    /// Address the reply of `len` bytes to `name` (the raw source sockaddr)
    /// from `local` (none: let the kernel pick, as for a bound socket).
    pub fn address(&mut self, name: &[u8], local: Option<LocalAddr>, len: usize) {
        self.name.0[..name.len()].copy_from_slice(name);
        self.msg.msg_namelen = name.len() as libc::socklen_t;
        self.iov.iov_len = len;
        let control_len = match local {
            None => 0,
            Some(LocalAddr::V4(addr)) => {
                // struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
                let mut data = [0u8; 12];
                data[4..8].copy_from_slice(&addr);
                write_cmsg(
                    &mut self.control.0,
                    libc::IPPROTO_IP,
                    libc::IP_PKTINFO,
                    &data,
                )
            }
            Some(LocalAddr::V6 { addr, ifindex }) => {
                // struct in6_pktinfo { in6_addr addr; unsigned ifindex; }
                let mut data = [0u8; 20];
                data[..16].copy_from_slice(&addr);
                data[16..].copy_from_slice(&ifindex.to_ne_bytes());
                write_cmsg(
                    &mut self.control.0,
                    libc::IPPROTO_IPV6,
                    libc::IPV6_PKTINFO,
                    &data,
                )
            }
        };
        self.msg.msg_controllen = control_len;
        self.msg.msg_control = if control_len == 0 {
            std::ptr::null_mut()
        } else {
            self.control.0.as_mut_ptr().cast()
        };
    }
}

fn cmsg_align(n: usize) -> usize {
    (n + 7) & !7
}

/// Write one control message into `out`; returns CMSG_SPACE of it.
pub fn write_cmsg(out: &mut [u8], level: i32, kind: i32, data: &[u8]) -> usize {
    let len = CMSG_HEADER_LEN + data.len();
    out[..8].copy_from_slice(&len.to_ne_bytes());
    out[8..12].copy_from_slice(&level.to_ne_bytes());
    out[12..16].copy_from_slice(&kind.to_ne_bytes());
    out[CMSG_HEADER_LEN..len].copy_from_slice(data);
    cmsg_align(len)
}

/// Find the packet-info message among received control messages.
pub fn parse_local_addr(mut control: &[u8]) -> Option<LocalAddr> {
    while control.len() >= CMSG_HEADER_LEN {
        let len = usize::from_ne_bytes(control[..8].try_into().ok()?);
        let level = i32::from_ne_bytes(control[8..12].try_into().ok()?);
        let kind = i32::from_ne_bytes(control[12..16].try_into().ok()?);
        if len < CMSG_HEADER_LEN || len > control.len() {
            return None;
        }
        let data = &control[CMSG_HEADER_LEN..len];
        if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO && data.len() >= 12 {
            // ipi_addr: the destination address in the packet's header.
            return Some(LocalAddr::V4(data[8..12].try_into().ok()?));
        }
        if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_PKTINFO && data.len() >= 20 {
            return Some(LocalAddr::V6 {
                addr: data[..16].try_into().ok()?,
                ifindex: u32::from_ne_bytes(data[16..20].try_into().ok()?),
            });
        }
        control = &control[cmsg_align(len).min(control.len())..];
    }
    None
}

/// Decode a raw sockaddr_in / sockaddr_in6 as the kernel wrote it.
pub fn parse_sockaddr(name: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes(name.get(..2)?.try_into().ok()?));
    let port = u16::from_be_bytes(name.get(2..4)?.try_into().ok()?);
    match family {
        libc::AF_INET => {
            let ip: [u8; 4] = name.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        libc::AF_INET6 => {
            let flowinfo = u32::from_be_bytes(name.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = name.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(name.get(24..28)?.try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flowinfo,
                scope,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip() {
        let mut buf = [0u8; CONTROL_LEN];
        let n = write_cmsg(
            &mut buf,
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            &[0, 0, 0, 0, 9, 9, 9, 9, 127, 0, 0, 2],
        );
        assert_eq!(n, 32);
        assert!(matches!(
            parse_local_addr(&buf[..n]),
            Some(LocalAddr::V4([127, 0, 0, 2]))
        ));
        let mut data = [0u8; 20];
        data[15] = 1;
        data[16] = 3;
        let n = write_cmsg(&mut buf, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &data);
        assert_eq!(n, 40);
        match parse_local_addr(&buf[..n]) {
            Some(LocalAddr::V6 { addr, ifindex }) => {
                assert_eq!(Ipv6Addr::from(addr), Ipv6Addr::LOCALHOST);
                assert_eq!(ifindex, 3);
            }
            _ => panic!("expected IPv6 packet info"),
        }
        assert!(parse_local_addr(&buf[..10]).is_none());
        buf[..8].copy_from_slice(&1000usize.to_ne_bytes());
        assert!(parse_local_addr(&buf).is_none(), "length past the end");
    }

    #[test]
    fn sockaddrs_decode() {
        let mut v4 = [0u8; 16];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&6881u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(parse_sockaddr(&v4), Some("127.0.0.1:6881".parse().unwrap()));
        let mut v6 = [0u8; 28];
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&80u16.to_be_bytes());
        v6[23] = 1;
        assert_eq!(parse_sockaddr(&v6), Some("[::1]:80".parse().unwrap()));
        assert_eq!(parse_sockaddr(&v6[..20]), None);
        assert_eq!(parse_sockaddr(&[0, 0]), None);
    }

    #[test]
    fn sockaddr_layout_matches_libc() {
        assert_eq!(CMSG_HEADER_LEN, 16);
        assert_eq!(NAME_LEN, 28);
        assert_eq!(std::mem::size_of::<libc::in_pktinfo>(), 12);
        assert_eq!(std::mem::size_of::<libc::in6_pktinfo>(), 20);
    }
}
