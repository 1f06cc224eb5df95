//! [`MessageQueue`] on Redis: one connection's queue is six keys under that connection's own hash
//! tag (`{<prefix>q:<connection id>}`), so every operation is one Lua script on one slot: atomic,
//! one round trip, and spread over a Redis Cluster by connection.
//!
//! The layout is written once, at the top of `lua/queue_common.lua`. Times (arrival, leases,
//! expiry) are the Redis server's clock, so instances whose clocks differ agree on them. An
//! empty queue leaves no key. Queues are also listed in one set (`{<prefix>qidx}:queues`, added
//! when a queue gets its first message) that only the background sweep reads, with SSCAN: no
//! request path scans anything. This module must not read a queue and then write on the strength
//! of that read from the client: every check-then-write happens inside one script.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, LazyLock, Mutex,
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_redis::redis::{self, Script, Value};
use didcomm_envelope::VerKey;
use mediator_store::{
    Announcement, ConnectionId, Entity, MessageId, MessageQueue, QueueCap, QueueLimits,
    QueueStatus, QueueTotals, QueuedMessage, Result, StoreError,
};

use crate::{
    error::{self, ReplyError},
    keys::{stored_key, QueueKeys},
    pool::{RedisConnection, RedisPool},
    queue_add::{first, AddBatcher, AddContext, AddOp, Added},
    queue_remove::{RemoveBatcher, RemoveContext, RemoveOp},
};

/// Every queue script starts with the shared helpers (`queue_common.lua`).
macro_rules! queue_script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/queue_common.lua"),
                include_str!(concat!("lua/", $file))
            ))
        })
    };
}

/// The hot-path scripts stand alone (no shared helpers to build per call); the add script is in
/// [`crate::queue_add`].
static LEASE: LazyLock<Script> = queue_script!("queue_lease.lua");
static TAKE: LazyLock<Script> = queue_script!("queue_take.lua");
static LEASE_IDS: LazyLock<Script> = queue_script!("queue_lease_ids.lua");
static GET: LazyLock<Script> = queue_script!("queue_get.lua");
static STATUS: LazyLock<Script> = queue_script!("queue_status.lua");
static RELEASE: LazyLock<Script> = queue_script!("queue_release.lua");
static EXPIRE: LazyLock<Script> = queue_script!("queue_expire.lua");
static TOTALS: LazyLock<Script> = queue_script!("queue_totals.lua");
static RESTORE: LazyLock<Script> = queue_script!("queue_restore.lua");

/// Message queues in Redis. Clones share the pool and the counters (cheap to clone).
#[derive(Clone)]
pub struct RedisMessageQueue {
    pool: RedisPool,
    prefix: Arc<str>,
    index: Arc<str>,
    limits: QueueLimits,
    expired: Arc<AtomicU64>,
    /// Where the next sweep resumes its SSCAN of the queue index.
    sweep_cursor: Arc<Mutex<u64>>,
    /// Queues this process listed in the index lately (connection -> when).
    listed: Arc<Mutex<HashMap<ConnectionId, Instant>>>,
    /// What an add needs (the add script's arguments).
    context: AddContext,
    /// On one Redis node, adds are committed in groups (see [`AddBatcher`]); on a Redis Cluster
    /// the queues of a group would be on different slots, so each add is its own call.
    adds: Option<Arc<AddBatcher>>,
    /// What a removal needs (the remove script's arguments).
    remove_context: RemoveContext,
    /// Removals (acknowledgements) are committed in groups as adds are.
    removes: Option<Arc<RemoveBatcher>>,
}

/// How long a queue this process listed is taken to be listed still. A sweep (of any instance)
/// unlists a queue it finds empty; a message added meanwhile by an instance that still takes it
/// for listed leaves it unlisted for at most this long after that instance's next add (and its
/// messages still expire when it is touched, and by its keys' PEXPIRE).
const LISTED_FOR: Duration = Duration::from_secs(10);
/// Most queues remembered as listed (past it, the memory starts over: one SADD each again).
const MAX_LISTED: usize = 100_000;

