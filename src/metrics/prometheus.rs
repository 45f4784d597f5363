//! `/metrics` in the Prometheus text exposition format (version 0.0.4).
//!
//! Every per-worker counter appears, summed over the workers of its
//! protocol, under a metric family with labels: responses by protocol and
//! type, drops by reason, bytes by direction, io_uring events. Gauges come
//! from the swarm table (as of each shard's last sweep, at most ~30 s old),
//! the snapshot writer and the ledger.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::MetricsState;
use crate::cluster::stats::{ClusterStats, LAG_BUCKETS_MS};
use crate::stats::Counter;

/// Which family a counter belongs to, with its labels (protocol added).
fn family(c: Counter) -> (&'static str, &'static str) {
    use Counter::*;
    match c {
        Received => ("requests_total", "type=\"datagram\""),
        HttpRequests => ("requests_total", "type=\"request\""),
        HttpAnnounce => ("requests_total", "type=\"announce\""),
        HttpScrape => ("requests_total", "type=\"scrape\""),
        Sent => ("responses_total", "type=\"any\""),
        ReplyConnect => ("responses_total", "type=\"connect\""),
        ReplyAnnounce => ("responses_total", "type=\"announce\""),
        ReplyScrape => ("responses_total", "type=\"scrape\""),
        ReplyError => ("responses_total", "type=\"error\""),
        ErrorBadRequest => ("error_responses_total", "reason=\"bad_request\""),
        ErrorTorrentNotAllowed => ("error_responses_total", "reason=\"torrent_not_allowed\""),
        ErrorClientNotAllowed => ("error_responses_total", "reason=\"client_not_allowed\""),
        ErrorUnknownPasskey => ("error_responses_total", "reason=\"unknown_passkey\""),
        ErrorUnregisteredTorrent => ("error_responses_total", "reason=\"unregistered_torrent\""),
        ErrorLeechingNotAllowed => ("error_responses_total", "reason=\"leeching_not_allowed\""),
        ErrorPeerLimit => ("error_responses_total", "reason=\"peer_limit\""),
        ErrorSiteUnavailable => ("error_responses_total", "reason=\"site_unavailable\""),
        ErrorPrivateScrape => ("error_responses_total", "reason=\"private_scrape\""),
        ErrorRateLimited => ("error_responses_total", "reason=\"rate_limited\""),
        ErrorFullScrapeDisabled => ("error_responses_total", "reason=\"full_scrape_disabled\""),
        BytesIn => ("bytes_total", "direction=\"in\""),
        BytesOut => ("bytes_total", "direction=\"out\""),
        DropTooShort => ("drops_total", "reason=\"too_short\""),
        DropBadMagic => ("drops_total", "reason=\"bad_magic\""),
        DropUnknownAction => ("drops_total", "reason=\"unknown_action\""),
        DropShortAnnounce => ("drops_total", "reason=\"short_announce\""),
        DropBadConnectionId => ("drops_total", "reason=\"bad_connection_id\""),
        DropBanned => ("drops_total", "reason=\"banned\""),
        DropRateLimited => ("drops_total", "reason=\"rate_limited\""),
        DropOversized => ("drops_total", "reason=\"oversized\""),
        DropNoAddress => ("drops_total", "reason=\"no_address\""),
        DropNoSendSlot => ("drops_total", "reason=\"no_send_slot\""),
        SendFailed => ("drops_total", "reason=\"send_failed\""),
        HttpRejected => ("drops_total", "reason=\"malformed_request\""),
        HttpRefused => ("drops_total", "reason=\"over_connection_cap\""),
        HttpRefusedAddress => ("drops_total", "reason=\"over_address_cap\""),
        HttpTimeouts => ("drops_total", "reason=\"timeout\""),
        TlsFailed => ("drops_total", "reason=\"tls_error\""),
        RecvEnobufs => ("io_uring_events_total", "event=\"recv_enobufs\""),
        RecvRearm => ("io_uring_events_total", "event=\"recv_rearm\""),
        RecvError => ("io_uring_events_total", "event=\"recv_error\""),
        RingEnters => ("io_uring_events_total", "event=\"enter\""),
        RingSubmitted => ("io_uring_events_total", "event=\"sqe_submitted\""),
        SweptPeers => ("expired_peers_total", ""),
        InternalError => ("internal_errors_total", ""),
        HttpConnections => ("http_connections_total", ""),
        HttpAcceptPaused => ("http_accept_failures_total", ""),
        HttpGzip => ("http_gzip_responses_total", ""),
        HttpGzipSaved => ("http_gzip_saved_bytes_total", ""),
        ClusterChanges => ("cluster_outbox_changes_total", ""),
        ClusterOutboxOverflow => ("drops_total", "reason=\"cluster_outbox_overflow\""),
    }
}

