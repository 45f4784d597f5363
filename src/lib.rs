//! ringtracker: a UDP-first BitTorrent tracker on Linux io_uring.
//!
//! `protocol`, `tracker` and `engine` are sans-I/O (bytes and time in,
//! bytes out; one `engine::Engine` per worker); `net` owns the sockets and
//! rings and is the only place with `unsafe`, besides the one audited
//! `prefetch` helper. docs/ARCHITECTURE.md walks a packet through all of it.

pub mod cluster;
pub mod compose;
pub mod config;
pub mod engine;
pub mod metrics;
pub mod net;
pub mod prefetch;
pub mod protocol;
pub mod stats;
pub mod storage;
pub mod tracker;
