//! [`ConnectionStore`] on Redis.
//!
//! Records, all three indexes and the expiry index live in five keys under the store's one hash
//! tag (see the crate docs for the layout): a record and its index entries change together in one
//! script, so a reader never sees a record without its entries or an entry without its record.
//! Each operation is one round trip. Expiry is judged inside the scripts by the Redis server's
//! clock (`TIME`): every lookup checks the record's score in the expiry index (one `ZSCORE`), and
//! the writes that need an expired record's identities remove it in the same script. This module must not read a record and then write on the
//! strength of that read from the client: every check-then-write happens inside one script.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use deadpool_redis::redis::{self, Script};
use didcomm_envelope::VerKey;
use mediator_store::{ConnectionId, ConnectionRecord, ConnectionStore, Entity, Result, StoreError};

use crate::{
    error::{self, ReplyError, UnreadableIndexEntries},
    keys::{stored_key, ConnectionKeys},
    pool::{RedisConnection, RedisPool},
};

/// Every script starts with the clock and expiry check (`connection_clock.lua`).
macro_rules! reading_script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/connection_clock.lua"),
                include_str!(concat!("lua/", $file))
            ))
        })
    };
}

/// The scripts that write also share their helpers (`connection_common.lua`).
macro_rules! writing_script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/connection_clock.lua"),
                include_str!("lua/connection_common.lua"),
                include_str!(concat!("lua/", $file))
            ))
        })
    };
}

static INSERT: LazyLock<Script> = writing_script!("connection_insert.lua");
static UPDATE: LazyLock<Script> = writing_script!("connection_update.lua");
static DELETE: LazyLock<Script> = writing_script!("connection_delete.lua");
static SWEEP: LazyLock<Script> = writing_script!("connection_sweep.lua");
static GET: LazyLock<Script> = reading_script!("connection_get.lua");
static FIND_UNIQUE: LazyLock<Script> = reading_script!("connection_find_unique.lua");
static FIND_THEIR: LazyLock<Script> = reading_script!("connection_find_their.lua");

/// Connection records in Redis. Clones share the pool (cheap to clone).
#[derive(Clone)]
pub struct RedisConnectionStore {
    pool: RedisPool,
    keys: Arc<ConnectionKeys>,
}

impl std::fmt::Debug for RedisConnectionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnectionStore")
            .field("records", &self.keys.records)
            .finish_non_exhaustive()
    }
}

impl RedisConnectionStore {
    /// A store whose keys are under `prefix` (any text; stores with different prefixes never see
    /// each other's records). No round trip: nothing is checked until the first operation.
    pub fn new(pool: impl Into<RedisPool>, prefix: &str) -> Self {
        Self {
            pool: pool.into(),
            keys: Arc::new(ConnectionKeys::new(prefix)),
        }
    }

    async fn connection(&self) -> Result<RedisConnection> {
        self.pool.get().await.map_err(error::pool)
    }

    /// Runs a writing script on `record` (the ARGV layout `connection_common.lua` reads) and
    /// returns its status code.
    async fn write(&self, script: &Script, record: &ConnectionRecord) -> Result<i64> {
        let json = serde_json::to_vec(record).map_err(StoreError::backend)?;
        let mut call = script.prepare_invoke();
        self.index_keys(&mut call);
        call.arg(record.id.as_str())
            .arg(json)
            .arg(stored_key(&record.my_verkey))
            .arg(&record.thread_id)
            .arg(
                record
                    .expires_at_ms
                    .map(|at| at.to_string())
                    .unwrap_or_default(),
            );
        for key in &record.their_keys {
            call.arg(stored_key(key));
        }
        let mut conn = self.connection().await?;
        call.invoke_async(&mut conn).await.map_err(error::redis)
    }

    /// KEYS of the writing scripts, in the order `connection_common.lua` names them.
    fn index_keys(&self, call: &mut redis::ScriptInvocation<'_>) {
        call.key(&self.keys.records)
            .key(&self.keys.by_my_verkey)
            .key(&self.keys.by_thread)
            .key(&self.keys.by_their_verkey)
            .key(&self.keys.expiring);
    }

    async fn find_unique(
        &self,
        index: &str,
        value: &str,
        what: impl FnOnce() -> String,
    ) -> Result<Option<ConnectionRecord>> {
        let mut conn = self.connection().await?;
        let json: Option<Vec<u8>> = FIND_UNIQUE
            .key(&self.keys.records)
            .key(index)
            .key(&self.keys.expiring)
            .arg(value)
            .invoke_async(&mut conn)
            .await
            .map_err(error::redis)?;
        json.map(|json| decode(&json, what)).transpose()
    }
}

/// A stored record; one that does not decode is [`StoreError::Corrupt`] (`what` names it for the
/// log), never a panic or a miss.
fn decode(json: &[u8], what: impl FnOnce() -> String) -> Result<ConnectionRecord> {
    serde_json::from_slice(json).map_err(|err| error::corrupt(what(), err))
}

fn corrupt_index(id: &ConnectionId) -> StoreError {
    error::corrupt(format!("connection record {id}"), UnreadableIndexEntries)
}

