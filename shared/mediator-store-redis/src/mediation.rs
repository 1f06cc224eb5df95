//! [`MediationStore`] on Redis.
//!
//! Mediation records, the key -> connection routing index and every connection's keylist live
//! under the store's one hash tag (layout in the crate docs), so a keylist-update batch, which
//! touches the routing index and a keylist, is one atomic script. `connection_for_key`, read on
//! every Forward, is a single `HGET`. This module must not check-then-write from the client: the
//! outcome of every keylist item is decided inside the script that applies it.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use deadpool_redis::redis::{self, Script};
use didcomm_envelope::VerKey;
use mediator_store::{
    ConnectionId, KeylistAction, KeylistPage, KeylistResult, KeylistUpdate, KeylistUpdateOutcome,
    MediationRecord, MediationStore, Result, StoreError,
};

use crate::{
    error::{self, ReplyError},
    keys::{stored_key, MediationKeys},
    pool::{RedisConnection, RedisPool},
};

static UPDATE_KEYLIST: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/mediation_update_keylist.lua")));
static DELETE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/mediation_delete.lua")));

/// Mediation records and keylists in Redis. Clones share the pool (cheap to clone).
#[derive(Clone)]
pub struct RedisMediationStore {
    pool: RedisPool,
    keys: Arc<MediationKeys>,
}

impl std::fmt::Debug for RedisMediationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisMediationStore")
            .field("records", &self.keys.records)
            .finish_non_exhaustive()
    }
}

impl RedisMediationStore {
    /// A store whose keys are under `prefix` (any text; stores with different prefixes never see
    /// each other's records). No round trip: nothing is checked until the first operation.
    pub fn new(pool: impl Into<RedisPool>, prefix: &str) -> Self {
        Self {
            pool: pool.into(),
            keys: Arc::new(MediationKeys::new(prefix)),
        }
    }

    async fn connection(&self) -> Result<RedisConnection> {
        self.pool.get().await.map_err(error::pool)
    }
}

/// A stored keylist entry: the base58 text of a key.
fn decode_key(text: &[u8], connection_id: &ConnectionId) -> Result<VerKey> {
    VerKey::from_base58(text)
        .map_err(|err| error::corrupt(format!("keylist entry of connection {connection_id}"), err))
}

/// Position `n` as a Redis range index (past `i64::MAX` is past the end of any sorted set).
fn range_index(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl MediationStore for RedisMediationStore {
    async fn save(&self, record: &MediationRecord) -> Result<()> {
        let json = serde_json::to_vec(record).map_err(StoreError::backend)?;
        let mut conn = self.connection().await?;
        redis::cmd("HSET")
            .arg(&self.keys.records)
            .arg(record.connection_id.as_str())
            .arg(json)
            .exec_async(&mut conn)
            .await
            .map_err(error::redis)
    }

    async fn get(&self, connection_id: &ConnectionId) -> Result<Option<MediationRecord>> {
        let mut conn = self.connection().await?;
        let json: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(&self.keys.records)
            .arg(connection_id.as_str())
            .query_async(&mut conn)
            .await
            .map_err(error::redis)?;
        json.map(|json| {
            serde_json::from_slice(&json).map_err(|err| {
                error::corrupt(
                    format!("mediation record of connection {connection_id}"),
                    err,
                )
            })
        })
        .transpose()
    }

    async fn delete(&self, connection_id: &ConnectionId) -> Result<bool> {
        let mut conn = self.connection().await?;
        let had: i64 = DELETE
            .key(&self.keys.records)
            .key(&self.keys.key_owner)
            .key(self.keys.keylist(connection_id))
            .arg(connection_id.as_str())
            .invoke_async(&mut conn)
            .await
            .map_err(error::redis)?;
        Ok(had != 0)
    }

    async fn update_keylist(
        &self,
        connection_id: &ConnectionId,
        updates: &[KeylistUpdate],
    ) -> Result<Vec<KeylistUpdateOutcome>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = UPDATE_KEYLIST.prepare_invoke();
        call.key(&self.keys.key_owner)
            .key(self.keys.keylist(connection_id))
            .arg(connection_id.as_str());
        for update in updates {
            let action = match update.action {
                KeylistAction::Add => "add",
                KeylistAction::Remove => "remove",
            };
            call.arg(action).arg(stored_key(&update.key));
        }
        let mut conn = self.connection().await?;
        let codes: Vec<i64> = call.invoke_async(&mut conn).await.map_err(error::redis)?;
        drop(conn);
        if codes.len() != updates.len() {
            return Err(error::reply(ReplyError::OutcomeCount {
                items: updates.len(),
                outcomes: codes.len(),
            }));
        }
        updates
            .iter()
            .zip(codes)
            .map(|(update, code)| {
                let result = match code {
                    0 => KeylistResult::Success,
                    1 => KeylistResult::NoChange,
                    2 => KeylistResult::ClientError,
                    code => {
                        return Err(error::reply(ReplyError::UnknownCode {
                            script: "keylist update",
                            code,
                        }))
                    }
                };
                Ok(KeylistUpdateOutcome {
                    key: update.key,
                    action: update.action,
                    result,
                })
            })
            .collect()
    }

    async fn keylist(
        &self,
        connection_id: &ConnectionId,
        offset: usize,
        limit: usize,
    ) -> Result<KeylistPage> {
        let keylist = self.keys.keylist(connection_id);
        let mut conn = self.connection().await?;
        // ZCARD and ZRANGE in one MULTI/EXEC (one key, one round trip): the total and the page
        // come from the same version of the keylist.
        let (total, page): (usize, Vec<Vec<u8>>) = if limit == 0 {
            let total = redis::cmd("ZCARD")
                .arg(&keylist)
                .query_async(&mut conn)
                .await
                .map_err(error::redis)?;
            (total, Vec::new())
        } else {
            let last = offset.saturating_add(limit - 1);
            redis::pipe()
                .atomic()
                .cmd("ZCARD")
                .arg(&keylist)
                .cmd("ZRANGE")
                .arg(&keylist)
                .arg(range_index(offset))
                .arg(range_index(last))
                .query_async(&mut conn)
                .await
                .map_err(error::redis)?
        };
        drop(conn);
        let keys = page
            .iter()
            .map(|text| decode_key(text, connection_id))
            .collect::<Result<Vec<_>>>()?;
        Ok(KeylistPage { keys, total })
    }

    async fn connection_for_key(&self, key: &VerKey) -> Result<Option<ConnectionId>> {
        // Hot path (every Forward): one HGET, whatever the keylist sizes.
        let mut conn = self.connection().await?;
        let owner: Option<String> = redis::cmd("HGET")
            .arg(&self.keys.key_owner)
            .arg(stored_key(key))
            .query_async(&mut conn)
            .await
            .map_err(error::redis)?;
        Ok(owner.map(ConnectionId::from))
    }
}