impl std::fmt::Debug for RedisMessageQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisMessageQueue")
            .field("prefix", &self.prefix)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Script arguments for "no limit".
const NONE: i64 = -1;

fn cap_arg<T: TryInto<i64>>(cap: Option<T>) -> i64 {
    cap.and_then(|c| c.try_into().ok()).unwrap_or(NONE)
}

impl RedisMessageQueue {
    /// Queues whose keys are under `prefix`, with these limits. No round trip.
    pub fn new(pool: impl Into<RedisPool>, prefix: &str, limits: QueueLimits) -> Self {
        let pool: RedisPool = pool.into();
        let index: Arc<str> = QueueKeys::index(prefix).into();
        let prefix: Arc<str> = prefix.into();
        let context = AddContext {
            pool: pool.clone(),
            prefix: Arc::clone(&prefix),
            index: Arc::clone(&index),
            limits,
        };
        let adds = (!pool.is_cluster()).then(|| Arc::new(AddBatcher::new(context.clone())));
        let remove_context = RemoveContext {
            pool: pool.clone(),
            prefix: Arc::clone(&prefix),
            limits,
        };
        let removes =
            (!pool.is_cluster()).then(|| Arc::new(RemoveBatcher::new(remove_context.clone())));
        Self {
            pool,
            index,
            prefix,
            limits,
            expired: Arc::default(),
            sweep_cursor: Arc::default(),
            listed: Arc::default(),
            context,
            adds,
            remove_context,
            removes,
        }
    }

    /// With `on` false, every add and every removal is its own call, also on one node (group
    /// commit is on by default there; see [`crate::group`]). On a Redis Cluster it is always
    /// off.
    #[must_use]
    pub fn with_group_commit(mut self, on: bool) -> Self {
        if !on {
            self.adds = None;
            self.removes = None;
        } else if !self.pool.is_cluster() {
            self.adds
                .get_or_insert_with(|| Arc::new(AddBatcher::new(self.context.clone())));
            self.removes
                .get_or_insert_with(|| Arc::new(RemoveBatcher::new(self.remove_context.clone())));
        }
        self
    }

    /// Whether `connection_id`'s queue must be listed in the index now: not listed by this
    /// process within [`LISTED_FOR`]. Marks it listed.
    fn must_list(&self, connection_id: &ConnectionId) -> bool {
        let now = Instant::now();
        let mut listed = self.listed.lock().unwrap_or_else(|p| p.into_inner());
        if listed
            .get(connection_id)
            .is_some_and(|at| now.duration_since(*at) < LISTED_FOR)
        {
            return false;
        }
        if listed.len() >= MAX_LISTED {
            listed.clear();
        }
        listed.insert(connection_id.clone(), now);
        true
    }

    /// Forgets that `connection_id`'s queue was listed (its SADD failed).
    fn unlisted(&self, connection_id: &ConnectionId) {
        self.listed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(connection_id);
    }

    async fn connection(&self) -> Result<RedisConnection> {
        self.pool.get().await.map_err(error::pool)
    }

