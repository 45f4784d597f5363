//! The bencoded replies of the HTTP frontend (BEP 3, 23, 7, 24, 31, 48).
//!
//! A tracker reply is a handful of fixed keys, so this is a writer, not a
//! general encoder: each function appends one complete reply to a caller-
//! owned `Vec` (reused per connection, so no allocation once it has grown).
//! Dictionary keys are written in sorted (raw byte) order, as bencode
//! requires.

use std::io::Write;
use std::net::IpAddr;

use super::InfoHash;

fn int(out: &mut Vec<u8>, v: i64) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "i{v}e");
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    let _ = write!(out, "{}:", b.len());
    out.extend_from_slice(b);
}

/// BEP 31: when (if ever) a refused client should try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryIn {
    /// After this many minutes.
    Minutes(u32),
    /// Never (`retry in: never`).
    Never,
}

/// `d14:failure reason…8:retry in…e`.
pub fn write_failure(out: &mut Vec<u8>, reason: &str, retry: Option<RetryIn>) {
    out.push(b'd');
    bytes(out, b"failure reason");
    bytes(out, reason.as_bytes());
    match retry {
        Some(RetryIn::Minutes(m)) => {
            bytes(out, b"retry in");
            int(out, i64::from(m.max(1)));
        }
        Some(RetryIn::Never) => {
            bytes(out, b"retry in");
            bytes(out, b"never");
        }
        None => {}
    }
    out.push(b'e');
}

/// Everything an announce reply carries besides the peers themselves.
#[derive(Debug, Clone, Copy)]
pub struct AnnounceReplyHead {
    /// Seeders.
    pub complete: u32,
    /// Leechers.
    pub incomplete: u32,
    /// Completed downloads.
    pub downloaded: u32,
    /// Seconds until the next announce.
    pub interval: u32,
    /// `min interval`.
    pub min_interval: u32,
    /// BEP 24: the address the tracker saw.
    pub external_ip: Option<IpAddr>,
}

/// How to write the peers of an announce reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerFormat {
    /// BEP 23 / BEP 7: `peers` holds 6-byte IPv4 entries, `peers6` 18-byte
    /// IPv6 entries.
    Compact,
    /// BEP 3's list of dictionaries with `ip` and `port` (no `peer id`: the
    /// tracker does not keep peer ids), the asker's family first (IPv6
    /// first: `v6_first`).
    Dictionaries {
        /// The asker is listed under an IPv6 address.
        v6_first: bool,
    },
}

/// Write an announce reply. `peers4` is a run of 6-byte compact IPv4
/// entries, `peers6` of 18-byte IPv6 entries (either may be empty).
pub fn write_announce(
    out: &mut Vec<u8>,
    head: &AnnounceReplyHead,
    peers4: &[u8],
    peers6: &[u8],
    format: PeerFormat,
) {
    debug_assert!(peers4.len().is_multiple_of(6) && peers6.len().is_multiple_of(18));
    out.push(b'd');
    bytes(out, b"complete");
    int(out, i64::from(head.complete));
    bytes(out, b"downloaded");
    int(out, i64::from(head.downloaded));
    if let Some(ip) = head.external_ip {
        bytes(out, b"external ip");
        match ip {
            IpAddr::V4(a) => bytes(out, &a.octets()),
            IpAddr::V6(a) => bytes(out, &a.octets()),
        }
    }
    bytes(out, b"incomplete");
    int(out, i64::from(head.incomplete));
    bytes(out, b"interval");
    int(out, i64::from(head.interval));
    bytes(out, b"min interval");
    int(out, i64::from(head.min_interval));
    match format {
        PeerFormat::Compact => {
            bytes(out, b"peers");
            bytes(out, peers4);
            if !peers6.is_empty() {
                bytes(out, b"peers6");
                bytes(out, peers6);
            }
        }
        PeerFormat::Dictionaries { v6_first } => {
            bytes(out, b"peers");
            out.push(b'l');
            if !v6_first {
                v4_dicts(out, peers4);
            }
            for p in peers6.chunks_exact(18) {
                let octets: [u8; 16] = p[..16].try_into().expect("16 bytes");
                let ip = std::net::Ipv6Addr::from(octets);
                peer_dict(out, &ip.to_string(), u16::from_be_bytes([p[16], p[17]]));
            }
            if v6_first {
                v4_dicts(out, peers4);
            }
            out.push(b'e');
        }
    }
    out.push(b'e');
}

fn v4_dicts(out: &mut Vec<u8>, peers4: &[u8]) {
    for p in peers4.chunks_exact(6) {
        let ip = std::net::Ipv4Addr::new(p[0], p[1], p[2], p[3]);
        peer_dict(out, &ip.to_string(), u16::from_be_bytes([p[4], p[5]]));
    }
}

