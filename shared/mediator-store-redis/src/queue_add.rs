//! Adding messages to queues (`lua/queue_add.lua`), and group commit: on one Redis node, the adds
//! an instance has waiting go to Redis together, in one script call.
//!
//! Why: a Forward costs Redis far more in system calls and wake-ups around a script call (its
//! request read, its reply written, the AOF write) than in the script's own work (profiled under
//! `scripts/loadtest`: 44% of Redis's CPU in the kernel). [`AddBatcher`] keeps one add call in
//! flight per process: adds that arrive while it is out wait for its reply, then go together in
//! the next call. Nothing waits on a timer: a lone add goes out at once, and under load a call
//! carries what arrived during the previous one's round trip. Each message is still acknowledged
//! to its sender only after the script that stored it answered.
//!
//! A Redis Cluster keeps each queue on the slot of its connection, and a script's keys must share
//! one slot: there every add is its own call ([`AddContext::add_now`]).

use std::{
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use deadpool_redis::redis::{ErrorKind, RedisError, Script, ServerErrorKind, Value};
use mediator_store::{ConnectionId, MessageId, QueueLimits, Result, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::{error, keys::QueueKeys, pool::RedisPool};

static ADD: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(include_str!("lua/queue_add.lua")));

/// Most messages in one add call.
const MAX_BATCH: usize = 128;
/// A call stops taking messages once their payloads reach this many bytes (a single message may
/// be larger: it goes alone).
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Adds waiting for the next call, at most (callers past it wait to be let in).
const WAITING: usize = 4096;

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

/// A pool failure as a client error (the group's callers share one failure).
fn pool_failure(err: deadpool_redis::PoolError) -> RedisError {
    RedisError::from((ErrorKind::Io, "no Redis connection", err.to_string()))
}

/// Script arguments for "no limit".
fn cap_arg<T: TryInto<i64>>(cap: Option<T>) -> i64 {
    cap.and_then(|c| c.try_into().ok()).unwrap_or(-1)
}

/// The failure of a group's call, shared by every add in it (each caller's error has it as its
/// source).
#[derive(Debug, Clone)]
struct GroupFailed(Arc<RedisError>);

impl fmt::Display for GroupFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "adding a group of messages failed: {}", self.0)
    }
}

impl std::error::Error for GroupFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// The committer went away before answering (its runtime shut down).
#[derive(Debug, thiserror::Error)]
#[error("the queue's add committer stopped before answering")]
struct CommitterGone;

struct Waiting {
    op: AddOp,
    done: oneshot::Sender<Result<Added>>,
}

/// Group commit of adds on one Redis node: one task per process sends the calls, one at a time,
/// each with every add that waited for it (see the module docs).
pub(crate) struct AddBatcher {
    context: AddContext,
    /// To the committing task; replaced when that task is gone (its runtime ended).
    sender: std::sync::Mutex<Option<mpsc::Sender<Waiting>>>,
    /// False once Redis refused a group (CROSSSLOT: a node in cluster mode).
    grouping: Arc<AtomicBool>,
}

impl AddBatcher {
    pub(crate) fn new(context: AddContext) -> Self {
        Self {
            context,
            sender: std::sync::Mutex::new(None),
            grouping: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Whether adds go in groups (else each caller makes its own call).
    pub(crate) fn grouping(&self) -> bool {
        self.grouping.load(Ordering::Relaxed)
    }

    /// The committing task's inbox, started on this runtime if there is none (or it ended).
    fn inbox(&self) -> mpsc::Sender<Waiting> {
        let mut sender = self
            .sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = sender.as_ref().filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(WAITING);
        tokio::spawn(commit(self.context.clone(), Arc::clone(&self.grouping), rx));
        *sender = Some(tx.clone());
        tx
    }

    /// Adds `op` in the next group; `{code, value}` of its message, once the call answered.
    // Hot path: one per Forward; a channel send and a wake-up each way.
    pub(crate) async fn submit(&self, op: AddOp) -> Result<Added> {
        let (done, answer) = oneshot::channel();
        let waiting = Waiting { op, done };
        self.inbox()
            .send(waiting)
            .await
            .map_err(|_| StoreError::backend(CommitterGone))?;
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::backend(CommitterGone)))
    }
}

/// The committing task: takes what waits (up to [`MAX_BATCH`] messages and about
/// [`MAX_BATCH_BYTES`]), adds it in one call, answers each caller, and again. Ends when every
/// sender is gone.
async fn commit(
    context: AddContext,
    grouping: Arc<AtomicBool>,
    mut inbox: mpsc::Receiver<Waiting>,
) {
    let mut group: Vec<Waiting> = Vec::with_capacity(MAX_BATCH);
    while let Some(head) = inbox.recv().await {
        let mut bytes = head.op.payload.len();
        group.push(head);
        while group.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match inbox.try_recv() {
                Ok(next) => {
                    bytes += next.op.payload.len();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        // Callers that gave up (their request was dropped) are added all the same: the sender
        // may have been answered by nobody, but what reached Redis stays (at least once).
        let reply = context.call(group.iter().map(|w| &w.op)).await;
        match reply {
            Ok(replies) => {
                for (waiting, reply) in group.drain(..).zip(replies) {
                    let listed = waiting.op.list;
                    let _ = waiting.done.send(Ok(Added::from_reply(reply, listed)));
                }
            }
            Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::CrossSlot) => {
                // A node in cluster mode: no more groups; these go one by one, unlisted (the
                // callers list them with a command of their own).
                grouping.store(false, Ordering::Relaxed);
                for mut waiting in group.drain(..) {
                    waiting.op.list = false;
                    let alone = context
                        .add_now(std::slice::from_ref(&waiting.op))
                        .await
                        .map(|replies| Added::from_reply(first(replies), false));
                    let _ = waiting.done.send(alone);
                }
            }
            Err(err) => {
                let failure = GroupFailed(Arc::new(err));
                for waiting in group.drain(..) {
                    let _ = waiting.done.send(Err(StoreError::backend(failure.clone())));
                }
            }
        }
    }
}