fn help(name: &str) -> &'static str {
    match name {
        "requests_total" => "Requests received, by protocol and type.",
        "responses_total" => "Responses sent, by protocol and type.",
        "bytes_total" => "Payload bytes received and sent, by protocol.",
        "error_responses_total" => {
            "Error replies (UDP error packets, HTTP failure reasons), by reason."
        }
        "drops_total" => "Requests dropped or connections closed without an answer, by reason.",
        "io_uring_events_total" => {
            "io_uring events: receive buffer ring exhausted, multishot receives re-armed, receive errors, ring enters (waits), entries submitted (per enter: the submission batch size)."
        }
        "expired_peers_total" => "Peers expired by the sweep.",
        "internal_errors_total" => "Requests that hit a bug (contained; the request was dropped).",
        "http_connections_total" => "HTTP connections accepted.",
        "http_accept_failures_total" => {
            "HTTP accepts that failed (file descriptors exhausted, ...); the listener pauses until the next 250 ms tick."
        }
        "http_gzip_responses_total" => "Scrape answers sent gzipped (Accept-Encoding: gzip).",
        "http_gzip_saved_bytes_total" => "Body bytes gzip took off the scrape answers it sent.",
        "cluster_outbox_changes_total" => {
            "Cluster mode: swarm changes the workers put in their outboxes."
        }
        _ => "",
    }
}

