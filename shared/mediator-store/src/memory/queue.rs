//! [`MessageQueue`] in memory.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use async_trait::async_trait;
use bytes::Bytes;
use didcomm_envelope::VerKey;

use super::lock;
use crate::{
    error::{Entity, QueueCap, Result, StoreError},
    ids::{ConnectionId, MessageId},
    queue::{MessageQueue, QueueLimits, QueueStatus, QueueTotals, QueuedMessage},
    unix_ms_now,
};

/// Message queues in memory. Clones share the same queues.
#[derive(Debug, Clone, Default)]
pub struct MemoryMessageQueue {
    // std Mutex: held only inside a synchronous block, never across an await (see module docs).
    state: Arc<Mutex<State>>,
    limits: QueueLimits,
    expired: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct State {
    queues: HashMap<ConnectionId, Queue>,
    /// Arrival sequence, shared by all queues: it only has to grow within each of them, and it
    /// orders messages that arrive in the same millisecond.
    next_seq: u64,
}

#[derive(Debug)]
struct Entry {
    message: QueuedMessage,
    /// In flight until this time (unix ms); 0 = waiting.
    leased_until_ms: u64,
}

impl Entry {
    fn in_flight(&self, now: u64) -> bool {
        self.leased_until_ms > now
    }
}

/// One connection's queue. Dropped when it empties, so idle connections cost nothing.
#[derive(Debug, Default)]
struct Queue {
    by_seq: BTreeMap<u64, Entry>,
    seq_of: HashMap<MessageId, u64>,
    /// Payload bytes of all its messages (the byte cap).
    total_bytes: u64,
}

impl Queue {
    /// Drops the messages received before `cutoff_ms` (the oldest come first); returns how many.
    fn expire(&mut self, cutoff_ms: u64) -> u64 {
        let mut expired = 0;
        while let Some(entry) = self.by_seq.first_entry() {
            if entry.get().message.received_at_ms >= cutoff_ms {
                break;
            }
            let entry = entry.remove();
            self.seq_of.remove(&entry.message.id);
            self.total_bytes -= payload_len(&entry.message);
            expired += 1;
        }
        expired
    }
}

impl MemoryMessageQueue {
    /// [`MessageQueue::release`]; `uncount`: [`MessageQueue::unlease`].
    fn end_leases(
        &self,
        connection_id: &ConnectionId,
        ids: &[MessageId],
        uncount: bool,
    ) -> Result<usize> {
        let now = unix_ms_now();
        let mut state = lock(&self.state, "message queue")?;
        let Some(queue) = state.queues.get_mut(connection_id) else {
            return Ok(0);
        };
        let mut released = 0;
        for id in ids {
            let Some(seq) = queue.seq_of.get(id) else {
                continue;
            };
            if let Some(entry) = queue.by_seq.get_mut(seq) {
                if entry.in_flight(now) {
                    released += 1;
                }
                if uncount && entry.leased_until_ms > 0 {
                    entry.message.deliveries = entry.message.deliveries.saturating_sub(1);
                }
                entry.leased_until_ms = 0;
            }
        }
        Ok(released)
    }

