//! The ledger journal: an append-only, tab-separated file of the credits
//! the `TransferLedger` collected, one line per passkey and torrent:
//!
//! ```text
//! unix_time <TAB> passkey <TAB> info_hash (40 hex) <TAB> uploaded <TAB> downloaded
//! ```
//!
//! Plain text appends are the smallest step to a database: an importer
//! tails the file (or renames it away and loads it) and sums the columns;
//! each line is complete once its newline is written, so a line without one
//! (a crash mid-append) is to be skipped. A batch that cannot be written is
//! given back to the ledger and tried again at the next flush.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::tracker::ledger::{Transfer, TransferLedger};

pub struct LedgerJournal {
    path: PathBuf,
}

impl LedgerJournal {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LedgerJournal { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Move every pending credit of `ledger` to the file. Returns how many
    /// lines were appended; on error the credits stay in the ledger.
    pub fn flush(&self, ledger: &TransferLedger, unix_time: u64) -> io::Result<usize> {
        let transfers = ledger.take_pending();
        if transfers.is_empty() {
            return Ok(0);
        }
        match self.append(&transfers, unix_time) {
            Ok(()) => Ok(transfers.len()),
            Err(e) => {
                ledger.restore(transfers);
                Err(e)
            }
        }
    }

    fn append(&self, transfers: &[Transfer], unix_time: u64) -> io::Result<()> {
        let mut text = Vec::with_capacity(transfers.len() * 120);
        for t in transfers {
            write!(text, "{unix_time}\t")?;
            text.extend_from_slice(&t.passkey);
            writeln!(
                text,
                "\t{:?}\t{}\t{}",
                t.info_hash, t.uploaded, t.downloaded
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
    use crate::tracker::ledger::Report;

    fn credit(ledger: &TransferLedger, uploaded: u64) {
        ledger.record(
            &Report {
                passkey: b"abcdef0123456789",
                info_hash: InfoHash([0xab; 20]),
                peer_id: PeerId([1; 20]),
                event: Event::Started,
                uploaded,
                downloaded: 3,
            },
            0,
        );
    }

    #[test]
    fn appends_lines_and_keeps_credits_it_could_not_write() {
        let dir = std::env::temp_dir().join(format!("rt-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ledger = TransferLedger::default();
        credit(&ledger, 5);

        // A journal in a directory that does not exist fails and keeps them.
        let bad = LedgerJournal::new(dir.join("missing/ledger.tsv"));
        assert!(bad.flush(&ledger, 1).is_err());

        let journal = LedgerJournal::new(dir.join("ledger.tsv"));
        let _ = std::fs::remove_file(journal.path());
        assert_eq!(journal.flush(&ledger, 1_700_000_000).unwrap(), 1);
        assert_eq!(journal.flush(&ledger, 1_700_000_001).unwrap(), 0);
        let text = std::fs::read_to_string(journal.path()).unwrap();
        let hash = "ab".repeat(20);
        assert_eq!(
            text,
            format!("1700000000\tabcdef0123456789\t{hash}\t5\t3\n")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