/// Every metric in the Prometheus text format, at unix time `unix`.
pub fn render(state: &MetricsState, unix: u64) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let (udp, http) = state.counters();
    let mut families: Vec<&str> = Counter::ALL.iter().map(|c| family(*c).0).collect();
    families.dedup();
    let mut seen = Vec::new();
    for name in families {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let _ = writeln!(out, "# HELP ringtracker_{name} {}", help(name));
        let _ = writeln!(out, "# TYPE ringtracker_{name} counter");
        for c in Counter::ALL.iter().filter(|c| family(**c).0 == name) {
            let labels = family(*c).1;
            for (proto, totals) in [("udp", &udp), ("http", &http)] {
                let v = totals[*c as usize];
                // A counter one protocol never moves is left out for it.
                if v == 0 && !applies(*c, proto) {
                    continue;
                }
                let sep = if labels.is_empty() { "" } else { "," };
                let _ = writeln!(
                    out,
                    "ringtracker_{name}{{protocol=\"{proto}\"{sep}{labels}}} {v}"
                );
            }
        }
    }

    let _ = writeln!(
        out,
        "# HELP ringtracker_announces_by_client_total Announces answered, by client software \
         (from the peer id; a fixed table of common clients, the rest `other`)."
    );
    let _ = writeln!(out, "# TYPE ringtracker_announces_by_client_total counter");
    for (name, n) in state.clients() {
        let _ = writeln!(
            out,
            "ringtracker_announces_by_client_total{{client=\"{name}\"}} {n}"
        );
    }

    let t = state.tracker.table().totals();
    gauge_family(
        &mut out,
        "torrents",
        "Torrents with peers of the family (as of the last sweep; a torrent with both counts in both).",
        [t.torrents4, t.torrents6],
    );
    gauge_family(
        &mut out,
        "seeders",
        "Seeders by address family (as of the last sweep).",
        [t.seeders - t.seeders6, t.seeders6],
    );
    gauge_family(
        &mut out,
        "leechers",
        "Leechers by address family (as of the last sweep).",
        [t.leechers - t.leechers6, t.leechers6],
    );
    gauge(
        &mut out,
        "idle_torrents",
        "Torrents without peers whose completed count is kept (as of the last sweep; at most tracker.max_idle_torrents).",
        t.idle as f64,
    );
    let _ = writeln!(
        out,
        "# HELP ringtracker_idle_torrents_evicted_total Idle torrents' completed counts dropped (the smallest) or refused because tracker.max_idle_torrents was full.\n\
         # TYPE ringtracker_idle_torrents_evicted_total counter\n\
         ringtracker_idle_torrents_evicted_total {}",
        state.tracker.table().idle_evicted()
    );

    if let Some(s) = &state.snapshot {
        let written = s.written_at.load(Ordering::Relaxed);
        let age = if written == 0 {
            -1.0
        } else {
            unix.saturating_sub(written) as f64
        };
        gauge(
            &mut out,
            "snapshot_age_seconds",
            "Seconds since the last complete snapshot (-1: none yet).",
            age,
        );
        gauge(
            &mut out,
            "snapshot_duration_seconds",
            "How long the last snapshot took to write.",
            s.micros.load(Ordering::Relaxed) as f64 / 1e6,
        );
        gauge(
            &mut out,
            "snapshot_bytes",
            "Size of the last snapshot.",
            s.bytes.load(Ordering::Relaxed) as f64,
        );
        gauge(
            &mut out,
            "snapshot_peers",
            "Peers in the last snapshot.",
            s.peers.load(Ordering::Relaxed) as f64,
        );
        let _ = writeln!(
            out,
            "# HELP ringtracker_snapshot_failures_total Snapshot writes that failed.\n\
             # TYPE ringtracker_snapshot_failures_total counter\n\
             ringtracker_snapshot_failures_total {}",
            s.failures.load(Ordering::Relaxed)
        );
    }
    if let Some(c) = &state.cluster {
        cluster(&mut out, c);
    }
    if state.tracker.rules().private() {
        gauge(
            &mut out,
            "ledger_sessions",
            "Private mode: client sessions the ledger follows.",
            state.tracker.ledger().sessions() as f64,
        );
        gauge(
            &mut out,
            "ledger_pending_credits",
            "Private mode: credits (per user and torrent) not yet stored, sealed or not.",
            state.tracker.ledger().pending_credits() as f64,
        );
        let implausible = &state.tracker.ledger().implausible;
        let _ = writeln!(
            out,
            "# HELP ringtracker_ledger_implausible_bytes_total Private mode: reported bytes not credited, past what private.max_rate allows.\n\
             # TYPE ringtracker_ledger_implausible_bytes_total counter\n\
             ringtracker_ledger_implausible_bytes_total {}\n\
             # HELP ringtracker_ledger_implausible_reports_total Private mode: announces whose reported increase was cut to private.max_rate.\n\
             # TYPE ringtracker_ledger_implausible_reports_total counter\n\
             ringtracker_ledger_implausible_reports_total {}",
            implausible.bytes.load(Ordering::Relaxed),
            implausible.reports.load(Ordering::Relaxed)
        );
    }
    if let Some(d) = &state.database {
        database(&mut out, state, d, unix);
    }
    gauge(
        &mut out,
        "up",
        "1 while every worker is serving.",
        if state.is_healthy() { 1.0 } else { 0.0 },
    );
    gauge(
        &mut out,
        "uptime_seconds",
        "Seconds since the start.",
        unix.saturating_sub(state.started) as f64,
    );
    out
}

/// Cluster mode's sync: messages, changes and bytes each way, apply lag,
/// remote peers, Redis's state.
fn count_of(a: &std::sync::atomic::AtomicU64) -> f64 {
    a.load(Ordering::Relaxed) as f64
}