    /// A script invocation on `connection_id`'s queue keys, its TTL argument set.
    fn invoke<'s>(
        &self,
        script: &'s Script,
        connection_id: &ConnectionId,
    ) -> redis::ScriptInvocation<'s> {
        let keys = QueueKeys::new(&self.prefix, connection_id);
        let mut call = script.prepare_invoke();
        for key in keys.all() {
            call.key(key);
        }
        call.arg(self.limits.message_ttl_ms.unwrap_or(0));
        call
    }

    /// One SSCAN page of the queue index: the next cursor (0: done) and up to about `count`
    /// connections whose queues are listed.
    async fn index_page(
        &self,
        conn: &mut RedisConnection,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<String>)> {
        redis::cmd("SSCAN")
            .arg(&*self.index)
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .query_async(conn)
            .await
            .map_err(error::redis)
    }

    fn count_expired(&self, n: i64) {
        if n > 0 {
            self.expired.fetch_add(n.unsigned_abs(), Ordering::Relaxed);
        }
    }

    async fn insert(
        &self,
        connection_id: &ConnectionId,
        recipient_keys: &[VerKey],
        payload: Bytes,
        lease_ms: u64,
        announcement: Option<Announcement<'_>>,
    ) -> Result<(MessageId, Option<usize>)> {
        let id = MessageId::generate();
        let keys: Vec<String> = recipient_keys.iter().map(stored_key).collect();
        // The notice goes out from the script on one node (where the bus publishes with PUBLISH);
        // a cluster's bus uses sharded channels on other slots, so the caller publishes there.
        let notice = announcement
            .filter(|_| !self.pool.is_cluster())
            .map(|a| (a.channel.to_owned(), (a.notice)(&id)));
        let mut op = AddOp {
            connection_id: connection_id.clone(),
            id,
            payload,
            keys: keys.join(","),
            lease_ms,
            expired_first: false,
            list: false,
            notice,
        };
        // List the queue for the sweep: on its first message, and otherwise once per LISTED_FOR
        // per process (a sweep may have unlisted it). A live client empties its queue with every
        // acknowledgement, so "first message" is most messages: without the memory this was a
        // second round trip per Forward. On one node the add script lists it (same round trip);
        // on a cluster the index is on another slot: its own SADD, after the add.
        let must_list = self.must_list(connection_id);
        let grouped = self.adds.as_ref().filter(|adds| adds.grouping());
        op.list = must_list && grouped.is_some();
        let added = match grouped {
            Some(adds) => adds.submit(op.clone()).await,
            None => self
                .context
                .add_now(std::slice::from_ref(&op))
                .await
                .map(|replies| Added::from_reply(first(replies), false)),
        }
        .inspect_err(|_| {
            if must_list {
                self.unlisted(connection_id);
            }
        })?;
        op.list = added.listed;
        let added = if added.code == 3 {
            // At a cap: old messages may be what fills it. Expired, then asked again (a full
            // queue only; an add that fits never expires anything).
            let mut conn = self.connection().await?;
            let (expired, _empty): (i64, i64) = self
                .invoke(&EXPIRE, connection_id)
                .invoke_async(&mut conn)
                .await
                .map_err(error::redis)?;
            self.count_expired(expired);
            op.expired_first = true;
            let listed = op.list;
            self.context
                .add_now(std::slice::from_ref(&op))
                .await
                .map(|replies| Added::from_reply(first(replies), listed))?
        } else {
            added
        };
        let (code, value) = (added.code, added.value);
        let full = |cap| StoreError::QueueFull {
            connection: connection_id.clone(),
            cap,
        };
        match code {
            0 => {
                if must_list && !op.list {
                    let mut conn = self.connection().await?;
                    let listed = redis::cmd("SADD")
                        .arg(&*self.index)
                        .arg(connection_id.as_str())
                        .query_async::<()>(&mut conn)
                        .await;
                    if let Err(err) = listed {
                        self.unlisted(connection_id);
                        return Err(error::redis(err));
                    }
                }
                Ok((op.id, added.heard))
            }
            code => {
                if must_list {
                    // Not added, so not listed by this add.
                    self.unlisted(connection_id);
                }
                Err(match code {
                    1 => full(QueueCap::Messages(usize::try_from(value).unwrap_or(0))),
                    2 => full(QueueCap::Bytes(value.unsigned_abs())),
                    code => error::reply(ReplyError::UnknownCode {
                        script: "queue_add",
                        code,
                    }),
                })
            }
        }
    }

    /// [`MessageQueue::release`]; `uncount`: [`MessageQueue::unlease`].
    async fn end_leases(
        &self,
        connection_id: &ConnectionId,
        ids: &[MessageId],
        uncount: bool,
    ) -> Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut call = self.invoke(&RELEASE, connection_id);
        call.arg(u8::from(uncount));
        for id in ids {
            call.arg(id.as_str());
        }
        let mut conn = self.connection().await?;
        call.invoke_async(&mut conn).await.map_err(error::redis)
    }

    /// Reads `{expired, id, payload, meta, ...}` replies.
    fn messages(
        &self,
        connection_id: &ConnectionId,
        reply: Vec<Value>,
    ) -> Result<Vec<QueuedMessage>> {
        let mut items = reply.into_iter();
        let expired: i64 = items
            .next()
            .map(redis::from_redis_value)
            .transpose()
            .map_err(error::parsing)?
            .unwrap_or(0);
        self.count_expired(expired);
        let rest: Vec<Value> = items.collect();
        let mut out = Vec::with_capacity(rest.len() / 3);
        for triple in rest.chunks(3) {
            let [id, payload, meta] = triple else {
                return Err(error::reply(ReplyError::UnknownCode {
                    script: "queue list reply",
                    code: i64::try_from(triple.len()).unwrap_or(-1),
                }));
            };
            let id: String = redis::from_redis_value_ref(id).map_err(error::parsing)?;
            let payload: Vec<u8> = redis::from_redis_value_ref(payload).map_err(error::parsing)?;
            let meta: String = redis::from_redis_value_ref(meta).map_err(error::parsing)?;
            out.push(decode(connection_id, id, payload, &meta)?);
        }
        Ok(out)
    }
}

