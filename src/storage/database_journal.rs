//! Private mode on a database: the credit journal, the write-ahead log that
//! makes every flush to `rt_credits` exactly once across crashes.
//!
//! Each flush interval the database thread cuts the ledger (`TransferLedger
//! ::cut`): the pending credits become batch N, and the session baselines
//! they were measured against go with them. The batch and the baselines
//! are appended here and synced *before* the batch is sent to the
//! database. After a crash the journal gives back the baselines of the
//! last cut, so the clients' next announces credit exactly what was not
//! yet in a batch (the credits pending at the crash are measured again,
//! not lost, not doubled), and the batches the database may not have got
//! (`rt_batches` says which it has).
//!
//! Format (integers little-endian; `transfer`, `session` and `key` as in
//! `storage/ledger_codec.rs`, a session's time being its age when the
//! record was written):
//!
//! ```text
//! header  "RTCREDJ1"
//! record  len u32 | crc32 u32 (of the body) | body (len bytes)
//! body    kind u8 | unix u64 | then by kind:
//!   1 base  next_batch u64 | n u32 | n x session
//!   2 cut   batch u64 (0: none) | n u32 | n x transfer
//!           | m u32 | m x session | k u32 | k x (key | info_hash [20] | peer_id [20])
//! ```
//!
//! A base record holds every session; the journal is rewritten as a base
//! (with any batch not yet applied) when it has grown past
//! `COMPACT_BYTES` or four times its last base, whichever is more. A
//! record that does not check out ends the journal: it was being written
//! when the tracker stopped, its batch never went to the database, and the
//! file is cut back to the record before.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::ledger_codec::{MIN_TRANSFER_LEN, Reader, put_key, put_session, put_transfer};
use crate::protocol::{InfoHash, PeerId};
use crate::tracker::ledger::{Batch, Cut, SessionKey, SessionState, TransferLedger};

const MAGIC: &[u8; 8] = b"RTCREDJ1";
const KIND_BASE: u8 = 1;
const KIND_CUT: u8 = 2;
/// The journal's epoch: a random number drawn when the journal is made,
/// kept by every rewrite. `rt_batches` rows carry it, so the batch numbers
/// of two journals (a lost one and its successor, or two trackers with
/// one node name) never meet. A journal from before epochs has none: 0.
const KIND_EPOCH: u8 = 3;
/// The journal is rewritten once it is this long (or four times its base).
pub const COMPACT_BYTES: u64 = 64 << 20;

/// A batch the journal holds, by where its record starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournaledBatch {
    /// The batch's number.
    pub id: u64,
    /// Where its record starts in the file.
    pub offset: u64,
}

/// What a replay gave back.
#[derive(Debug, Default)]
pub struct Replay {
    /// Every batch in the journal, oldest first (the database says which
    /// it has applied).
    pub batches: Vec<JournaledBatch>,
    /// The number the next batch gets.
    pub next_batch: u64,
    /// The journal's epoch (0: made before epochs).
    pub epoch: u64,
    /// Sessions the ledger follows after the replay.
    pub sessions: usize,
    /// Bytes of a record that did not check out, cut off the end.
    pub cut_off: u64,
}

/// The credit journal of database mode: appended and synced before each
/// flush, replayed at start, compacted once long.
pub struct DatabaseJournal {
    path: PathBuf,
    file: File,
    len: u64,
    base_len: u64,
    epoch: u64,
}

impl DatabaseJournal {
    /// Open (or create) the journal at `path` and replay it into `ledger`
    /// at tracker time `now`, unix time `unix_now`: its sessions replace
    /// the ledger's. A torn last record is cut off.
    pub fn open(
        path: &Path,
        ledger: &TransferLedger,
        now: u32,
        unix_now: u64,
    ) -> io::Result<(DatabaseJournal, Replay)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut size = file.metadata()?.len();
        if size == 0 {
            let mut start = MAGIC.to_vec();
            let epoch = rand::random::<u64>().max(1);
            framed(&mut start, |body| epoch_body(body, unix_now, epoch))?;
            file.write_all(&start)?;
            file.sync_all()?;
            size = start.len() as u64;
        }
        ledger.reset();
        let (found, good_len) = replay(&mut file, ledger, now, unix_now)?;
        if good_len < size.max(MAGIC.len() as u64) {
            file.set_len(good_len)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        let journal = DatabaseJournal {
            // Absolute: a relative path stays this file whatever happens
            // to the working directory.
            path: std::path::absolute(path)?,
            file,
            len: good_len,
            base_len: 0,
            epoch: found.epoch,
        };
        Ok((journal, found))
    }

