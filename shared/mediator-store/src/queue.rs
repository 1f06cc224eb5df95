//! The message queue: messages held for a client until it picks them up (Pickup 2.0, RFC 0685),
//! one queue per connection. This is the `MessagePickupRepository` of credo-ts pull request 1638.
//!
//! A Forward's inner message is stored with [`MessageQueue::add`] before the sender gets its
//! answer; [`MessageQueue::take`] reads without removing (a `delivery` only says the message was
//! sent); the client's `messages-received` then [`MessageQueue::remove`]s exactly the ids it lists.
//! So a message leaves the queue only after the client confirmed it, and a lost delivery is sent
//! again on the next pickup.
//!
//! In flight: a message handed to a client ([`MessageQueue::lease`], [`MessageQueue::add_leased`])
//! is leased for a while: it stays queued, but is not handed out again until its acknowledgement
//! removes it, its lease is [released](MessageQueue::release) (the session that carried it
//! ended), or the lease runs out (the client never acknowledged: at-least-once delivery sends it
//! again). [`QueueStatus`] describes the messages waiting, with the in-flight ones counted apart,
//! and every message counts how often it was handed out, so redeliveries are visible.
//!
//! Payloads are opaque: the store keeps the bytes exactly as received and never parses them.
//! Ordering is strict FIFO by arrival within a queue, even for messages that arrive in the same
//! millisecond (backends order by a per-queue sequence, not by time).
//!
//! Limits ([`QueueLimits`], given to a backend when it is made): a per-connection cap on the number
//! of queued messages and on their bytes, checked atomically by `add`, which refuses a message
//! over a cap with [`StoreError::QueueFull`](crate::StoreError::QueueFull) and stores nothing of
//! it (queued messages are never dropped to make room); and an age past which a message expires:
//! no operation sees it any more, it is removed (by any operation on its queue, and by
//! [`MessageQueue::sweep_expired`] for queues nobody touches) and counted
//! ([`MessageQueue::expired_count`]).

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
    /// How many times it was handed out by [`MessageQueue::lease`] or
    /// [`MessageQueue::add_leased`] (this lease included); more than 1 means redelivered.
    pub deliveries: u32,
}

/// Figures of the messages of a queue waiting for delivery (not in flight), or of the part of
/// them for one recipient key (Pickup 2.0 `status`); in-flight messages are counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStatus {
    /// How many messages wait (queued and not in flight).
    pub message_count: usize,
    /// How many messages are in flight (leased, not acknowledged yet).
    pub in_flight: usize,
    /// Sum of their payload lengths.
    pub total_bytes: u64,
    /// `received_at_ms` of the oldest (first) message; `None` when there is none.
    pub oldest_received_ms: Option<u64>,
    /// `received_at_ms` of the newest (last) message; `None` when there is none.
    pub newest_received_ms: Option<u64>,
}

/// What every queue of a backend holds together (the queue depth an operator watches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueTotals {
    /// Queues that hold at least one message.
    pub queues: u64,
    /// Messages held, waiting and in flight.
    pub messages: u64,
    /// Sum of their payload lengths.
    pub bytes: u64,
}

/// Per-connection limits of a queue backend. `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueLimits {
    /// Most messages one connection's queue holds (waiting and in flight).
    pub max_messages: Option<usize>,
    /// Most payload bytes one connection's queue holds (waiting and in flight).
    pub max_bytes: Option<u64>,
    /// A message older than this (since `received_at_ms`) expires, ms.
    pub message_ttl_ms: Option<u64>,
}

impl QueueLimits {
    /// No caps, no expiry.
    pub const UNLIMITED: Self = Self {
        max_messages: None,
        max_bytes: None,
        message_ttl_ms: None,
    };
}

/// A notice to publish on the backend's pub/sub once a message is added
/// ([`MessageQueue::add_leased_announced`]): the instance holding the recipient's live session
/// learns of the message in the same round trip that stored it.
pub struct Announcement<'a> {
    /// The pub/sub channel.
    pub channel: &'a str,
    /// The notice's bytes, given the id the message got.
    pub notice: &'a (dyn Fn(&MessageId) -> Vec<u8> + Send + Sync),
}

impl std::fmt::Debug for Announcement<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcement")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// The per-connection message queues. Used as `Arc<dyn MessageQueue>`.
///
/// Queues of different connections never see each other's messages: every operation names its
/// connection, and ids of another connection's messages match nothing.
#[async_trait]
pub trait MessageQueue: Send + Sync + std::fmt::Debug {
    /// Appends a message to a connection's queue and returns its new id. Durable backends return
    /// only once the message is stored: the caller acknowledges the sender after this. Over a cap
    /// of the backend's [`QueueLimits`]: [`StoreError::QueueFull`](crate::StoreError::QueueFull),
    /// and nothing is stored.
    async fn add(
        &self,
        connection_id: &ConnectionId,
        recipient_keys: &[VerKey],
        payload: Bytes,
    ) -> Result<MessageId>;

    /// Like [`MessageQueue::add`], and the message is in flight at once for `lease_ms` (a Forward
    /// that is being delivered live). Its `deliveries` is 1.
    async fn add_leased(
        &self,
        connection_id: &ConnectionId,
        recipient_keys: &[VerKey],
        payload: Bytes,
        lease_ms: u64,
    ) -> Result<MessageId>;

