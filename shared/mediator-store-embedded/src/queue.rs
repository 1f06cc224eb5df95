//! [`MessageQueue`] on the embedded database.
//!
//! A message is a `messages` row (its metadata: connection, id, arrival, lease, deliveries,
//! length, recipient keys) and a `payloads` row with its bytes, both under one `seq`: the
//! rowid, given larger than every existing one, so the `(connection_id, seq)` index is each
//! queue's FIFO order. Leasing, status and the byte budget read metadata rows only; a payload
//! is read only for a message handed out. `queues` keeps per queue its message count and bytes
//! (the caps are checked against it in O(1), in the same transaction as the insert, so they
//! are atomic) and its oldest and newest arrival (the newest keeps arrivals monotonic when the
//! clock steps back; the oldest tells, in O(1), whether the queue has anything to expire, and
//! lets the sweep find the queues that do).
//!
//! `add` and `add_leased` are durable: they return once the group commit that carries them is
//! fsynced. Leases, releases, removals and expiry are not (a power loss can undo the last of
//! them, which means a redelivery, never a lost message); see the crate docs.
//!
//! Expiry: every write on a queue first removes its expired messages (and counts them); reads
//! (`take`, `get`, `status`) skip them without removing (they run on read connections), so no
//! operation ever sees an expired message.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use async_trait::async_trait;
use bytes::Bytes;
use didcomm_envelope::VerKey;
use mediator_store::{
    unix_ms_now, ConnectionId, Entity, MessageId, MessageQueue, QueueCap, QueueLimits, QueueStatus,
    QueueTotals, QueuedMessage, Result, StoreError,
};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{
    codec::{corrupt, decode_keys, encode_keys, int, int_usize},
    db::{sql, Db},
};

/// Message queues in one data directory. Clones share them (and the expired count).
#[derive(Debug, Clone)]
pub struct EmbeddedMessageQueue {
    db: Arc<Db>,
    limits: QueueLimits,
    expired: Arc<AtomicU64>,
}

impl EmbeddedMessageQueue {
    pub(crate) fn new(db: Arc<Db>, limits: QueueLimits) -> Self {
        Self {
            db,
            limits,
            expired: Arc::default(),
        }
    }

    /// Runs a write job that returns its answer and how many messages it expired, and counts
    /// those once the job is committed.
    async fn write<T, F>(&self, durable: bool, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, Expiry) -> Result<(T, u64)> + Send + 'static,
    {
        let expiry = Expiry(self.limits.message_ttl_ms);
        let (answer, expired) = self.db.write(durable, move |conn| f(conn, expiry)).await?;
        self.expired.fetch_add(expired, Ordering::Relaxed);
        Ok(answer)
    }
}

/// The queue's message age limit, as the cutoff of a given time.
#[derive(Debug, Clone, Copy)]
struct Expiry(Option<u64>);

impl Expiry {
    /// Messages received before this (unix ms) have expired at `now`; 0 when nothing expires.
    fn cutoff(self, now: u64) -> u64 {
        self.0.map_or(0, |ttl| now.saturating_sub(ttl))
    }
}

/// The metadata row of a message.
#[derive(Debug)]
struct Meta {
    seq: u64,
    id: String,
    received_ms: u64,
    leased_until_ms: u64,
    deliveries: u32,
    len: u64,
    keys: Vec<u8>,
}

const META_COLUMNS: &str = "seq, id, received_ms, leased_until_ms, deliveries, len, keys";

