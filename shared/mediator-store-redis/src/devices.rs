//! [`DeviceStore`] on Redis: one string per connection holding its registration (the
//! `DeviceInfo` JSON) and one claim key beside it, both under that connection's own hash tag
//! `{<prefix>d:<connection id>}`, so registrations spread over a cluster's masters and every
//! request-path operation is one command or one script on one slot:
//!
//! - `set` is a plain `SET` (a newer registration replaces the older whole), `get` a `GET`;
//! - `clear_if_token` compares the stored token and deletes in one script, so a registration
//!   made since the provider's answer is never removed;
//! - `claim_notification` is `SET <claim> 1 NX PX <interval>`: of any number of instances, the
//!   one whose `SET` creates the key wins, and the key expires with the interval (the Redis
//!   server's clock), leaving nothing behind.
//!
//! `list` (offline: `mediator copy`) reads an index, a sorted set of the connection ids that may
//! have a registration (`{<prefix>x}:devices`, score 0, read in byte order by lex range). It is
//! on another slot than the registrations, so it cannot change in their scripts: `set` adds the
//! id after writing the registration, and `clear` removes it after deleting, then checks that no
//! `set` wrote meanwhile and lists it again if one did. Whatever the interleaving, every
//! registration that exists when the writes are done is listed (an index entry may outlive its
//! registration, after a failure between the two steps or such a race: `list` skips it).
//! This module must not decide anything about the tokens it keeps.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use deadpool_redis::redis::{self, Script, Value};
use mediator_store::{
    devices::MAX_CLAIM_INTERVAL_MS, ConnectionId, DeviceInfo, DeviceStore, Result, StoreError,
};

use crate::{
    error::{self, ReplyError},
    keys::DeviceKeys,
    pool::{RedisConnection, RedisPool},
};

static CLEAR_IF_TOKEN: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/device_clear_if_token.lua")));

/// Push registrations and notification claims in Redis. Clones share the pool.
#[derive(Clone)]
pub struct RedisDeviceStore {
    pool: RedisPool,
    prefix: Arc<str>,
    index: Arc<str>,
}

impl std::fmt::Debug for RedisDeviceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDeviceStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn what(connection_id: &str) -> String {
    format!("device info of connection {connection_id}")
}

/// A stored registration; one that does not decode is [`StoreError::Corrupt`].
fn decode(connection_id: &str, json: &[u8]) -> Result<DeviceInfo> {
    serde_json::from_slice(json).map_err(|err| error::corrupt(what(connection_id), err))
}

/// The stored value is not a `DeviceInfo` the script can read the token of.
#[derive(Debug, thiserror::Error)]
#[error("stored device info has no readable token")]
struct UnreadableToken;

impl RedisDeviceStore {
    /// A store whose keys are under `prefix` (any text; stores with different prefixes never see
    /// each other's registrations). No round trip.
    pub fn new(pool: impl Into<RedisPool>, prefix: &str) -> Self {
        Self {
            pool: pool.into(),
            prefix: prefix.into(),
            index: DeviceKeys::index(prefix).into(),
        }
    }

    fn keys(&self, connection_id: &ConnectionId) -> DeviceKeys {
        DeviceKeys::new(&self.prefix, connection_id)
    }

    async fn connection(&self) -> Result<RedisConnection> {
        self.pool.get().await.map_err(error::pool)
    }

    /// After `connection_id`'s registration was deleted: drops its index entry, then lists it
    /// again if a `set` wrote a registration meanwhile (its own index entry may have gone with
    /// the removal). Rare (a client or provider dropping a token): three round trips.
    async fn unlist(&self, conn: &mut RedisConnection, connection_id: &ConnectionId) -> Result<()> {
        redis::cmd("ZREM")
            .arg(&*self.index)
            .arg(connection_id.as_str())
            .query_async::<()>(conn)
            .await
            .map_err(error::redis)?;
        let exists: bool = redis::cmd("EXISTS")
            .arg(self.keys(connection_id).device)
            .query_async(conn)
            .await
            .map_err(error::redis)?;
        if exists {
            self.list_in_index(conn, connection_id).await?;
        }
        Ok(())
    }

    async fn list_in_index(
        &self,
        conn: &mut RedisConnection,
        connection_id: &ConnectionId,
    ) -> Result<()> {
        redis::cmd("ZADD")
            .arg(&*self.index)
            .arg(0)
            .arg(connection_id.as_str())
            .query_async::<()>(conn)
            .await
            .map_err(error::redis)
    }
}

