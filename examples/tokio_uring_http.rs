//! The HTTP frontend on tokio-uring instead of our own ring, for the
//! comparison docs/DEPENDENCIES.md asks for: the same sans-I/O core
//! (`parse_head`, `handle_request`), one thread, one task per connection.
//! Not part of the tracker; `make bench-tokio-uring` measures it against
//! `ringtracker --http` with loadgen.
//!
//! Usage: tokio_uring_http ADDR

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use ringtracker::config::Config;
use ringtracker::engine::http::{Buffers, HttpPolicy, handle_request, reject};
use ringtracker::protocol::http::{MAX_HEAD_BYTES, parse_head};
use ringtracker::tracker::Tracker;
use ringtracker::tracker::connection_id::ConnectionIdIssuer;
use ringtracker::tracker::table::SwarmTable;

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6970".into())
        .parse()
        .expect("an address");
    let config = Config::default();
    let tracker = Rc::new(Tracker::new(
        config.announce_policy(),
        SwarmTable::new(config.tracker.shards as usize, [1, 2]),
        ConnectionIdIssuer::new([7; 16]),
    ));
    let started = Instant::now();
    tokio_uring::start(async move {
        let listener = tokio_uring::net::TcpListener::bind(addr)?;
        eprintln!("listening on http {}", listener.local_addr()?);
        loop {
            let (stream, peer) = listener.accept().await?;
            let tracker = tracker.clone();
            tokio_uring::spawn(async move {
                let _ = serve(stream, peer, &tracker, started).await;
            });
        }
    })
}

async fn serve(
    stream: tokio_uring::net::TcpStream,
    peer: SocketAddr,
    tracker: &Tracker,
    started: Instant,
) -> std::io::Result<()> {
    let policy = HttpPolicy::default();
    let mut buffers = Buffers::default();
    let mut rng = SmallRng::seed_from_u64(1);
    let mut read = Vec::with_capacity(MAX_HEAD_BYTES + 1024);
    let mut out = Vec::new();
    loop {
        // tokio-uring reads into the spare capacity after `len`.
        let (res, buf) = stream.read(read).await;
        read = buf;
        if res? == 0 {
            return Ok(());
        }
        let now = started.elapsed().as_secs() as u32;
        let mut consumed = 0;
        let mut close = false;
        loop {
            match parse_head(&read[consumed..]) {
                Ok(Some(head)) => {
                    let outcome = handle_request(
                        tracker,
                        &policy,
                        &head,
                        peer,
                        now,
                        &mut rng,
                        &mut buffers,
                        &mut out,
                    );
                    consumed += head.len;
                    // A full scrape's shared body follows its head.
                    if let Some(tail) = &outcome.tail {
                        out.extend_from_slice(tail);
                    }
                    if !outcome.keep_alive {
                        close = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    reject(&mut out, e);
                    close = true;
                    break;
                }
            }
        }
        read.drain(..consumed);
        if !out.is_empty() {
            let (res, buf) = stream.write_all(out).await;
            out = buf;
            res?;
            out.clear();
        }
        if close {
            return Ok(());
        }
    }
}
