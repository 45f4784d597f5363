//! What the tracker keeps on disk: snapshots of the swarm table and the
//! private mode's ledger journal. File I/O only, outside the workers' hot
//! path (main and a snapshot thread call it).
#![forbid(unsafe_code)]

pub mod credit_journal;
pub mod ledger_codec;
pub mod ledger_journal;
pub mod operator_file;
pub mod snapshot;
pub mod snapshotter;