/// Private mode's database thread.
fn database(out: &mut String, state: &MetricsState, d: &crate::stats::DatabaseStats, unix: u64) {
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let age = |at: u64| {
        if at == 0 {
            -1.0
        } else {
            unix.saturating_sub(at) as f64
        }
    };
    gauge(
        out,
        "database_up",
        "1 while the site's database answers.",
        f64::from(u8::from(d.up.load(Ordering::Relaxed))),
    );
    gauge(
        out,
        "database_last_sync_age_seconds",
        "Seconds since users and torrents were last read (-1: never).",
        age(get(&d.last_sync)),
    );
    gauge(
        out,
        "database_last_flush_age_seconds",
        "Seconds since credits were last written (-1: never).",
        age(get(&d.last_flush)),
    );
    if let Some(site) = state.tracker.access().site() {
        let (users, torrents) = site.counts();
        gauge(
            out,
            "database_users",
            "Users served (enabled rows of rt_users).",
            users as f64,
        );
        gauge(
            out,
            "database_torrents",
            "Torrents served (enabled rows of rt_torrents).",
            torrents as f64,
        );
        gauge(
            out,
            "database_user_agents",
            "Distinct User-Agents kept for rt_peers (at most 4096; further ones are written empty).",
            state.tracker.ledger().agents.count() as f64,
        );
    }
    gauge(
        out,
        "database_queued_batches",
        "Journaled credit batches waiting for the database.",
        count_of(&d.queued_batches),
    );
    gauge(
        out,
        "database_write_back_waiting",
        "Write-back entries (peer rows, history, counts) waiting for the database.",
        count_of(&d.write_back_waiting),
    );
    gauge(
        out,
        "database_set_aside_batches",
        "Credit batches refused by the database and kept aside now.",
        get(&d.refused_batches) as f64,
    );
    let count = |a| get(a) as f64;
    let counters = [
        (
            "database_flushes_total",
            "Flushes of the credits that got through.",
            count(&d.flushes),
        ),
        (
            "database_flush_seconds_total",
            "Time spent in those flushes.",
            count(&d.flush_micros) / 1e6,
        ),
        (
            "database_batches_applied_total",
            "Credit batches written to rt_credits.",
            count(&d.batches_applied),
        ),
        (
            "database_batches_skipped_total",
            "Batches rt_batches already had (a commit that had got through): not applied twice.",
            count(&d.batches_skipped),
        ),
        (
            "database_failures_total",
            "Database calls that failed (the connection is then dropped and retried).",
            count(&d.failures),
        ),
        (
            "database_spilled_batches_total",
            "Credit batches kept only in the journal until sent: cut while the database was down past private.max_pending_credits, or queued past the 1M credits kept in memory.",
            count(&d.spilled_batches),
        ),
        (
            "database_refused_batches_total",
            "Credit batches the database refused (kept in the journal, retried on the next connection; later batches go on).",
            count(&d.batches_refused),
        ),
        (
            "database_journal_failures_total",
            "Cuts the credit journal could not take (their credits stay pending).",
            count(&d.journal_failures),
        ),
        (
            "database_bad_rows_total",
            "Rows of rt_users or rt_torrents skipped as malformed.",
            count(&d.bad_rows),
        ),
        (
            "database_write_back_rows_total",
            "Write-back rows sent: rt_peers upserts and deletes, rt_credits history, rt_torrent_stats counts.",
            count(&d.write_back_rows),
        ),
        (
            "database_write_back_refused_total",
            "Write-back transactions whose rows the database refused (those rows dropped; later ones go on).",
            count(&d.write_back_refused),
        ),
        (
            "database_write_back_overflows_total",
            "Times the write-back rows waiting outgrew three per live session plus private.max_pending_credits (dropped; rewritten from the live sessions).",
            count(&d.write_back_overflows),
        ),
    ];
    for (name, help, v) in counters {
        let _ = writeln!(
            out,
            "# HELP ringtracker_{name} {help}\n# TYPE ringtracker_{name} counter\nringtracker_{name} {v}"
        );
    }
}