impl Meta {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            seq: row.get(0)?,
            id: row.get(1)?,
            received_ms: row.get(2)?,
            leased_until_ms: row.get(3)?,
            deliveries: row.get(4)?,
            len: row.get(5)?,
            keys: row.get(6)?,
        })
    }

    fn in_flight(&self, now: u64) -> bool {
        self.leased_until_ms > now
    }

    /// Whether it was sent to `key` (any key when `None`), compared as stored bytes.
    fn carries(&self, key: Option<&VerKey>) -> bool {
        key.is_none_or(|key| {
            self.keys
                .chunks_exact(32)
                .any(|stored| stored == &key.as_bytes()[..])
        })
    }

    /// The message, with its payload read from `payloads`.
    fn into_message(
        self,
        conn: &Connection,
        connection_id: &ConnectionId,
    ) -> Result<QueuedMessage> {
        let payload: Option<Vec<u8>> = conn
            .prepare_cached("SELECT data FROM payloads WHERE seq = ?1")
            .map_err(sql)?
            .query_row([self.seq], |r| r.get(0))
            .optional()
            .map_err(sql)?;
        let what = || format!("queued message {}", self.id);
        let payload = payload.ok_or_else(|| corrupt(what(), MissingPayload))?;
        Ok(QueuedMessage {
            recipient_keys: decode_keys(&self.keys, what)?,
            id: MessageId::from(self.id),
            connection_id: connection_id.clone(),
            payload: Bytes::from(payload),
            received_at_ms: self.received_ms,
            deliveries: self.deliveries,
        })
    }
}

/// A message's metadata row has no payload row.
#[derive(Debug, thiserror::Error)]
#[error("the message has no payload")]
struct MissingPayload;

/// Hot path (lease, status, take): the queue's messages in FIFO order, metadata only, lazily
/// (a caller that stops early reads no further).
fn for_each_meta(
    conn: &Connection,
    connection_id: &ConnectionId,
    mut f: impl FnMut(Meta) -> Result<bool>,
) -> Result<()> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {META_COLUMNS} FROM messages WHERE connection_id = ?1 ORDER BY seq"
        ))
        .map_err(sql)?;
    let mut rows = stmt.query([connection_id.as_str()]).map_err(sql)?;
    while let Some(row) = rows.next().map_err(sql)? {
        if !f(Meta::from_row(row).map_err(sql)?)? {
            break;
        }
    }
    Ok(())
}

/// The metadata of the message `id` of this connection's queue.
fn meta_of(
    conn: &Connection,
    connection_id: &ConnectionId,
    id: &MessageId,
) -> Result<Option<Meta>> {
    conn.prepare_cached(&format!(
        "SELECT {META_COLUMNS} FROM messages WHERE id = ?1 AND connection_id = ?2"
    ))
    .map_err(sql)?
    .query_row([id.as_str(), connection_id.as_str()], Meta::from_row)
    .optional()
    .map_err(sql)
}

fn delete_message(conn: &Connection, seq: u64) -> Result<()> {
    conn.prepare_cached("DELETE FROM messages WHERE seq = ?1")
        .and_then(|mut s| s.execute([seq]))
        .map_err(sql)?;
    conn.prepare_cached("DELETE FROM payloads WHERE seq = ?1")
        .and_then(|mut s| s.execute([seq]))
        .map_err(sql)?;
    Ok(())
}

/// Updates the queue's summary after `count` of its messages (`bytes` payload bytes) were
/// deleted: drops it when it empties, else moves its oldest arrival.
fn after_removal(
    conn: &Connection,
    connection_id: &ConnectionId,
    count: u64,
    bytes: u64,
) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    let cid = connection_id.as_str();
    let oldest: Option<u64> = conn
        .prepare_cached(
            "SELECT received_ms FROM messages WHERE connection_id = ?1 ORDER BY seq LIMIT 1",
        )
        .map_err(sql)?
        .query_row([cid], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    match oldest {
        None => conn
            .prepare_cached("DELETE FROM queues WHERE connection_id = ?1")
            .and_then(|mut s| s.execute([cid])),
        Some(oldest) => conn
            .prepare_cached(
                "UPDATE queues SET messages = max(messages - ?2, 0), bytes = max(bytes - ?3, 0), \
                 oldest_ms = ?4 WHERE connection_id = ?1",
            )
            .and_then(|mut s| s.execute(params![cid, int(count), int(bytes), oldest])),
    }
    .map_err(sql)?;
    Ok(())
}

