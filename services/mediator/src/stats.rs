//! Delivery counters of this instance: what was queued, delivered, delivered again and
//! acknowledged. Redeliveries (a message handed out after an earlier delivery that was never
//! acknowledged: at-least-once) are how duplicates are counted.
//! The telemetry issue exports these as metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters, updated without locks.
#[derive(Debug, Default)]
pub struct Stats {
    forwards_queued: AtomicU64,
    delivered: AtomicU64,
    redelivered: AtomicU64,
    acknowledged: AtomicU64,
}

/// A reading of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Forwards persisted in a queue.
    pub forwards_queued: u64,
    /// Queued messages put on a transport (each delivery of the same message counts).
    pub delivered: u64,
    /// Deliveries of messages that had been delivered before (at-least-once duplicates).
    pub redelivered: u64,
    /// Queued messages removed because their recipient acknowledged them.
    pub acknowledged: u64,
}

impl Stats {
    pub(crate) fn forward_queued(&self) {
        self.forwards_queued.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn delivered(&self, n: usize) {
        self.delivered.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn redelivered(&self, n: usize) {
        self.redelivered.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn acknowledged(&self, n: usize) {
        self.acknowledged.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            forwards_queued: self.forwards_queued.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            redelivered: self.redelivered.load(Ordering::Relaxed),
            acknowledged: self.acknowledged.load(Ordering::Relaxed),
        }
    }
}