fn cluster(out: &mut String, c: &ClusterStats) {
    let get = ClusterStats::get;
    let pairs = [
        (
            "messages",
            "Messages appended to (out) and read from (in) the Redis stream.",
            &c.messages_out,
            &c.messages_in,
        ),
        (
            "changes",
            "Swarm changes sent to (out) and applied from (in) Redis.",
            &c.changes_out,
            &c.changes_in,
        ),
        (
            "bytes",
            "Message bytes sent to (out) and read from (in) Redis.",
            &c.bytes_out,
            &c.bytes_in,
        ),
    ];
    for (name, help, out_count, in_count) in pairs {
        let _ = writeln!(
            out,
            "# HELP ringtracker_cluster_{name}_total {help}\n\
             # TYPE ringtracker_cluster_{name}_total counter\n\
             ringtracker_cluster_{name}_total{{direction=\"out\"}} {}\n\
             ringtracker_cluster_{name}_total{{direction=\"in\"}} {}",
            get(out_count),
            get(in_count)
        );
    }
    let _ = writeln!(
        out,
        "# HELP ringtracker_cluster_rejected_total What was read from Redis and not applied, by reason (foreign, oversized, unauthenticated: no valid MAC, malformed, replayed, checkpoint).\n\
         # TYPE ringtracker_cluster_rejected_total counter"
    );
    for why in crate::cluster::stats::Rejected::ALL {
        let _ = writeln!(
            out,
            "ringtracker_cluster_rejected_total{{reason=\"{}\"}} {}",
            why.label(),
            get(&c.rejected[why as usize])
        );
    }
    let counters = [
        (
            "changes_ignored",
            "Changes from other nodes that changed nothing here (a late removal of a peer that moved here, a refused torrent).",
            &c.changes_ignored,
        ),
        (
            "skipped_messages",
            "Stream entries that were not ringtracker messages (malformed or foreign): counted and skipped.",
            &c.skipped_messages,
        ),
        (
            "unsent_dropped",
            "Changes dropped because Redis was away and the buffer of unsent messages was full.",
            &c.unsent_dropped,
        ),
        (
            "reconnects",
            "Times Redis came back after being unavailable.",
            &c.reconnects,
        ),
        (
            "resyncs",
            "Times this node found stream entries it missed (trimmed, or the stream started over) and caught up.",
            &c.resyncs,
        ),
        (
            "checkpoints_written",
            "Checkpoints of this node's local peers written to Redis.",
            &c.checkpoints_written,
        ),
        (
            "checkpoints_loaded",
            "Other nodes' checkpoints loaded (at start, and after missed entries).",
            &c.checkpoints_loaded,
        ),
        (
            "checkpoint_failures",
            "Checkpoint writes that failed.",
            &c.checkpoint_failures,
        ),
    ];
    for (name, help, v) in counters {
        let _ = writeln!(
            out,
            "# HELP ringtracker_cluster_{name}_total {help}\n\
             # TYPE ringtracker_cluster_{name}_total counter\n\
             ringtracker_cluster_{name}_total {}",
            get(v)
        );
    }
    let up = get(&c.redis_up) as f64;
    gauge(out, "cluster_redis_up", "1 while Redis answers.", up);
    // The old name (Redis was "the cluster engine"), kept for one release
    // so that dashboards and alerts can move: see CHANGELOG.md.
    gauge(
        out,
        "cluster_engine_up",
        "Deprecated alias of ringtracker_cluster_redis_up; removed in the next release.",
        up,
    );
    gauge(
        out,
        "cluster_remote_peers",
        "Peers learned from other nodes (as of the last checkpoint walk).",
        get(&c.remote_peers) as f64,
    );
    let (buckets, sum_ms) = c.lag();
    let _ = writeln!(
        out,
        "# HELP ringtracker_cluster_apply_lag_seconds A message's creation at its node to its \
         changes applied here.\n# TYPE ringtracker_cluster_apply_lag_seconds histogram"
    );
    let mut cumulative = 0;
    for (i, n) in buckets.iter().enumerate() {
        cumulative += n;
        let le = LAG_BUCKETS_MS
            .get(i)
            .map_or("+Inf".to_string(), |ms| format!("{}", *ms as f64 / 1000.0));
        let _ = writeln!(
            out,
            "ringtracker_cluster_apply_lag_seconds_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "ringtracker_cluster_apply_lag_seconds_sum {}
ringtracker_cluster_apply_lag_seconds_count {cumulative}",
        sum_ms as f64 / 1000.0
    );
}

/// Whether a counter can move for `proto` at all.
fn applies(c: Counter, proto: &str) -> bool {
    use Counter::*;
    let http_only = matches!(
        c,
        HttpRequests
            | HttpAnnounce
            | HttpScrape
            | HttpRejected
            | HttpRefused
            | HttpRefusedAddress
            | HttpTimeouts
            | TlsFailed
            | HttpConnections
            | HttpAcceptPaused
            | HttpGzip
            | HttpGzipSaved
            | ErrorFullScrapeDisabled
    );
    let both = matches!(
        c,
        BytesIn
            | BytesOut
            | SweptPeers
            | InternalError
            | RingEnters
            | RingSubmitted
            | ErrorBadRequest
            | ErrorTorrentNotAllowed
            | ErrorClientNotAllowed
            | ErrorUnknownPasskey
            | ErrorUnregisteredTorrent
            | ErrorLeechingNotAllowed
            | ErrorPeerLimit
            | ErrorSiteUnavailable
            | ErrorRateLimited
            | ClusterChanges
            | ClusterOutboxOverflow
    );
    both || (proto == "http") == http_only
}

fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    let _ = writeln!(
        out,
        "# HELP ringtracker_{name} {help}\n# TYPE ringtracker_{name} gauge\nringtracker_{name} {v}"
    );
}

/// A gauge by address family.
fn gauge_family(out: &mut String, name: &str, help: &str, v: [u64; 2]) {
    let _ = writeln!(
        out,
        "# HELP ringtracker_{name} {help}\n# TYPE ringtracker_{name} gauge\n\
         ringtracker_{name}{{family=\"ipv4\"}} {}\n\
         ringtracker_{name}{{family=\"ipv6\"}} {}",
        v[0], v[1]
    );
}
