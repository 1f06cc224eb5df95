//! The one error type of every storage trait.
//!
//! Callers match on [`StoreError::NotFound`] and [`StoreError::Conflict`] (they are answers about
//! the data); everything else is a failure of the backend and keeps its cause as the error source,
//! so that the edge that logs it or maps it to a problem-report sees the whole chain. This module
//! must not turn causes into strings.

use std::fmt;

use didcomm_envelope::VerKey;
use thiserror::Error;

use crate::ids::{ConnectionId, MessageId};

/// A boxed error from a backend (a Redis client error, an I/O error...).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a storage operation reports when it does not succeed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record the operation needs does not exist.
    #[error("{what} not found")]
    NotFound {
        /// The record that was looked for.
        what: Entity,
    },
    /// The operation would give a second record an identity (id or unique index) that an existing
    /// record already has; nothing was written.
    #[error("{what} already exists")]
    Conflict {
        /// The identity that is already taken.
        what: Entity,
    },
    /// A stored value could not be read back (written by an incompatible version, or damaged).
    #[error("stored {what} could not be decoded")]
    Corrupt {
        /// Which value, for the log (e.g. `connection record 0b5c…`).
        what: String,
        /// The decoder's error.
        #[source]
        source: BoxError,
    },
    /// The connection's queue is at its cap: the message was not stored (nothing of it).
    #[error("the queue of connection {connection} is full: {cap}")]
    QueueFull {
        /// Whose queue.
        connection: ConnectionId,
        /// Which cap the message would pass.
        cap: QueueCap,
    },
    /// The backend failed (connection lost, timeout, script error, poisoned lock...).
    #[error("storage backend failed")]
    Backend(#[source] BoxError),
}

/// The cap a refused message would have passed ([`StoreError::QueueFull`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueCap {
    /// At most this many messages per connection.
    Messages(usize),
    /// At most this many payload bytes per connection.
    Bytes(u64),
}

impl fmt::Display for QueueCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Messages(n) => write!(f, "at most {n} messages"),
            Self::Bytes(n) => write!(f, "at most {n} bytes"),
        }
    }
}

impl StoreError {
    /// Wraps a backend failure, keeping it as the source.
    pub fn backend(source: impl Into<BoxError>) -> Self {
        Self::Backend(source.into())
    }

    /// Is this [`StoreError::NotFound`]?
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// Is this [`StoreError::Conflict`]?
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    /// Is this [`StoreError::QueueFull`]?
    pub fn is_queue_full(&self) -> bool {
        matches!(self, Self::QueueFull { .. })
    }
}

/// The record or unique identity named by [`StoreError::NotFound`] and [`StoreError::Conflict`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Entity {
    /// A connection record, by id.
    Connection(ConnectionId),
    /// A connection whose `my_verkey` is this key (the key is unique across connections).
    ConnectionWithMyVerkey(VerKey),
    /// A connection whose handshake thread is this id (unique across connections).
    ConnectionWithThread(String),
    /// A queued message, by id ([`MessageQueue::restore`](crate::MessageQueue::restore) of an id
    /// already queued).
    Message(MessageId),
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connection(id) => write!(f, "connection {id}"),
            Self::ConnectionWithMyVerkey(key) => write!(f, "connection with my_verkey {key}"),
            Self::ConnectionWithThread(thid) => write!(f, "connection with thread_id {thid:?}"),
            Self::Message(id) => write!(f, "queued message {id}"),
        }
    }
}

/// Result of the storage traits.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn backend_error_keeps_its_source() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "redis timed out");
        let err = StoreError::backend(io);
        let source = err.source().expect("source kept");
        assert_eq!(source.to_string(), "redis timed out");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
    }

    #[test]
    fn messages_name_the_record() {
        let id = ConnectionId::from("c-1");
        let err = StoreError::Conflict {
            what: Entity::Connection(id),
        };
        assert_eq!(err.to_string(), "connection c-1 already exists");
        assert!(err.is_conflict() && !err.is_not_found());
        let err = StoreError::NotFound {
            what: Entity::ConnectionWithThread("t".into()),
        };
        assert_eq!(err.to_string(), "connection with thread_id \"t\" not found");
    }
}
