//! Where the stores get their connections: [`RedisPool`], one pool to a single Redis node or to a
//! Redis Cluster, and [`RedisConnection`], what either hands out.
//!
//! The stores are written once against [`ConnectionLike`]: every operation is one command or one
//! script whose keys share one hash tag, so the cluster client routes it to the one node owning
//! that slot and the single-node client just sends it. This module must not choose keys or add
//! commands of its own; it only delegates.

use deadpool_redis::{
    cluster,
    redis::{self, aio::ConnectionLike},
    Pool, PoolError,
};

/// A connection pool to one Redis node or to a Redis Cluster (cheap to clone: share one per
/// process). Made from either pool with `From`, so `RedisConnectionStore::new(pool, ...)` takes a
/// plain [`deadpool_redis::Pool`] as before.
#[derive(Clone)]
pub enum RedisPool {
    /// One node (or a proxy that looks like one).
    Single(Pool),
    /// A Redis Cluster: commands are routed by the hash slot of their keys, `MOVED`/`ASK` followed.
    Cluster(cluster::Pool),
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pools' own Debug prints their managers (URLs, maybe with passwords): only the status.
        let (kind, status) = match self {
            Self::Single(pool) => ("Single", pool.status()),
            Self::Cluster(pool) => ("Cluster", pool.status()),
        };
        f.debug_struct("RedisPool")
            .field("kind", &kind)
            .field("size", &status.size)
            .field("available", &status.available)
            .finish()
    }
}

impl From<Pool> for RedisPool {
    fn from(pool: Pool) -> Self {
        Self::Single(pool)
    }
}

impl From<cluster::Pool> for RedisPool {
    fn from(pool: cluster::Pool) -> Self {
        Self::Cluster(pool)
    }
}

impl RedisPool {
    /// A pooled connection (returned to the pool when dropped).
    pub async fn get(&self) -> Result<RedisConnection, PoolError> {
        Ok(match self {
            Self::Single(pool) => RedisConnection::Single(pool.get().await?),
            Self::Cluster(pool) => RedisConnection::Cluster(pool.get().await?),
        })
    }

    /// Whether this is a Redis Cluster pool.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

/// A connection of a [`RedisPool`]: use it with `Script::invoke_async`, `Cmd::query_async` and
/// `Pipeline::query_async` like either client's own connection.
pub enum RedisConnection {
    /// From a single-node pool.
    Single(deadpool_redis::Connection),
    /// From a cluster pool; for node-addressed commands use its
    /// [`route_command`](deadpool_redis::cluster::ClusterConnection::route_command).
    Cluster(cluster::Connection),
}

impl std::fmt::Debug for RedisConnection {
    // Neither client's connection is Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "RedisConnection::Single",
            Self::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}
