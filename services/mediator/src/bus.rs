//! The pub/sub bus between instances ([`RedisBus`]): publishing a notice on a channel, and one
//! subscription to a few channels that ends when it is lost (the caller, `cluster::listen`,
//! subscribes again and repairs what it missed).
//!
//! Two transports, chosen by the pool:
//! - one Redis node: classic `PUBLISH` through the pool, `SUBSCRIBE` on a connection of its own;
//! - Redis Cluster: sharded pub/sub, `SPUBLISH` through the cluster pool and `SSUBSCRIBE` through
//!   a cluster client of its own (RESP3, messages arrive as pushes). Classic pub/sub would also
//!   reach every subscriber on a cluster (it is broadcast over the cluster bus), but `PUBLISH`
//!   then counts only the subscribers connected to the node that ran it, and the count is how a
//!   Forward learns whether the instance holding the live session heard its notice. A shard
//!   channel lives on the master owning its slot: `SPUBLISH` and `SSUBSCRIBE` of one channel both
//!   go there, so the count is right, and a message travels to one shard instead of every node.
//!
//! This module must not interpret notices (see [`crate::cluster`]); it moves bytes.

use std::collections::HashSet;

use futures_util::StreamExt;
use mediator_store_redis::{
    deadpool_redis::{
        self,
        cluster::{self, ClusterClientBuilder, ClusterConnection},
        redis,
    },
    RedisPool,
};
use tokio::sync::mpsc;

/// A bus failure (publishing or subscribing).
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The Redis client failed.
    #[error("Redis pub/sub failed")]
    Redis(#[from] redis::RedisError),
    /// No pooled connection.
    #[error("no Redis connection")]
    Pool(#[from] deadpool_redis::PoolError),
    /// A notice could not be encoded.
    #[error("notice could not be encoded")]
    Encode(#[from] serde_json::Error),
}

/// The channel every instance of the cluster under `prefix` subscribes to while it runs (`mediator
/// copy` counts its subscribers to find running instances).
pub(crate) fn events_channel(prefix: &str) -> String {
    format!("{prefix}live:events")
}

/// Redis pub/sub between instances: publishing through the pool, subscribing on a connection of
/// its own (see the module docs for the two transports).
#[derive(Clone)]
pub struct RedisBus {
    pool: RedisPool,
    subscriber: Subscriber,
    prefix: String,
}

/// Where subscriptions are made.
#[derive(Clone)]
enum Subscriber {
    /// Classic `SUBSCRIBE` on this node.
    Single(Box<redis::Client>),
    /// `SSUBSCRIBE` through a new cluster client per subscription, from these seeds: its pushes
    /// go to a channel given when the client is built, so each subscription builds its own.
    Cluster(Vec<String>),
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("prefix", &self.prefix)
            .field(
                "sharded",
                &matches!(self.subscriber, Subscriber::Cluster(_)),
            )
            .finish_non_exhaustive()
    }
}

impl RedisBus {
    /// A bus on one Redis node: `pool` (publishing) and `url` (subscribing), channels under
    /// `prefix`.
    pub fn new(pool: RedisPool, url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            pool,
            subscriber: Subscriber::Single(Box::new(redis::Client::open(url)?)),
            prefix: prefix.to_owned(),
        })
    }

    /// A bus on a Redis Cluster (sharded pub/sub): `pool` (publishing) and `seeds`
    /// (subscribing; any node of the cluster, the next tried when one is down), channels under
    /// `prefix`. The seeds are checked here; nothing is connected until the first subscription.
    pub fn cluster(
        pool: RedisPool,
        seeds: &[String],
        prefix: &str,
    ) -> Result<Self, redis::RedisError> {
        subscriber_client(seeds, mpsc::unbounded_channel().0)?;
        Ok(Self {
            pool,
            subscriber: Subscriber::Cluster(seeds.to_vec()),
            prefix: prefix.to_owned(),
        })
    }

    /// The channel every instance hears (live sessions opened and closed).
    pub(crate) fn events_channel(&self) -> String {
        events_channel(&self.prefix)
    }

    /// The pool it publishes through.
    pub(crate) fn pool(&self) -> &RedisPool {
        &self.pool
    }

    /// The channel only `instance` hears (messages for its live sessions).
    pub(crate) fn instance_channel(&self, instance: &str) -> String {
        format!("{}live:to:{instance}", self.prefix)
    }

    /// Publishes `notice` on `channel`; returns how many subscribers received it.
    // Hot path: one round trip per notice.
    pub(crate) async fn publish(
        &self,
        channel: &str,
        notice: &impl serde::Serialize,
    ) -> Result<usize, BusError> {
        let payload = serde_json::to_vec(notice)?;
        let command = match self.subscriber {
            Subscriber::Single(_) => "PUBLISH",
            Subscriber::Cluster(_) => "SPUBLISH",
        };
        let mut conn = self.pool.get().await?;
        let receivers: usize = redis::cmd(command)
            .arg(channel)
            .arg(payload)
            .query_async(&mut conn)
            .await?;
        Ok(receivers)
    }

    /// Subscribes to `channels`, returning once the server confirmed every one: a message
    /// published after this returns is heard.
    pub(crate) async fn subscribe(&self, channels: &[&str]) -> Result<Subscription, BusError> {
        match &self.subscriber {
            Subscriber::Single(client) => {
                let mut pubsub = client.get_async_pubsub().await?;
                for channel in channels {
                    pubsub.subscribe(*channel).await?;
                }
                Ok(Subscription::Single(pubsub.into_on_message()))
            }
            Subscriber::Cluster(seeds) => {
                let (tx, pushes) = mpsc::unbounded_channel();
                // Every seed is tried: one that is down does not stop the subscription.
                let mut conn = subscriber_client(seeds, tx)?.get_async_connection().await?;
                for channel in channels {
                    // One command per channel: the channels hash to different slots (nodes).
                    conn.ssubscribe(*channel).await?;
                }
                Ok(Subscription::Cluster {
                    _conn: conn,
                    pushes,
                    channels: channels.iter().map(|c| c.as_bytes().to_vec()).collect(),
                })
            }
        }
    }
}

