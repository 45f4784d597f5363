//! The last hour of the tracker's vital numbers, one sample every `STEP`
//! seconds, for the stats page's charts.

use std::collections::VecDeque;
use std::fmt::Write;

/// Seconds between samples.
pub const STEP: u64 = 10;
/// Samples kept: one hour.
pub const KEPT: usize = 360;

/// One sample of the stats page's charts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// When it was taken (unix seconds).
    pub unix: u64,
    /// Announces answered since the start (a counter: the page draws its
    /// rate between samples).
    pub announces: u64,
    /// Torrents with peers.
    pub torrents: u64,
    /// Seeders.
    pub seeders: u64,
    /// Leechers.
    pub leechers: u64,
}

/// The last `KEPT` samples, oldest first.
#[derive(Default)]
pub struct History {
    samples: VecDeque<Sample>,
}

impl History {
    /// Add a sample, dropping the oldest past `KEPT`.
    pub fn push(&mut self, s: Sample) {
        if self.samples.len() == KEPT {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }

    /// How many samples are kept.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// `{"uptime":…,"step":…,"now":[…],"samples":[[…],…]}`, each sample as
    /// `[unix, announces, torrents, seeders, leechers]`.
    /// The history as JSON; `extra` (`,"key":value...` or empty) is added
    /// to the top-level object.
    pub fn to_json(&self, now: &Sample, uptime: u64, extra: &str) -> String {
        let mut out = String::with_capacity(64 + 48 * self.samples.len());
        let row = |out: &mut String, s: &Sample| {
            let _ = write!(
                out,
                "[{},{},{},{},{}]",
                s.unix, s.announces, s.torrents, s.seeders, s.leechers
            );
        };
        let _ = write!(out, "{{\"uptime\":{uptime},\"step\":{STEP},\"now\":");
        row(&mut out, now);
        out.push_str(",\"samples\":[");
        for (i, s) in self.samples.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            row(&mut out, s);
        }
        out.push(']');
        out.push_str(extra);
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_hour_as_json() {
        let mut h = History::default();
        for i in 0..(KEPT as u64 + 5) {
            h.push(Sample {
                unix: i * STEP,
                announces: i,
                ..Sample::default()
            });
        }
        assert_eq!(h.len(), KEPT);
        let now = Sample {
            unix: 9999,
            announces: 7,
            torrents: 1,
            seeders: 2,
            leechers: 3,
        };
        let json = h.to_json(&now, 42, "");
        assert!(json.starts_with(
            "{\"uptime\":42,\"step\":10,\"now\":[9999,7,1,2,3],\"samples\":[[50,5,0,0,0],"
        ));
        assert!(json.ends_with("[3640,364,0,0,0]]}"), "{json}");
        assert_eq!(
            History::default().to_json(&now, 0, ""),
            "{\"uptime\":0,\"step\":10,\"now\":[9999,7,1,2,3],\"samples\":[]}"
        );
    }
}
