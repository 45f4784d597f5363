//! The snapshot a start loads: read before anything is bound, restored
//! into the tracker before any worker serves.

use std::path::Path;

use crate::clock::unix_now;
use crate::config::Config;
use crate::storage::snapshot::{self, Snapshot};
use crate::tracker::Tracker;

/// Read the configured snapshot, if any. An unreadable one stops the start
/// (it is never overwritten) unless told to discard it: then it is kept
/// aside (`PATH.bad.<time>`, never over an earlier one) and the previous
/// snapshot, `PATH.prev`, is tried before starting empty.
pub(super) fn read_snapshot(
    config: &Config,
    discard_bad: bool,
) -> Result<Option<Snapshot>, String> {
    let Some(path) = &config.storage.snapshot else {
        return Ok(None);
    };
    let e = match Snapshot::read(path) {
        Ok(s) => return Ok(s),
        Err(e) if !discard_bad => {
            return Err(format!(
                "{e}; not starting, so as not to overwrite it: repair or remove it, or start \
                 with --discard-bad-snapshot (keeps it as {}, then tries {})",
                snapshot::sibling(path, "bad.<time>").display(),
                snapshot::sibling(path, "prev").display()
            ));
        }
        Err(e) => e,
    };
    let discard = |path: &Path, e: &dyn std::fmt::Display| {
        let bad = snapshot::keep_aside(path, unix_now())
            .map_err(|r| format!("{e}; and it cannot be moved aside: {r}"))?;
        tracing::warn!("{e}; the file is kept as {}", bad.display());
        Ok::<_, String>(())
    };
    discard(path, &e)?;
    let prev = snapshot::sibling(path, "prev");
    match Snapshot::read(&prev) {
        Ok(Some(s)) => {
            tracing::warn!("loading the previous snapshot, {}, instead", prev.display());
            Ok(Some(s))
        }
        Ok(None) => {
            tracing::warn!("no previous snapshot ({}): starting empty", prev.display());
            Ok(None)
        }
        Err(e) => {
            discard(&prev, &e)?;
            tracing::warn!("starting empty");
            Ok(None)
        }
    }
}

/// Put `snapshot`'s swarms into `tracker` (at tracker time 0) and say so.
pub(super) fn restore(snapshot: &Snapshot, path: &Path, tracker: &Tracker) {
    let r = snapshot.restore(tracker, 0, unix_now());
    tracing::info!(
        "snapshot loaded from {}: {} torrents, {} peers ({} expired while down), {} idle torrents' completed counts in {:.1} ms",
        path.display(),
        r.torrents,
        r.peers,
        r.expired,
        r.idle,
        r.micros as f64 / 1000.0
    );
}
