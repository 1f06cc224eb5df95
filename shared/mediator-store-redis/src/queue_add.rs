//! Adding messages to queues (`lua/queue_add.lua`), and their group commit on one Redis node
//! ([`AddBatcher`], see [`crate::group`]): each message is acknowledged to its sender only after
//! the script that stored it answered. On a Redis Cluster every add is its own call
//! ([`AddContext::add_now`]).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_redis::redis::{ErrorKind, RedisError, Script, Value};
use mediator_store::{ConnectionId, MessageId, QueueLimits, Result};

use crate::{
    error,
    group::{pool_failure, Batcher, Group},
    keys::QueueKeys,
    pool::RedisPool,
};

static ADD: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/queue_add.lua")));

/// Most messages in one add call.
const MAX_BATCH: usize = 128;
/// A call stops taking messages once their payloads reach this many bytes (a single message may
/// be larger: it goes alone).
const MAX_BATCH_BYTES: usize = 1 << 20;

/// One message to add.
#[derive(Clone)]
pub(crate) struct AddOp {
    pub(crate) connection_id: ConnectionId,
    pub(crate) id: MessageId,
    pub(crate) payload: Bytes,
    /// Its recipient keys, comma-separated, as stored.
    pub(crate) keys: String,
    /// In flight for this long at once (0: waiting).
    pub(crate) lease_ms: u64,
    /// The caller expired the queue's old messages just before (the script's code 3 was answered).
    pub(crate) expired_first: bool,
    /// The script lists the queue in the index (one node only: the index is on another slot).
    pub(crate) list: bool,
    /// Published once the message is added: channel and notice (one node only).
    pub(crate) notice: Option<(String, Vec<u8>)>,
}

/// What the script answered for one message: code, value, and how many heard its notice (-1:
/// none published).
pub(crate) type Reply = (i64, i64, i64);

/// The reply of the first message (a call of one message).
pub(crate) fn first(replies: Vec<Reply>) -> Reply {
    replies.into_iter().next().unwrap_or((-1, 0, -1))
}

/// What became of one grouped add.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Added {
    /// The script's code and value for the message.
    pub(crate) code: i64,
    pub(crate) value: i64,
    /// Whether the script listed the queue in the index (it did not when its group was refused
    /// and the message was added alone).
    pub(crate) listed: bool,
    /// How many subscribers heard the message's notice (`None`: none was published).
    pub(crate) heard: Option<usize>,
}

impl Added {
    /// What a call of one message answered; `listed` as it asked.
    pub(crate) fn from_reply((code, value, heard): Reply, listed: bool) -> Self {
        Self {
            code,
            value,
            listed,
            heard: usize::try_from(heard).ok(),
        }
    }
}

/// What an add call needs: the connection and the queues' names and limits.
#[derive(Clone)]
pub(crate) struct AddContext {
    pub(crate) pool: RedisPool,
    pub(crate) prefix: Arc<str>,
    pub(crate) index: Arc<str>,
    pub(crate) limits: QueueLimits,
}

impl AddContext {
    /// One call of `lua/queue_add.lua` adding `ops` in order; `{code, value}` per message.
    // Hot path: one call per group of Forwards.
    pub(crate) async fn add_now(&self, ops: &[AddOp]) -> Result<Vec<Reply>> {
        self.call(ops.iter()).await.map_err(error::redis)
    }

    async fn call<'o>(
        &self,
        ops: impl ExactSizeIterator<Item = &'o AddOp> + Clone,
    ) -> std::result::Result<Vec<Reply>, RedisError> {
        let count = ops.len();
        let mut call = ADD.prepare_invoke();
        let mut list = false;
        for op in ops.clone() {
            for key in QueueKeys::new(&self.prefix, &op.connection_id).all() {
                call.key(key);
            }
            list |= op.list;
        }
        if list {
            call.key(&*self.index);
        }
        call.arg(self.limits.message_ttl_ms.unwrap_or(0))
            .arg(cap_arg(self.limits.max_messages))
            .arg(cap_arg(self.limits.max_bytes))
            .arg(count);
        for op in ops {
            call.arg(op.id.as_str())
                .arg(&op.payload[..])
                .arg(&op.keys)
                .arg(op.lease_ms)
                .arg(u8::from(op.expired_first))
                .arg(if op.list {
                    op.connection_id.as_str()
                } else {
                    ""
                });
            match &op.notice {
                Some((channel, notice)) => call.arg(channel).arg(&notice[..]),
                None => call.arg("").arg(""),
            };
        }
        let mut conn = self.pool.get().await.map_err(pool_failure)?;
        let reply: Vec<Value> = call.invoke_async(&mut conn).await?;
        let mut out = Vec::with_capacity(count);
        let mut items = reply.iter();
        while let (Some(code), Some(value), Some(heard)) =
            (items.next(), items.next(), items.next())
        {
            out.push((
                deadpool_redis::redis::from_redis_value_ref(code)?,
                deadpool_redis::redis::from_redis_value_ref(value)?,
                deadpool_redis::redis::from_redis_value_ref(heard)?,
            ));
        }
        if out.len() != count {
            return Err(RedisError::from((
                ErrorKind::Client,
                "queue_add answered a different number of messages than it was given",
            )));
        }
        Ok(out)
    }
}

/// Script arguments for "no limit".
fn cap_arg<T: TryInto<i64>>(cap: Option<T>) -> i64 {
    cap.and_then(|c| c.try_into().ok()).unwrap_or(-1)
}

#[async_trait]
impl Group for AddContext {
    type Op = AddOp;
    type Out = Added;
    const WHAT: &'static str = "adding messages";
    const MAX_OPS: usize = MAX_BATCH;
    const MAX_WEIGHT: usize = MAX_BATCH_BYTES;

    fn weight(op: &AddOp) -> usize {
        op.payload.len()
    }

    // Hot path: one call per group of Forwards.
    async fn call(&self, ops: &[&AddOp]) -> std::result::Result<Vec<Added>, RedisError> {
        let replies = AddContext::call(self, ops.iter().copied()).await?;
        Ok(replies
            .into_iter()
            .zip(ops)
            .map(|(reply, op)| Added::from_reply(reply, op.list))
            .collect())
    }

    async fn alone(&self, mut op: AddOp) -> Result<Added> {
        // Unlisted: the caller lists the queue with a command of its own (the index is on
        // another slot).
        op.list = false;
        self.add_now(std::slice::from_ref(&op))
            .await
            .map(|replies| Added::from_reply(first(replies), false))
    }
}

/// Group commit of adds (see [`crate::group`]).
pub(crate) type AddBatcher = Batcher<AddContext>;
