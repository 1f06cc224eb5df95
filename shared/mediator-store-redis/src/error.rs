//! How Redis, pool and decoding failures become [`StoreError`]s.
//!
//! Causes are kept as the error source (the pool's or the client's error, serde's, or one of the
//! small errors below for replies that make no sense); this module must not flatten them into
//! strings, and nothing in this crate panics on what Redis returns.

use deadpool_redis::{redis::RedisError, PoolError};
use mediator_store::StoreError;
use thiserror::Error;

/// A reply of one of our scripts that no version of the script gives: another writer's data
/// under our keys, or a script and a crate out of step.
#[derive(Debug, Error)]
pub(crate) enum ReplyError {
    /// The script answered with a status code it does not have.
    #[error("script {script} answered with unknown code {code}")]
    UnknownCode {
        /// Which script.
        script: &'static str,
        /// What it answered.
        code: i64,
    },
    /// `update_keylist` answered with a different number of outcomes than it was given items.
    #[error("keylist update of {items} items answered {outcomes} outcomes")]
    OutcomeCount {
        /// Items sent.
        items: usize,
        /// Outcomes received.
        outcomes: usize,
    },
}

/// The stored record is not a connection record the scripts can read its index entries from
/// (`my_verkey`, `thread_id`, `their_keys`): it was written by something else, or damaged.
#[derive(Debug, Error)]
#[error("stored record has no readable my_verkey, thread_id and their_keys")]
pub(crate) struct UnreadableIndexEntries;

pub(crate) fn pool(err: PoolError) -> StoreError {
    StoreError::backend(err)
}

pub(crate) fn redis(err: RedisError) -> StoreError {
    StoreError::backend(err)
}

pub(crate) fn parsing(err: deadpool_redis::redis::ParsingError) -> StoreError {
    StoreError::backend(err)
}

pub(crate) fn reply(err: ReplyError) -> StoreError {
    StoreError::backend(err)
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
