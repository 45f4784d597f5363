//! When the sync thread does what, sans I/O (as quinn-proto's
//! `poll_timeout` / `handle_timeout`): the flush every
//! `flush_interval_ms`, connecting with backoff while Redis is away (and
//! which state changes are worth a log line), what follows a connect
//! (the first catch-up, a look at the stream's ends, a checkpoint), the
//! periodic look at the ends and checkpoint, a catch-up the follower asks
//! for, and otherwise a read until the next flush. The thread asks
//! `poll_command` with the time, does the command, and reports a connect
//! or a failure back; each sequence is a unit test here.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How often the stream's ends are checked for a gap.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// The first wait before a reconnect.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between reconnects (the backoff doubles up to it).
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A checkpoint that failed is tried again after this, doubling up to
/// the max, until it is written or a newer request replaces it.
pub const CHECKPOINT_RETRY_MIN: Duration = Duration::from_secs(1);
/// The longest wait between tries of a failed checkpoint.
pub const CHECKPOINT_RETRY_MAX: Duration = Duration::from_secs(30);

/// What the sync thread does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncCommand {
    /// Drain the outboxes into messages; send what is unsent.
    Flush,
    /// Connect to Redis.
    Connect,
    /// Load the checkpoints; `start`: the first time, which sets where
    /// the stream is read from.
    CatchUp {
        /// The first catch-up of this connection's life.
        start: bool,
    },
    /// Look at the stream's ends.
    CheckStream,
    /// Ask the checkpoint thread for a checkpoint.
    Checkpoint,
    /// Read the stream, blocking at most this long.
    Read(Duration),
    /// Redis is away: nothing to do for this long.
    Sleep(Duration),
}

/// What a failure of Redis is worth saying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownLog {
    /// It was up: say it went away.
    WentAway,
    /// It has never been up and this is the first try: say it cannot be
    /// reached.
    Unreachable,
    /// Already said.
    Quiet,
}

/// When the sync thread does what (flushes, connects and their backoff,
/// what follows a connect, the periodic checks and checkpoints), sans I/O:
/// `poll_command(now)` says what is due.
pub struct SyncSchedule {
    flush_every: Duration,
    checkpoint_every: Duration,
    up: bool,
    was_up: bool,
    down_since: Option<Instant>,
    backoff: Duration,
    next_connect: Instant,
    next_flush: Instant,
    next_check: Instant,
    next_checkpoint: Instant,
    /// What a connect set in motion, in order.
    after_connect: VecDeque<SyncCommand>,
}

impl SyncSchedule {
    /// A schedule starting at `now`, flushing every `flush_every` and writing a
    /// checkpoint every `checkpoint_every`.
    pub fn new(now: Instant, flush_every: Duration, checkpoint_every: Duration) -> SyncSchedule {
        SyncSchedule {
            flush_every,
            checkpoint_every,
            up: false,
            was_up: false,
            down_since: Some(now),
            backoff: MIN_BACKOFF,
            next_connect: now,
            next_flush: now,
            next_check: now,
            next_checkpoint: now + checkpoint_every,
            after_connect: VecDeque::new(),
        }
    }

    /// Whether the connection is up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The next thing to do at `now`; `catch_up_due`: the stream follower
    /// asks for a catch-up.
    pub fn poll_command(&mut self, now: Instant, catch_up_due: bool) -> SyncCommand {
        if now >= self.next_flush {
            self.next_flush = now + self.flush_every;
            return SyncCommand::Flush;
        }
        if !self.up {
            if now >= self.next_connect {
                // Until it fails or works, not again.
                self.next_connect = now + self.backoff;
                return SyncCommand::Connect;
            }
            let until = self.next_flush.min(self.next_connect);
            return SyncCommand::Sleep(until - now);
        }
        if let Some(next) = self.after_connect.pop_front() {
            // They count as the periodic ones.
            match next {
                SyncCommand::CheckStream => self.next_check = now + CHECK_EVERY,
                SyncCommand::Checkpoint => self.next_checkpoint = now + self.checkpoint_every,
                _ => {}
            }
            return next;
        }
        if now >= self.next_check {
            self.next_check = now + CHECK_EVERY;
            return SyncCommand::CheckStream;
        }
        if now >= self.next_checkpoint {
            self.next_checkpoint = now + self.checkpoint_every;
            return SyncCommand::Checkpoint;
        }
        if catch_up_due {
            return SyncCommand::CatchUp { start: false };
        }
        SyncCommand::Read((self.next_flush - now).max(Duration::from_millis(1)))
    }

