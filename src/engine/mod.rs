//! The per-worker engine, sans I/O: what every backend drives.
//!
//! `timers` is the table of periodic deadlines that main and the workers
//! wait on (`poll_timeout` / `pop_expired`, as quinn-proto's
//! `poll_timeout` / `handle_timeout`).
#![forbid(unsafe_code)]

pub mod timers;