    /// Like [`MessageQueue::add_leased`], and then publishes `announcement` on the backend's
    /// pub/sub in the same atomic step, when the backend has pub/sub (Redis on one node):
    /// returns how many subscribers heard it. `None`: nothing was published (the caller
    /// publishes it itself); the default does only the add.
    async fn add_leased_announced(
        &self,
        connection_id: &ConnectionId,
        recipient_keys: &[VerKey],
        payload: Bytes,
        lease_ms: u64,
        announcement: Announcement<'_>,
    ) -> Result<(MessageId, Option<usize>)> {
        let _ = announcement;
        let id = self
            .add_leased(connection_id, recipient_keys, payload, lease_ms)
            .await?;
        Ok((id, None))
    }

    /// Hands out up to `limit` messages that are not in flight, oldest first (with
    /// `recipient_key`, only messages that carry it), and puts them in flight for `lease_ms`. One
    /// atomic step: two concurrent leases never return the same message.
    ///
    /// `max_bytes` is a byte budget for the batch (a Pickup `delivery` must not grow past it):
    /// messages are handed out oldest first while the sum of their payload lengths stays at or
    /// under `max_bytes`. The first eligible message is always handed out, even when it alone is
    /// larger (so a large message can still be delivered, alone). The batch ends at the first
    /// eligible message that would go over the budget: later, smaller messages are not taken
    /// instead (FIFO is kept). Messages not handed out are left exactly as they were (waiting,
    /// their `deliveries` unchanged), and backends do not read their payloads. `None`: no byte
    /// budget, only `limit` counts.
    async fn lease(
        &self,
        connection_id: &ConnectionId,
        limit: usize,
        recipient_key: Option<&VerKey>,
        lease_ms: u64,
        max_bytes: Option<u64>,
    ) -> Result<Vec<QueuedMessage>>;

    /// Hands out those of `ids` that are in this connection's queue and wait (not in flight), in
    /// queue order, and puts them in flight for `lease_ms`; one atomic step (a notice to deliver
    /// given messages never duplicates a delivery already under way).
    async fn lease_ids(
        &self,
        connection_id: &ConnectionId,
        ids: &[MessageId],
        lease_ms: u64,
    ) -> Result<Vec<QueuedMessage>>;

    /// Ends the leases of those of `ids` in this connection's queue: they wait for delivery
    /// again. Returns how many were in flight.
    async fn release(&self, connection_id: &ConnectionId, ids: &[MessageId]) -> Result<usize>;

    /// Like [`MessageQueue::release`], for messages leased for a client they never reached (the
    /// session or the instance meant to carry them was gone): that handout is not counted either
    /// (their [`QueuedMessage::deliveries`] goes back down by one), so that a later delivery is
    /// no redelivery. Returns how many were in flight.
    async fn unlease(&self, connection_id: &ConnectionId, ids: &[MessageId]) -> Result<usize>;

    /// Figures of a connection's queue; with `recipient_key`, of only the messages that carry it.
    async fn status(
        &self,
        connection_id: &ConnectionId,
        recipient_key: Option<&VerKey>,
    ) -> Result<QueueStatus>;

    /// Up to `limit` messages of a connection's queue, oldest first, in flight or not, without
    /// removing or leasing them; with `recipient_key`, only messages that carry it (the limit
    /// counts those).
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

    /// Removes expired messages from up to `max_queues` queues that nobody touched (a background
    /// task calls this; request paths expire as they go). Returns how many it removed.
    async fn sweep_expired(&self, max_queues: usize) -> Result<u64>;

    /// How many expired messages this handle (and its clones) removed since it was made.
    fn expired_count(&self) -> u64;

    /// The messages and bytes all queues hold together. Reads every non-empty queue: for a
    /// background sampler (the queue depth metrics), never a request path. Not a snapshot of one
    /// instant on a shared backend: queues change while they are counted.
    async fn totals(&self) -> Result<QueueTotals>;

    /// Appends `messages` (a copy of another store's queue, oldest first) to `connection_id`'s
    /// queue, keeping each one's id, recipient keys, payload, `received_at_ms` and `deliveries`,
    /// in the order given, after the messages already there; none is in flight (a lease belongs
    /// to a session of the store it was copied from). Their `connection_id` is ignored. One
    /// atomic step. The backend's caps are not applied (a copy must not drop a message); its
    /// message age limit is, as for any message (one already past it is stored, and at once
    /// expired). A message whose `received_at_ms` is earlier than the queue's newest keeps it,
    /// and still comes after that one (FIFO is by arrival in this queue).
    ///
    /// Fails with [`StoreError::Conflict`](crate::StoreError::Conflict) naming an id that is
    /// already queued (in this queue; the durable backend: in any queue) or given twice, and
    /// then stores nothing. For offline use (`mediator copy`), never a request path.
    async fn restore(&self, connection_id: &ConnectionId, messages: &[QueuedMessage])
        -> Result<()>;

    /// Up to `limit` connections whose queues hold messages, in ascending order of the id's text,
    /// starting after `after` (`None`: from the first); a page shorter than `limit` is the last.
    /// May also list a queue that has just emptied (the caller finds it empty). The Redis
    /// backend answers from its queue index, which lists every queue except, for a few seconds,
    /// one a sweep unlisted as empty just before a message came (see its docs). For offline use
    /// (`mediator copy` finds the queues of no connection record with it), never a request path.
    async fn list_queues(
        &self,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<Vec<ConnectionId>>;
}
