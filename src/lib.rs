//! ringtracker: a UDP-first BitTorrent tracker on Linux io_uring.
//!
//! `protocol`, `tracker` and `engine` are sans-I/O (bytes and time in,
//! bytes out; one `engine::Engine` per worker); `net` owns the sockets and
//! rings and is the only place with `unsafe`, besides the one audited
//! `prefetch` helper; `app` assembles the process from a `Config`.
//! docs/ARCHITECTURE.md walks a packet through all of it.
//!
//! Lints for the whole crate: `unsafe` is denied everywhere and allowed
//! only, module by module, where the kernel interface demands it (the I/O
//! modules of `net` that call libc or io_uring) and in `prefetch`; the
//! sans-I/O modules `forbid` it outright.
#![deny(unsafe_code)]
// Everything public says what it is (the crate is used by its tests,
// benches, fuzz targets and the load generator as a library).
#![warn(missing_docs)]
// From clippy::pedantic, the lints that catch real slips here at no cost
// in noise (the rest of pedantic is mostly casts the hot path makes on
// purpose, and `must_use` on every getter): a `let … else` written as a
// match, a statement without its semicolon, a cast that could be a lossless
// `From`, nested or-patterns, and format args not inlined.
#![warn(
    clippy::manual_let_else,
    clippy::semicolon_if_nothing_returned,
    clippy::cast_lossless,
    clippy::unnested_or_patterns,
    clippy::uninlined_format_args,
    clippy::inefficient_to_string,
    clippy::implicit_clone
)]

pub mod admin;
pub mod app;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod metrics;
pub mod net;
pub mod prefetch;
pub mod protocol;
pub mod stats;
pub mod storage;
pub mod tracker;
