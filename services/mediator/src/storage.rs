//! Opens the stores (and, on Redis, the pub/sub bus) the configuration names, and checks that a
//! Redis is fit to hold messages (reachable; no eviction; persistence on) before the instance
//! serves anyone. On a Redis Cluster (`storage.redis.cluster`) the stores get a cluster pool
//! seeded from `storage.redis.cluster_nodes` (or `url`), and every master is checked.
//!
//! This module decides nothing about protocol; it only builds [`Stores`].

use deadpool_redis::{
    redis::{
        self,
        aio::ConnectionLike,
        cluster_async::ClusterConnection,
        cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo},
    },
    PoolConfig, Runtime,
};
use mediator_store::Stores;
use mediator_store_redis::{
    deadpool_redis, RedisConnectionStore, RedisDeviceStore, RedisLiveSessionRegistry,
    RedisMediationStore, RedisMessageQueue, RedisPool, RedisSeenMessages,
};
use std::{collections::HashMap, sync::Arc};

use thiserror::Error;
use tracing::{info, warn};

use crate::{
    cluster::RedisBus,
    config::{redact_url, Config, StorageBackend},
    datadir::DataDir,
};
use mediator_store_embedded::EmbeddedStores;

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
    /// The data directory could not be used.
    #[error(transparent)]
    DataDir(#[from] crate::datadir::DataDirError),
    /// The embedded store could not be opened (another process holds it, or its files).
    #[error("the embedded store in {} could not be opened", path.display())]
    Embedded {
        /// The data directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: mediator_store_embedded::OpenError,
    },
    /// The task opening the embedded store panicked or was cancelled.
    #[error("opening the embedded store stopped")]
    Opening(#[source] tokio::task::JoinError),
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
    /// The bus to other instances; `None` on the single-instance backends.
    pub bus: Option<RedisBus>,
    /// The master secret kept in the data directory (embedded backend, none configured).
    pub master_secret: Option<crate::config::Secret>,
}

/// Opens the stores of `config.storage`.
pub async fn open(config: &Config) -> Result<Backend, StorageError> {
    match config.storage.backend {
        StorageBackend::Embedded => open_embedded(config).await,
        StorageBackend::Memory => {
            warn!("storage: in-memory (one instance; connections and queued messages die with it)");
            Ok(Backend {
                stores: Stores {
                    seen: Arc::new(mediator_store::memory::MemorySeenMessages::new(
                        config.replay.max_ids_per_connection,
                    )),
                    ..Stores::memory_with_limits(config.queue.limits())
                },
                bus: None,
                master_secret: None,
            })
        }
        StorageBackend::Redis => open_redis(config).await,
    }
}

/// The embedded store in `config.data_dir` (locked for this process), and the master secret
/// kept there when none is configured.
async fn open_embedded(config: &Config) -> Result<Backend, StorageError> {
    let path = config.data_dir.clone();
    let limits = config.queue.limits();
    let seen = config.replay.max_ids_per_connection;
    let keep_secret = config.master_secret.is_empty();
    // Opening reads (and may recover) the database from disk: off the runtime's threads.
    tokio::task::spawn_blocking(move || {
        let dir = DataDir::create(&path)?;
        // A store from an earlier start was made with the keys of the secret kept then.
        let fresh = !dir
            .path()
            .join(mediator_store_embedded::DATABASE_FILE)
            .exists();
        // The secret before the store: a first start that dies between the two leaves a secret
        // and no store (fine), never a store without its secret.
        let master_secret = if keep_secret {
            let (secret, generated) = dir.master_secret(fresh)?;
            let file = dir.path().join(crate::datadir::SECRET_FILE);
            if generated {
                warn!(file = %file.display(), "no master_secret configured: generated one and kept it (back it up: every key of this mediator derives from it)");
            } else {
                info!(file = %file.display(), "master secret read from the data directory");
            }
            Some(secret)
        } else {
            None
        };
        let stores = EmbeddedStores::open(dir.path(), limits, seen).map_err(|source| {
            StorageError::Embedded {
                path: path.clone(),
                source,
            }
        })?;
        info!(path = %dir.path().display(), "storage: embedded (SQLite) in the data directory");
        Ok(Backend {
            stores: stores.into_stores(),
            bus: None,
            master_secret,
        })
    })
    .await
    .map_err(StorageError::Opening)?
}

async fn open_redis(config: &Config) -> Result<Backend, StorageError> {
    let settings = &config.storage.redis;
    let prefix = &settings.key_prefix;
    let pool_config = PoolConfig::new(settings.pool_size.max(1));
    let (pool, bus, url) = if settings.cluster {
        let seeds = settings.seeds();
        let url = seeds
            .iter()
            .map(|s| redact_url(s))
            .collect::<Vec<_>>()
            .join(", ");
        let mut cluster_config = deadpool_redis::cluster::Config::from_urls(seeds.clone());
        cluster_config.pool = Some(pool_config);
        let pool = cluster_config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|source| StorageError::Pool {
                url: url.clone(),
                source,
            })?;
        let pool = RedisPool::from(pool);
        check_cluster(&pool, settings.require_noeviction, &url).await?;
        let bus = RedisBus::cluster(pool.clone(), &seeds, prefix)
            .map_err(|e| unreachable(&url, Box::new(e)))?;
        (pool, bus, url)
    } else {
        let url = redact_url(&settings.url);
        let mut single_config = deadpool_redis::Config::from_url(settings.url.clone());
        single_config.pool = Some(pool_config);
        let pool = single_config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|source| StorageError::Pool {
                url: url.clone(),
                source,
            })?;
        let pool = RedisPool::from(pool);
        check_single(&pool, settings.require_noeviction, &url).await?;
        let bus = RedisBus::new(pool.clone(), &settings.url, prefix)
            .map_err(|e| unreachable(&url, Box::new(e)))?;
        (pool, bus, url)
    };
    info!(%url, cluster = settings.cluster, prefix = %prefix, "storage: Redis");
    let stores = Stores {
        connections: Arc::new(RedisConnectionStore::new(pool.clone(), prefix)),
        mediation: Arc::new(RedisMediationStore::new(pool.clone(), prefix)),
        queue: Arc::new(
            RedisMessageQueue::new(pool.clone(), prefix, config.queue.limits())
                .with_group_commit(settings.group_commit),
        ),
        registry: Arc::new(RedisLiveSessionRegistry::new(pool.clone(), prefix)),
        seen: Arc::new(RedisSeenMessages::new(
            pool.clone(),
            prefix,
            config.replay.max_ids_per_connection,
        )),
        devices: Arc::new(RedisDeviceStore::new(pool, prefix)),
    };
    Ok(Backend {
        stores,
        bus: Some(bus),
        master_secret: None,
    })
}

