//! Cluster mode, sans I/O: the messages nodes exchange through Redis
//! (Redis streams), their authentication (`mac`), and how another node's
//! change is applied here. The
//! sync thread that moves them is `net::cluster`.
#![forbid(unsafe_code)]

pub mod apply;
pub mod follow;
pub mod mac;
pub mod message;
pub mod schedule;
pub mod stats;