#[async_trait]
impl DeviceStore for RedisDeviceStore {
    /// The registration, then its index entry (in that order: see the module docs).
    async fn set(&self, connection_id: &ConnectionId, info: &DeviceInfo) -> Result<()> {
        let json = serde_json::to_vec(info).map_err(StoreError::backend)?;
        let mut conn = self.connection().await?;
        redis::cmd("SET")
            .arg(self.keys(connection_id).device)
            .arg(json)
            .query_async::<()>(&mut conn)
            .await
            .map_err(error::redis)?;
        self.list_in_index(&mut conn, connection_id).await
    }

    async fn get(&self, connection_id: &ConnectionId) -> Result<Option<DeviceInfo>> {
        let mut conn = self.connection().await?;
        let json: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.keys(connection_id).device)
            .query_async(&mut conn)
            .await
            .map_err(error::redis)?;
        json.map(|json| decode(connection_id.as_str(), &json))
            .transpose()
    }

    async fn clear(&self, connection_id: &ConnectionId) -> Result<bool> {
        let mut conn = self.connection().await?;
        let deleted: i64 = redis::cmd("DEL")
            .arg(self.keys(connection_id).device)
            .query_async(&mut conn)
            .await
            .map_err(error::redis)?;
        if deleted == 0 {
            return Ok(false);
        }
        self.unlist(&mut conn, connection_id).await?;
        Ok(true)
    }

    async fn clear_if_token(&self, connection_id: &ConnectionId, token: &str) -> Result<bool> {
        let mut conn = self.connection().await?;
        let code: i64 = CLEAR_IF_TOKEN
            .key(self.keys(connection_id).device)
            .arg(token)
            .invoke_async(&mut conn)
            .await
            .map_err(error::redis)?;
        match code {
            0 => Ok(false),
            1 => {
                self.unlist(&mut conn, connection_id).await?;
                Ok(true)
            }
            2 => Err(error::corrupt(
                what(connection_id.as_str()),
                UnreadableToken,
            )),
            code => Err(error::reply(ReplyError::UnknownCode {
                script: "device clear_if_token",
                code,
            })),
        }
    }

    /// Possibly hot (a claim per message for an offline connection with a device): one `SET NX
    /// PX`, no script.
    async fn claim_notification(
        &self,
        connection_id: &ConnectionId,
        interval_ms: u64,
    ) -> Result<bool> {
        if interval_ms == 0 {
            // `PX 0` is an error in Redis; a claim of no time holds nothing anyway.
            return Ok(true);
        }
        let mut conn = self.connection().await?;
        let reply: Value = redis::cmd("SET")
            .arg(self.keys(connection_id).claim)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(interval_ms.min(MAX_CLAIM_INTERVAL_MS))
            .query_async(&mut conn)
            .await
            .map_err(error::redis)?;
        Ok(!matches!(reply, Value::Nil))
    }

    /// Lex-range pages of the index, then one `GET` per id (skipping index entries whose
    /// registration is gone, so that only the last page is short): offline only.
    async fn list(
        &self,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<Vec<(ConnectionId, DeviceInfo)>> {
        let mut listed = Vec::new();
        if limit == 0 {
            return Ok(listed);
        }
        let mut conn = self.connection().await?;
        let mut from = after.map_or_else(|| "-".to_owned(), |after| format!("({after}"));
        loop {
            let wanted = limit - listed.len();
            let ids: Vec<String> = redis::cmd("ZRANGEBYLEX")
                .arg(&*self.index)
                .arg(&from)
                .arg("+")
                .arg("LIMIT")
                .arg(0)
                .arg(wanted)
                .query_async(&mut conn)
                .await
                .map_err(error::redis)?;
            let exhausted = ids.len() < wanted;
            for id in ids {
                let id = ConnectionId::from(id);
                let json: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(self.keys(&id).device)
                    .query_async(&mut conn)
                    .await
                    .map_err(error::redis)?;
                from = format!("({id}");
                if let Some(json) = json {
                    let info = decode(id.as_str(), &json)?;
                    listed.push((id, info));
                }
            }
            if exhausted || listed.len() >= limit {
                return Ok(listed);
            }
        }
    }
}
