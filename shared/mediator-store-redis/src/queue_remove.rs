//! Removing acknowledged messages from queues (`lua/queue_remove.lua`), and their group commit on
//! one Redis node ([`RemoveBatcher`], see [`crate::group`]): a live client acknowledges every
//! delivery, so without grouping each Forward would cost a second script call. Each caller is
//! answered once the script that removed its messages answered. On a Redis Cluster every removal
//! is its own call ([`RemoveContext::remove_now`]).

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use deadpool_redis::redis::{RedisError, Script};
use mediator_store::{ConnectionId, MessageId, QueueLimits, Result};

use crate::{
    error,
    group::{pool_failure, Batcher, Group},
    keys::QueueKeys,
    pool::RedisPool,
};

static REMOVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/queue_remove.lua")));

/// Most acknowledgements in one call.
const MAX_BATCH: usize = 128;
/// A call stops taking acknowledgements once they list this many ids.
const MAX_BATCH_IDS: usize = 4096;

/// One acknowledgement: the ids to remove from one queue.
pub(crate) struct RemoveOp {
    pub(crate) connection_id: ConnectionId,
    pub(crate) ids: Vec<MessageId>,
}

/// What a removal call needs: the connection and the queues' names.
#[derive(Clone)]
pub(crate) struct RemoveContext {
    pub(crate) pool: RedisPool,
    pub(crate) prefix: Arc<str>,
    pub(crate) limits: QueueLimits,
}

impl RemoveContext {
    /// One call removing `op`'s ids; how many it removed.
    pub(crate) async fn remove_now(&self, op: &RemoveOp) -> Result<usize> {
        let counts = self.call_many(&[op]).await.map_err(error::redis)?;
        Ok(counts.first().copied().unwrap_or(0))
    }

    // Hot path: one call per group of acknowledgements.
    async fn call_many(&self, ops: &[&RemoveOp]) -> std::result::Result<Vec<usize>, RedisError> {
        let mut call = REMOVE.prepare_invoke();
        for op in ops {
            for key in QueueKeys::new(&self.prefix, &op.connection_id).all() {
                call.key(key);
            }
        }
        call.arg(self.limits.message_ttl_ms.unwrap_or(0))
            .arg(ops.len());
        for op in ops {
            call.arg(op.ids.len());
            for id in &op.ids {
                call.arg(id.as_str());
            }
        }
        let mut conn = self.pool.get().await.map_err(pool_failure)?;
        call.invoke_async(&mut conn).await
    }
}

#[async_trait]
impl Group for RemoveContext {
    type Op = RemoveOp;
    type Out = usize;
    const WHAT: &'static str = "removing messages";
    const MAX_OPS: usize = MAX_BATCH;
    const MAX_WEIGHT: usize = MAX_BATCH_IDS;

    fn weight(op: &RemoveOp) -> usize {
        op.ids.len()
    }

    async fn call(&self, ops: &[&RemoveOp]) -> std::result::Result<Vec<usize>, RedisError> {
        self.call_many(ops).await
    }

    async fn alone(&self, op: RemoveOp) -> Result<usize> {
        self.remove_now(&op).await
    }
}

/// Group commit of removals (see [`crate::group`]).
pub(crate) type RemoveBatcher = Batcher<RemoveContext>;
