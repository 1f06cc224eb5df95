//! Opens the stores (and, on Redis, the pub/sub bus) the configuration names, and checks that a Redis is fit to hold messages
//! (reachable; no eviction; persistence on) before the instance serves anyone.
//!
//! This module decides nothing about protocol; it only builds [`Stores`].

use deadpool_redis::{redis, PoolConfig, Runtime};
use mediator_store::Stores;
use mediator_store_redis::{
    deadpool_redis, RedisConnectionStore, RedisLiveSessionRegistry, RedisMediationStore,
    RedisMessageQueue,
};
use std::sync::Arc;

use thiserror::Error;
use tracing::{info, warn};

use crate::{
    cluster::RedisBus,
    config::{redact_url, Config, StorageBackend},
};

/// The stores could not be opened.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The Redis URL or pool settings are not usable.
    #[error("Redis pool could not be made for {url}")]
    Pool {
        /// The URL, password redacted.
        url: String,
        /// Why.
        #[source]
        source: deadpool_redis::CreatePoolError,
    },
    /// Redis did not answer.
    #[error("Redis at {url} does not answer")]
    Unreachable {
        /// The URL, password redacted.
        url: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Redis may evict keys: queued messages would be lost silently.
    #[error(
        "Redis at {url} runs maxmemory-policy {policy}: it may evict queued messages. Set \
         `maxmemory-policy noeviction` (or, knowingly, storage.redis.require_noeviction = false)"
    )]
    Evicting {
        /// The URL, password redacted.
        url: String,
        /// The policy it runs.
        policy: String,
    },
}

/// What an instance runs on: its stores, and (with Redis) the pub/sub bus to its peers.
#[derive(Debug)]
pub struct Backend {
    /// The stores.
    pub stores: Stores,
    /// The bus to other instances; `None` on the single-instance memory backend.
    pub bus: Option<RedisBus>,
}

/// Opens the stores of `config.storage`.
pub async fn open(config: &Config) -> Result<Backend, StorageError> {
    match config.storage.backend {
        StorageBackend::Memory => {
            warn!("storage: in-memory (one instance; connections and queued messages die with it)");
            Ok(Backend {
                stores: Stores::memory_with_limits(config.queue.limits()),
                bus: None,
            })
        }
        StorageBackend::Redis => open_redis(config).await,
    }
}

async fn open_redis(config: &Config) -> Result<Backend, StorageError> {
    let settings = &config.storage.redis;
    let url = redact_url(&settings.url);
    let mut pool_config = deadpool_redis::Config::from_url(settings.url.clone());
    pool_config.pool = Some(PoolConfig::new(settings.pool_size.max(1)));
    let pool = pool_config
        .create_pool(Some(Runtime::Tokio1))
        .map_err(|source| StorageError::Pool {
            url: url.clone(),
            source,
        })?;
    let unreachable =
        |source: Box<dyn std::error::Error + Send + Sync>| StorageError::Unreachable {
            url: url.clone(),
            source,
        };
    let mut conn = pool.get().await.map_err(|e| unreachable(Box::new(e)))?;
    redis::cmd("PING")
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| unreachable(Box::new(e)))?;
    match config_get(&mut conn, "maxmemory-policy").await {
        Some(policy) if policy != "noeviction" => {
            if settings.require_noeviction {
                return Err(StorageError::Evicting { url, policy });
            }
            warn!(%url, %policy, "Redis may EVICT queued messages (maxmemory-policy is not noeviction); started anyway because storage.redis.require_noeviction = false");
        }
        Some(_) => {}
        None => {
            warn!(%url, "cannot read Redis maxmemory-policy (CONFIG GET refused): make sure it is noeviction")
        }
    }
    match config_get(&mut conn, "appendonly").await.as_deref() {
        Some("yes") => {}
        Some(_) => {
            warn!(%url, "Redis runs without the append-only file: a Redis restart loses every message acknowledged since its last snapshot (set appendonly yes)")
        }
        None => {
            warn!(%url, "cannot read Redis appendonly (CONFIG GET refused): make sure persistence is on")
        }
    }
    drop(conn);
    info!(%url, prefix = %settings.key_prefix, "storage: Redis");
    let prefix = &settings.key_prefix;
    let stores = Stores {
        connections: Arc::new(RedisConnectionStore::new(pool.clone(), prefix)),
        mediation: Arc::new(RedisMediationStore::new(pool.clone(), prefix)),
        queue: Arc::new(RedisMessageQueue::new(
            pool.clone(),
            prefix,
            config.queue.limits(),
        )),
        registry: Arc::new(RedisLiveSessionRegistry::new(pool.clone(), prefix)),
    };
    let bus = RedisBus::new(pool, &settings.url, prefix).map_err(|e| unreachable(Box::new(e)))?;
    Ok(Backend {
        stores,
        bus: Some(bus),
    })
}

/// `CONFIG GET name`, or `None` when the server refuses it.
async fn config_get(conn: &mut deadpool_redis::Connection, name: &str) -> Option<String> {
    let reply: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(conn)
        .await;
    reply.ok().and_then(|pair| pair.into_iter().nth(1))
}
