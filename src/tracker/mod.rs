//! Sans-I/O tracker logic: connection ids, swarms, the swarm table and the
//! announce path. Time (`now`, tracker seconds) and randomness come in as
//! arguments; nothing here opens a socket, reads a clock or spawns a thread.
#![forbid(unsafe_code)]

pub mod access;
pub mod address_cap;
pub mod announce;
pub mod change;
pub mod connection_id;
pub mod idle_counts;
pub mod ledger;
pub mod linear_probe;
pub mod list_overlay;
pub mod peer_set;
pub mod rate_limit;
pub mod refusal;
pub mod sharded_map;
pub mod site;
pub mod swarm;
pub mod table;
pub mod torrent_map;

pub use announce::{AnnounceAnswer, AnnounceParams, AnnouncePolicy, ScrapeCounts, Tracker};