    /// Connected at `now`; `caught_up`: the first catch-up was done in an
    /// earlier connection. Returns how long Redis was away if this is a
    /// reconnect (None: the first connect).
    pub fn connected(&mut self, now: Instant, caught_up: bool) -> Option<Duration> {
        self.up = true;
        self.backoff = MIN_BACKOFF;
        let away = self
            .down_since
            .take()
            .map(|t| now.saturating_duration_since(t));
        self.after_connect.clear();
        if !caught_up {
            self.after_connect
                .push_back(SyncCommand::CatchUp { start: true });
        }
        // The stream may have started over meanwhile, and other nodes may
        // need this node's peers now.
        self.after_connect.push_back(SyncCommand::CheckStream);
        self.after_connect.push_back(SyncCommand::Checkpoint);
        let reconnect = std::mem::replace(&mut self.was_up, true);
        if reconnect { away } else { None }
    }

    /// Redis failed at `now` (connecting, or on the connection): try again
    /// after the backoff, which doubles up to `MAX_BACKOFF`.
    pub fn down(&mut self, now: Instant) -> DownLog {
        self.up = false;
        self.after_connect.clear();
        let log = if self.down_since.is_none() {
            self.down_since = Some(now);
            DownLog::WentAway
        } else if !self.was_up && self.backoff == MIN_BACKOFF {
            DownLog::Unreachable
        } else {
            DownLog::Quiet
        };
        self.next_connect = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        log
    }
}

/// The checkpoint thread's retries: a checkpoint that failed (once more
/// on a fresh connection included) waits for a retry or a newer request.
#[derive(Debug, Default)]
pub struct CheckpointRetry {
    /// The position to write again, and after how long.
    pending: Option<(String, Duration)>,
    /// Failing since the last checkpoint written (logged once).
    failing: bool,
}

impl CheckpointRetry {
    /// How long to wait for a newer request before writing the pending
    /// one again (None: nothing pending, wait for a request).
    pub fn wait(&self) -> Option<Duration> {
        self.pending.as_ref().map(|(_, w)| *w)
    }

    /// The wait ended with no newer request: the position to write again.
    pub fn due(&self) -> Option<String> {
        self.pending.as_ref().map(|(p, _)| p.clone())
    }

    /// Writing `position` failed. True: the first failure since one
    /// worked (worth a log line).
    pub fn failed(&mut self, position: String) -> bool {
        let wait = self
            .pending
            .as_ref()
            .map_or(CHECKPOINT_RETRY_MIN, |(_, w)| {
                (*w * 2).min(CHECKPOINT_RETRY_MAX)
            });
        self.pending = Some((position, wait));
        !std::mem::replace(&mut self.failing, true)
    }

