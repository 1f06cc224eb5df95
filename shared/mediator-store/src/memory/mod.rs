//! In-memory backends: the embedded default of a single mediator instance, and the reference
//! the contract suites are first run against.
//!
//! Each store is a cheap-to-clone handle (`Arc<std::sync::Mutex<…>>`): clones share one state.
//! A std `Mutex`, not a tokio one, because no lock is held across an `.await`: every operation
//! locks, works on plain maps and unlocks, so the lock is never held long and never contended
//! across a suspension point (the advice of tokio's shared-state guide and mini-redis `db.rs`).
//! Holding the lock for a whole operation is also what makes each operation atomic.
//!
//! These backends must not be used where more than one instance serves the same clients:
//! nothing here survives the process or is shared between processes.

mod connections;
mod devices;
mod mediation;
mod queue;
mod registry;
mod seen;

use std::sync::{Mutex, MutexGuard};

pub use connections::MemoryConnectionStore;
pub use devices::MemoryDeviceStore;
pub use mediation::MemoryMediationStore;
pub use queue::MemoryMessageQueue;
pub use registry::MemoryLiveSessionRegistry;
pub use seen::MemorySeenMessages;

use crate::error::StoreError;

/// A panic while a store's lock was held (a bug): the state may be half-updated, so every later
/// operation fails with this as its source instead of serving inconsistent indexes.
#[derive(Debug, thiserror::Error)]
#[error("in-memory {0} store lock poisoned by an earlier panic")]
pub struct PoisonedLock(&'static str);

fn lock<'a, T>(mutex: &'a Mutex<T>, store: &'static str) -> Result<MutexGuard<'a, T>, StoreError> {
    mutex
        .lock()
        .map_err(|_| StoreError::backend(PoisonedLock(store)))
}