fn unreachable(url: &str, source: Box<dyn std::error::Error + Send + Sync>) -> StorageError {
    StorageError::Unreachable {
        url: url.to_owned(),
        source,
    }
}

/// PING, then the node's eviction policy and persistence.
async fn check_single(
    pool: &RedisPool,
    require_noeviction: bool,
    url: &str,
) -> Result<(), StorageError> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| unreachable(url, Box::new(e)))?;
    redis::cmd("PING")
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| unreachable(url, Box::new(e)))?;
    let cluster_info: Option<String> = redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut conn)
        .await
        .ok();
    if cluster_info.is_some_and(|info| info.contains("cluster_enabled:1")) {
        warn!(%url, "Redis runs in cluster mode but storage.redis.cluster = false: keys of other nodes' slots will fail with MOVED (set storage.redis.cluster = true)");
    }
    let policy = config_get(&mut conn, "maxmemory-policy").await;
    let appendonly = config_get(&mut conn, "appendonly").await;
    judge(url, policy, appendonly, require_noeviction)
}

/// PING on every master (the cluster client sends it to each), then the eviction policy and
/// persistence of every master: each holds some of the queues, so each must be fit. Replicas
/// are not asked: they take no writes, and a replica promoted later is not checked (run them
/// with the same settings).
async fn check_cluster(
    pool: &RedisPool,
    require_noeviction: bool,
    url: &str,
) -> Result<(), StorageError> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| unreachable(url, Box::new(e)))?;
    redis::cmd("PING")
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| unreachable(url, Box::new(e)))?;
    let info: Option<String> = redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut conn)
        .await
        .ok();
    if !info.is_some_and(|info| info.contains("cluster_state:ok")) {
        warn!(%url, "Redis Cluster does not say cluster_state:ok (yet): operations on unserved slots fail until it does");
    }
    let Some(cluster) = conn.cluster() else {
        return Ok(());
    };
    let policies = config_get_masters(cluster, "maxmemory-policy").await;
    let mut appendonly = config_get_masters(cluster, "appendonly").await;
    for (node, policy) in policies {
        let aof = appendonly.remove(&node).flatten();
        judge(&node, policy, aof, require_noeviction)?;
    }
    Ok(())
}

