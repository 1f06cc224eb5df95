//! How values are laid out in the database, and how a value that does not read back becomes
//! [`StoreError::Corrupt`] (never a panic).
//!
//! Records (connection, mediation) are stored as their JSON (serde) form, the same as the Redis
//! backend's, so the record types stay the one definition of what is stored. Recipient keys are
//! raw 32-byte Ed25519 keys, concatenated. Times and counters are SQLite integers (i64):
//! `u64` values are clamped to [`MAX_INT`] when written, so nothing ever wraps.

use didcomm_envelope::VerKey;
use mediator_store::{Result, StoreError};

/// The largest integer SQLite stores; times are clamped to it (it is 292 million years away).
pub(crate) const MAX_INT: u64 = i64::MAX as u64;

/// A u64 as it is written (clamped to [`MAX_INT`]).
pub(crate) fn int(value: u64) -> u64 {
    value.min(MAX_INT)
}

/// A usize as it is written.
pub(crate) fn int_usize(value: usize) -> u64 {
    int(u64::try_from(value).unwrap_or(u64::MAX))
}

/// A stored value that does not decode; `what` names it for the log.
pub(crate) fn corrupt(
    what: String,
    source: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError::Corrupt {
        what,
        source: Box::new(source),
    }
}

/// Keys as they are stored.
pub(crate) fn encode_keys(keys: &[VerKey]) -> Vec<u8> {
    keys.iter()
        .flat_map(|k| k.as_bytes().iter().copied())
        .collect()
}

/// A stored list of keys whose length is not a multiple of 32 bytes.
#[derive(Debug, thiserror::Error)]
#[error("{0} bytes is not a whole number of 32-byte keys")]
pub(crate) struct BadKeyList(usize);

/// Keys as they were stored; `what` names their owner for the log.
pub(crate) fn decode_keys(bytes: &[u8], what: impl FnOnce() -> String) -> Result<Vec<VerKey>> {
    if !bytes.len().is_multiple_of(32) {
        return Err(corrupt(what(), BadKeyList(bytes.len())));
    }
    bytes
        .chunks_exact(32)
        .map(VerKey::from_bytes)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| corrupt(what(), e))
}

/// One stored key.
pub(crate) fn decode_key(bytes: &[u8], what: impl FnOnce() -> String) -> Result<VerKey> {
    VerKey::from_bytes(bytes).map_err(|e| corrupt(what(), e))
}

/// A JSON record as it was stored.
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: impl FnOnce() -> String,
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(what(), e))
}

/// A record as it is stored.
pub(crate) fn encode_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(StoreError::backend)
}
