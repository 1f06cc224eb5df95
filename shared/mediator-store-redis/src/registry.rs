//! [`LiveSessionRegistry`] on Redis: one hash of every live session (connection id -> holder and
//! lease end) and one set per instance of the connections it holds, all under the hash tag
//! `{<prefix>live}` (one slot: the registry is small and written only when sessions open, close
//! and refresh; routing reads an in-process cache fed by pub/sub, not this). Every operation is
//! one script; leases use the Redis server's clock. There is no operation that wipes records.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use deadpool_redis::redis::Script;
use mediator_store::{ConnectionId, LiveHolder, LiveSessionRegistry, Result};

use crate::{
    error,
    keys::RegistryKeys,
    pool::{RedisConnection, RedisPool},
};

macro_rules! registry_script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/registry_common.lua"),
                include_str!(concat!("lua/", $file))
            ))
        })
    };
}

static OPEN: LazyLock<Script> = registry_script!("registry_open.lua");
static CLOSE: LazyLock<Script> = registry_script!("registry_close.lua");
static REFRESH: LazyLock<Script> = registry_script!("registry_refresh.lua");
static HOLDER: LazyLock<Script> = registry_script!("registry_holder.lua");
static ALL: LazyLock<Script> = registry_script!("registry_all.lua");

/// The live-session registry in Redis. Clones share the pool.
#[derive(Clone)]
pub struct RedisLiveSessionRegistry {
    pool: RedisPool,
    keys: Arc<RegistryKeys>,
}

impl std::fmt::Debug for RedisLiveSessionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLiveSessionRegistry")
            .field("sessions", &self.keys.sessions)
            .finish_non_exhaustive()
    }
}

/// An instance id goes into records as one word.
#[derive(Debug, thiserror::Error)]
#[error("instance id {0:?} must be one word of printable characters")]
struct BadInstanceId(String);

fn check_instance(instance: &str) -> Result<()> {
    if instance.is_empty()
        || instance
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(mediator_store::StoreError::backend(BadInstanceId(
            instance.to_owned(),
        )));
    }
    Ok(())
}

fn holder_of(reply: Vec<String>) -> Result<Option<LiveHolder>> {
    match reply.as_slice() {
        [] => Ok(None),
        [instance, session] => Ok(Some(LiveHolder {
            instance: instance.clone(),
            session: session
                .parse()
                .map_err(|e| error::corrupt(format!("live session of {instance}"), e))?,
        })),
        _ => Err(error::reply(error::ReplyError::UnknownCode {
            script: "registry holder reply",
            code: i64::try_from(reply.len()).unwrap_or(-1),
        })),
    }
}

impl RedisLiveSessionRegistry {
    /// A registry whose keys are under `prefix`. No round trip.
    pub fn new(pool: impl Into<RedisPool>, prefix: &str) -> Self {
        Self {
            pool: pool.into(),
            keys: Arc::new(RegistryKeys::new(prefix)),
        }
    }

    async fn connection(&self) -> Result<RedisConnection> {
        self.pool.get().await.map_err(error::pool)
    }
}

#[async_trait]
impl LiveSessionRegistry for RedisLiveSessionRegistry {
    async fn open(
        &self,
        connection_id: &ConnectionId,
        holder: &LiveHolder,
        lease_ms: u64,
    ) -> Result<Option<LiveHolder>> {
        check_instance(&holder.instance)?;
        let mut conn = self.connection().await?;
        let reply: Vec<String> = OPEN
            .key(&self.keys.sessions)
            .key(self.keys.instance(&holder.instance))
            .arg(connection_id.as_str())
            .arg(&holder.instance)
            .arg(holder.session)
            .arg(lease_ms.max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(error::redis)?;
        holder_of(reply)
    }

    async fn close(&self, connection_id: &ConnectionId, holder: &LiveHolder) -> Result<bool> {
        check_instance(&holder.instance)?;
        let mut conn = self.connection().await?;
        let closed: i64 = CLOSE
            .key(&self.keys.sessions)
            .key(self.keys.instance(&holder.instance))
            .arg(connection_id.as_str())
            .arg(&holder.instance)
            .arg(holder.session)
            .invoke_async(&mut conn)
            .await
            .map_err(error::redis)?;
        Ok(closed == 1)
    }

    async fn refresh(&self, instance: &str, lease_ms: u64) -> Result<usize> {
        check_instance(instance)?;
        let mut conn = self.connection().await?;
        REFRESH
            .key(&self.keys.sessions)
            .key(self.keys.instance(instance))
            .arg(instance)
            .arg(lease_ms.max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(error::redis)
    }

    async fn holder(&self, connection_id: &ConnectionId) -> Result<Option<LiveHolder>> {
        let mut conn = self.connection().await?;
        let reply: Vec<String> = HOLDER
            .key(&self.keys.sessions)
            .arg(connection_id.as_str())
            .invoke_async(&mut conn)
            .await
            .map_err(error::redis)?;
        holder_of(reply)
    }

    async fn all(&self) -> Result<Vec<(ConnectionId, LiveHolder)>> {
        let mut conn = self.connection().await?;
        let flat: Vec<String> = ALL
            .key(&self.keys.sessions)
            .invoke_async(&mut conn)
            .await
            .map_err(error::redis)?;
        flat.chunks(3)
            .map(|t| match t {
                [connection, instance, session] => Ok((
                    ConnectionId::from(connection.as_str()),
                    LiveHolder {
                        instance: instance.clone(),
                        session: session.parse().map_err(|e| {
                            error::corrupt(format!("live session of {connection}"), e)
                        })?,
                    },
                )),
                _ => Err(error::reply(error::ReplyError::UnknownCode {
                    script: "registry all reply",
                    code: i64::try_from(t.len()).unwrap_or(-1),
                })),
            })
            .collect()
    }
}