/// Refuses an evicting node (unless allowed) and warns about one without the append-only file
/// or whose settings cannot be read.
fn judge(
    url: &str,
    policy: Option<String>,
    appendonly: Option<String>,
    require_noeviction: bool,
) -> Result<(), StorageError> {
    match policy {
        Some(policy) if policy != "noeviction" => {
            if require_noeviction {
                return Err(StorageError::Evicting {
                    url: url.to_owned(),
                    policy,
                });
            }
            warn!(%url, %policy, "Redis may EVICT queued messages (maxmemory-policy is not noeviction); started anyway because storage.redis.require_noeviction = false");
        }
        Some(_) => {}
        None => {
            warn!(%url, "cannot read Redis maxmemory-policy (CONFIG GET refused): make sure it is noeviction")
        }
    }
    match appendonly.as_deref() {
        Some("yes") => {}
        Some(_) => {
            warn!(%url, "Redis runs without the append-only file: a Redis restart loses every message acknowledged since its last snapshot (set appendonly yes)")
        }
        None => {
            warn!(%url, "cannot read Redis appendonly (CONFIG GET refused): make sure persistence is on")
        }
    }
    Ok(())
}

/// `CONFIG GET name`, or `None` when the server refuses it.
async fn config_get(conn: &mut impl ConnectionLike, name: &str) -> Option<String> {
    let reply: redis::RedisResult<redis::Value> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(conn)
        .await;
    reply.ok().and_then(|v| config_value(v, name))
}

/// `CONFIG GET name` on every master: node address -> its value (`None` where refused). The
/// cluster client's own view of the topology names the masters.
async fn config_get_masters(
    conn: &mut ClusterConnection,
    name: &str,
) -> HashMap<String, Option<String>> {
    let mut cmd = redis::cmd("CONFIG");
    cmd.arg("GET").arg(name);
    // No response policy: the client answers with a map of node address -> that node's reply.
    let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
    let pairs = match conn.route_command(cmd, routing).await {
        Ok(redis::Value::Map(pairs)) => pairs,
        // The masters could not be asked one by one: one entry says so.
        _ => return HashMap::from([("every master".to_owned(), None)]),
    };
    pairs
        .into_iter()
        .map(|(node, reply)| {
            let node = redis::from_redis_value::<String>(node).unwrap_or_else(|_| "?".to_owned());
            (node, config_value(reply, name))
        })
        .collect()
}

/// The value in a `CONFIG GET` reply: `[name, value]` over RESP2, `{name: value}` over RESP3;
/// `None` for an error reply or anything else.
fn config_value(reply: redis::Value, name: &str) -> Option<String> {
    match reply {
        redis::Value::Map(pairs) => pairs.into_iter().find_map(|(k, v)| {
            let k: String = redis::from_redis_value(k).ok()?;
            (k == name)
                .then(|| redis::from_redis_value(v).ok())
                .flatten()
        }),
        other => redis::from_redis_value::<Vec<String>>(other)
            .ok()
            .and_then(|pair| pair.into_iter().nth(1)),
    }
}