/// Removes the queue's messages received before `cutoff` (a prefix of the queue: arrivals only
/// grow); returns how many.
fn expire_queue(conn: &Connection, connection_id: &ConnectionId, cutoff: u64) -> Result<u64> {
    if cutoff == 0 {
        return Ok(0);
    }
    // O(1) on the hot add path: nothing to do unless the oldest message is past its age.
    let oldest: Option<u64> = conn
        .prepare_cached("SELECT oldest_ms FROM queues WHERE connection_id = ?1")
        .map_err(sql)?
        .query_row([connection_id.as_str()], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    if oldest.is_none_or(|oldest| oldest >= cutoff) {
        return Ok(0);
    }
    let mut doomed = Vec::new();
    for_each_meta(conn, connection_id, |meta| {
        if meta.received_ms >= cutoff {
            return Ok(false);
        }
        doomed.push((meta.seq, meta.len));
        Ok(true)
    })?;
    let bytes = doomed.iter().map(|(_, len)| len).sum();
    for (seq, _) in &doomed {
        delete_message(conn, *seq)?;
    }
    let count = int_usize(doomed.len());
    after_removal(conn, connection_id, count, bytes)?;
    Ok(count)
}

/// Puts a message in flight until `until` and counts the handout.
fn lease_one(conn: &Connection, meta: &mut Meta, until: u64) -> Result<()> {
    meta.leased_until_ms = until;
    meta.deliveries = meta.deliveries.saturating_add(1);
    conn.prepare_cached("UPDATE messages SET leased_until_ms = ?2, deliveries = ?3 WHERE seq = ?1")
        .and_then(|mut s| s.execute(params![meta.seq, until, meta.deliveries]))
        .map_err(sql)?;
    Ok(())
}

fn lease_until(now: u64, lease_ms: u64) -> u64 {
    int(now.saturating_add(lease_ms.max(1)))
}

/// Hot path (every Forward): checks the caps and appends one message, in the caller's job.
fn insert(
    conn: &Connection,
    limits: QueueLimits,
    expiry: Expiry,
    connection_id: &ConnectionId,
    keys: &[u8],
    payload: &[u8],
    lease_ms: Option<u64>,
) -> Result<(MessageId, u64)> {
    let now = unix_ms_now();
    let expired = expire_queue(conn, connection_id, expiry.cutoff(now))?;
    let cid = connection_id.as_str();
    let (count, bytes, newest): (u64, u64, u64) = conn
        .prepare_cached("SELECT messages, bytes, newest_ms FROM queues WHERE connection_id = ?1")
        .map_err(sql)?
        .query_row([cid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .map_err(sql)?
        .unwrap_or((0, 0, 0));
    let len = int_usize(payload.len());
    let cap = match (limits.max_messages, limits.max_bytes) {
        (Some(max), _) if count >= int_usize(max) => Some(QueueCap::Messages(max)),
        (_, Some(max)) if bytes.saturating_add(len) > max => Some(QueueCap::Bytes(max)),
        _ => None,
    };
    if let Some(cap) = cap {
        return Err(StoreError::QueueFull {
            connection: connection_id.clone(),
            cap,
        });
    }
    let id = MessageId::generate();
    // A clock that steps back must not make a later message look older than an earlier one.
    let received = int(now.max(newest));
    let leased_until = lease_ms.map_or(0, |l| lease_until(now, l));
    conn.prepare_cached(
        "INSERT INTO messages (connection_id, id, received_ms, leased_until_ms, deliveries, len, keys) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            cid,
            id.as_str(),
            received,
            leased_until,
            u32::from(lease_ms.is_some()),
            len,
            keys
        ])
    })
    .map_err(sql)?;
    let seq = conn.last_insert_rowid();
    conn.prepare_cached("INSERT INTO payloads (seq, data) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![seq, payload]))
        .map_err(sql)?;
    conn.prepare_cached(
        "INSERT INTO queues (connection_id, messages, bytes, oldest_ms, newest_ms) \
         VALUES (?1, 1, ?2, ?3, ?3) ON CONFLICT (connection_id) DO UPDATE SET \
         messages = messages + 1, bytes = bytes + ?2, newest_ms = ?3",
    )
    .and_then(|mut s| s.execute(params![cid, len, received]))
    .map_err(sql)?;
    Ok((id, expired))
}

/// [`MessageQueue::release`]; `uncount`: [`MessageQueue::unlease`].
fn end_leases(
    conn: &Connection,
    connection_id: &ConnectionId,
    ids: &[MessageId],
    uncount: bool,
) -> Result<usize> {
    let now = unix_ms_now();
    let mut released = 0;
    for id in ids {
        let Some(meta) = meta_of(conn, connection_id, id)? else {
            continue;
        };
        if meta.in_flight(now) {
            released += 1;
        }
        let deliveries = if uncount && meta.leased_until_ms > 0 {
            meta.deliveries.saturating_sub(1)
        } else {
            meta.deliveries
        };
        conn.prepare_cached(
            "UPDATE messages SET leased_until_ms = 0, deliveries = ?2 WHERE seq = ?1",
        )
        .and_then(|mut s| s.execute(params![meta.seq, deliveries]))
        .map_err(sql)?;
    }
    Ok(released)
}

/// Expires every queue whose oldest message is past its age (up to `max` queues).
fn expire_queues(conn: &Connection, cutoff: u64, max: usize) -> Result<u64> {
    if cutoff == 0 {
        return Ok(0);
    }
    let due: Vec<String> = conn
        .prepare_cached(
            "SELECT connection_id FROM queues WHERE oldest_ms < ?1 ORDER BY oldest_ms LIMIT ?2",
        )
        .map_err(sql)?
        .query_map(params![cutoff, int_usize(max)], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(sql)?;
    let mut removed = 0;
    for connection in due {
        removed += expire_queue(conn, &ConnectionId::from(connection), cutoff)?;
    }
    Ok(removed)
}

#[async_trait]
impl MessageQueue for EmbeddedMessageQueue {
    /// Hot path (every Forward to an offline client): one durable group commit.
    async fn add(
        &self,
        connection_id: &ConnectionId,
        recipient_keys: &[VerKey],
        payload: Bytes,
    ) -> Result<MessageId> {
        let (cid, keys, limits) = (
            connection_id.clone(),
            encode_keys(recipient_keys),
            self.limits,
        );
        self.write(true, move |conn, expiry| {
            insert(conn, limits, expiry, &cid, &keys, &payload, None)
        })
        .await
    }

    /// Hot path (every Forward to a live client): one durable group commit.
    async fn add_leased(
        &self,
        connection_id: &ConnectionId,
        recipient_keys: &[VerKey],
        payload: Bytes,
        lease_ms: u64,
    ) -> Result<MessageId> {
        let (cid, keys, limits) = (
            connection_id.clone(),
            encode_keys(recipient_keys),
            self.limits,
        );
        self.write(true, move |conn, expiry| {
            insert(conn, limits, expiry, &cid, &keys, &payload, Some(lease_ms))
        })
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
        let (cid, key) = (connection_id.clone(), recipient_key.copied());
        self.write(false, move |conn, expiry| {
            let now = unix_ms_now();
            let expired = expire_queue(conn, &cid, expiry.cutoff(now))?;
            let mut picked = Vec::new();
            let mut bytes: u64 = 0;
            for_each_meta(conn, &cid, |meta| {
                if picked.len() >= limit {
                    return Ok(false);
                }
                if meta.in_flight(now) || !meta.carries(key.as_ref()) {
                    return Ok(true);
                }
                // The batch ends at the first message over the budget (FIFO: no smaller later
                // message jumps it); the first one always goes, alone if it must.
                let total = bytes.saturating_add(meta.len);
                if !picked.is_empty() && max_bytes.is_some_and(|max| total > max) {
                    return Ok(false);
                }
                bytes = total;
                picked.push(meta);
                Ok(true)
            })?;
            let until = lease_until(now, lease_ms);
            let mut out = Vec::with_capacity(picked.len());
            for mut meta in picked {
                lease_one(conn, &mut meta, until)?;
                out.push(meta.into_message(conn, &cid)?);
            }
            Ok((out, expired))
        })
        .await
    }

    async fn lease_ids(
        &self,
        connection_id: &ConnectionId,
        ids: &[MessageId],
        lease_ms: u64,
    ) -> Result<Vec<QueuedMessage>> {
        let (cid, ids) = (connection_id.clone(), ids.to_vec());
        self.write(false, move |conn, expiry| {
            let now = unix_ms_now();
            let expired = expire_queue(conn, &cid, expiry.cutoff(now))?;
            let mut metas = Vec::new();
            for id in &ids {
                metas.extend(meta_of(conn, &cid, id)?);
            }
            metas.sort_unstable_by_key(|m| m.seq);
            metas.dedup_by_key(|m| m.seq);
            let until = lease_until(now, lease_ms);
            let mut out = Vec::new();
            for mut meta in metas.into_iter().filter(|m| !m.in_flight(now)) {
                lease_one(conn, &mut meta, until)?;
                out.push(meta.into_message(conn, &cid)?);
            }
            Ok((out, expired))
        })
        .await
    }

    async fn release(&self, connection_id: &ConnectionId, ids: &[MessageId]) -> Result<usize> {
        let (cid, ids) = (connection_id.clone(), ids.to_vec());
        self.write(false, move |conn, _| {
            Ok((end_leases(conn, &cid, &ids, false)?, 0))
        })
        .await
    }

    async fn unlease(&self, connection_id: &ConnectionId, ids: &[MessageId]) -> Result<usize> {
        let (cid, ids) = (connection_id.clone(), ids.to_vec());
        self.write(false, move |conn, _| {
            Ok((end_leases(conn, &cid, &ids, true)?, 0))
        })
        .await
    }

    async fn status(
        &self,
        connection_id: &ConnectionId,
        recipient_key: Option<&VerKey>,
    ) -> Result<QueueStatus> {
        let (cid, key, expiry) = (
            connection_id.clone(),
            recipient_key.copied(),
            Expiry(self.limits.message_ttl_ms),
        );
        self.db
            .read(move |tx| {
                let now = unix_ms_now();
                let cutoff = expiry.cutoff(now);
                let mut status = QueueStatus::default();
                for_each_meta(tx, &cid, |meta| {
                    if meta.received_ms < cutoff || !meta.carries(key.as_ref()) {
                        return Ok(true);
                    }
                    if meta.in_flight(now) {
                        status.in_flight += 1;
                        return Ok(true);
                    }
                    status.message_count += 1;
                    status.total_bytes += meta.len;
                    status.oldest_received_ms.get_or_insert(meta.received_ms);
                    status.newest_received_ms = Some(meta.received_ms);
                    Ok(true)
                })?;
                Ok(status)
            })
            .await
    }

    async fn take(
        &self,
        connection_id: &ConnectionId,
        limit: usize,
        recipient_key: Option<&VerKey>,
    ) -> Result<Vec<QueuedMessage>> {
        let (cid, key, expiry) = (
            connection_id.clone(),
            recipient_key.copied(),
            Expiry(self.limits.message_ttl_ms),
        );
        self.db
            .read(move |tx| {
                let cutoff = expiry.cutoff(unix_ms_now());
                let mut picked = Vec::new();
                for_each_meta(tx, &cid, |meta| {
                    if picked.len() >= limit {
                        return Ok(false);
                    }
                    if meta.received_ms >= cutoff && meta.carries(key.as_ref()) {
                        picked.push(meta);
                    }
                    Ok(true)
                })?;
                picked
                    .into_iter()
                    .map(|meta| meta.into_message(tx, &cid))
                    .collect()
            })
            .await
    }

    async fn remove(&self, connection_id: &ConnectionId, ids: &[MessageId]) -> Result<usize> {
        let (cid, ids) = (connection_id.clone(), ids.to_vec());
        self.write(false, move |conn, _| {
            let (mut count, mut bytes) = (0u64, 0u64);
            for id in &ids {
                if let Some(meta) = meta_of(conn, &cid, id)? {
                    delete_message(conn, meta.seq)?;
                    count += 1;
                    bytes += meta.len;
                }
            }
            after_removal(conn, &cid, count, bytes)?;
            Ok((usize::try_from(count).unwrap_or(usize::MAX), 0))
        })
        .await
    }

    async fn get(
        &self,
        connection_id: &ConnectionId,
        id: &MessageId,
    ) -> Result<Option<QueuedMessage>> {
        let (cid, id, expiry) = (
            connection_id.clone(),
            id.clone(),
            Expiry(self.limits.message_ttl_ms),
        );
        self.db
            .read(move |tx| {
                let cutoff = expiry.cutoff(unix_ms_now());
                meta_of(tx, &cid, &id)?
                    .filter(|meta| meta.received_ms >= cutoff)
                    .map(|meta| meta.into_message(tx, &cid))
                    .transpose()
            })
            .await
    }

    async fn sweep_expired(&self, max_queues: usize) -> Result<u64> {
        self.write(false, move |conn, expiry| {
            let removed = expire_queues(conn, expiry.cutoff(unix_ms_now()), max_queues)?;
            Ok((removed, removed))
        })
        .await
    }

    fn expired_count(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }

    async fn totals(&self) -> Result<QueueTotals> {
        self.write(false, move |conn, expiry| {
            // What expired is not held any more, swept or not.
            let expired = expire_queues(conn, expiry.cutoff(unix_ms_now()), usize::MAX)?;
            let (queues, messages, bytes) = conn
                .prepare_cached(
                    "SELECT count(*), coalesce(sum(messages), 0), coalesce(sum(bytes), 0) \
                     FROM queues WHERE messages > 0",
                )
                .map_err(sql)?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(sql)?;
            Ok((
                QueueTotals {
                    queues,
                    messages,
                    bytes,
                },
                expired,
            ))
        })
        .await
    }

    /// One durable commit for the whole batch (offline: `mediator copy`).
    async fn restore(
        &self,
        connection_id: &ConnectionId,
        messages: &[QueuedMessage],
    ) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let cid = connection_id.clone();
        let messages: Vec<(MessageId, Vec<u8>, Bytes, u64, u32)> = messages
            .iter()
            .map(|m| {
                (
                    m.id.clone(),
                    encode_keys(&m.recipient_keys),
                    m.payload.clone(),
                    m.received_at_ms,
                    m.deliveries,
                )
            })
            .collect();
        self.write(true, move |conn, expiry| {
            let expired = expire_queue(conn, &cid, expiry.cutoff(unix_ms_now()))?;
            let mut given = std::collections::HashSet::new();
            for (id, ..) in &messages {
                let known = conn
                    .prepare_cached("SELECT 1 FROM messages WHERE id = ?1")
                    .map_err(sql)?
                    .exists([id.as_str()])
                    .map_err(sql)?;
                if known || !given.insert(id) {
                    return Err(StoreError::Conflict {
                        what: Entity::Message(id.clone()),
                    });
                }
            }
            let (mut bytes, mut newest) = (0u64, 0u64);
            for (id, keys, payload, received, deliveries) in &messages {
                let len = int_usize(payload.len());
                conn.prepare_cached(
                    "INSERT INTO messages (connection_id, id, received_ms, leased_until_ms, deliveries, len, keys) \
                     VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6)",
                )
                .and_then(|mut s| {
                    s.execute(params![cid.as_str(), id.as_str(), int(*received), deliveries, len, keys])
                })
                .map_err(sql)?;
                let seq = conn.last_insert_rowid();
                conn.prepare_cached("INSERT INTO payloads (seq, data) VALUES (?1, ?2)")
                    .and_then(|mut s| s.execute(params![seq, &payload[..]]))
                    .map_err(sql)?;
                bytes = bytes.saturating_add(len);
                newest = newest.max(int(*received));
            }
            let oldest = int(messages[0].3);
            conn.prepare_cached(
                "INSERT INTO queues (connection_id, messages, bytes, oldest_ms, newest_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (connection_id) DO UPDATE SET \
                 messages = messages + ?2, bytes = bytes + ?3, newest_ms = max(newest_ms, ?5)",
            )
            .and_then(|mut s| {
                s.execute(params![cid.as_str(), int_usize(messages.len()), bytes, oldest, newest])
            })
            .map_err(sql)?;
            // Messages already past their age go now, as any expired message.
            let now_expired = expire_queue(conn, &cid, expiry.cutoff(unix_ms_now()))?;
            Ok(((), expired + now_expired))
        })
        .await
    }

    async fn list_queues(
        &self,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<Vec<ConnectionId>> {
        let after = after.map(|a| a.as_str().to_owned());
        self.db
            .read(move |tx| {
                tx.prepare_cached(
                    "SELECT connection_id FROM queues WHERE messages > 0 \
                     AND (?1 IS NULL OR connection_id > ?1) ORDER BY connection_id LIMIT ?2",
                )
                .map_err(sql)?
                .query_map(params![after, int_usize(limit)], |r| {
                    r.get::<_, String>(0).map(ConnectionId::from)
                })
                .and_then(|rows| rows.collect())
                .map_err(sql)
            })
            .await
    }
}
