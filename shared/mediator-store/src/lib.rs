//! Storage of the mediator: the traits every backend implements, the in-memory backends, and one
//! contract test suite per trait.
//!
//! - [`ConnectionStore`]: connection records, found by id, by the mediator's per-connection key,
//!   by the client's keys, or by handshake thread.
//! - [`MediationStore`]: Coordinate Mediation 1.0 records and keylists; the key -> connection
//!   routing of every Forward.
//! - [`MessageQueue`]: the per-connection pickup queue (Pickup 2.0).
//! - [`LiveSessionRegistry`]: which instance holds each connection's live session (the cluster's
//!   routing of live deliveries).
//! - [`SeenMessages`]: the message ids each connection sent lately (the replay window).
//! - [`DeviceStore`]: each connection's push-notification registration, and the cluster-wide
//!   claim that paces its notifications.
//! - [`memory`]: the in-memory backends (single instance, tests).
//! - `contract` (feature `contract-tests`): the behaviour every backend must show. A backend
//!   crate runs it with the `*_contract_tests!` macros (`connection_store_contract_tests!`,
//!   `mediation_store_contract_tests!`, `message_queue_contract_tests!`,
//!   `device_store_contract_tests!`...: one test per check), or the suite functions.
//!
//! Handlers hold the stores as `Arc<dyn Trait>` (see [`Stores`]); the traits are object safe.
//! All keys are [`VerKey`](didcomm_envelope::VerKey) values, never text: a base58 verkey and its
//! `did:key` are the same key in every index. This crate holds no protocol logic (which message
//! may change what is the handlers' business) and does no networking of its own.

pub mod connections;
pub mod devices;
mod error;
mod ids;
pub mod mediation;
pub mod memory;
pub mod queue;
pub mod registry;
pub mod seen;

#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

pub use connections::{ConnectionRecord, ConnectionState, ConnectionStore, HandshakeProtocol};
pub use devices::{DeviceInfo, DeviceStore, PushPlatform};
pub use error::{BoxError, Entity, QueueCap, Result, StoreError};
pub use ids::{ConnectionId, MessageId};
pub use mediation::{
    KeylistAction, KeylistPage, KeylistResult, KeylistUpdate, KeylistUpdateOutcome,
    MediationRecord, MediationState, MediationStore,
};
pub use queue::{Announcement, MessageQueue, QueueLimits, QueueStatus, QueueTotals, QueuedMessage};
pub use registry::{LiveHolder, LiveSessionRegistry};
pub use seen::SeenMessages;

/// How many message ids [`Stores::memory`] remembers per connection (the replay window's cap).
pub const SEEN_IDS_PER_CONNECTION: usize = 10_000;

/// The mediator's stores, as the handlers hold them.
#[derive(Debug, Clone)]
pub struct Stores {
    /// Connection records.
    pub connections: Arc<dyn ConnectionStore>,
    /// Mediation records and keylists.
    pub mediation: Arc<dyn MediationStore>,
    /// Pickup queues.
    pub queue: Arc<dyn MessageQueue>,
    /// Which instance holds each live session.
    pub registry: Arc<dyn LiveSessionRegistry>,
    /// Message ids seen lately per connection (the replay window).
    pub seen: Arc<dyn SeenMessages>,
    /// Push-notification registrations and notification claims.
    pub devices: Arc<dyn DeviceStore>,
}

impl Stores {
    /// Fresh in-memory stores (one instance only: nothing is shared with other processes), with
    /// unlimited queues.
    pub fn memory() -> Self {
        Self::memory_with_limits(QueueLimits::UNLIMITED)
    }

    /// Fresh in-memory stores whose queues have these limits.
    pub fn memory_with_limits(limits: QueueLimits) -> Self {
        Self {
            connections: Arc::new(memory::MemoryConnectionStore::new()),
            mediation: Arc::new(memory::MemoryMediationStore::new()),
            queue: Arc::new(memory::MemoryMessageQueue::with_limits(limits)),
            registry: Arc::new(memory::MemoryLiveSessionRegistry::new()),
            seen: Arc::new(memory::MemorySeenMessages::new(SEEN_IDS_PER_CONNECTION)),
            devices: Arc::new(memory::MemoryDeviceStore::new()),
        }
    }
}

/// The wall clock in unix milliseconds (0 if the clock is before 1970), for record timestamps.
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
