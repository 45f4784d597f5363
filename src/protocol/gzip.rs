//! HTTP's gzip content coding (RFC 9110 §8.4.1.3, RFC 1952) for big scrape
//! bodies: whether a request accepts it, and one reusable encoder per
//! worker, so a compressed reply allocates nothing in steady state.
//!
//! The deflate stream is `flate2`'s (miniz_oxide, pure Rust); the gzip
//! member around it is ten header bytes and an eight-byte trailer, written
//! here so that one `Compress` (about 300 KiB of state) serves every
//! request instead of being made per body.

use flate2::{Compress, Compression, FlushCompress, Status};

/// Replies shorter than this are sent plain: gzip's 18 bytes of framing
/// and the CPU are not worth it (`http.gzip_min_bytes`' default).
pub const GZIP_MIN_BYTES: usize = 1024;

/// The level for a body compressed per request: 1 (fastest). Scrape
/// bodies' 20-byte info hashes do not compress at all, so higher levels
/// gain little (2.87x at 1, 3.14x at 6 on the full scrape of loadgen's
/// 50,000-torrent workload) for several times the CPU.
pub const PER_REQUEST_LEVEL: u32 = 1;

/// The level for a body compressed once and shared (a full scrape) of
/// `len` bytes: 6 up to 16 MiB (the better ratio paid once per build, at
/// most about half a second of the worker's time), 1 beyond, so a
/// full scrape of millions of torrents holds its worker for about a
/// second per 300 MB, not ten.
pub fn shared_level(len: usize) -> u32 {
    if len <= 16 << 20 {
        6
    } else {
        PER_REQUEST_LEVEL
    }
}

/// What a request's `Accept-Encoding` lines say of gzip, line by line
/// (several lines are one comma-separated list, RFC 9110 §5.3).
#[derive(Debug, Default, Clone, Copy)]
pub struct GzipAcceptance {
    /// What `gzip` / `x-gzip` items said (a refusal sticks).
    gzip: Option<bool>,
    /// What a `*` item said.
    any: Option<bool>,
}

impl GzipAcceptance {
    /// Take in one `Accept-Encoding` value.
    pub fn add(&mut self, value: &[u8]) {
        for item in value.split(|&b| b == b',') {
            let mut parts = item.split(|&b| b == b';');
            let coding = parts.next().unwrap_or_default().trim_ascii();
            let wanted = parts.all(|p| !zero_q(p.trim_ascii()));
            if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
                self.gzip = Some(wanted && self.gzip != Some(false));
            } else if coding == b"*" {
                self.any = Some(wanted && self.any != Some(false));
            }
        }
    }

    /// Whether gzip is acceptable: `gzip` or `x-gzip` with a q-value above
    /// 0, else `*` with one (an explicit `gzip;q=0` wins over `*`).
    pub fn accepts(&self) -> bool {
        self.gzip.or(self.any).unwrap_or(false)
    }
}

/// Whether one `Accept-Encoding` value accepts gzip (`GzipAcceptance`).
pub fn accepts_gzip(value: &[u8]) -> bool {
    let mut a = GzipAcceptance::default();
    a.add(value);
    a.accepts()
}

/// Whether a parameter is a q-value of zero (`q=0`, `Q=0.000`).
fn zero_q(param: &[u8]) -> bool {
    let Some(value) = param
        .strip_prefix(b"q=")
        .or_else(|| param.strip_prefix(b"Q="))
    else {
        return false;
    };
    let value = value.trim_ascii();
    value.first() == Some(&b'0') && value[1..].iter().all(|&b| b == b'.' || b == b'0')
}

/// A gzip encoder kept by one worker and reused for every body.
pub struct GzipEncoder {
    deflate: Compress,
}

impl Default for GzipEncoder {
    /// An encoder for per-request bodies (`PER_REQUEST_LEVEL`).
    fn default() -> Self {
        GzipEncoder::new(PER_REQUEST_LEVEL)
    }
}

impl GzipEncoder {
    /// An encoder at deflate `level` (0 to 9).
    pub fn new(level: u32) -> Self {
        GzipEncoder {
            deflate: Compress::new(Compression::new(level.min(9)), false),
        }
    }

    /// Append `input` as one gzip member to `out` (which grows as needed:
    /// kept and reused by the caller, it stops growing). False, with `out`
    /// as it was, if deflate failed (it does not for in-memory input; the
    /// caller then sends the body plain).
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        let start = out.len();
        // No name, no time, unknown OS (RFC 1952 §2.3).
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        self.deflate.reset();
        loop {
            let (was_in, was_out) = (self.deflate.total_in(), self.deflate.total_out());
            let consumed = was_in as usize;
            // Deflate's worst case is a little over its input (stored
            // blocks); each round reserves for what is left.
            out.reserve(input.len() - consumed + 64);
            let status = self
                .deflate
                .compress_vec(&input[consumed..], out, FlushCompress::Finish);
            let stalled = (self.deflate.total_in(), self.deflate.total_out()) == (was_in, was_out);
            match status {
                Ok(Status::StreamEnd) => break,
                Ok(Status::Ok | Status::BufError) if !stalled => {}
                _ => {
                    out.truncate(start);
                    return false;
                }
            }
        }
        let crc = crc32fast::hash(input);
        out.extend_from_slice(&crc.to_le_bytes());
        // ISIZE: the input's length modulo 2^32.
        out.extend_from_slice(&(input.len() as u32).to_le_bytes());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::{GzipAcceptance, GzipEncoder, accepts_gzip};
    use std::io::Read;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut plain)
            .expect("a valid gzip member");
        plain
    }

    #[test]
    fn members_decode_to_their_input_with_one_reused_encoder() {
        for level in [super::PER_REQUEST_LEVEL, super::shared_level(0)] {
            round_trips(&mut GzipEncoder::new(level));
        }
    }

    fn round_trips(enc: &mut GzipEncoder) {
        let mut out = Vec::new();
        let big: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for input in [&b""[..], b"d5:filesdee", &big, b"short again"] {
            out.clear();
            assert!(enc.encode(input, &mut out));
            assert_eq!(gunzip(&out), input);
        }
        // Incompressible input still round-trips (stored blocks).
        let noise: Vec<u8> = (0..100_000u64)
            .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
            .collect();
        out.clear();
        assert!(enc.encode(&noise, &mut out));
        assert_eq!(gunzip(&out), noise);
    }

    #[test]
    fn accept_encoding_values() {
        for yes in [
            &b"gzip"[..],
            b"deflate, gzip;q=0.5",
            b"GZIP",
            b"x-gzip",
            b"br;q=1.0, *;q=0.1",
            b"gzip, deflate, br",
            b" gzip ; q=1",
        ] {
            assert!(accepts_gzip(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [
            &b""[..],
            b"identity",
            b"deflate, br",
            b"gzip;q=0",
            b"gzip; q=0.000",
            b"*, gzip;q=0",
            b"*;q=0",
            b"gzipx",
        ] {
            assert!(!accepts_gzip(no), "{}", String::from_utf8_lossy(no));
        }
        // Two lines are one list: a refusal on either stands.
        let mut two = GzipAcceptance::default();
        two.add(b"gzip");
        two.add(b"gzip;q=0");
        assert!(!two.accepts());
        let mut star = GzipAcceptance::default();
        star.add(b"br");
        star.add(b"*");
        assert!(star.accepts());
    }
}