    /// Empty queues without caps or expiry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Empty queues with these limits.
    pub fn with_limits(limits: QueueLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Expires the messages of `connection_id`'s queue that are past their age, dropping the
    /// queue when it empties; counts them.
    fn expire(&self, state: &mut State, connection_id: &ConnectionId, now: u64) {
        let Some(ttl) = self.limits.message_ttl_ms else {
            return;
        };
        if let Some(queue) = state.queues.get_mut(connection_id) {
            let n = queue.expire(now.saturating_sub(ttl));
            if n > 0 {
                self.expired.fetch_add(n, Ordering::Relaxed);
                if queue.by_seq.is_empty() {
                    state.queues.remove(connection_id);
                }
            }
        }
    }

    fn insert(
        &self,
        connection_id: &ConnectionId,
        recipient_keys: &[VerKey],
        payload: Bytes,
        lease_ms: Option<u64>,
    ) -> Result<MessageId> {
        let id = MessageId::generate();
        let now = unix_ms_now();
        let mut state = lock(&self.state, "message queue")?;
        self.expire(&mut state, connection_id, now);
        let (count, bytes) = state
            .queues
            .get(connection_id)
            .map_or((0, 0), |q| (q.by_seq.len(), q.total_bytes));
        let cap = match (self.limits.max_messages, self.limits.max_bytes) {
            (Some(max), _) if count >= max => Some(QueueCap::Messages(max)),
            (_, Some(max)) if bytes.saturating_add(payload.len() as u64) > max => {
                Some(QueueCap::Bytes(max))
            }
            _ => None,
        };
        if let Some(cap) = cap {
            return Err(StoreError::QueueFull {
                connection: connection_id.clone(),
                cap,
            });
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        let queue = state.queues.entry(connection_id.clone()).or_default();
        // A clock that steps back must not make a later message look older than an earlier one.
        let newest = queue
            .by_seq
            .values()
            .next_back()
            .map(|e| e.message.received_at_ms);
        let message = QueuedMessage {
            id: id.clone(),
            connection_id: connection_id.clone(),
            recipient_keys: recipient_keys.to_vec(),
            payload,
            received_at_ms: newest.map_or(now, |newest| newest.max(now)),
            deliveries: u32::from(lease_ms.is_some()),
        };
        queue.total_bytes += payload_len(&message);
        queue.seq_of.insert(id.clone(), seq);
        queue.by_seq.insert(
            seq,
            Entry {
                message,
                leased_until_ms: lease_ms.map_or(0, |l| now.saturating_add(l.max(1))),
            },
        );
        Ok(id)
    }
}

fn carries(message: &QueuedMessage, key: Option<&VerKey>) -> bool {
    key.is_none_or(|key| message.recipient_keys.contains(key))
}

fn payload_len(message: &QueuedMessage) -> u64 {
    u64::try_from(message.payload.len()).unwrap_or(u64::MAX)
}

#[async_trait]
impl MessageQueue for MemoryMessageQueue {
    async fn add(
        &self,
        connection_id: &ConnectionId,
        recipient_keys: &[VerKey],
        payload: Bytes,
    ) -> Result<MessageId> {
        self.insert(connection_id, recipient_keys, payload, None)
    }

    async fn add_leased(
        &self,
        connection_id: &ConnectionId,
        recipient_keys: &[VerKey],
        payload: Bytes,
        lease_ms: u64,
    ) -> Result<MessageId> {
        self.insert(connection_id, recipient_keys, payload, Some(lease_ms))
    }

    async fn lease(
        &self,
        connection_id: &ConnectionId,
        limit: usize,
        recipient_key: Option<&VerKey>,
        lease_ms: u64,
        max_bytes: Option<u64>,
    ) -> Result<Vec<QueuedMessage>> {
        let now = unix_ms_now();
        let mut state = lock(&self.state, "message queue")?;
        self.expire(&mut state, connection_id, now);
        let Some(queue) = state.queues.get_mut(connection_id) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut bytes: u64 = 0;
        for entry in queue.by_seq.values_mut() {
            if out.len() >= limit {
                break;
            }
            if entry.in_flight(now) || !carries(&entry.message, recipient_key) {
                continue;
            }
            // The length is checked before anything is cloned: a message that does not fit is
            // left alone, and the batch ends there (FIFO: no smaller later message jumps it).
            let len = payload_len(&entry.message);
            let total = bytes.saturating_add(len);
            if !out.is_empty() && max_bytes.is_some_and(|max| total > max) {
                break;
            }
            bytes = total;
            entry.leased_until_ms = now.saturating_add(lease_ms.max(1));
            entry.message.deliveries = entry.message.deliveries.saturating_add(1);
            out.push(entry.message.clone());
        }
        Ok(out)
    }

    async fn lease_ids(
        &self,
        connection_id: &ConnectionId,
        ids: &[MessageId],
        lease_ms: u64,
    ) -> Result<Vec<QueuedMessage>> {
        let now = unix_ms_now();
        let mut state = lock(&self.state, "message queue")?;
        self.expire(&mut state, connection_id, now);
        let Some(queue) = state.queues.get_mut(connection_id) else {
            return Ok(Vec::new());
        };
        let mut seqs: Vec<u64> = ids
            .iter()
            .filter_map(|id| queue.seq_of.get(id).copied())
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        let mut out = Vec::new();
        for seq in seqs {
            if let Some(entry) = queue.by_seq.get_mut(&seq) {
                if entry.in_flight(now) {
                    continue;
                }
                entry.leased_until_ms = now.saturating_add(lease_ms.max(1));
                entry.message.deliveries = entry.message.deliveries.saturating_add(1);
                out.push(entry.message.clone());
            }
        }
        Ok(out)
    }

    async fn release(&self, connection_id: &ConnectionId, ids: &[MessageId]) -> Result<usize> {
        self.end_leases(connection_id, ids, false)
    }

    async fn unlease(&self, connection_id: &ConnectionId, ids: &[MessageId]) -> Result<usize> {
        self.end_leases(connection_id, ids, true)
    }

    async fn status(
        &self,
        connection_id: &ConnectionId,
        recipient_key: Option<&VerKey>,
    ) -> Result<QueueStatus> {
        let now = unix_ms_now();
        let mut state = lock(&self.state, "message queue")?;
        self.expire(&mut state, connection_id, now);
        let Some(queue) = state.queues.get(connection_id) else {
            return Ok(QueueStatus::default());
        };
        let mut status = QueueStatus::default();
        for entry in queue
            .by_seq
            .values()
            .filter(|e| carries(&e.message, recipient_key))
        {
            if entry.in_flight(now) {
                status.in_flight += 1;
                continue;
            }
            let message = &entry.message;
            status.message_count += 1;
            status.total_bytes += payload_len(message);
            status
                .oldest_received_ms
                .get_or_insert(message.received_at_ms);
            status.newest_received_ms = Some(message.received_at_ms);
        }
        Ok(status)
    }

    async fn take(
        &self,
        connection_id: &ConnectionId,
        limit: usize,
        recipient_key: Option<&VerKey>,
    ) -> Result<Vec<QueuedMessage>> {
        let mut state = lock(&self.state, "message queue")?;
        self.expire(&mut state, connection_id, unix_ms_now());
        Ok(state
            .queues
            .get(connection_id)
            .map(|queue| {
                queue
                    .by_seq
                    .values()
                    .map(|e| &e.message)
                    .filter(|m| carries(m, recipient_key))
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn remove(&self, connection_id: &ConnectionId, ids: &[MessageId]) -> Result<usize> {
        let mut state = lock(&self.state, "message queue")?;
        let Some(queue) = state.queues.get_mut(connection_id) else {
            return Ok(0);
        };
        let mut removed = 0;
        for id in ids {
            let Some(seq) = queue.seq_of.remove(id) else {
                continue;
            };
            if let Some(entry) = queue.by_seq.remove(&seq) {
                queue.total_bytes -= payload_len(&entry.message);
                removed += 1;
            }
        }
        if queue.by_seq.is_empty() {
            state.queues.remove(connection_id);
        }
        Ok(removed)
    }

    async fn get(
        &self,
        connection_id: &ConnectionId,
        id: &MessageId,
    ) -> Result<Option<QueuedMessage>> {
        let mut state = lock(&self.state, "message queue")?;
        self.expire(&mut state, connection_id, unix_ms_now());
        Ok(state.queues.get(connection_id).and_then(|queue| {
            queue
                .seq_of
                .get(id)
                .and_then(|seq| queue.by_seq.get(seq))
                .map(|e| e.message.clone())
        }))
    }

    async fn sweep_expired(&self, max_queues: usize) -> Result<u64> {
        let Some(ttl) = self.limits.message_ttl_ms else {
            return Ok(0);
        };
        let cutoff = unix_ms_now().saturating_sub(ttl);
        let mut state = lock(&self.state, "message queue")?;
        let mut removed = 0;
        let mut emptied = Vec::new();
        for (connection, queue) in state.queues.iter_mut().take(max_queues) {
            removed += queue.expire(cutoff);
            if queue.by_seq.is_empty() {
                emptied.push(connection.clone());
            }
        }
        for connection in emptied {
            state.queues.remove(&connection);
        }
        self.expired.fetch_add(removed, Ordering::Relaxed);
        Ok(removed)
    }

    fn expired_count(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }

    async fn totals(&self) -> Result<QueueTotals> {
        let mut state = lock(&self.state, "message queue")?;
        if let Some(ttl) = self.limits.message_ttl_ms {
            // What expired is not held any more, swept or not.
            let cutoff = unix_ms_now().saturating_sub(ttl);
            let expired: u64 = state.queues.values_mut().map(|q| q.expire(cutoff)).sum();
            self.expired.fetch_add(expired, Ordering::Relaxed);
            state.queues.retain(|_, q| !q.by_seq.is_empty());
        }
        let mut totals = QueueTotals::default();
        for queue in state.queues.values().filter(|q| !q.by_seq.is_empty()) {
            totals.queues += 1;
            totals.messages += queue.by_seq.len() as u64;
            totals.bytes += queue.total_bytes;
        }
        Ok(totals)
    }

    async fn restore(
        &self,
        connection_id: &ConnectionId,
        messages: &[QueuedMessage],
    ) -> Result<()> {
        let now = unix_ms_now();
        let mut state = lock(&self.state, "message queue")?;
        self.expire(&mut state, connection_id, now);
        let mut given = std::collections::HashSet::new();
        let queued = state.queues.get(connection_id);
        for message in messages {
            if !given.insert(&message.id)
                || queued.is_some_and(|q| q.seq_of.contains_key(&message.id))
            {
                return Err(StoreError::Conflict {
                    what: Entity::Message(message.id.clone()),
                });
            }
        }
        if messages.is_empty() {
            return Ok(());
        }
        let first = state.next_seq;
        state.next_seq += messages.len() as u64;
        let queue = state.queues.entry(connection_id.clone()).or_default();
        for (seq, message) in (first..).zip(messages) {
            let message = QueuedMessage {
                connection_id: connection_id.clone(),
                ..message.clone()
            };
            queue.total_bytes += payload_len(&message);
            queue.seq_of.insert(message.id.clone(), seq);
            queue.by_seq.insert(
                seq,
                Entry {
                    message,
                    leased_until_ms: 0,
                },
            );
        }
        // Messages already past their age go now, as any expired message.
        self.expire(&mut state, connection_id, now);
        Ok(())
    }

    async fn list_queues(
        &self,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<Vec<ConnectionId>> {
        let state = lock(&self.state, "message queue")?;
        let mut ids: Vec<&ConnectionId> = state
            .queues
            .iter()
            .filter(|(id, q)| {
                !q.by_seq.is_empty() && after.is_none_or(|after| id.as_str() > after.as_str())
            })
            .map(|(id, _)| id)
            .collect();
        ids.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(ids.into_iter().take(limit).cloned().collect())
    }
}
