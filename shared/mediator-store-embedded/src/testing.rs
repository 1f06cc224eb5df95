//! Stores for tests (feature `test-support`): a data directory of their own, removed when the
//! last store made from it is dropped (after the database is closed).

use mediator_store::QueueLimits;

use crate::{EmbeddedStores, OpenError};

/// Fresh stores in a new temporary directory that lives as long as they do.
pub fn temporary(
    limits: QueueLimits,
    seen_ids_per_connection: usize,
) -> Result<EmbeddedStores, OpenError> {
    let dir = tempfile::Builder::new()
        .prefix("mediator-store-embedded-")
        .tempdir()
        .map_err(|source| OpenError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    let path = dir.path().join("data");
    EmbeddedStores::open_keeping(&path, limits, seen_ids_per_connection, Some(Box::new(dir)))
}