/// The cluster client of one subscription: RESP3 (the cluster client subscribes only over
/// RESP3), its pushes into `tx`.
fn subscriber_client(
    seeds: &[String],
    tx: mpsc::UnboundedSender<redis::PushInfo>,
) -> Result<cluster::ClusterClient, redis::RedisError> {
    ClusterClientBuilder::new(seeds.to_vec())
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(tx)
        .build()
}

/// One live subscription. [`next`](Self::next) gives its messages and `None` once it is lost;
/// it is never repaired behind the caller's back, so the caller always knows that it may have
/// missed messages, and reloads what pub/sub feeds.
pub(crate) enum Subscription {
    /// Classic pub/sub on one node.
    Single(redis::aio::PubSubStream),
    /// Sharded pub/sub on a cluster.
    Cluster {
        /// Held: dropping it ends the subscription.
        _conn: ClusterConnection,
        pushes: mpsc::UnboundedReceiver<redis::PushInfo>,
        channels: HashSet<Vec<u8>>,
    },
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "Subscription::Single",
            Self::Cluster { .. } => "Subscription::Cluster",
        })
    }
}

impl Subscription {
    /// The next message, or `None` when the subscription is lost.
    pub(crate) async fn next(&mut self) -> Option<redis::Msg> {
        match self {
            Self::Single(stream) => stream.next().await,
            Self::Cluster {
                pushes, channels, ..
            } => loop {
                let push = pushes.recv().await?;
                match push.kind {
                    redis::PushKind::SMessage => {
                        if let Some(msg) = redis::Msg::from_push_info(push) {
                            return Some(msg);
                        }
                    }
                    // A node's connection closed: the cluster client would reconnect and
                    // subscribe again by itself, but what was published meanwhile is lost, and
                    // the pushes do not say which node it was. Report the loss; the caller
                    // subscribes afresh and repairs.
                    redis::PushKind::Disconnection => return None,
                    // The server drops shard subscriptions whose slot moved to another node.
                    redis::PushKind::SUnsubscribe => {
                        let ours = push.data.first().is_some_and(|channel| {
                            matches!(channel, redis::Value::BulkString(name) if channels.contains(name))
                        });
                        if ours {
                            return None;
                        }
                    }
                    _ => {}
                }
            },
        }
    }
}
