//! The one software-prefetch helper (audited; the rest of the core is
//! `#![forbid(unsafe_code)]`).
//!
//! The UDP batch pipeline asks for the cache lines a datagram will need
//! (its torrent's table entry) before it answers the earlier datagrams of
//! the batch, so the memory loads of many datagrams overlap instead of
//! being waited for one after another. A plain load cannot do that here:
//! the shard lock taken for the next answer is a locked instruction, which
//! waits for earlier loads, while a prefetch is neither ordered by locked
//! instructions nor waited for.
#![allow(unsafe_code)] // the kernel interface; each block says why it holds

/// Ask for the cache line holding `p` (into every cache level). A hint
/// only: any address is allowed, including a stale or dangling one.
#[inline(always)]
pub fn prefetch_read<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 never faults and has no architecturally visible
    // effect, whatever the address (unmapped, freed or null): it reads
    // nothing into the program. Callers may pass addresses computed from
    // a racy view of a table (`SwarmTable::prefetch`), and that is fine.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
