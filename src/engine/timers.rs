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
//! all: it never fires and never bounds the wait (a deadline left standing
//! in the past would turn its owner's wait into a spin).

use std::time::{Duration, Instant};

/// A kind of timer: an index into a table of `N`.
pub trait TimerKind: Copy + 'static {
    /// Every kind, in table order.
    const ALL: &'static [Self];
    /// The kind's index in the table.
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

    /// Stop firing `kind`.
    pub fn disarm(&mut self, kind: K) {
        self.timers[kind.index()] = None;
    }

    /// Whether `kind` is armed.
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

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Kind {
        A,
        B,
    }

    impl TimerKind for Kind {
        const ALL: &'static [Self] = &[Kind::A, Kind::B];

        fn index(self) -> usize {
            self as usize
        }
    }

    type Timers = TimerTable<Kind, 2>;

    #[test]
    fn a_stall_skips_turns_instead_of_firing_them_back_to_back() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.arm(Kind::A, t0, 10 * S);
        // The owner was away for 95 s: one firing, then the next deadline
        // is a period from now, not 9 overdue periods.
        let now = t0 + 95 * S;
        assert_eq!(timers.pop_expired(now), Some(Kind::A));
        assert_eq!(timers.pop_expired(now), None);
        assert_eq!(timers.poll_timeout(), Some(now + 10 * S));
        // On time, the period is kept exactly (no drift by lateness).
        let late = now + 10 * S + Duration::from_millis(3);
        assert_eq!(timers.pop_expired(late), Some(Kind::A));
        assert_eq!(timers.poll_timeout(), Some(now + 20 * S));
    }

    #[test]
    fn huge_periods_do_not_overflow() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.arm(Kind::A, t0, Duration::from_secs(u64::MAX));
        assert!(timers.poll_timeout().expect("armed") > t0);
        assert_eq!(timers.pop_expired(t0 + 3600 * S), None);
        timers.arm(Kind::B, t0, Duration::ZERO);
        let first = timers.poll_timeout().expect("armed");
        assert!(first > t0, "a zero period still waits");
    }

    #[test]
    fn disarmed_timers_neither_fire_nor_bound_the_wait() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        assert_eq!(timers.poll_timeout(), None);
        timers.arm(Kind::B, t0, S);
        timers.disarm(Kind::B);
        assert_eq!(timers.poll_timeout(), None);
        assert_eq!(timers.pop_expired(t0 + 10 * S), None);
    }
}