    /// The journal's length in bytes.
    pub fn bytes(&self) -> u64 {
        self.len
    }

    /// The journal's epoch (0: a journal made before epochs).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Append a cut (with its batch, if it has credits) and sync. Returns
    /// where the record starts.
    pub fn append(&mut self, unix: u64, batch: Option<&Batch>, cut: &Cut) -> io::Result<u64> {
        let offset = self.len;
        let mut record = Vec::new();
        framed(&mut record, |body| cut_body(body, unix, batch, cut))?;
        // On a failed write the file may hold part of the record: cut it
        // back, so what follows is not appended after garbage.
        if let Err(e) = self
            .file
            .write_all(&record)
            .and_then(|()| self.file.sync_data())
        {
            let _ = self.file.set_len(offset);
            let _ = self.file.seek(SeekFrom::Start(offset));
            return Err(e);
        }
        self.len += record.len() as u64;
        Ok(offset)
    }

    /// Whether it is time to rewrite the journal as a base.
    pub fn wants_compaction(&self) -> bool {
        self.len > COMPACT_BYTES.max(4 * self.base_len)
    }

    /// Rewrite the journal as a base of `cut` (taken with every session)
    /// and the batches still to apply (`pending`, read from the old file,
    /// then `batch` of this cut): written aside, synced, renamed over.
    /// Returns where each batch now is.
    pub fn compact(
        &mut self,
        unix: u64,
        next_batch: u64,
        cut: &Cut,
        pending: &[JournaledBatch],
        batch: Option<&Batch>,
    ) -> io::Result<Vec<JournaledBatch>> {
        let tmp = super::snapshot::sibling(&self.path, "tmp");
        let mut out = File::create(&tmp)?;
        let mut bytes = MAGIC.to_vec();
        framed(&mut bytes, |body| epoch_body(body, unix, self.epoch))?;
        framed(&mut bytes, |body| {
            body.push(KIND_BASE);
            body.extend_from_slice(&unix.to_le_bytes());
            body.extend_from_slice(&next_batch.to_le_bytes());
            body.extend_from_slice(&(cut.sessions.len() as u32).to_le_bytes());
            for s in &cut.sessions {
                put_session(body, s, s.age);
            }
        })?;
        let mut moved = Vec::new();
        let empty = Cut::default();
        let old: Vec<Batch> = pending
            .iter()
            .map(|b| self.read_batch(b.offset))
            .collect::<io::Result<_>>()?;
        for b in old.iter().chain(batch) {
            moved.push(JournaledBatch {
                id: b.id,
                offset: bytes.len() as u64,
            });
            framed(&mut bytes, |body| cut_body(body, unix, Some(b), &empty))?;
        }
        out.write_all(&bytes)?;
        out.sync_all()?;
        fs::rename(&tmp, &self.path)?;
        // From the rename on, `out` (written to its end) is the journal:
        // appends go to it, and nothing between here and the return can
        // fail (a reopen could, with EMFILE, and leave appends going to the
        // old, unlinked file: their credits lost, or sent twice after a
        // crash).
        let len = bytes.len() as u64;
        // What the rewrite holds (the base and the batches kept) is the
        // size the next rewrite is measured against: batches kept for long
        // (set aside) must not make every cut rewrite the journal.
        (self.file, self.len, self.base_len) = (out, len, len);
        // The rewrite is in place and its bytes are synced: from here the
        // caller must treat it as done (the cut's batch is in it), so a
        // directory that will not sync is logged, not returned.
        let dir = super::snapshot::parent_dir(&self.path);
        if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
            tracing::warn!(
                "credit journal rewritten, but its directory {} did not sync: {e}",
                dir.display()
            );
        }
        Ok(moved)
    }

    /// The batch of the cut record at `offset`.
    pub fn read_batch(&self, offset: u64) -> io::Result<Batch> {
        let mut file = File::open(&self.path)?;
        let left = file.metadata()?.len().saturating_sub(offset);
        file.seek(SeekFrom::Start(offset))?;
        let body = read_record(&mut BufReader::new(file), left)?
            .ok_or_else(|| invalid("no record where a batch was journaled".into()))?;
        match parse(&body).map_err(|(at, what)| invalid(format!("at {at}: {what}")))? {
            Entry::Cut { batch: Some(b), .. } => Ok(b),
            _ => Err(invalid("no batch where one was journaled".into())),
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Append a record whose body `write` puts in place (no copy of a body
/// that can be hundreds of megabytes), then its length and CRC before it.
fn framed(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    write(out);
    let body = &out[start + 8..];
    let len = u32::try_from(body.len())
        .map_err(|_| invalid(format!("a record of {} bytes (4 GiB at most)", body.len())))?;
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn epoch_body(body: &mut Vec<u8>, unix: u64, epoch: u64) {
    body.push(KIND_EPOCH);
    body.extend_from_slice(&unix.to_le_bytes());
    body.extend_from_slice(&epoch.to_le_bytes());
}

fn cut_body(body: &mut Vec<u8>, unix: u64, batch: Option<&Batch>, cut: &Cut) {
    body.push(KIND_CUT);
    body.extend_from_slice(&unix.to_le_bytes());
    let transfers = batch.map_or(&[][..], |b| &b.transfers[..]);
    body.extend_from_slice(&batch.map_or(0, |b| b.id).to_le_bytes());
    body.extend_from_slice(&(transfers.len() as u32).to_le_bytes());
    for t in transfers {
        put_transfer(body, t);
    }
    body.extend_from_slice(&(cut.sessions.len() as u32).to_le_bytes());
    for s in &cut.sessions {
        put_session(body, s, s.age);
    }
    body.extend_from_slice(&(cut.removed.len() as u32).to_le_bytes());
    for k in &cut.removed {
        put_key(body, &k.passkey);
        body.extend_from_slice(&k.info_hash.0);
        body.extend_from_slice(&k.peer_id.0);
    }
}

/// One record's body, or None at a clean end; an error for a record that
/// does not check out. `left`: the bytes the source has from here, so a
/// corrupt length never allocates more than the file holds.
fn read_record(r: &mut impl Read, left: u64) -> io::Result<Option<Vec<u8>>> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head[..4]) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    r.read_exact(&mut head[4..])?;
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
    if u64::from(len) + 8 > left {
        return Err(invalid(format!("a record of {len} bytes")));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    if crc32fast::hash(&body) != u32::from_le_bytes(head[4..].try_into().expect("4 bytes")) {
        return Err(invalid("a record whose checksum does not match".into()));
    }
    Ok(Some(body))
}

enum Entry {
    Epoch(u64),
    Base {
        next_batch: u64,
        sessions: Vec<SessionState>,
    },
    Cut {
        batch: Option<Batch>,
        sessions: Vec<SessionState>,
        removed: Vec<SessionKey>,
    },
}

/// A record's body; every session's age is made current with the time
/// since the record was written (`unix` of the record, read here).
fn parse(body: &[u8]) -> Result<Entry, (usize, &'static str)> {
    let mut r = Reader::new(body, 0);
    let kind = r.u8()?;
    let _unix = r.u64()?;
    let entry = match kind {
        KIND_EPOCH => Entry::Epoch(r.u64()?),
        KIND_BASE => {
            let next_batch = r.u64()?;
            Entry::Base {
                next_batch,
                sessions: sessions(&mut r)?,
            }
        }
        KIND_CUT => {
            let id = r.u64()?;
            let n = r.u32()? as usize;
            r.check_count(n, MIN_TRANSFER_LEN)?;
            let transfers = (0..n)
                .map(|_| r.transfer())
                .collect::<Result<Vec<_>, _>>()?;
            let sessions = sessions(&mut r)?;
            let k = r.u32()? as usize;
            r.check_count(k, 41)?;
            let mut removed = Vec::with_capacity(k);
            for _ in 0..k {
                removed.push(SessionKey {
                    passkey: r.key()?,
                    info_hash: InfoHash(r.array()?),
                    peer_id: PeerId(r.array()?),
                });
            }
            Entry::Cut {
                batch: (id != 0).then_some(Batch { id, transfers }),
                sessions,
                removed,
            }
        }
        _ => return Err((0, "an unknown record kind")),
    };
    if r.remaining() != 0 {
        return Err((r.at, "bytes after the record"));
    }
    Ok(entry)
}

fn sessions(r: &mut Reader<'_>) -> Result<Vec<SessionState>, (usize, &'static str)> {
    let n = r.u32()? as usize;
    r.check_count(n, 74)?;
    (0..n).map(|_| r.session()).collect()
}

/// Walk a journal's bytes as a replay does, without a ledger (the fuzz
/// target's entry point): the records that check out, and the length of
/// the good part (0: not a journal).
pub fn scan(bytes: &[u8]) -> (usize, u64) {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return (0, 0);
    }
    let (mut records, mut good) = (0, MAGIC.len() as u64);
    let mut r = &bytes[MAGIC.len()..];
    while let Ok(Some(body)) = read_record(&mut r, bytes.len() as u64 - good) {
        if parse(&body).is_err() {
            break;
        }
        records += 1;
        good += 8 + body.len() as u64;
    }
    (records, good)
}

/// Replay every record that checks out into `ledger`; returns what it
/// found and the length of the good part of the file.
fn replay(
    file: &mut File,
    ledger: &TransferLedger,
    now: u32,
    unix_now: u64,
) -> io::Result<(Replay, u64)> {
    file.seek(SeekFrom::Start(0))?;
    let size = file.metadata()?.len();
    let mut r = BufReader::new(&mut *file);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(invalid(
            "not a ringtracker credit journal (no RTCREDJ1 header)".into(),
        ));
    }
    let mut out = Replay {
        next_batch: 1,
        ..Replay::default()
    };
    let mut good = MAGIC.len() as u64;
    loop {
        let body = match read_record(&mut r, size.saturating_sub(good)) {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ) =>
            {
                break;
            }
            Err(e) => return Err(e),
        };
        let Ok(entry) = parse(&body) else { break };
        let written = u64::from_le_bytes(body[1..9].try_into().expect("checked by parse"));
        let since = u32::try_from(unix_now.saturating_sub(written)).unwrap_or(u32::MAX);
        let restore = |s: SessionState| {
            let age = s.age.saturating_add(since);
            ledger.import_session(SessionState { age, ..s }, now);
        };
        match entry {
            Entry::Epoch(epoch) => out.epoch = epoch,
            Entry::Base {
                next_batch,
                sessions,
            } => {
                ledger.reset();
                sessions.into_iter().for_each(restore);
                out.next_batch = out.next_batch.max(next_batch);
            }
            Entry::Cut {
                batch,
                sessions,
                removed,
            } => {
                // A session that ended and began again since the last cut
                // is in both: the one there now is in `sessions`.
                removed.iter().for_each(|k| ledger.forget_session(k));
                sessions.into_iter().for_each(restore);
                if let Some(b) = batch {
                    out.next_batch = out.next_batch.max(b.id.saturating_add(1));
                    out.batches.push(JournaledBatch {
                        id: b.id,
                        offset: good,
                    });
                }
            }
        }
        good += 8 + body.len() as u64;
    }
    out.cut_off = size.saturating_sub(good);
    out.sessions = ledger.sessions();
    Ok((out, good))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Event;
    use crate::tracker::ledger::{Account, LedgerRules, Report};

    fn ledger() -> TransferLedger {
        TransferLedger::new(LedgerRules {
            cuts: true,
            ..LedgerRules::default()
        })
    }

    fn report(peer: u8, event: Event, uploaded: u64) -> Report<'static> {
        Report {
            passkey: b"abcdef0123456789",
            info_hash: InfoHash([5; 20]),
            peer_id: PeerId([peer; 20]),
            event,
            uploaded,
            downloaded: 0,
            left: 0,
            account: Account {
                user_id: 1,
                torrent_id: 2,
                upload_factor: 1.0,
                download_factor: 1.0,
            },
            ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port: 6881,
            agent: b"",
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rt-credj-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_crash_after_a_cut_credits_from_its_baselines() {
        let d = dir("crash");
        let path = d.join("credits.journal");
        let l = ledger();
        let (mut j, replay) = DatabaseJournal::open(&path, &l, 0, 1000).unwrap();
        assert!(replay.batches.is_empty() && replay.sessions == 0);
        l.record(&report(1, Event::Started, 0), 0).unwrap();
        l.record(&report(1, Event::None, 100), 10).unwrap();
        l.record(&report(2, Event::Started, 0), 10).unwrap();
        let cut = l.cut(10, false);
        let batch = Batch {
            id: 1,
            transfers: cut.transfers.clone(),
        };
        let at = j.append(1010, Some(&batch), &cut).unwrap();
        // After the cut: more credit, then peer 2 stops, then a crash.
        l.record(&report(1, Event::None, 150), 20).unwrap();
        l.record(&report(2, Event::Stopped, 7), 20).unwrap();
        let cut2 = l.cut(20, false);
        j.append(
            1020,
            None,
            &Cut {
                transfers: Vec::new(),
                ..cut2
            },
        )
        .unwrap();
        drop(j);

        let after = ledger();
        let (j, replay) = DatabaseJournal::open(&path, &after, 0, 1030).unwrap();
        assert_eq!(replay.batches, vec![JournaledBatch { id: 1, offset: at }]);
        assert_eq!(replay.next_batch, 2);
        assert_eq!(j.read_batch(at).unwrap(), batch);
        assert_eq!(after.sessions(), 1, "peer 2's stop is replayed");
        // Peer 1's baseline is 150: its next report credits from there.
        after.record(&report(1, Event::None, 400), 5).unwrap();
        let again = after.cut(5, false);
        assert_eq!(again.transfers[0].credit.uploaded, 250);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_epoch_is_drawn_once_and_kept_by_rewrites_and_a_legacy_journal_has_none() {
        let d = dir("epoch");
        let path = d.join("credits.journal");
        let l = ledger();
        let (mut j, replay) = DatabaseJournal::open(&path, &l, 0, 1000).unwrap();
        let epoch = j.epoch();
        assert!(epoch != 0 && replay.epoch == epoch);
        let cut = l.cut(0, true);
        j.compact(1000, 1, &cut, &[], None).unwrap();
        drop(j);
        let (j, replay) = DatabaseJournal::open(&path, &ledger(), 0, 1000).unwrap();
        assert_eq!((j.epoch(), replay.epoch), (epoch, epoch));
        // Another journal, another epoch.
        let other = d.join("other.journal");
        assert_ne!(
            DatabaseJournal::open(&other, &ledger(), 0, 1000)
                .unwrap()
                .0
                .epoch(),
            epoch
        );
        // A journal made before epochs: the header alone.
        let legacy = d.join("legacy.journal");
        fs::write(&legacy, MAGIC).unwrap();
        assert_eq!(
            DatabaseJournal::open(&legacy, &ledger(), 0, 1000)
                .unwrap()
                .0
                .epoch(),
            0
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_journal_named_without_a_directory_compacts() {
        // A bare file name (relative to the working directory, the
        // package's root under cargo test) has the empty path as parent.
        let path = Path::new("rt-unit-relative-journal.tmp");
        let _ = fs::remove_file(path);
        let l = ledger();
        let (mut j, _) = DatabaseJournal::open(path, &l, 0, 1000).unwrap();
        l.record(&report(1, Event::Started, 10), 0).unwrap();
        let cut = l.cut(0, true);
        let batch = Batch {
            id: 1,
            transfers: cut.transfers.clone(),
        };
        let moved = j.compact(1000, 2, &cut, &[], Some(&batch)).unwrap();
        // Appends after the rewrite go to the file at the path.
        let at = j.append(
            1001,
            Some(&Batch {
                id: 2,
                ..batch.clone()
            }),
            &cut,
        );
        let reopened = DatabaseJournal::open(path, &ledger(), 0, 1001).unwrap().1;
        fs::remove_file(path).unwrap();
        assert_eq!(moved.len(), 1);
        assert!(at.is_ok());
        let ids: Vec<u64> = reopened.batches.iter().map(|b| b.id).collect();
        assert_eq!(ids, vec![1, 2]);
    }

    #[test]
    fn a_torn_record_is_cut_off_and_compaction_keeps_unapplied_batches() {
        let d = dir("torn");
        let path = d.join("credits.journal");
        let l = ledger();
        let (mut j, _) = DatabaseJournal::open(&path, &l, 0, 1000).unwrap();
        l.record(&report(1, Event::Started, 10), 0).unwrap();
        let cut = l.cut(0, false);
        let b1 = Batch {
            id: 1,
            transfers: cut.transfers.clone(),
        };
        let at1 = j.append(1000, Some(&b1), &cut).unwrap();
        let good = j.bytes();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let (mut j, replay) = DatabaseJournal::open(&path, &ledger(), 0, 1000).unwrap();
        assert_eq!((replay.cut_off, j.bytes()), (6, good));
        // Batch 1 is still to apply; a compaction with batch 2 keeps both.
        l.record(&report(3, Event::Started, 5), 1).unwrap();
        let cut = l.cut(1, true);
        assert_eq!(cut.sessions.len(), 2);
        let b2 = Batch {
            id: 2,
            transfers: cut.transfers.clone(),
        };
        let moved = j
            .compact(
                1001,
                3,
                &cut,
                &[JournaledBatch { id: 1, offset: at1 }],
                Some(&b2),
            )
            .unwrap();
        assert_eq!(moved.iter().map(|b| b.id).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(j.read_batch(moved[0].offset).unwrap(), b1);
        drop(j);
        let fresh = ledger();
        let (_, replay) = DatabaseJournal::open(&path, &fresh, 0, 1001).unwrap();
        assert_eq!(replay.batches, moved);
        assert_eq!((replay.next_batch, fresh.sessions()), (3, 2));
        fs::remove_dir_all(&d).unwrap();
    }
}
