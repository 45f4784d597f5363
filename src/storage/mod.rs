//! What the tracker keeps on disk: snapshots of the swarm table and
//! private mode's journal of credits (`passkey_journal` with a passkey
//! file, `database_journal` on a site's database). File I/O only, outside the workers' hot
//! path (main and a snapshot thread call it).
#![forbid(unsafe_code)]

pub mod database_journal;
pub mod ledger_codec;
pub mod operator_file;
pub mod passkey_journal;
pub mod snapshot;
pub mod snapshotter;
