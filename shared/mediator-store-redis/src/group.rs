//! Group commit on one Redis node: the writes of one kind (adds, removals) an instance has
//! waiting go to Redis together, in one script call.
//!
//! Why: a script call costs Redis far more in system calls, wake-ups and the script's start (its
//! request read, its reply written, the AOF write, the Lua call set up) than in the commands it
//! runs (profiled under `scripts/loadtest`: 44% of Redis's CPU in the kernel; `INFO
//! commandstats` puts ~40 µs of each EVALSHA outside its commands). A [`Batcher`] keeps one call
//! in flight per process and kind: writes that arrive while it is out wait for its reply, then go
//! together in the next call. Nothing waits on a timer: a lone write goes out at once, and under
//! load a call carries what arrived during the previous one's round trip. Each caller is answered
//! only after the script that did its write answered.
//!
//! A Redis Cluster keeps each queue on the slot of its connection, and a script's keys must share
//! one slot: a group is refused there (CROSSSLOT), and from then on every write is its own call.

use std::{
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use async_trait::async_trait;
use deadpool_redis::redis::{ErrorKind, RedisError, ServerErrorKind};
use mediator_store::{Result, StoreError};
use tokio::sync::{mpsc, oneshot};

/// Writes waiting for the next call, at most (callers past it wait to be let in).
const WAITING: usize = 4096;

/// One kind of write that can go in groups.
#[async_trait]
pub(crate) trait Group: Clone + Send + Sync + 'static {
    /// One caller's write.
    type Op: Send + Sync + 'static;
    /// What its caller gets back.
    type Out: Send + 'static;
    /// What the batcher is called in errors.
    const WHAT: &'static str;
    /// Most writes in one call.
    const MAX_OPS: usize;
    /// A call stops taking writes once their weights (payload bytes) reach this (one write may
    /// be heavier: it goes alone).
    const MAX_WEIGHT: usize;

    /// The write's weight against [`Group::MAX_WEIGHT`].
    fn weight(op: &Self::Op) -> usize;

    /// One call doing `ops` in order: one answer per write, in order.
    async fn call(&self, ops: &[&Self::Op]) -> std::result::Result<Vec<Self::Out>, RedisError>;

    /// `op` in a call of its own, after Redis refused a group (CROSSSLOT).
    async fn alone(&self, op: Self::Op) -> Result<Self::Out>;
}

/// A pool failure as a client error (the group's callers share one failure).
pub(crate) fn pool_failure(err: deadpool_redis::PoolError) -> RedisError {
    RedisError::from((ErrorKind::Io, "no Redis connection", err.to_string()))
}

/// The failure of a group's call, shared by every write in it (each caller's error has it as
/// its source).
#[derive(Debug, Clone)]
struct GroupFailed(&'static str, Arc<RedisError>);

impl fmt::Display for GroupFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of a group failed: {}", self.0, self.1)
    }
}

impl std::error::Error for GroupFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.1)
    }
}

/// The committer went away before answering (its runtime shut down).
#[derive(Debug, thiserror::Error)]
#[error("the queue's {0} committer stopped before answering")]
struct CommitterGone(&'static str);

struct Waiting<G: Group> {
    op: G::Op,
    done: oneshot::Sender<Result<G::Out>>,
}

/// Group commit of one kind of write: one task per process sends the calls, one at a time, each
/// with every write that waited for it (see the module docs).
pub(crate) struct Batcher<G: Group> {
    group: G,
    /// To the committing task; replaced when that task is gone (its runtime ended).
    sender: std::sync::Mutex<Option<mpsc::Sender<Waiting<G>>>>,
    /// False once Redis refused a group (CROSSSLOT: a node in cluster mode).
    grouping: Arc<AtomicBool>,
}

impl<G: Group> Batcher<G> {
    pub(crate) fn new(group: G) -> Self {
        Self {
            group,
            sender: std::sync::Mutex::new(None),
            grouping: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Whether writes go in groups (else each caller makes its own call).
    pub(crate) fn grouping(&self) -> bool {
        self.grouping.load(Ordering::Relaxed)
    }

    /// The committing task's inbox, started on this runtime if there is none (or it ended).
    fn inbox(&self) -> mpsc::Sender<Waiting<G>> {
        let mut sender = self
            .sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = sender.as_ref().filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(WAITING);
        tokio::spawn(commit(self.group.clone(), Arc::clone(&self.grouping), rx));
        *sender = Some(tx.clone());
        tx
    }

    /// Does `op` in the next group; its answer, once the call answered.
    // Hot path: one per write; a channel send and a wake-up each way.
    pub(crate) async fn submit(&self, op: G::Op) -> Result<G::Out> {
        let (done, answer) = oneshot::channel();
        self.inbox()
            .send(Waiting { op, done })
            .await
            .map_err(|_| StoreError::backend(CommitterGone(G::WHAT)))?;
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::backend(CommitterGone(G::WHAT))))
    }
}

/// The committing task: takes what waits (up to [`Group::MAX_OPS`] writes and about
/// [`Group::MAX_WEIGHT`]), does it in one call, answers each caller, and again. Ends when every
/// sender is gone.
async fn commit<G: Group>(
    group: G,
    grouping: Arc<AtomicBool>,
    mut inbox: mpsc::Receiver<Waiting<G>>,
) {
    let mut waiting: Vec<Waiting<G>> = Vec::with_capacity(G::MAX_OPS);
    while let Some(head) = inbox.recv().await {
        let mut weight = G::weight(&head.op);
        waiting.push(head);
        while waiting.len() < G::MAX_OPS && weight < G::MAX_WEIGHT {
            match inbox.try_recv() {
                Ok(next) => {
                    weight += G::weight(&next.op);
                    waiting.push(next);
                }
                Err(_) => break,
            }
        }
        // Callers that gave up (their request was dropped) are served all the same: what
        // reached Redis stays done (at least once).
        let ops: Vec<&G::Op> = waiting.iter().map(|w| &w.op).collect();
        let reply = group.call(&ops).await;
        drop(ops);
        match reply {
            Ok(answers) if answers.len() == waiting.len() => {
                for (w, answer) in waiting.drain(..).zip(answers) {
                    let _ = w.done.send(Ok(answer));
                }
            }
            Ok(_) => {
                let failure = GroupFailed(
                    G::WHAT,
                    Arc::new(RedisError::from((
                        ErrorKind::Client,
                        "the script answered a different number of writes than it was given",
                    ))),
                );
                for w in waiting.drain(..) {
                    let _ = w.done.send(Err(StoreError::backend(failure.clone())));
                }
            }
            Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::CrossSlot) => {
                // A node in cluster mode: no more groups; these go one by one.
                grouping.store(false, Ordering::Relaxed);
                for w in waiting.drain(..) {
                    let alone = group.alone(w.op).await;
                    let _ = w.done.send(alone);
                }
            }
            Err(err) => {
                let failure = GroupFailed(G::WHAT, Arc::new(err));
                for w in waiting.drain(..) {
                    let _ = w.done.send(Err(StoreError::backend(failure.clone())));
                }
            }
        }
    }
}