fn peer_dict(out: &mut Vec<u8>, ip: &str, port: u16) {
    out.push(b'd');
    bytes(out, b"ip");
    bytes(out, ip.as_bytes());
    bytes(out, b"port");
    int(out, i64::from(port));
    out.push(b'e');
}

/// One torrent's line in a scrape reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeEntry {
    /// Seeders.
    pub complete: u32,
    /// Completed downloads.
    pub downloaded: u32,
    /// Leechers.
    pub incomplete: u32,
}

/// Write a scrape reply (BEP 48). `files` must be sorted by info hash and
/// free of duplicates (bencode dictionary keys are unique and ordered).
pub fn write_scrape(out: &mut Vec<u8>, files: &[(InfoHash, ScrapeEntry)]) {
    debug_assert!(files.windows(2).all(|w| w[0].0 < w[1].0));
    out.push(b'd');
    bytes(out, b"files");
    out.push(b'd');
    for (hash, e) in files {
        bytes(out, &hash.0);
        out.push(b'd');
        bytes(out, b"complete");
        int(out, i64::from(e.complete));
        bytes(out, b"downloaded");
        int(out, i64::from(e.downloaded));
        bytes(out, b"incomplete");
        int(out, i64::from(e.incomplete));
        out.push(b'e');
    }
    out.push(b'e');
    out.push(b'e');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> AnnounceReplyHead {
        AnnounceReplyHead {
            complete: 2,
            incomplete: 1,
            downloaded: 7,
            interval: 1800,
            min_interval: 900,
            external_ip: None,
        }
    }

    #[test]
    fn failure_with_and_without_retry() {
        let mut out = Vec::new();
        write_failure(&mut out, "nope", None);
        assert_eq!(out, b"d14:failure reason4:nopee");
        out.clear();
        write_failure(&mut out, "slow down", Some(RetryIn::Minutes(5)));
        assert_eq!(out, b"d14:failure reason9:slow down8:retry ini5ee");
        out.clear();
        write_failure(&mut out, "banned", Some(RetryIn::Never));
        assert_eq!(out, b"d14:failure reason6:banned8:retry in5:nevere");
    }

    #[test]
    fn compact_announce_has_sorted_keys_and_splits_families() {
        let mut out = Vec::new();
        let mut h = head();
        h.external_ip = Some("127.0.0.1".parse().unwrap());
        let v4 = [10, 0, 0, 1, 0x1a, 0xe1];
        let mut v6 = [0u8; 18];
        v6[15] = 1;
        v6[17] = 80;
        write_announce(&mut out, &h, &v4, &v6, PeerFormat::Compact);
        let mut expected = b"d8:completei2e10:downloadedi7e11:external ip4:\x7f\x00\x00\x01\
10:incompletei1e8:intervali1800e12:min intervali900e5:peers6:"
            .to_vec();
        expected.extend_from_slice(&v4);
        expected.extend_from_slice(b"6:peers618:");
        expected.extend_from_slice(&v6);
        expected.push(b'e');
        assert_eq!(out, expected);
    }

    #[test]
    fn empty_compact_announce_still_has_peers() {
        let mut out = Vec::new();
        write_announce(&mut out, &head(), &[], &[], PeerFormat::Compact);
        assert!(out.ends_with(b"5:peers0:e"));
        assert!(!out.windows(6).any(|w| w == b"peers6"));
    }

    #[test]
    fn dictionary_model() {
        let mut out = Vec::new();
        let mut v6 = [0u8; 18];
        v6[15] = 1;
        v6[16] = 0x1a;
        v6[17] = 0xe1;
        write_announce(
            &mut out,
            &head(),
            &[10, 0, 0, 1, 0, 80],
            &v6,
            PeerFormat::Dictionaries { v6_first: false },
        );
        let s = String::from_utf8_lossy(&out);
        assert!(
            s.ends_with("5:peersld2:ip8:10.0.0.14:porti80eed2:ip3:::14:porti6881eeee"),
            "{s}"
        );
    }

    #[test]
    fn scrape_files() {
        let mut out = Vec::new();
        let e = ScrapeEntry {
            complete: 1,
            downloaded: 2,
            incomplete: 3,
        };
        write_scrape(&mut out, &[(InfoHash([b'a'; 20]), e)]);
        assert_eq!(
            out,
            b"d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei1e10:downloadedi2e10:incompletei3eeee"
        );
        out.clear();
        write_scrape(&mut out, &[]);
        assert_eq!(out, b"d5:filesdee");
    }
}
