//! The open-addressing steps the peer sets and the torrent maps share:
//! linear probing from a home slot, and backward-shift deletion (so there
//! are no tombstones: a lookup ends at the first empty slot).
//!
//! Both tables place an entry by multiply-shift range reduction of a hash
//! (`home`), so any capacity works and growth can be by 1.5x, and both are
//! never full (at most 80%), so every walk ends at an empty slot.

/// A slot of an open-addressing table.
pub trait Slot {
    /// Whether the slot holds nothing.
    fn is_vacant(&self) -> bool;
}

/// The home slot of a 64-bit hash in a table of `cap` slots.
pub fn home(hash: u64, cap: usize) -> usize {
    ((u128::from(hash) * cap as u128) >> 64) as usize
}

/// From `start`, the first slot `holds` accepts (`Ok`), or the first empty
/// one, where such an entry would go (`Err`).
pub fn find<S: Slot>(
    slots: &[S],
    start: usize,
    holds: impl Fn(&S) -> bool,
) -> Result<usize, usize> {
    let cap = slots.len();
    let mut i = start;
    loop {
        let s = &slots[i];
        if holds(s) {
            return Ok(i);
        }
        if s.is_vacant() {
            return Err(i);
        }
        i += 1;
        if i == cap {
            i = 0;
        }
    }
}

/// Empty slot `hole` (its entry is returned) and pull later entries of its
/// probe run back, so that lookups never need tombstones. `home_of` is an
/// occupied slot's home; `vacant` an empty slot.
pub fn delete_at<S: Slot>(
    slots: &mut [S],
    mut hole: usize,
    vacant: S,
    home_of: impl Fn(&S) -> usize,
) -> S {
    let cap = slots.len();
    let mut j = hole;
    loop {
        j += 1;
        if j == cap {
            j = 0;
        }
        if slots[j].is_vacant() {
            break;
        }
        let h = home_of(&slots[j]);
        // The entry at j may move to `hole` unless its home lies cyclically
        // in (hole, j].
        let stays = if hole <= j {
            hole < h && h <= j
        } else {
            hole < h || h <= j
        };
        if !stays {
            slots.swap(hole, j);
            hole = j;
        }
    }
    std::mem::replace(&mut slots[hole], vacant)
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Slot for u32 {
        fn is_vacant(&self) -> bool {
            *self == 0
        }
    }

    /// Keys whose home is `key % 10` in a table of 10: deleting from the
    /// middle of a run that wraps keeps every other key findable.
    #[test]
    fn deletion_keeps_wrapped_runs_findable() {
        let home_of = |k: &u32| (*k % 10) as usize;
        let mut slots = vec![0u32; 10];
        for k in [8, 18, 28, 9, 19, 1] {
            let i = find(&slots, home_of(&k), |s| *s == k).unwrap_err();
            slots[i] = k;
        }
        assert_eq!(slots, [28, 9, 19, 1, 0, 0, 0, 0, 8, 18]);
        let at = find(&slots, home_of(&18), |s| *s == 18).unwrap();
        assert_eq!(delete_at(&mut slots, at, 0, home_of), 18);
        for k in [8, 28, 9, 19, 1] {
            assert!(
                find(&slots, home_of(&k), |s| *s == k).is_ok(),
                "{k} after deleting 18"
            );
        }
        assert!(find(&slots, home_of(&18), |s| *s == 18).is_err());
        assert_eq!(slots.iter().filter(|s| **s != 0).count(), 5);
    }
}
