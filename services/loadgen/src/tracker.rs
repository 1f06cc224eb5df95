//! What happened to each message, shared by the senders and the receivers without locks.
//!
//! One slot per planned message, written with atomics: a sender writes when it posted and when
//! the 202 came back, a receiver when the message arrived and how often. Times are nanoseconds
//! on one monotonic clock since [`Tracker::epoch`], plus one so that 0 means "never". A
//! live delivery can reach the recipient before its sender read the 202 (the mediator pushes it
//! before answering), so neither side may assume it writes first.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering::Relaxed},
        Mutex,
    },
};

use tokio::time::Instant;

/// How a POST ended, in [`Slot::status`].
pub(crate) const NOT_SENT: u32 = 0;
/// The request failed before any status (connection, timeout).
pub(crate) const TRANSPORT_ERROR: u32 = 1;

/// One message.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// When its POST started.
    pub posted: AtomicU64,
    /// When its POST returned 202.
    pub accepted: AtomicU64,
    /// When it first arrived, opened, on its recipient's socket.
    pub delivered: AtomicU64,
    /// How often it arrived.
    pub deliveries: AtomicU32,
    /// The HTTP status of its POST, or [`NOT_SENT`], [`TRANSPORT_ERROR`].
    pub status: AtomicU32,
    /// Index of the instance it was posted to.
    pub instance: AtomicU32,
}

/// Per-instance counters.
#[derive(Debug, Default)]
pub(crate) struct InstanceCounters {
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub post_errors: AtomicU64,
    /// Deliveries read on sockets of recipients held by this instance.
    pub delivered: AtomicU64,
}

/// Everything the run records.
#[derive(Debug)]
pub(crate) struct Tracker {
    epoch: Instant,
    /// The run's id, in every message it sends.
    pub run: String,
    pub recipients: usize,
    pub slots: Vec<Slot>,
    pub instances: Vec<InstanceCounters>,
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub delivered: AtomicU64,
    pub duplicates: AtomicU64,
    /// Arrivals that are not a message of this run for this recipient.
    pub foreign: AtomicU64,
    /// Set when the senders stopped because every planned message was used.
    pub pool_exhausted: AtomicU32,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Tracker {
    pub fn new(run: String, planned: u64, recipients: usize, instances: usize) -> Self {
        let planned = usize::try_from(planned).unwrap_or(usize::MAX);
        Self {
            epoch: Instant::now(),
            run,
            recipients,
            slots: (0..planned).map(|_| Slot::default()).collect(),
            instances: (0..instances)
                .map(|_| InstanceCounters::default())
                .collect(),
            sent: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            pool_exhausted: AtomicU32::new(0),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    /// Now, in the slots' unit.
    pub fn now(&self) -> u64 {
        self.at(Instant::now())
    }

    /// `t` in the slots' unit.
    pub fn at(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1)
            + 1
    }

    pub fn slot(&self, seq: u64) -> Option<&Slot> {
        usize::try_from(seq).ok().and_then(|i| self.slots.get(i))
    }

    /// Records the arrival of message `seq` on the socket of recipient `recipient` (held by
    /// `instance`), at `now`. Returns false if it is no message of ours for that recipient.
    pub fn delivered(&self, seq: u64, recipient: usize, instance: usize, now: u64) -> bool {
        let Some(slot) = self.slot(seq) else {
            self.foreign.fetch_add(1, Relaxed);
            return false;
        };
        if (seq % self.recipients as u64) as usize != recipient {
            self.foreign.fetch_add(1, Relaxed);
            return false;
        }
        if let Some(i) = self.instances.get(instance) {
            i.delivered.fetch_add(1, Relaxed);
        }
        if slot.deliveries.fetch_add(1, Relaxed) == 0 {
            slot.delivered.store(now, Relaxed);
            self.delivered.fetch_add(1, Relaxed);
        } else {
            self.duplicates.fetch_add(1, Relaxed);
        }
        true
    }

    /// Counts an error by its description (the report lists each with its count).
    pub fn error(&self, what: String) {
        // A std Mutex: held for one map update, never across an await, and errors are rare.
        if let Ok(mut errors) = self.errors.lock() {
            *errors.entry(what).or_insert(0) += 1;
        }
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Whether every accepted message has arrived (exact: checks the slots, once the counters
    /// say it may be so).
    pub fn all_accepted_delivered(&self) -> bool {
        if self.delivered.load(Relaxed) < self.accepted.load(Relaxed) {
            return false;
        }
        // Every slot, not the first `sent`: senders claim numbers before posting, and one that
        // reached its deadline leaves its number unused.
        self.slots
            .iter()
            .all(|s| s.accepted.load(Relaxed) == 0 || s.deliveries.load(Relaxed) > 0)
    }
}
