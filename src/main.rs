//! The `ringtracker` command: parse the flags, run the process (`app`),
//! exit with its code.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    ringtracker::app::run(&ringtracker::app::Cli::parse())
}
