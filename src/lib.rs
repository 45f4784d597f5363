//! ringtracker: a UDP-first BitTorrent tracker on Linux io_uring.
//!
//! `protocol` and `tracker` are sans-I/O (bytes and time in, bytes out);
//! `net` owns the sockets and rings and is the only place with `unsafe`.
//! docs/ARCHITECTURE.md walks a packet through all of it.

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