    /// A checkpoint was written. True: after failures (worth a log line).
    pub fn written(&mut self) -> bool {
        self.pending = None;
        std::mem::take(&mut self.failing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLUSH: Duration = Duration::from_millis(100);
    const MS: Duration = Duration::from_millis(1);

    fn schedule(t: Instant) -> SyncSchedule {
        SyncSchedule::new(t, FLUSH, Duration::from_secs(60))
    }

    #[test]
    fn a_start_flushes_connects_catches_up_then_reads_until_the_next_flush() {
        let t = Instant::now();
        let mut s = schedule(t);
        assert_eq!(s.poll_command(t, false), SyncCommand::Flush);
        assert_eq!(s.poll_command(t, false), SyncCommand::Connect);
        assert_eq!(s.connected(t, false), None);
        assert_eq!(
            s.poll_command(t, false),
            SyncCommand::CatchUp { start: true }
        );
        assert_eq!(s.poll_command(t, false), SyncCommand::CheckStream);
        assert_eq!(s.poll_command(t, false), SyncCommand::Checkpoint);
        assert_eq!(s.poll_command(t, false), SyncCommand::Read(FLUSH));
        let later = t + 30 * MS;
        assert_eq!(s.poll_command(later, false), SyncCommand::Read(70 * MS));
        // A catch-up the follower asks for comes before the read.
        assert_eq!(
            s.poll_command(later, true),
            SyncCommand::CatchUp { start: false }
        );
        assert_eq!(s.poll_command(t + FLUSH, false), SyncCommand::Flush);
        assert_eq!(s.poll_command(t + CHECK_EVERY, false), SyncCommand::Flush);
        assert_eq!(
            s.poll_command(t + CHECK_EVERY, false),
            SyncCommand::CheckStream
        );
        let minute = t + Duration::from_secs(60);
        s.poll_command(minute, false);
        s.poll_command(minute, false);
        assert_eq!(s.poll_command(minute, false), SyncCommand::Checkpoint);
    }

    #[test]
    fn a_failed_checkpoint_is_retried_doubling_and_logged_once() {
        let mut r = CheckpointRetry::default();
        assert_eq!(r.wait(), None);
        assert!(r.failed("5-0".into()));
        assert_eq!(
            (r.wait(), r.due()),
            (Some(CHECKPOINT_RETRY_MIN), Some("5-0".into()))
        );
        assert!(!r.failed("5-0".into()), "logged once");
        assert_eq!(r.wait(), Some(2 * CHECKPOINT_RETRY_MIN));
        for _ in 0..10 {
            r.failed("6-0".into());
        }
        assert_eq!(
            (r.wait(), r.due()),
            (Some(CHECKPOINT_RETRY_MAX), Some("6-0".into()))
        );
        assert!(r.written(), "recovery logged");
        assert_eq!(r.wait(), None);
        assert!(!r.written());
    }

    #[test]
    fn redis_away_backs_off_doubling_and_logs_each_change_once() {
        let t = Instant::now();
        let mut s = schedule(t);
        s.poll_command(t, false);
        assert_eq!(s.poll_command(t, false), SyncCommand::Connect);
        // Never up: said once, then quiet while the backoff grows.
        assert_eq!(s.down(t), DownLog::Unreachable);
        assert_eq!(s.poll_command(t, false), SyncCommand::Sleep(100 * MS));
        assert_eq!(s.poll_command(t + 100 * MS, false), SyncCommand::Flush);
        assert_eq!(s.poll_command(t + 100 * MS, false), SyncCommand::Connect);
        assert_eq!(s.down(t + 100 * MS), DownLog::Quiet);
        assert_eq!(
            s.poll_command(t + 150 * MS, false),
            SyncCommand::Sleep(50 * MS),
            "the next flush comes first"
        );
        for _ in 0..10 {
            s.down(t);
        }
        assert_eq!(s.backoff, MAX_BACKOFF);
        // Up, then away: said once; the reconnect reports the time away.
        let up = t + Duration::from_secs(10);
        s.connected(up, false);
        assert!(s.is_up());
        assert_eq!(s.down(up + MS), DownLog::WentAway);
        assert_eq!(s.down(up + 2 * MS), DownLog::Quiet);
        let back = up + Duration::from_secs(3);
        assert_eq!(s.connected(back, true), Some(back - (up + MS)));
        // The first catch-up was done: a reconnect looks at the ends and
        // writes a checkpoint.
        let mut after = Vec::new();
        loop {
            match s.poll_command(back, false) {
                SyncCommand::Read(_) => break,
                SyncCommand::Flush => {}
                c => after.push(c),
            }
        }
        assert_eq!(after, [SyncCommand::CheckStream, SyncCommand::Checkpoint]);
    }
}
