//! Timers as data: a small fixed table of periodic deadlines, one per kind,
//! with one rule for when each is armed and when it fires next.
//!
//! quinn-proto's shape: the owner asks `poll_timeout()` for the earliest
//! deadline, sleeps until then (or until I/O), and hands the time back to
//! `pop_expired(now)`. Nothing here reads a clock.
//!
//! The rule that keeps a caller from spinning: a timer that fires is
//! re-armed one period after its deadline, or one period after `now` if
//! that is already past (a stall skips turns instead of firing them back
//! to back). So after every expired timer has been popped, each armed
//! deadline is in the future. A timer whose feature is off is not armed at
//! all: it never fires and never bounds the wait (the bug this replaced: a
//! ledger deadline that only moved with private mode on, and so stood in
//! the past from its first minute on, turning main's wait into a spin).

use std::time::{Duration, Instant};

/// A kind of timer: an index into a table of `N`.
pub trait TimerKind: Copy + 'static {
    const ALL: &'static [Self];
    fn index(self) -> usize;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Periodic {
    next: Instant,
    every: Duration,
}

/// One optional periodic deadline per kind.
#[derive(Debug, Clone)]
pub struct TimerTable<K: TimerKind, const N: usize> {
    timers: [Option<Periodic>; N],
    _kind: std::marker::PhantomData<K>,
}

impl<K: TimerKind, const N: usize> Default for TimerTable<K, N> {
    fn default() -> Self {
        TimerTable {
            timers: [None; N],
            _kind: std::marker::PhantomData,
        }
    }
}

impl<K: TimerKind, const N: usize> TimerTable<K, N> {
    /// Fire `kind` every `every` from `now` on (first at `now + every`).
    /// A zero period is raised to a millisecond: it would fire on every
    /// poll.
    pub fn arm(&mut self, kind: K, now: Instant, every: Duration) {
        let every = every.max(Duration::from_millis(1));
        self.timers[kind.index()] = Some(Periodic {
            next: deadline(now, every),
            every,
        });
    }

    /// Fire `kind` at `now` (on the next `pop_expired`), then every period.
    pub fn fire_now(&mut self, kind: K, now: Instant) {
        if let Some(t) = &mut self.timers[kind.index()] {
            t.next = now;
        }
    }

    pub fn disarm(&mut self, kind: K) {
        self.timers[kind.index()] = None;
    }

    pub fn is_armed(&self, kind: K) -> bool {
        self.timers[kind.index()].is_some()
    }

    /// The earliest armed deadline (`None`: nothing is armed).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().flatten().map(|t| t.next).min()
    }

    /// One timer due at `now`, re-armed by the rule above; `None` once
    /// nothing is due. Call until `None`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<K> {
        for &kind in K::ALL {
            if let Some(t) = &mut self.timers[kind.index()]
                && t.next <= now
            {
                let next = t.next.checked_add(t.every).unwrap_or(t.next);
                t.next = if next > now {
                    next
                } else {
                    deadline(now, t.every)
                };
                return Some(kind);
            }
        }
        None
    }
}

/// `now + every`, saturating far in the future instead of overflowing
/// (`Instant + Duration` panics on overflow).
fn deadline(now: Instant, every: Duration) -> Instant {
    now.checked_add(every)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

/// Main's timers (the process, not a worker).
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

/// Which of main's periodic jobs run, and how often (0: off). The one
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
    /// way main drives it: wait until the earliest deadline, pop every
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

    #[test]
    fn a_stall_skips_turns_instead_of_firing_them_back_to_back() {
        let t0 = Instant::now();
        let mut timers = MainTimers::default();
        timers.arm(MainTimer::StatsLog, t0, 10 * S);
        // The owner was away for 95 s: one firing, then the next deadline
        // is a period from now, not 9 overdue periods.
        let now = t0 + 95 * S;
        assert_eq!(timers.pop_expired(now), Some(MainTimer::StatsLog));
        assert_eq!(timers.pop_expired(now), None);
        assert_eq!(timers.poll_timeout(), Some(now + 10 * S));
        // On time, the period is kept exactly (no drift by lateness).
        let late = now + 10 * S + Duration::from_millis(3);
        assert_eq!(timers.pop_expired(late), Some(MainTimer::StatsLog));
        assert_eq!(timers.poll_timeout(), Some(now + 20 * S));
    }

    #[test]
    fn huge_periods_do_not_overflow() {
        let t0 = Instant::now();
        let mut timers = MainTimers::default();
        timers.arm(MainTimer::Snapshot, t0, Duration::from_secs(u64::MAX));
        assert!(timers.poll_timeout().expect("armed") > t0);
        assert_eq!(timers.pop_expired(t0 + 3600 * S), None);
        timers.arm(MainTimer::Ledger, t0, Duration::ZERO);
        let first = timers.poll_timeout().expect("armed");
        assert!(first > t0, "a zero period still waits");
    }

    #[test]
    fn disarmed_timers_neither_fire_nor_bound_the_wait() {
        let t0 = Instant::now();
        let mut timers = MainTimers::default();
        assert_eq!(timers.poll_timeout(), None);
        timers.arm(MainTimer::Ledger, t0, S);
        timers.disarm(MainTimer::Ledger);
        assert_eq!(timers.poll_timeout(), None);
        assert_eq!(timers.pop_expired(t0 + 10 * S), None);
    }
}
