//! Where the stores get their connections: [`RedisPool`], one shared multiplexed connection to a
//! single Redis node or to a Redis Cluster, and [`RedisConnection`], a handle to it.
//!
//! The stores are written once against [`ConnectionLike`]: every operation is one command or one
//! script whose keys share one hash tag, so the cluster client routes it to the one node owning
//! that slot and the single-node client just sends it. This module must not choose keys or add
//! commands of its own; it only delegates.
//!
//! One connection, shared. Both clients' connections are multiplexed (requests from any number of
//! tasks are pipelined on one socket, each answered in order), so nothing is gained by handing a
//! request its own pooled connection, and much is lost: deadpool-redis checks every connection it
//! hands out again with `UNWATCH` + `PING`, one extra round trip per store call (6.4 per Forward
//! measured in `INFO commandstats`, issue 12). So the deadpool pool is kept only as the factory
//! (its manager carries the URL, TLS and timeouts): the first request takes one connection out of
//! it ([`deadpool_redis::Connection::take`]) and every request shares clones of that one. The
//! stores send no `WATCH` and no blocking command; a `MULTI`/`EXEC` pipeline is written to the
//! socket as one block, so sharing is safe. When a request finds the connection dropped (Redis
//! restarted, the socket broke), the connection is forgotten and the next request makes a new one;
//! only one task at a time makes it, and the requests that waited for a failed attempt fail with
//! it (one connection timeout, not one per waiting request).

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, RwLock,
};

use deadpool_redis::{
    cluster::{self, ClusterConnection},
    redis::{self, aio::ConnectionLike, aio::MultiplexedConnection, RedisError},
    Pool, PoolError,
};

/// The connection to one Redis node or to a Redis Cluster that every store of a process shares
/// (cheap to clone: clones share the connection). Made from either deadpool pool with `From`, so
/// `RedisConnectionStore::new(pool, ...)` takes a plain [`deadpool_redis::Pool`] as before; the
/// pool only makes connections (see the module docs).
#[derive(Clone)]
pub struct RedisPool {
    factory: Factory,
    shared: Arc<Shared>,
}

#[derive(Clone)]
enum Factory {
    /// One node (or a proxy that looks like one).
    Single(Pool),
    /// A Redis Cluster: commands are routed by the hash slot of their keys, `MOVED`/`ASK` followed.
    Cluster(cluster::Pool),
}

/// The current shared connection, and the lock that lets one task at a time replace it.
#[derive(Default)]
struct Shared {
    current: RwLock<Option<(u64, Multiplexed)>>,
    connecting: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    /// Connection attempts finished (successful or not).
    attempts: AtomicU64,
}

#[derive(Clone)]
enum Multiplexed {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pools' own Debug prints their managers (URLs, maybe with passwords): only the kind.
        f.debug_struct("RedisPool")
            .field("cluster", &self.is_cluster())
            .field("connected", &self.shared.connected().is_some())
            .finish()
    }
}

impl From<Pool> for RedisPool {
    fn from(pool: Pool) -> Self {
        Self {
            factory: Factory::Single(pool),
            shared: Arc::default(),
        }
    }
}

impl From<cluster::Pool> for RedisPool {
    fn from(pool: cluster::Pool) -> Self {
        Self {
            factory: Factory::Cluster(pool),
            shared: Arc::default(),
        }
    }
}

impl Shared {
    fn connected(&self) -> Option<(u64, Multiplexed)> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Forgets connection `generation` (unless it was replaced already).
    fn forget(&self, generation: u64) {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            *current = None;
        }
    }
}

impl RedisPool {
    /// A handle to the shared connection, connecting first when there is none.
    // Hot path: one call per store operation; a read lock and a clone of the connection's handle.
    pub async fn get(&self) -> Result<RedisConnection, PoolError> {
        if let Some((generation, conn)) = self.shared.connected() {
            return Ok(self.handle(generation, conn));
        }
        let attempts = self.shared.attempts.load(Ordering::Acquire);
        let _connecting = self.shared.connecting.lock().await;
        // Another task may have connected while this one waited.
        if let Some((generation, conn)) = self.shared.connected() {
            return Ok(self.handle(generation, conn));
        }
        // Another task tried while this one waited, and failed: Redis is unreachable now. Fail at
        // once rather than queue one connection attempt (and its timeout) per waiting request.
        if self.shared.attempts.load(Ordering::Acquire) != attempts {
            return Err(PoolError::Timeout(deadpool_redis::TimeoutType::Create));
        }
        let made = match &self.factory {
            Factory::Single(pool) => pool
                .get()
                .await
                .map(|c| Multiplexed::Single(deadpool_redis::Connection::take(c))),
            Factory::Cluster(pool) => pool
                .get()
                .await
                .map(|c| Multiplexed::Cluster(cluster::Connection::take(c))),
        };
        self.shared.attempts.fetch_add(1, Ordering::AcqRel);
        let conn = made?;
        let generation = self.shared.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *self
            .shared
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((generation, conn.clone()));
        Ok(self.handle(generation, conn))
    }

    fn handle(&self, generation: u64, conn: Multiplexed) -> RedisConnection {
        RedisConnection {
            conn,
            generation,
            shared: Arc::clone(&self.shared),
        }
    }

    /// How many times a connection was made or tried (for tests and diagnostics).
    pub fn connection_attempts(&self) -> u64 {
        self.shared.attempts.load(Ordering::Acquire)
    }

    /// Whether this is a Redis Cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self.factory, Factory::Cluster(_))
    }
}

/// A handle to the shared connection of a [`RedisPool`]: use it with `Script::invoke_async`,
/// `Cmd::query_async` and `Pipeline::query_async` like either client's own connection. A request
/// that finds the connection broken makes the pool forget it.
pub struct RedisConnection {
    conn: Multiplexed,
    generation: u64,
    shared: Arc<Shared>,
}

impl RedisConnection {
    /// The cluster connection, for node-addressed commands
    /// ([`route_command`](ClusterConnection::route_command)); `None` on one node.
    pub fn cluster(&mut self) -> Option<&mut ClusterConnection> {
        match &mut self.conn {
            Multiplexed::Cluster(conn) => Some(conn),
            Multiplexed::Single(_) => None,
        }
    }

    fn check<T>(&self, reply: Result<T, RedisError>) -> Result<T, RedisError> {
        if let Err(err) = &reply {
            if err.is_unrecoverable_error() || err.is_connection_dropped() {
                self.shared.forget(self.generation);
            }
        }
        reply
    }
}

impl std::fmt::Debug for RedisConnection {
    // Neither client's connection is Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.conn {
            Multiplexed::Single(_) => "RedisConnection::Single",
            Multiplexed::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(async move {
            let reply = match &mut self.conn {
                Multiplexed::Single(conn) => conn.req_packed_command(cmd).await,
                Multiplexed::Cluster(conn) => conn.req_packed_command(cmd).await,
            };
            self.check(reply)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(async move {
            let reply = match &mut self.conn {
                Multiplexed::Single(conn) => {
                    conn.req_packed_commands(pipeline, offset, count).await
                }
                Multiplexed::Cluster(conn) => {
                    conn.req_packed_commands(pipeline, offset, count).await
                }
            };
            self.check(reply)
        })
    }

    fn get_db(&self) -> i64 {
        match &self.conn {
            Multiplexed::Single(conn) => conn.get_db(),
            Multiplexed::Cluster(conn) => conn.get_db(),
        }
    }
}
