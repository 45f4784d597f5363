//! Private mode on a passkey file: the ledger journal, an append-only,
//! tab-separated file of the credits
//! the `TransferLedger` collected, in numbered batches, one line per
//! passkey and torrent:
//!
//! ```text
//! batch <TAB> unix_time <TAB> passkey <TAB> info_hash (40 hex) <TAB> uploaded <TAB> downloaded
//! ```
//!
//! Plain text appends are the smallest step to a database: an importer
//! tails the file and sums the columns; a line is complete once its newline
//! is written, so a line without one (a crash mid-append) is to be skipped,
//! and the batch number lets it load each batch once. The tracker appends a
//! batch, then confirms it to the ledger; at start it reads the last batch
//! number in the file and skips what the file already holds, so a batch
//! carried over by a snapshot is appended exactly once. Rotate the file
//! only while the tracker is stopped (a fresh file says "nothing yet").

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::tracker::ledger::{Batch, TransferLedger};

/// The ledger journal of passkey-file mode, by its path (opened for each
/// append).
#[derive(Debug, Clone)]
pub struct PasskeyJournal {
    path: PathBuf,
}

impl PasskeyJournal {
    /// The journal at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        PasskeyJournal { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Seal the ledger's pending credits and append every batch not yet
    /// stored. Returns how many lines were appended; on error the batches
    /// not written stay in the ledger, with their numbers, for the next try.
    pub fn flush(&self, ledger: &TransferLedger, unix_time: u64) -> io::Result<usize> {
        ledger.seal();
        self.deliver(ledger, unix_time)
    }

    /// Append the ledger's sealed, unconfirmed batches (oldest first) and
    /// confirm each once it is written.
    pub fn deliver(&self, ledger: &TransferLedger, unix_time: u64) -> io::Result<usize> {
        let mut lines = 0;
        for batch in ledger.batches().0 {
            self.append(&batch, unix_time)?;
            ledger.confirm(batch.id);
            lines += batch.transfers.len();
        }
        Ok(lines)
    }

    /// At start: forget batches the file already holds (a snapshot may
    /// carry batches appended after it was written), and number new ones
    /// after its last.
    pub fn reconcile(&self, ledger: &TransferLedger) -> io::Result<u64> {
        let last = self.last_batch()?;
        ledger.confirm(last);
        Ok(last)
    }

    /// The number of the last complete batch line in the file (0: none).
    pub fn last_batch(&self) -> io::Result<u64> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        // The last line is short; 64 KiB holds it many times over.
        let from = len.saturating_sub(64 * 1024);
        file.seek(SeekFrom::Start(from))?;
        let mut tail = Vec::new();
        file.read_to_end(&mut tail)?;
        let complete = match tail.iter().rposition(|&b| b == b'\n') {
            Some(end) => &tail[..end],
            None => return Ok(0),
        };
        let line = complete.rsplit(|&b| b == b'\n').next().unwrap_or(&[]);
        let first = line.split(|&b| b == b'\t').next().unwrap_or(&[]);
        std::str::from_utf8(first)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: the last line does not start with a batch number",
                        self.path.display()
                    ),
                )
            })
    }

    fn append(&self, batch: &Batch, unix_time: u64) -> io::Result<()> {
        let mut text = Vec::with_capacity(batch.transfers.len() * 128);
        for t in &batch.transfers {
            write!(text, "{}\t{unix_time}\t", batch.id)?;
            text.extend_from_slice(&t.passkey);
            writeln!(
                text,
                "\t{:?}\t{}\t{}",
                t.info_hash, t.credit.uploaded, t.credit.downloaded
            )?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        // One write: O_APPEND keeps it in one piece against other appenders.
        file.write_all(&text)?;
        file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Event, InfoHash, PeerId};
    use crate::tracker::ledger::{Account, Report};

    fn credit(ledger: &TransferLedger, uploaded: u64) {
        ledger
            .record(
                &Report {
                    passkey: b"abcdef0123456789",
                    info_hash: InfoHash([0xab; 20]),
                    peer_id: PeerId([1; 20]),
                    event: Event::Started,
                    uploaded,
                    downloaded: 3,
                    left: 1,
                    account: Account::UNIT,
                    ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                    port: 6881,
                    agent: b"",
                },
                0,
            )
            .unwrap();
    }

    #[test]
    fn appends_numbered_batches_and_keeps_what_it_could_not_write() {
        let dir = std::env::temp_dir().join(format!("rt-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ledger = TransferLedger::default();
        credit(&ledger, 5);

        // A journal in a directory that does not exist fails and keeps them.
        let bad = PasskeyJournal::new(dir.join("missing/ledger.tsv"));
        assert!(bad.flush(&ledger, 1).is_err());
        assert_eq!(ledger.batches().0.len(), 1);

        let journal = PasskeyJournal::new(dir.join("ledger.tsv"));
        let _ = std::fs::remove_file(journal.path());
        assert_eq!(journal.last_batch().unwrap(), 0);
        assert_eq!(journal.flush(&ledger, 1_700_000_000).unwrap(), 1);
        assert_eq!(journal.flush(&ledger, 1_700_000_001).unwrap(), 0);
        let text = std::fs::read_to_string(journal.path()).unwrap();
        let hash = "ab".repeat(20);
        assert_eq!(
            text,
            format!("1\t1700000000\tabcdef0123456789\t{hash}\t5\t3\n")
        );
        assert_eq!(journal.last_batch().unwrap(), 1);

        // A restarted tracker whose snapshot still carries batch 1 (and a
        // newer one) appends only the newer.
        let restarted = TransferLedger::default();
        let carried = ledger.export(0);
        credit(&ledger, 6);
        ledger.seal();
        let (mut batches, next) = ledger.batches();
        batches.insert(
            0,
            Batch {
                id: 1,
                transfers: carried.pending.clone(),
            },
        );
        restarted.import_batches(batches, next);
        journal.reconcile(&restarted).unwrap();
        assert_eq!(journal.deliver(&restarted, 1_700_000_002).unwrap(), 1);
        let text = std::fs::read_to_string(journal.path()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().nth(1).unwrap().starts_with("2\t"), "{text}");
        // A torn last line is not a batch number.
        std::fs::write(journal.path(), "1\t1\tk\th\t1\t1\n2\t1\tk").unwrap();
        assert_eq!(journal.last_batch().unwrap(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
