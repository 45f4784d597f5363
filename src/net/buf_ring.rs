//! A provided-buffer ring (IORING_REGISTER_PBUF_RING, Linux 5.19+): the
//! kernel picks a free buffer for each datagram a multishot receive takes,
//! and we hand buffers back by writing their ids at the ring's tail.
//!
//! Memory layout: `entries` ring slots of 16 bytes (`io_uring_buf`), shared
//! with the kernel and page aligned, plus one contiguous block of
//! `entries * buf_len` bytes for the buffers themselves. Buffer `bid` is
//! always at `bid * buf_len`. Handing a buffer back only writes a slot; the
//! tail, which the kernel reads, is published once per batch.
//!
//! A buffer must be in the ring at most once (twice, and the kernel could
//! hand one buffer to two datagrams): `recycle` only takes back a buffer
//! that `taken` said the kernel handed out, so a double recycle is a no-op
//! rather than a corrupt ring.
#![allow(unsafe_code)] // the kernel interface; each block says why it holds

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::Submitter;
use io_uring::types::BufRingEntry;

/// A provided-buffer ring: receive buffers the kernel picks from, handed
/// back once their datagram is answered.
pub struct BufRing {
    /// `entries` ring slots, from mmap (page aligned, zeroed).
    ring: *mut BufRingEntry,
    ring_bytes: usize,
    entries: u16,
    /// Our copy of the tail; the kernel sees it after `publish`.
    tail: u16,
    buffers: Box<[u8]>,
    buf_len: usize,
    group: u16,
    /// Per buffer: the kernel handed it to us and it is not back yet.
    out: Box<[bool]>,
}

impl BufRing {
    /// Allocate `entries` (a power of two, at most 32768) buffers of
    /// `buf_len` bytes and give them all to the kernel as buffer group
    /// `group` of the ring behind `submitter`.
    pub fn register(
        submitter: &Submitter<'_>,
        entries: u16,
        buf_len: usize,
        group: u16,
    ) -> io::Result<BufRing> {
        assert!(entries.is_power_of_two());
        let ring_bytes = usize::from(entries) * std::mem::size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping with no address hint has no
        // preconditions; the result is checked for MAP_FAILED below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut ring = BufRing {
            ring: ptr.cast(),
            ring_bytes,
            entries,
            tail: 0,
            // Filled (not merely zero-allocated) so every page is resident
            // from the start: no page faults on the receive path, and the
            // resident size does not creep up under the first load.
            buffers: vec![0xa5u8; usize::from(entries) * buf_len].into_boxed_slice(),
            buf_len,
            group,
            out: vec![true; usize::from(entries)].into_boxed_slice(),
        };
        // SAFETY: the mapping is `entries` slots long and page aligned. It
        // (and the buffers) outlive the kernel's use: a worker unregisters
        // the group with nothing in flight (at a clean stop, or after
        // draining a failed ring) before it drops its ring and then this;
        // one whose ring cannot even be drained leaks both (a ring's
        // teardown is asynchronous).
        unsafe {
            submitter.register_buf_ring_with_flags(ring.ring as u64, entries, group, 0)?;
        }
        for bid in 0..entries {
            ring.recycle(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// The buffer group id the receives name.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Each buffer's length.
    pub fn buf_len(&self) -> usize {
        self.buf_len
    }

    /// The first `len` bytes of buffer `bid`, as the kernel filled them.
    pub fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        debug_assert!(self.out[usize::from(bid)], "buffer {bid} is the kernel's");
        let start = usize::from(bid) * self.buf_len;
        &self.buffers[start..start + len.min(self.buf_len)]
    }

    /// The kernel handed buffer `bid` to a completion: ours until
    /// `recycle`.
    pub fn taken(&mut self, bid: u16) {
        self.out[usize::from(bid)] = true;
    }

    /// Give buffer `bid` back to the kernel (visible after `publish`). A
    /// buffer that is not out (given back already) is left alone.
    pub fn recycle(&mut self, bid: u16) {
        if !std::mem::replace(&mut self.out[usize::from(bid)], false) {
            debug_assert!(false, "buffer {bid} recycled twice");
            return;
        }
        let mask = self.entries - 1;
        let addr = self.buffers.as_ptr() as u64 + (usize::from(bid) * self.buf_len) as u64;
        // SAFETY: `tail & mask` < entries, so the slot is inside the mapping;
        // the kernel only reads slots between its head and the published
        // tail, and this one is past the published tail.
        let slot = unsafe { &mut *self.ring.add(usize::from(self.tail & mask)) };
        slot.set_addr(addr);
        slot.set_len(self.buf_len as u32);
        slot.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Make every recycled buffer visible to the kernel.
    pub fn publish(&self) {
        // SAFETY: the tail field lives in the first slot of our mapping, is
        // 2-byte aligned, and the kernel reads it atomically; a release store
        // orders the slot writes above before it.
        unsafe {
            let tail = BufRingEntry::tail(self.ring).cast_mut();
            (*tail.cast::<AtomicU16>()).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `register` with this length and is
        // no longer used: the group was unregistered with nothing in flight
        // (a worker whose ring could not be drained leaks this instead).
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_bytes);
        }
    }
}