fn unknown(script: &'static str, code: i64) -> StoreError {
    error::reply(ReplyError::UnknownCode { script, code })
}

#[async_trait]
impl ConnectionStore for RedisConnectionStore {
    async fn insert(&self, record: &ConnectionRecord) -> Result<()> {
        let what = match self.write(&INSERT, record).await? {
            0 => return Ok(()),
            1 => Entity::Connection(record.id.clone()),
            2 => Entity::ConnectionWithMyVerkey(record.my_verkey),
            3 => Entity::ConnectionWithThread(record.thread_id.clone()),
            5 => return Err(corrupt_index(&record.id)),
            code => return Err(unknown("connection insert", code)),
        };
        Err(StoreError::Conflict { what })
    }

    async fn update(&self, record: &ConnectionRecord) -> Result<()> {
        match self.write(&UPDATE, record).await? {
            0 => Ok(()),
            2 => Err(StoreError::Conflict {
                what: Entity::ConnectionWithMyVerkey(record.my_verkey),
            }),
            3 => Err(StoreError::Conflict {
                what: Entity::ConnectionWithThread(record.thread_id.clone()),
            }),
            4 => Err(StoreError::NotFound {
                what: Entity::Connection(record.id.clone()),
            }),
            5 => Err(corrupt_index(&record.id)),
            code => Err(unknown("connection update", code)),
        }
    }

    async fn get(&self, id: &ConnectionId) -> Result<Option<ConnectionRecord>> {
        let mut conn = self.connection().await?;
        let json: Option<Vec<u8>> = GET
            .key(&self.keys.records)
            .key(&self.keys.expiring)
            .arg(id.as_str())
            .invoke_async(&mut conn)
            .await
            .map_err(error::redis)?;
        json.map(|json| decode(&json, || format!("connection record {id}")))
            .transpose()
    }

    async fn find_by_my_verkey(&self, key: &VerKey) -> Result<Option<ConnectionRecord>> {
        // Hot path (every inbound envelope): one EVALSHA, two O(1) hash reads inside it.
        self.find_unique(&self.keys.by_my_verkey, &stored_key(key), || {
            format!("connection record with my_verkey {key}")
        })
        .await
    }

    async fn find_by_their_verkey(&self, key: &VerKey) -> Result<Vec<ConnectionRecord>> {
        let mut conn = self.connection().await?;
        let found: Vec<Vec<u8>> = FIND_THEIR
            .key(&self.keys.records)
            .key(&self.keys.by_their_verkey)
            .key(&self.keys.expiring)
            .arg(stored_key(key))
            .invoke_async(&mut conn)
            .await
            .map_err(error::redis)?;
        drop(conn);
        let mut records = found
            .iter()
            .map(|json| {
                decode(json, || {
                    format!("connection record listing their key {key}")
                })
            })
            .collect::<Result<Vec<_>>>()?;
        records.sort_by(|a, b| {
            b.updated_at_ms
                .cmp(&a.updated_at_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(records)
    }

    async fn find_by_thread(&self, thread_id: &str) -> Result<Option<ConnectionRecord>> {
        self.find_unique(&self.keys.by_thread, thread_id, || {
            format!("connection record with thread_id {thread_id:?}")
        })
        .await
    }

    async fn delete(&self, id: &ConnectionId) -> Result<bool> {
        let mut call = DELETE.prepare_invoke();
        self.index_keys(&mut call);
        call.arg(id.as_str());
        let mut conn = self.connection().await?;
        match call.invoke_async(&mut conn).await.map_err(error::redis)? {
            0 => Ok(false),
            1 => Ok(true),
            5 => Err(corrupt_index(id)),
            code => Err(unknown("connection delete", code)),
        }
    }

    async fn sweep_expired(&self, max: usize) -> Result<u64> {
        if max == 0 {
            return Ok(0);
        }
        let mut call = SWEEP.prepare_invoke();
        self.index_keys(&mut call);
        call.arg(max);
        let mut conn = self.connection().await?;
        call.invoke_async(&mut conn).await.map_err(error::redis)
    }

    /// Reads the whole record set (HKEYS, then the expired ids by the server's clock) and
    /// sorts it: O(records) per page, for offline use only (`mediator copy`). Not one atomic step.
    async fn list_ids(
        &self,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<Vec<ConnectionId>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.connection().await?;
        let mut ids: Vec<String> = redis::cmd("HKEYS")
            .arg(&self.keys.records)
            .query_async(&mut conn)
            .await
            .map_err(error::redis)?;
        ids.retain(|id| after.is_none_or(|after| id.as_str() > after.as_str()));
        let (secs, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut conn)
            .await
            .map_err(error::redis)?;
        let now = secs * 1000 + micros / 1000;
        let expired: std::collections::HashSet<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&self.keys.expiring)
            .arg("-inf")
            .arg(now)
            .query_async(&mut conn)
            .await
            .map_err(error::redis)?;
        ids.retain(|id| !expired.contains(id));
        ids.sort_unstable();
        ids.dedup();
        ids.truncate(limit);
        Ok(ids.into_iter().map(ConnectionId::from).collect())
    }
}
