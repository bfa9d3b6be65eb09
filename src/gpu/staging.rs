//! Page-locked (pinned) host buffers for the encoders' per-pass copies (token ids in, vectors
//! out). A copy from or to pinned memory is a direct DMA transfer, about twice the bandwidth of
//! pageable memory, and returns at once: it waits only for its own place in the stream, so a
//! thread can queue a pass and its copies while another thread's pass still runs.
//!
//! Every buffer carries its own event, recorded after each copy that uses it. cudarc 0.19
//! records the events of its `PinnedHostSlice` only when it manages several streams, which
//! vellum (one stream per device) does not, so the event here is what makes reuse safe: a
//! buffer is taken from the pool only once its last copy has completed, waited for before its
//! values are read, and waited for before it is freed.

use std::sync::Arc;

use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{
    CudaContext, CudaEvent, DeviceRepr, DriverError, PinnedHostSlice, ValidAsZeroBits,
};
use parking_lot::Mutex;

/// A page-locked buffer and the event of its last copy.
pub(super) struct Staged<T> {
    buf: PinnedHostSlice<T>,
    done: CudaEvent,
}

impl<T: DeviceRepr + ValidAsZeroBits> Staged<T> {
    /// The buffer, for a copy; call [`Staged::copied`] after queueing it.
    pub(super) fn buffer(&self) -> &PinnedHostSlice<T> {
        &self.buf
    }

    /// The values, once every copy recorded so far has completed.
    pub(super) fn values(&self) -> Result<&[T], DriverError> {
        self.done.synchronize()?;
        self.buf.as_slice()
    }

    /// The values to write, once every copy recorded so far has completed.
    pub(super) fn values_mut(&mut self) -> Result<&mut [T], DriverError> {
        self.done.synchronize()?;
        self.buf.as_mut_slice()
    }

    /// Records that the copies queued on `stream` so far use the buffer.
    pub(super) fn copied(&self, stream: &cudarc::driver::CudaStream) -> Result<(), DriverError> {
        self.done.record(stream)
    }
}

impl<T> Drop for Staged<T> {
    fn drop(&mut self) {
        // Freeing page-locked memory that a copy still reads or writes is undefined: wait. An
        // error here (a failed device) leaves nothing better to do than free it anyway.
        let _ = self.done.synchronize();
    }
}

/// Buffers kept for reuse, by exact length (the callers round lengths up to powers of two).
pub(super) struct Pool<T> {
    kept: Mutex<Vec<Staged<T>>>,
    /// At most this many are kept; more are freed after use.
    capacity: usize,
    /// `cuMemHostAlloc` flags: write-combined for buffers the host only writes.
    flags: u32,
}

impl<T: DeviceRepr + ValidAsZeroBits> Pool<T> {
    /// A pool keeping up to `capacity` buffers allocated with `flags`.
    pub(super) fn new(capacity: usize, flags: u32) -> Self {
        Pool {
            kept: Mutex::new(Vec::new()),
            capacity,
            flags,
        }
    }

    /// A buffer of `len` values whose last copy has completed: a kept one, or a new zeroed one.
    pub(super) fn take(
        &self,
        ctx: &Arc<CudaContext>,
        len: usize,
    ) -> Result<Staged<T>, DriverError> {
        {
            let mut kept = self.kept.lock();
            if let Some(i) = kept
                .iter()
                .position(|s| s.buf.len() == len && s.done.is_complete())
            {
                return Ok(kept.swap_remove(i));
            }
        }
        // SAFETY: the memory is zeroed below before anything reads it.
        let mut buf = unsafe { ctx.alloc_pinned_with_flags::<T>(len, self.flags)? };
        let p = buf.as_mut_ptr()?;
        // SAFETY: `p` addresses `len` values of `T` that no copy uses yet; all-zero bytes are a
        // valid `T` (`ValidAsZeroBits`).
        unsafe { std::ptr::write_bytes(p, 0, len) };
        let done = ctx.new_event(Some(CUevent_flags::CU_EVENT_BLOCKING_SYNC))?;
        Ok(Staged { buf, done })
    }

    /// Returns a buffer for reuse (freed, after its copies, when the pool is full).
    pub(super) fn put(&self, staged: Staged<T>) {
        let mut kept = self.kept.lock();
        if kept.len() < self.capacity {
            kept.push(staged);
        } else {
            drop(kept);
            drop(staged);
        }
    }
}
