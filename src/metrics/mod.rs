//! What the metrics listener serves, sans I/O: the Prometheus text
//! (`/metrics`), the stats page's data (`/stats.json`, a last-hour history
//! sampled by main), the page itself and `/health`. `net/metrics.rs` only
//! moves these bytes.
#![forbid(unsafe_code)]

pub mod history;
pub mod prometheus;

use crate::protocol::client_software::{CLIENTS, ClientSoftware};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::cluster::stats::ClusterStats;
use crate::stats::{self, Counter, DatabaseStats, WorkerStats};
use crate::storage::snapshotter::SnapshotStatus;
use crate::tracker::Tracker;
use history::{History, Sample};

/// The stats page: one self-contained file (inline script and style, no
/// CDN), so it works offline.
pub const STATS_PAGE: &str = include_str!("page.html");

/// Everything the metrics endpoints read, shared with main and the workers.
pub struct MetricsState {
    /// Every worker's counters.
    pub stats: Arc<[WorkerStats]>,
    /// UDP worker i counts in `stats[i]`, HTTP worker i in `stats[workers + i]`.
    pub workers: usize,
    /// The tracker (table totals, ledger).
    pub tracker: Arc<Tracker>,
    /// The snapshot writer's status (none without snapshots).
    pub snapshot: Option<Arc<SnapshotStatus>>,
    /// Cluster mode's sync counters (none without it).
    pub cluster: Option<Arc<ClusterStats>>,
    /// Private mode's database thread (none without it).
    pub database: Option<Arc<DatabaseStats>>,
    /// Set by main: every worker is running.
    pub healthy: AtomicBool,
    /// Unix time at start.
    pub started: u64,
    /// The last hour of samples for the stats page.
    pub history: Mutex<History>,
}

impl MetricsState {
    /// The state of a process with `workers` workers per frontend, started at
    /// unix time `now`.
    pub fn new(
        stats: Arc<[WorkerStats]>,
        workers: usize,
        tracker: Arc<Tracker>,
        snapshot: Option<Arc<SnapshotStatus>>,
        started: u64,
    ) -> Self {
        MetricsState {
            stats,
            workers,
            tracker,
            snapshot,
            cluster: None,
            database: None,
            healthy: AtomicBool::new(true),
            started,
            history: Mutex::new(History::default()),
        }
    }

    /// UDP and HTTP counter totals.
    pub fn counters(&self) -> ([u64; Counter::COUNT], [u64; Counter::COUNT]) {
        let split = self.workers.min(self.stats.len());
        (
            stats::totals(&self.stats[..split]),
            stats::totals(&self.stats[split..]),
        )
    }

    /// Served announces by client software, over every worker and both
    /// protocols: every name of the table once (codes of one client
    /// summed), busiest first.
    pub fn clients(&self) -> Vec<(&'static str, u64)> {
        let totals = stats::client_totals(&self.stats);
        let mut out: Vec<(&'static str, u64)> = Vec::with_capacity(CLIENTS);
        for (i, n) in totals.iter().enumerate().take(CLIENTS) {
            let name = ClientSoftware::from_index(i).name();
            match out.iter_mut().find(|(seen, _)| *seen == name) {
                Some((_, sum)) => *sum += n,
                None => out.push((name, *n)),
            }
        }
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        out
    }

    /// The state now, as one history sample.
    pub fn sample(&self, unix: u64) -> Sample {
        let (udp, http) = self.counters();
        let t = self.tracker.table().totals();
        Sample {
            unix,
            announces: udp[Counter::ReplyAnnounce as usize] + http[Counter::HttpAnnounce as usize],
            torrents: self.tracker.table().torrent_count() as u64,
            seeders: t.seeders,
            leechers: t.leechers,
        }
    }

    /// Called by main every `history::STEP` seconds.
    pub fn record(&self, unix: u64) {
        let s = self.sample(unix);
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(s);
    }

    /// Whether every worker runs (`/health`).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// `/stats.json`: the history plus a sample taken now.
    pub fn stats_json(&self, unix: u64) -> String {
        let now = self.sample(unix);
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let mut extra = self
            .cluster
            .as_ref()
            .map_or(String::new(), |c| cluster_json(c));
        let seen: Vec<_> = self.clients().into_iter().filter(|(_, n)| *n > 0).collect();
        extra.push_str(&clients_json(&seen));
        history.to_json(&now, unix.saturating_sub(self.started), &extra)
    }
}

/// The top ten clients for the stats page: `,"clients":[["name",n],...]`
/// (the names are the fixed table's: nothing to escape).
fn clients_json(clients: &[(&str, u64)]) -> String {
    let rows: Vec<String> = (clients.iter().take(10))
        .map(|(name, n)| format!("[\"{name}\",{n}]"))
        .collect();
    format!(",\"clients\":[{}]", rows.join(","))
}

/// Cluster mode's figures for the stats page: `,"cluster":{...}`.
fn cluster_json(c: &ClusterStats) -> String {
    let get = ClusterStats::get;
    let lag = |q| {
        c.lag_quantile(q)
            .map_or(-1, |ms| ms.min(i64::MAX as u64) as i64)
    };
    format!(
        ",\"cluster\":{{\"up\":{},\"remote_peers\":{},\"changes_in\":{},\"changes_out\":{},\
         \"lag_p50_ms\":{},\"lag_p99_ms\":{},\"skipped\":{},\"reconnects\":{}}}",
        get(&c.redis_up),
        get(&c.remote_peers),
        get(&c.changes_in),
        get(&c.changes_out),
        lag(0.5),
        lag(0.99),
        get(&c.skipped_messages),
        get(&c.reconnects),
    )
}

/// An answer of the metrics listener.
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// Its reason phrase.
    pub reason: &'static str,
    /// The body's Content-Type.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    fn new(status: u16, reason: &'static str, content_type: &'static str, body: Vec<u8>) -> Self {
        Response {
            status,
            reason,
            content_type,
            body,
        }
    }
}

