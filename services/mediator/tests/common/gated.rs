//! A message queue that can hold a plain `add` at its door: a test makes a Forward wait, after
//! its handler looked for a live session and before its message is stored, and does something
//! in that moment (turns live mode on). Every call goes to the real queue it wraps; nothing is
//! answered by the gate itself.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use async_trait::async_trait;
use bytes::Bytes;
use didcomm_envelope::VerKey;
use mediator_store::{
    ConnectionId, MessageId, MessageQueue, QueueStatus, QueueTotals, QueuedMessage, Result,
};
use tokio::sync::{Notify, Semaphore};

/// The door: armed, the next plain `add` says it arrived and waits until opened.
#[derive(Debug)]
pub struct Gate {
    armed: AtomicBool,
    arrived: Notify,
    open: Semaphore,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            armed: AtomicBool::new(false),
            arrived: Notify::new(),
            open: Semaphore::new(0),
        }
    }
}

impl Gate {
    /// The next plain `add` waits at the door.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Waits until an `add` is waiting at the door.
    pub async fn arrived(&self) {
        self.arrived.notified().await;
    }

    /// Lets the waiting `add` (and every later one) through.
    pub fn open(&self) {
        self.open.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

/// [`MessageQueue`] of `inner`, with a [`Gate`] before `add`.
#[derive(Debug)]
pub struct GatedQueue {
    pub inner: Arc<dyn MessageQueue>,
    pub gate: Arc<Gate>,
}

#[async_trait]
impl MessageQueue for GatedQueue {
    async fn add(
        &self,
        connection_id: &ConnectionId,
        recipient_keys: &[VerKey],
        payload: Bytes,
    ) -> Result<MessageId> {
        if self.gate.armed.swap(false, Ordering::SeqCst) {
            self.gate.arrived.notify_one();
            let _permit = self.gate.open.acquire().await;
        }
        self.inner.add(connection_id, recipient_keys, payload).await
    }

    async fn add_leased(
        &self,
        connection_id: &ConnectionId,
        recipient_keys: &[VerKey],
        payload: Bytes,
        lease_ms: u64,
    ) -> Result<MessageId> {
        self.inner
            .add_leased(connection_id, recipient_keys, payload, lease_ms)
            .await
    }

    async fn lease(
        &self,
        connection_id: &ConnectionId,
        limit: usize,
        recipient_key: Option<&VerKey>,
        lease_ms: u64,
        max_bytes: Option<u64>,
    ) -> Result<Vec<QueuedMessage>> {
        self.inner
            .lease(connection_id, limit, recipient_key, lease_ms, max_bytes)
            .await
    }

    async fn lease_ids(
        &self,
        connection_id: &ConnectionId,
        ids: &[MessageId],
        lease_ms: u64,
    ) -> Result<Vec<QueuedMessage>> {
        self.inner.lease_ids(connection_id, ids, lease_ms).await
    }

    async fn release(&self, connection_id: &ConnectionId, ids: &[MessageId]) -> Result<usize> {
        self.inner.release(connection_id, ids).await
    }

    async fn unlease(&self, connection_id: &ConnectionId, ids: &[MessageId]) -> Result<usize> {
        self.inner.unlease(connection_id, ids).await
    }

    async fn status(
        &self,
        connection_id: &ConnectionId,
        recipient_key: Option<&VerKey>,
    ) -> Result<QueueStatus> {
        self.inner.status(connection_id, recipient_key).await
    }

    async fn take(
        &self,
        connection_id: &ConnectionId,
        limit: usize,
        recipient_key: Option<&VerKey>,
    ) -> Result<Vec<QueuedMessage>> {
        self.inner.take(connection_id, limit, recipient_key).await
    }

    async fn remove(&self, connection_id: &ConnectionId, ids: &[MessageId]) -> Result<usize> {
        self.inner.remove(connection_id, ids).await
    }

    async fn get(
        &self,
        connection_id: &ConnectionId,
        id: &MessageId,
    ) -> Result<Option<QueuedMessage>> {
        self.inner.get(connection_id, id).await
    }

    async fn sweep_expired(&self, max_queues: usize) -> Result<u64> {
        self.inner.sweep_expired(max_queues).await
    }

    fn expired_count(&self) -> u64 {
        self.inner.expired_count()
    }

    async fn totals(&self) -> Result<QueueTotals> {
        self.inner.totals().await
    }

    async fn restore(
        &self,
        connection_id: &ConnectionId,
        messages: &[QueuedMessage],
    ) -> Result<()> {
        self.inner.restore(connection_id, messages).await
    }

    async fn list_queues(
        &self,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<Vec<ConnectionId>> {
        self.inner.list_queues(after, limit).await
    }
}
