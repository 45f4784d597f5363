//! The composition root: from a `Config`, the running process.
//!
//! `cli` turns the command line into a `Config`; `start` checks what stops
//! a start early (`backends`: io_uring or the portable backends), binds the
//! sockets, builds the tracker (`compose`), one engine setup per worker and
//! the database and cluster threads, and hands them to `net::Server`;
//! `process` loads the snapshot (`restore`), opens the metrics listener,
//! drops privileges, runs the periodic jobs (`schedule`) and SIGHUP's
//! reloads (`reload`) until a signal, and saves the state at the stop.
//! Nothing below `app` imports it: `net` starts threads from setups it is
//! handed, and the core never learns how it was assembled.

mod backends;
mod cli;
pub mod compose;
mod process;
mod reload;
mod restore;
mod schedule;
mod start;

pub use cli::Cli;
pub use process::run;
pub use start::{StartError, start, start_with};
