//! vellum patch: per-thread buffers of the unfiltered layer search (`Hnsw::search_layer`).
//!
//! A layer search visits hundreds of points; the original routine allocated a `HashMap` of
//! `Arc` clones under SipHash and two heaps of `Arc`-allocated entries per call. These buffers
//! are kept per thread and cleared between calls, and hold point ids and raw point addresses.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::hash::{BuildHasherDefault, Hasher};

use hashbrown::HashSet;

use crate::hnsw::PointId;

/// Multiplicative hash of a `PointId` (layer, rank): ids are small integers, so one multiply by
/// an odd constant spreads them over the high bits that `hashbrown` uses.
#[derive(Default)]
pub(crate) struct PointIdHasher(u64);

impl Hasher for PointIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }
    fn write_i32(&mut self, v: i32) {
        self.write_u64(u64::from(v as u32));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(32) ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Search candidate, popped closest first: (distance, point address).
#[derive(Clone, Copy)]
pub(crate) struct Closest(pub f32, pub usize);

/// Result kept, popped farthest first: (distance, point address).
#[derive(Clone, Copy)]
pub(crate) struct Farthest(pub f32, pub usize);

impl PartialEq for Closest {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Closest {}
impl PartialOrd for Closest {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Closest {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.total_cmp(&self.0)
    }
}

impl PartialEq for Farthest {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Farthest {}
impl PartialOrd for Farthest {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Farthest {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The buffers of one layer search.
#[derive(Default)]
pub(crate) struct Scratch {
    visited: HashSet<PointId, BuildHasherDefault<PointIdHasher>>,
    candidates: BinaryHeap<Closest>,
    nearest: BinaryHeap<Farthest>,
    unvisited: Vec<usize>,
}

impl Scratch {
    /// The three buffers, emptied.
    #[allow(clippy::type_complexity)]
    pub(crate) fn parts(
        &mut self,
    ) -> (
        &mut HashSet<PointId, BuildHasherDefault<PointIdHasher>>,
        &mut BinaryHeap<Closest>,
        &mut BinaryHeap<Farthest>,
        &mut Vec<usize>,
    ) {
        self.visited.clear();
        self.candidates.clear();
        self.nearest.clear();
        self.unvisited.clear();
        (
            &mut self.visited,
            &mut self.candidates,
            &mut self.nearest,
            &mut self.unvisited,
        )
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's buffers (fresh ones if they are already in use further up the
/// stack, which a layer search never does).
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Asks for the cache line at `p` (a hint: no fault, no effect on results).
#[inline(always)]
pub(crate) fn prefetch<P>(p: *const P) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint that never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Asks for the first cache lines of `v` (the hardware prefetcher follows on sequential reads).
#[inline(always)]
pub(crate) fn prefetch_slice<T>(v: &[T]) {
    let bytes = std::mem::size_of_val(v);
    let p = v.as_ptr().cast::<u8>();
    let mut at = 0;
    while at < bytes.min(256) {
        prefetch(p.wrapping_add(at));
        at += 64;
    }
}
