//! The byte layout of the ledger's records, shared by snapshots and the
//! credit journal (integers little-endian):
//!
//! ```text
//! key       key_len u8 | passkey
//! transfer  key | info_hash [20] | user_id u64 | torrent_id u64
//!           | uploaded u64 | downloaded u64 | raw_uploaded u64
//!           | raw_downloaded u64 | seed_seconds u64 | completed u32
//!           | last_announce u64
//! session   key | info_hash [20] | peer_id [20] | uploaded u64
//!           | downloaded u64 | time u32 | seeder u8
//! ```
//!
//! (A session's `time` is its age in a snapshot, and in the journal the
//! unix second of its last announce minus `JOURNAL_EPOCH`.) The reader
//! checks every length against the bytes it has; errors carry the offset.

use crate::protocol::{InfoHash, PeerId};
use crate::tracker::ledger::{Credit, Passkey, SessionState, Transfer};

/// The smallest transfer record: an empty passkey.
pub const MIN_TRANSFER_LEN: usize = 1 + 20 + 8 * 8 + 4;

/// Append a passkey: its length, then its bytes.
pub fn put_key(buf: &mut Vec<u8>, key: &Passkey) {
    buf.push(key.len() as u8);
    buf.extend_from_slice(key);
}

/// Append a transfer: passkey, info hash, the credit's fields.
pub fn put_transfer(buf: &mut Vec<u8>, t: &Transfer) {
    put_key(buf, &t.passkey);
    buf.extend_from_slice(&t.info_hash.0);
    let c = &t.credit;
    for v in [
        c.user_id,
        c.torrent_id,
        c.uploaded,
        c.downloaded,
        c.raw_uploaded,
        c.raw_downloaded,
        c.seed_seconds,
    ] {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    buf.extend_from_slice(&c.completed.to_le_bytes());
    buf.extend_from_slice(&c.last_announce.to_le_bytes());
}

/// A session with `time` in place of its age (see the module comment).
pub fn put_session(buf: &mut Vec<u8>, s: &SessionState, time: u32) {
    put_key(buf, &s.passkey);
    buf.extend_from_slice(&s.info_hash.0);
    buf.extend_from_slice(&s.peer_id.0);
    buf.extend_from_slice(&s.uploaded.to_le_bytes());
    buf.extend_from_slice(&s.downloaded.to_le_bytes());
    buf.extend_from_slice(&time.to_le_bytes());
    buf.push(u8::from(s.seeder));
}

/// Where a read failed (offset) and what was expected there.
pub type ReadError = (usize, &'static str);

/// Reads the layout above from a byte slice, checking every length.
pub struct Reader<'a> {
    /// The bytes.
    pub bytes: &'a [u8],
    /// Where the next read starts.
    pub at: usize,
}

impl<'a> Reader<'a> {
    /// A reader of `bytes` from offset `at`.
    pub fn new(bytes: &'a [u8], at: usize) -> Self {
        Reader { bytes, at }
    }

    /// Bytes left after `at`.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or((self.at, "a record runs past the end"))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], ReadError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    /// The next byte.
    pub fn u8(&mut self) -> Result<u8, ReadError> {
        Ok(self.take(1)?[0])
    }

    /// The next big-endian u32.
    pub fn u32(&mut self) -> Result<u32, ReadError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// The next big-endian u64.
    pub fn u64(&mut self) -> Result<u64, ReadError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// The next passkey (`put_key`).
    pub fn key(&mut self) -> Result<Passkey, ReadError> {
        let at = self.at;
        let n = usize::from(self.u8()?);
        let key = self.take(n)?;
        Passkey::try_from(key).map_err(|_| (at, "a passkey longer than 64 bytes"))
    }

    /// A transfer of snapshot records 3 and 5 (before credits had more
    /// than bytes): the reported bytes are the credited ones.
    pub fn bytes_transfer(&mut self) -> Result<Transfer, ReadError> {
        let passkey = self.key()?;
        let info_hash = InfoHash(self.array()?);
        let (uploaded, downloaded) = (self.u64()?, self.u64()?);
        Ok(Transfer {
            passkey,
            info_hash,
            credit: Credit {
                uploaded,
                downloaded,
                raw_uploaded: uploaded,
                raw_downloaded: downloaded,
                ..Credit::default()
            },
        })
    }

    /// The next transfer (`put_transfer`).
    pub fn transfer(&mut self) -> Result<Transfer, ReadError> {
        let passkey = self.key()?;
        let info_hash = InfoHash(self.array()?);
        let mut v = [0u64; 7];
        for x in &mut v {
            *x = self.u64()?;
        }
        let completed = self.u32()?;
        let last_announce = self.u64()?;
        let [
            user_id,
            torrent_id,
            uploaded,
            downloaded,
            raw_uploaded,
            raw_downloaded,
            seed_seconds,
        ] = v;
        Ok(Transfer {
            passkey,
            info_hash,
            credit: Credit {
                user_id,
                torrent_id,
                uploaded,
                downloaded,
                raw_uploaded,
                raw_downloaded,
                seed_seconds,
                completed,
                last_announce,
            },
        })
    }

    /// A session and its `time` (see the module comment), in `age`.
    pub fn session(&mut self) -> Result<SessionState, ReadError> {
        let passkey = self.key()?;
        let info_hash = InfoHash(self.array()?);
        let peer_id = PeerId(self.array()?);
        let (uploaded, downloaded) = (self.u64()?, self.u64()?);
        let age = self.u32()?;
        let at = self.at;
        let seeder = match self.u8()? {
            0 => false,
            1 => true,
            _ => return Err((at, "a session's seeder flag is neither 0 nor 1")),
        };
        Ok(SessionState {
            passkey,
            info_hash,
            peer_id,
            uploaded,
            downloaded,
            age,
            seeder,
        })
    }

    /// `count` items of at least `min_len` bytes each: refused before any
    /// allocation if the bytes left cannot hold them.
    pub fn check_count(&self, count: usize, min_len: usize) -> Result<(), ReadError> {
        if count > self.remaining() / min_len.max(1) {
            return Err((self.at, "a count larger than the bytes left"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_and_sessions_read_back() {
        let t = Transfer {
            passkey: Passkey::try_from(&b"abcdef0123456789"[..]).unwrap(),
            info_hash: InfoHash([3; 20]),
            credit: Credit {
                user_id: 1,
                torrent_id: 2,
                uploaded: 3,
                downloaded: 4,
                raw_uploaded: 5,
                raw_downloaded: 6,
                seed_seconds: 7,
                completed: 8,
                last_announce: 9,
            },
        };
        let s = SessionState {
            passkey: t.passkey.clone(),
            info_hash: t.info_hash,
            peer_id: PeerId([4; 20]),
            uploaded: 10,
            downloaded: 11,
            age: 12,
            seeder: true,
        };
        let mut buf = Vec::new();
        put_transfer(&mut buf, &t);
        put_session(&mut buf, &s, 12);
        let mut r = Reader::new(&buf, 0);
        assert_eq!(r.transfer().unwrap(), t);
        assert_eq!(r.session().unwrap(), s);
        assert_eq!(r.remaining(), 0);
        assert!(r.check_count(1, 1).is_err());
        let mut short = Reader::new(&buf[..buf.len() - 1], 0);
        short.transfer().unwrap();
        assert_eq!(short.session().unwrap_err().1, "a record runs past the end");
    }
}