/// The `meta` field of a message could not be read.
#[derive(Debug, thiserror::Error)]
#[error("queued message metadata {0:?} is not `<received_ms>|<deliveries>|<keys>`")]
struct BadMeta(String);

fn decode(
    connection_id: &ConnectionId,
    id: String,
    payload: Vec<u8>,
    meta: &str,
) -> Result<QueuedMessage> {
    let bad = || error::corrupt(format!("queued message {id}"), BadMeta(meta.to_owned()));
    let mut parts = meta.splitn(3, '|');
    let (Some(received), Some(deliveries), Some(keys)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let received_at_ms = received.parse().map_err(|_| bad())?;
    let deliveries = deliveries.parse().map_err(|_| bad())?;
    let recipient_keys = keys
        .split(',')
        .filter(|k| !k.is_empty())
        .map(VerKey::parse)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| error::corrupt(format!("recipient key of queued message {id}"), e))?;
    Ok(QueuedMessage {
        id: MessageId::from(id),
        connection_id: connection_id.clone(),
        recipient_keys,
        payload: Bytes::from(payload),
        received_at_ms,
        deliveries,
    })
}

fn key_arg(key: Option<&VerKey>) -> String {
    key.map(stored_key).unwrap_or_default()
}

#[async_trait]
impl MessageQueue for RedisMessageQueue {
    // Hot path: one script, one round trip per Forward.
    async fn add(
        &self,
        connection_id: &ConnectionId,
        recipient_keys: &[VerKey],
        payload: Bytes,
    ) -> Result<MessageId> {
        self.insert(connection_id, recipient_keys, payload, 0, None)
            .await
            .map(|(id, _)| id)
    }

    async fn add_leased(
        &self,
        connection_id: &ConnectionId,
        recipient_keys: &[VerKey],
        payload: Bytes,
        lease_ms: u64,
    ) -> Result<MessageId> {
        self.insert(
            connection_id,
            recipient_keys,
            payload,
            lease_ms.max(1),
            None,
        )
        .await
        .map(|(id, _)| id)
    }

    // Hot path: one script per Forward to a live session held by another instance (the add and
    // its notice in one round trip).
    async fn add_leased_announced(
        &self,
        connection_id: &ConnectionId,
        recipient_keys: &[VerKey],
        payload: Bytes,
        lease_ms: u64,
        announcement: Announcement<'_>,
    ) -> Result<(MessageId, Option<usize>)> {
        self.insert(
            connection_id,
            recipient_keys,
            payload,
            lease_ms.max(1),
            Some(announcement),
        )
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
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut call = self.invoke(&LEASE, connection_id);
        call.arg(limit)
            .arg(key_arg(recipient_key))
            .arg(lease_ms.max(1))
            .arg(cap_arg(max_bytes));
        let mut conn = self.connection().await?;
        let reply: Vec<Value> = call.invoke_async(&mut conn).await.map_err(error::redis)?;
        self.messages(connection_id, reply)
    }

