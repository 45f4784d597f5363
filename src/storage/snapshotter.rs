//! How snapshots are written: on a background thread whenever main's
//! `Snapshot` timer fires (every `snapshot_interval`; the workers keep
//! serving, each shard is locked only while it is copied), and once more at
//! stop, after the workers are gone. Keeps the figures the metrics page
//! shows.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use super::passkey_journal::PasskeyJournal;
use super::snapshot::{self, SnapshotStats, Stall};
use crate::clock::unix_now;
use crate::tracker::Tracker;

/// The last write, for metrics (all zero until the first one).
#[derive(Default, Debug)]
pub struct SnapshotStatus {
    /// Unix time of the last complete write.
    pub written_at: AtomicU64,
    /// How long the last write took, in microseconds.
    pub micros: AtomicU64,
    /// Its size.
    pub bytes: AtomicU64,
    /// Peers it held.
    pub peers: AtomicU64,
    /// Writes that failed.
    pub failures: AtomicU64,
}

/// Writes snapshots on a thread of its own (one at a time; one due while
/// another runs is skipped) and the final one at stop.
pub struct Snapshotter {
    path: PathBuf,
    running: Option<JoinHandle<()>>,
    writes: u64,
    /// Test hook: stall this write (1-based) halfway, for good.
    stall_write: Option<u64>,
    /// Private mode's journal: fed right after each snapshot.
    journal: Option<PasskeyJournal>,
    /// Run first on each writer thread (the I/O layer lowers its priority:
    /// `net::background::yield_cpu_to_workers`).
    thread_start: fn(),
    /// What the metrics show of it.
    pub status: Arc<SnapshotStatus>,
}

impl Snapshotter {
    /// A writer to `path`, feeding `journal` after each snapshot.
    pub fn new(
        path: PathBuf,
        stall_write: Option<u64>,
        journal: Option<PasskeyJournal>,
        thread_start: fn(),
    ) -> Self {
        Snapshotter {
            path,
            running: None,
            writes: 0,
            stall_write,
            journal,
            thread_start,
            status: Arc::default(),
        }
    }

    /// Start a write unless the last one is still running (a slow disk
    /// skips a turn rather than piling writers up).
    pub fn start(&mut self, tracker: &Arc<Tracker>, now: u32) {
        if self.running.as_ref().is_some_and(|h| !h.is_finished()) {
            tracing::warn!("snapshot still being written; skipping this turn");
            return;
        }
        self.writes += 1;
        let stall = (self.stall_write == Some(self.writes)).then_some(Stall);
        let (tracker, path, status, journal, thread_start) = (
            Arc::clone(tracker),
            self.path.clone(),
            Arc::clone(&self.status),
            self.journal.clone(),
            self.thread_start,
        );
        let spawned = std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || {
                thread_start();
                write_logged(&tracker, &path, now, stall, &status, journal.as_ref());
            });
        match spawned {
            Ok(h) => self.running = Some(h),
            Err(e) => tracing::error!("snapshot thread could not start: {e}"),
        }
    }

    /// At stop, after the workers are joined: wait for a write under way,
    /// then write the final state. Returns whether it was written.
    pub fn finish(mut self, tracker: &Tracker, now: u32) -> bool {
        if let Some(h) = self.running.take() {
            let _ = h.join();
        }
        write_logged(
            tracker,
            &self.path,
            now,
            None,
            &self.status,
            self.journal.as_ref(),
        )
    }
}

/// Write a snapshot and, once it is safely on disk, the ledger's batches
/// sealed into it. Returns whether the snapshot was written.
fn write_logged(
    tracker: &Tracker,
    path: &std::path::Path,
    now: u32,
    stall: Option<Stall>,
    status: &SnapshotStatus,
    journal: Option<&PasskeyJournal>,
) -> bool {
    let unix = unix_now();
    if journal.is_some() {
        // Credits so far go into a numbered batch the snapshot carries with
        // the sessions' baselines they were measured against.
        tracker.ledger().seal();
    }
    match snapshot::write(tracker, path, now, unix, stall) {
        Ok(SnapshotStats {
            torrents,
            idle,
            peers,
            bytes,
            micros,
            ..
        }) => {
            status.written_at.store(unix, Ordering::Relaxed);
            status.micros.store(micros, Ordering::Relaxed);
            status.bytes.store(bytes, Ordering::Relaxed);
            status.peers.store(peers, Ordering::Relaxed);
            tracing::info!(
                "snapshot written to {}: {torrents} torrents, {peers} peers, {idle} idle torrents' completed counts, {bytes} bytes in {:.1} ms",
                path.display(),
                micros as f64 / 1000.0
            );
            // Only now: appended before the snapshot that carries their
            // baselines, a crash would credit them twice after a restart.
            if let Some(journal) = journal
                && let Err(e) = journal.deliver(tracker.ledger(), unix)
            {
                tracing::error!(
                    "ledger journal {} not written, credits kept for the next snapshot: {e}",
                    journal.path().display()
                );
            }
            true
        }
        Err(e) => {
            status.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!("snapshot not written (the previous one stays): {e}");
            false
        }
    }
}
