//! [`SeenMessages`] on Redis: one sorted set per connection (stored message id -> expiry, the
//! server's clock), under that connection's own hash tag `{<prefix>s:<connection id>}`, so the
//! sets spread over a cluster's masters. Every sighting is one script: expired ids are dropped,
//! the id is looked up and recorded, the set is trimmed to the cap (soonest expiring first) and
//! given the expiry of its latest entry, so a connection that falls silent leaves no key.

use std::sync::LazyLock;

use async_trait::async_trait;
use deadpool_redis::redis::Script;
use mediator_store::{
    seen::{stored_message_id, MAX_WINDOW_MS},
    ConnectionId, Result, SeenMessages,
};

use crate::{error, keys::SeenKeys, pool::RedisPool};

static FIRST_SIGHTING: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/seen_first_sighting.lua")));

/// Message ids seen lately per connection, in Redis. Clones share the pool.
#[derive(Clone)]
pub struct RedisSeenMessages {
    pool: RedisPool,
    prefix: String,
    max_per_connection: usize,
}

impl std::fmt::Debug for RedisSeenMessages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSeenMessages")
            .field("prefix", &self.prefix)
            .field("max_per_connection", &self.max_per_connection)
            .finish_non_exhaustive()
    }
}

impl RedisSeenMessages {
    /// A store whose keys are under `prefix`, remembering at most `max_per_connection` ids per
    /// connection. No round trip.
    pub fn new(pool: impl Into<RedisPool>, prefix: &str, max_per_connection: usize) -> Self {
        Self {
            pool: pool.into(),
            prefix: prefix.to_owned(),
            max_per_connection,
        }
    }
}

#[async_trait]
impl SeenMessages for RedisSeenMessages {
    async fn first_sighting(
        &self,
        connection_id: &ConnectionId,
        message_id: &str,
        window_ms: u64,
    ) -> Result<bool> {
        let key = SeenKeys::of(&self.prefix, connection_id);
        let mut conn = self.pool.get().await.map_err(error::pool)?;
        let new: i64 = FIRST_SIGHTING
            .key(key)
            .arg(stored_message_id(message_id))
            .arg(window_ms.min(MAX_WINDOW_MS))
            .arg(self.max_per_connection)
            .invoke_async(&mut conn)
            .await
            .map_err(error::redis)?;
        Ok(new == 1)
    }
}