    async fn lease_ids(
        &self,
        connection_id: &ConnectionId,
        ids: &[MessageId],
        lease_ms: u64,
    ) -> Result<Vec<QueuedMessage>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = self.invoke(&LEASE_IDS, connection_id);
        call.arg(lease_ms.max(1));
        for id in ids {
            call.arg(id.as_str());
        }
        let mut conn = self.connection().await?;
        let reply: Vec<Value> = call.invoke_async(&mut conn).await.map_err(error::redis)?;
        self.messages(connection_id, reply)
    }

    async fn release(&self, connection_id: &ConnectionId, ids: &[MessageId]) -> Result<usize> {
        self.end_leases(connection_id, ids, false).await
    }

    async fn unlease(&self, connection_id: &ConnectionId, ids: &[MessageId]) -> Result<usize> {
        self.end_leases(connection_id, ids, true).await
    }

    async fn status(
        &self,
        connection_id: &ConnectionId,
        recipient_key: Option<&VerKey>,
    ) -> Result<QueueStatus> {
        let mut call = self.invoke(&STATUS, connection_id);
        call.arg(key_arg(recipient_key));
        let mut conn = self.connection().await?;
        let (expired, count, bytes, in_flight, oldest, newest): (i64, i64, i64, i64, i64, i64) =
            call.invoke_async(&mut conn).await.map_err(error::redis)?;
        self.count_expired(expired);
        let time = |ms: i64| u64::try_from(ms).ok();
        Ok(QueueStatus {
            message_count: usize::try_from(count).unwrap_or(0),
            in_flight: usize::try_from(in_flight).unwrap_or(0),
            total_bytes: u64::try_from(bytes).unwrap_or(0),
            oldest_received_ms: time(oldest),
            newest_received_ms: time(newest),
        })
    }

    async fn take(
        &self,
        connection_id: &ConnectionId,
        limit: usize,
        recipient_key: Option<&VerKey>,
    ) -> Result<Vec<QueuedMessage>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut call = self.invoke(&TAKE, connection_id);
        call.arg(limit).arg(key_arg(recipient_key));
        let mut conn = self.connection().await?;
        let reply: Vec<Value> = call.invoke_async(&mut conn).await.map_err(error::redis)?;
        self.messages(connection_id, reply)
    }

    async fn remove(&self, connection_id: &ConnectionId, ids: &[MessageId]) -> Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        let op = RemoveOp {
            connection_id: connection_id.clone(),
            ids: ids.to_vec(),
        };
        match self.removes.as_ref().filter(|r| r.grouping()) {
            Some(removes) => removes.submit(op).await,
            None => self.remove_context.remove_now(&op).await,
        }
    }

    async fn get(
        &self,
        connection_id: &ConnectionId,
        id: &MessageId,
    ) -> Result<Option<QueuedMessage>> {
        let mut call = self.invoke(&GET, connection_id);
        call.arg(id.as_str());
        let mut conn = self.connection().await?;
        let (expired, payload, meta): (i64, Option<Vec<u8>>, Option<String>) =
            call.invoke_async(&mut conn).await.map_err(error::redis)?;
        self.count_expired(expired);
        match (payload, meta) {
            (Some(payload), Some(meta)) => {
                decode(connection_id, id.as_str().to_owned(), payload, &meta).map(Some)
            }
            _ => Ok(None),
        }
    }

    async fn sweep_expired(&self, max_queues: usize) -> Result<u64> {
        if self.limits.message_ttl_ms.is_none() {
            return Ok(0);
        }
        let cursor = *self.sweep_cursor.lock().unwrap_or_else(|p| p.into_inner());
        let mut conn = self.connection().await?;
        let (next, connections) = self
            .index_page(&mut conn, cursor, max_queues.max(1))
            .await?;
        *self.sweep_cursor.lock().unwrap_or_else(|p| p.into_inner()) = next;
        let mut removed = 0u64;
        for connection in connections {
            let id = ConnectionId::from(connection);
            let (expired, empty): (i64, i64) = self
                .invoke(&EXPIRE, &id)
                .invoke_async(&mut conn)
                .await
                .map_err(error::redis)?;
            self.count_expired(expired);
            removed += expired.unsigned_abs();
            if empty == 1 {
                // An add between the script and this SREM leaves a live queue unlisted: its
                // messages still expire when it is touched, and its keys' PEXPIRE is the net.
                redis::cmd("SREM")
                    .arg(&*self.index)
                    .arg(id.as_str())
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(error::redis)?;
            }
        }
        Ok(removed)
    }

    fn expired_count(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }

    async fn totals(&self) -> Result<QueueTotals> {
        // One pass over the queue index (its own SSCAN cursor, not the sweep's), one script per
        // listed queue: O(queues) round trips, for the background sampler only.
        let mut conn = self.connection().await?;
        let mut totals = QueueTotals::default();
        let mut cursor = 0u64;
        loop {
            let (next, connections) = self.index_page(&mut conn, cursor, 500).await?;
            for connection in connections {
                let id = ConnectionId::from(connection);
                let (expired, messages, bytes): (i64, i64, i64) = self
                    .invoke(&TOTALS, &id)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(error::redis)?;
                self.count_expired(expired);
                if messages > 0 {
                    totals.queues += 1;
                    totals.messages += messages.unsigned_abs();
                    totals.bytes += bytes.unsigned_abs();
                }
            }
            if next == 0 {
                return Ok(totals);
            }
            cursor = next;
        }
    }

    /// One script for the whole batch, after listing the queue in the index (its own command:
    /// on a cluster the index is in another slot). Offline only (`mediator copy`).
    async fn restore(
        &self,
        connection_id: &ConnectionId,
        messages: &[QueuedMessage],
    ) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut conn = self.connection().await?;
        redis::cmd("SADD")
            .arg(&*self.index)
            .arg(connection_id.as_str())
            .query_async::<()>(&mut conn)
            .await
            .map_err(error::redis)?;
        let mut call = self.invoke(&RESTORE, connection_id);
        call.arg("").arg(messages.len());
        for message in messages {
            let keys: Vec<String> = message.recipient_keys.iter().map(stored_key).collect();
            call.arg(message.id.as_str())
                .arg(&message.payload[..])
                .arg(keys.join(","))
                .arg(message.received_at_ms)
                .arg(message.deliveries);
        }
        let (code, value): (i64, Value) =
            call.invoke_async(&mut conn).await.map_err(error::redis)?;
        match code {
            0 => {
                self.count_expired(redis::from_redis_value(value).map_err(error::parsing)?);
                Ok(())
            }
            1 => {
                let id: String = redis::from_redis_value(value).map_err(error::parsing)?;
                Err(StoreError::Conflict {
                    what: Entity::Message(MessageId::from(id)),
                })
            }
            code => Err(error::reply(ReplyError::UnknownCode {
                script: "queue restore",
                code,
            })),
        }
    }

    /// The queue index (SSCAN pages), sorted: O(queues) per page, for offline use only.
    async fn list_queues(
        &self,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<Vec<ConnectionId>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.connection().await?;
        let mut ids = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, page) = self.index_page(&mut conn, cursor, 1000).await?;
            ids.extend(
                page.into_iter()
                    .filter(|id| after.is_none_or(|after| id.as_str() > after.as_str())),
            );
            if next == 0 {
                break;
            }
            cursor = next;
        }
        ids.sort_unstable();
        ids.dedup();
        ids.truncate(limit);
        Ok(ids.into_iter().map(ConnectionId::from).collect())
    }
}
