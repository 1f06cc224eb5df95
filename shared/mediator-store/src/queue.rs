//! The message queue: messages held for a client until it picks them up (Pickup 2.0, RFC 0685),
//! one queue per connection. This is the `MessagePickupRepository` of credo-ts pull request 1638.
//!
//! A Forward's inner message is stored with [`MessageQueue::add`] before the sender gets its
//! answer; [`MessageQueue::take`] reads without removing (a `delivery` only says the message was
//! sent); the client's `messages-received` then [`MessageQueue::remove`]s exactly the ids it lists.
//! So a message leaves the queue only after the client confirmed it, and a lost delivery is sent
//! again on the next pickup.
//!
//! Payloads are opaque: the store keeps the bytes exactly as received and never parses them.
//! Ordering is strict FIFO by arrival within a queue, even for messages that arrive in the same
//! millisecond (backends order by a per-queue sequence, not by time).
//!
//! Not here yet, and left room for: per-connection caps on message count and total bytes, and
//! expiry of old messages. Caps will make `add` refuse with a new [`StoreError`](crate::StoreError)
//! variant (the enum is non-exhaustive) rather than drop queued messages; expiry will drop the
//! oldest messages past a configured age, and `status` / `take` will only see live ones. Nothing
//! in this trait's contract assumes a queue is unbounded.

use async_trait::async_trait;
use bytes::Bytes;
use didcomm_envelope::VerKey;

use crate::{
    error::Result,
    ids::{ConnectionId, MessageId},
};

/// A message in a connection's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Its id (UUID v4), given by the store.
    pub id: MessageId,
    /// The connection whose queue holds it.
    pub connection_id: ConnectionId,
    /// The recipient keys it was sent to (a Forward's `to`).
    pub recipient_keys: Vec<VerKey>,
    /// The encrypted message (JWE JSON), byte for byte as received.
    pub payload: Bytes,
    /// When the store received it (unix milliseconds). Never earlier than the message before it
    /// in the same queue.
    pub received_at_ms: u64,
}

/// Figures of a queue, or of the part of it for one recipient key (Pickup 2.0 `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStatus {
    /// How many messages.
    pub message_count: usize,
    /// Sum of their payload lengths.
    pub total_bytes: u64,
    /// `received_at_ms` of the oldest (first) message; `None` when there is none.
    pub oldest_received_ms: Option<u64>,
    /// `received_at_ms` of the newest (last) message; `None` when there is none.
    pub newest_received_ms: Option<u64>,
}

/// The per-connection message queues. Used as `Arc<dyn MessageQueue>`.
///
/// Queues of different connections never see each other's messages: every operation names its
/// connection, and ids of another connection's messages match nothing.
#[async_trait]
pub trait MessageQueue: Send + Sync + std::fmt::Debug {
    /// Appends a message to a connection's queue and returns its new id. Durable backends return
    /// only once the message is stored: the caller acknowledges the sender after this.
    async fn add(
        &self,
        connection_id: &ConnectionId,
        recipient_keys: &[VerKey],
        payload: Bytes,
    ) -> Result<MessageId>;

    /// Figures of a connection's queue; with `recipient_key`, of only the messages that carry it.
    async fn status(
        &self,
        connection_id: &ConnectionId,
        recipient_key: Option<&VerKey>,
    ) -> Result<QueueStatus>;

    /// Up to `limit` messages of a connection's queue, oldest first, without removing them; with
    /// `recipient_key`, only messages that carry it (the limit counts those).
    async fn take(
        &self,
        connection_id: &ConnectionId,
        limit: usize,
        recipient_key: Option<&VerKey>,
    ) -> Result<Vec<QueuedMessage>>;

    /// Removes those of `ids` that are in this connection's queue and returns how many it
    /// removed. Unknown ids, ids listed twice and ids of other connections' messages change
    /// nothing (they are not counted).
    async fn remove(&self, connection_id: &ConnectionId, ids: &[MessageId]) -> Result<usize>;

    /// One message of a connection's queue.
    async fn get(
        &self,
        connection_id: &ConnectionId,
        id: &MessageId,
    ) -> Result<Option<QueuedMessage>>;
}
