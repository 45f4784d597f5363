//! What the tracker keeps on disk: the private mode's ledger journal.
//! File I/O only, outside the workers' hot path (the main thread calls it).
#![forbid(unsafe_code)]

pub mod ledger_journal;
