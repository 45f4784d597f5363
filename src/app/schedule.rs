//! The process's own timers (not a worker's): which periodic jobs run and
//! how often. What each job does is `Process::run_job`.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::engine::timers::{TimerKind, TimerTable};
use crate::metrics::history;

/// The process's timers (not a worker's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MainTimer {
    /// Check that every worker still runs.
    Health,
    /// A sample for the stats page's history.
    History,
    /// The counters' log line.
    StatsLog,
    /// Private mode: export the ledger's credits, forget idle sessions.
    Ledger,
    /// Write a snapshot of the swarm table.
    Snapshot,
}

impl TimerKind for MainTimer {
    const ALL: &'static [Self] = &[
        MainTimer::Health,
        MainTimer::History,
        MainTimer::StatsLog,
        MainTimer::Ledger,
        MainTimer::Snapshot,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Which of the process's periodic jobs run, and how often. The one
/// place that decides which timers are armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MainSchedule {
    pub health: Duration,
    pub history: Option<Duration>,
    pub stats_log: Option<Duration>,
    pub ledger: Option<Duration>,
    pub snapshot: Option<Duration>,
}

pub type MainTimers = TimerTable<MainTimer, 5>;

impl MainSchedule {
    /// The table for this schedule, started at `now`. The history sample
    /// fires at once (the page's chart starts at start-up).
    pub fn timers(&self, now: Instant) -> MainTimers {
        let mut t = MainTimers::default();
        t.arm(MainTimer::Health, now, self.health);
        let optional = [
            (MainTimer::History, self.history),
            (MainTimer::StatsLog, self.stats_log),
            (MainTimer::Ledger, self.ledger),
            (MainTimer::Snapshot, self.snapshot),
        ];
        for (kind, every) in optional {
            if let Some(every) = every {
                t.arm(kind, now, every);
            }
        }
        t.fire_now(MainTimer::History, now);
        t
    }
}

/// Which of the periodic jobs `config` turns on, and how often: a timer is
/// armed exactly when its feature is on.
pub(super) fn schedule(config: &Config) -> MainSchedule {
    let secs = Duration::from_secs;
    MainSchedule {
        // Check every second that every worker still runs.
        health: secs(1),
        history: config.metrics.enabled.then_some(secs(history::STEP)),
        stats_log: (config.server.stats_interval > 0).then(|| secs(config.server.stats_interval)),
        ledger: config
            .private
            .enabled
            .then(|| secs(config.private.ledger_interval)),
        snapshot: config
            .storage
            .snapshot
            .as_ref()
            .map(|_| secs(config.storage.snapshot_interval)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn schedule(history: bool, stats: bool, ledger: bool, snapshot: bool) -> MainSchedule {
        MainSchedule {
            health: S,
            history: history.then_some(10 * S),
            stats_log: stats.then_some(60 * S),
            ledger: ledger.then_some(60 * S),
            snapshot: snapshot.then_some(300 * S),
        }
    }

    /// Every combination of features, driven for two simulated hours the
    /// way the process drives it: wait until the earliest deadline, pop every
    /// expired timer. The wait is never zero after the first round (no
    /// spin), a timer fires iff its feature is on, and at its period.
    #[test]
    fn every_feature_combination_waits_and_fires_on_schedule() {
        for bits in 0..16u8 {
            let on = |b: u8| bits & (1 << b) != 0;
            let sched = schedule(on(0), on(1), on(2), on(3));
            let t0 = Instant::now();
            let mut timers = sched.timers(t0);
            let mut now = t0;
            let mut fired = [0u32; 5];
            let mut wakes = 0u32;
            while now < t0 + 7200 * S {
                while let Some(k) = timers.pop_expired(now) {
                    fired[k.index()] += 1;
                }
                let next = timers.poll_timeout().expect("health is always armed");
                assert!(next > now, "combination {bits:04b}: zero wait at {now:?}");
                now = next;
                wakes += 1;
            }
            let expect = |kind: MainTimer, period: u32, first_at_start: bool| {
                let n = fired[kind.index()];
                let want = 7200 / period + u32::from(first_at_start);
                assert!(
                    n == want || n + 1 == want,
                    "combination {bits:04b}: {kind:?} fired {n}, expected {want}"
                );
            };
            expect(MainTimer::Health, 1, false);
            for (kind, is_on, period, first) in [
                (MainTimer::History, on(0), 10, true),
                (MainTimer::StatsLog, on(1), 60, false),
                (MainTimer::Ledger, on(2), 60, false),
                (MainTimer::Snapshot, on(3), 300, false),
            ] {
                if is_on {
                    expect(kind, period, first);
                } else {
                    assert_eq!(fired[kind.index()], 0, "{bits:04b}: {kind:?} is off");
                    assert!(!timers.is_armed(kind));
                }
            }
            // One wake per health tick: nothing else adds wakes of its own
            // beyond its deadlines (all whole seconds here).
            assert!(wakes <= 7201, "combination {bits:04b}: {wakes} wakes");
        }
    }
}
