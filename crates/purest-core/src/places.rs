//! [`Places`]: the bound of one in-memory queue — a count of places taken, at most a capacity —
//! and the emitters waiting for one. Cheaper than a semaphore on the hot path (one
//! compare-and-swap to take a place, one subtraction to give it back), and waiters are woken in
//! batches: only once an eighth of the queue is free again, so a full queue does not turn into a
//! wake-up per message between the emitter and the consumer.

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

pub(crate) struct Places {
    capacity: usize,
    taken: AtomicUsize,
    /// Waiters are woken when `taken` falls to this.
    wake_at: usize,
    waiting: AtomicUsize,
    freed: Notify,
}

/// Why no place was taken.
pub(crate) enum NoPlace {
    /// As many emitters already wait as the queue has places.
    TooManyWaiting,
    /// None freed up before the deadline.
    Timeout,
}

impl Places {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            taken: AtomicUsize::new(0),
            wake_at: capacity - (capacity / 8).max(1),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Places taken now.
    pub(crate) fn taken(&self) -> usize {
        self.taken.load(Ordering::Acquire)
    }

    /// Takes a place if one is free.
    pub(crate) fn try_take(&self) -> bool {
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
                (taken < self.capacity).then_some(taken + 1)
            })
            .is_ok()
    }

    /// Gives a place back, waking the waiters once enough are free.
    pub(crate) fn give_back(&self) {
        let taken = self.taken.fetch_sub(1, Ordering::AcqRel) - 1;
        if taken <= self.wake_at && self.waiting.load(Ordering::Acquire) > 0 {
            self.freed.notify_waiters();
        }
    }

    /// Waits for a place until `deadline`; at most `capacity` emitters wait at once.
    pub(crate) async fn take(&self, deadline: tokio::time::Instant) -> Result<(), NoPlace> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(NoPlace::TooManyWaiting);
        }
        let taken = loop {
            let mut freed = pin!(self.freed.notified());
            // Registered before trying, so a place given back in between is not missed.
            freed.as_mut().enable();
            if self.try_take() {
                break Ok(());
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                break Err(NoPlace::Timeout);
            }
        };
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        taken
    }
}