/// Route one GET to its response (`path` without the query).
pub fn respond(state: &MetricsState, path: &str, unix: u64) -> Response {
    match path {
        "/metrics" => Response::new(
            200,
            "OK",
            "text/plain; version=0.0.4; charset=utf-8",
            prometheus::render(state, unix).into_bytes(),
        ),
        "/health" if state.is_healthy() => Response::new(200, "OK", "text/plain", b"ok\n".to_vec()),
        "/health" => Response::new(
            503,
            "Service Unavailable",
            "text/plain",
            b"a worker stopped\n".to_vec(),
        ),
        "/stats.json" => Response::new(
            200,
            "OK",
            "application/json",
            state.stats_json(unix).into_bytes(),
        ),
        "/" => Response::new(
            200,
            "OK",
            "text/html; charset=utf-8",
            STATS_PAGE.as_bytes().to_vec(),
        ),
        _ => Response::new(404, "Not Found", "text/plain", b"not found\n".to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::AnnouncePolicy;
    use crate::tracker::connection_id::ConnectionIdIssuer;
    use crate::tracker::table::SwarmTable;

    fn state() -> MetricsState {
        let tracker = Tracker::new(
            AnnouncePolicy::default(),
            SwarmTable::new(16, [1, 2]),
            ConnectionIdIssuer::new([3; 16]),
        );
        let stats: Arc<[WorkerStats]> = (0..2).map(|_| WorkerStats::default()).collect();
        MetricsState::new(stats, 1, Arc::new(tracker), None, 1000)
    }

    #[test]
    fn health_turns_503_when_a_worker_stopped_and_unknown_paths_are_404() {
        let s = state();
        assert_eq!(respond(&s, "/health", 1010).status, 200);
        s.healthy.store(false, Ordering::Relaxed);
        let r = respond(&s, "/health", 1010);
        assert_eq!(
            (r.status, r.body.as_slice()),
            (503, &b"a worker stopped\n"[..])
        );
        assert!(
            String::from_utf8(respond(&s, "/metrics", 1010).body)
                .unwrap()
                .contains("ringtracker_up 0\n")
        );
        assert_eq!(respond(&s, "/metric", 1010).status, 404);
    }

    #[test]
    fn counters_are_split_by_protocol() {
        let s = state();
        // Worker 0 is UDP, worker 1 (workers + 0) is HTTP.
        s.stats[0].add(Counter::BytesIn, 7);
        s.stats[1].add(Counter::BytesIn, 11);
        let text = prometheus::render(&s, 1042);
        assert!(text.contains("ringtracker_bytes_total{protocol=\"udp\",direction=\"in\"} 7\n"));
        assert!(text.contains("ringtracker_bytes_total{protocol=\"http\",direction=\"in\"} 11\n"));
        assert!(text.contains("ringtracker_uptime_seconds 42\n"));
        // An HTTP-only counter is not shown for UDP while it is zero.
        assert!(!text.contains("ringtracker_http_connections_total{protocol=\"udp\"}"));
    }

    #[test]
    fn every_line_is_a_comment_or_a_sample_cluster_mode_included() {
        let mut s = state();
        let cluster = Arc::new(ClusterStats::default());
        ClusterStats::add(&cluster.skipped_messages, 3);
        cluster.record_lag(40);
        s.cluster = Some(cluster);
        let text = prometheus::render(&s, 1042);
        for line in text.lines() {
            let sample = line.rsplit_once(' ').is_some_and(|(name, v)| {
                name.starts_with("ringtracker_") && v.parse::<f64>().is_ok()
            });
            assert!(
                line.starts_with("# HELP ringtracker_")
                    || line.starts_with("# TYPE ringtracker_")
                    || sample,
                "{line:?}"
            );
        }
        assert!(text.contains("\nringtracker_cluster_skipped_messages_total 3\n"));
        assert!(text.contains("\nringtracker_cluster_apply_lag_seconds_bucket{le=\"0.05\"} 1\n"));
        assert!(text.contains("\nringtracker_cluster_apply_lag_seconds_count 1\n"));
    }
}
