//! `mediator copy`: copies a mediator's data from the embedded store to Redis or back, offline
//! (moving from one node to a cluster, or back).
//!
//! What is copied: every connection record that exists (not expired), its mediation record, its
//! keylist (in registration order) and its queue (every message with its id, recipient keys,
//! payload, received time and delivery count, in order; nothing in flight: a lease belonged to a
//! session of the old store), and every push-notification registration (device info, walked by
//! [`DeviceStore::list`], whether or not its connection record exists). The copy walks the
//! connections ([`ConnectionStore::list_ids`]): a queue or keylist exists only for a connection
//! (Forwards are queued for the connection that registered the key), so nothing is missed unless
//! a connection record was deleted while its keys or queue stayed (the store does not cascade;
//! no handler deletes completed connections).
//!
//! What is not copied: the replay window (message ids seen lately: a message replayed across the
//! move would be accepted once more, as after the window's own expiry) and the live-session
//! registry (no session survives the move: clients reconnect and are routed anew), nor the
//! notification claims (they only pace notifications: at worst one notification per connection
//! goes out early after the move). The master secret is not in a store: the target must run
//! with the same one (see the README).
//!
//! It refuses to run against a live mediator: the embedded store's directory lock is held by a
//! running instance ([`OpenError::Locked`]); on Redis, a running instance is subscribed to the
//! cluster's events channel, or holds live sessions in the registry. It refuses a target that
//! already holds connections or queued messages. A copy that fails half way leaves a partial
//! target: empty it (a fresh directory, `FLUSHDB` or another key prefix) and run it again.
//!
//! [`ConnectionStore::list_ids`]: mediator_store::ConnectionStore::list_ids
//! [`DeviceStore::list`]: mediator_store::DeviceStore::list
//! [`MessageQueue::list_queues`]: mediator_store::MessageQueue::list_queues
//! [`OpenError::Locked`]: mediator_store_embedded::OpenError::Locked

use std::{fmt, path::Path};

use deadpool_redis::redis;
use mediator_store::{ConnectionId, KeylistAction, KeylistResult, KeylistUpdate, Stores};
use mediator_store_embedded::{EmbeddedStores, OpenError, DATABASE_FILE};
use mediator_store_redis::{deadpool_redis, RedisPool};
use thiserror::Error;

use crate::{
    config::{Config, StorageBackend},
    datadir::{DataDir, SECRET_FILE},
    storage,
};

/// Connections listed per page (the Redis backend reads its whole record set per page).
const PAGE: usize = 10_000;
/// Keys read per keylist page, and written per keylist update.
const KEYS_PER_BATCH: usize = 1_000;
/// Messages written per restore.
const MESSAGES_PER_BATCH: usize = 200;

/// One side of a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Side {
    /// The embedded store in `data_dir`.
    Embedded,
    /// Redis (`storage.redis.*`).
    Redis,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Embedded => "embedded",
            Self::Redis => "redis",
        })
    }
}

/// What a copy wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// Connection records.
    pub connections: u64,
    /// Mediation records.
    pub mediation_records: u64,
    /// Keylist keys.
    pub keys: u64,
    /// Queued messages.
    pub messages: u64,
    /// Queues of no (existing) connection record, copied too.
    pub orphan_queues: u64,
    /// Push-notification registrations (device info).
    pub devices: u64,
}

impl fmt::Display for Copied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connections, {} mediation records, {} keylist keys, {} queued messages",
            self.connections, self.mediation_records, self.keys, self.messages
        )?;
        if self.orphan_queues > 0 {
            write!(
                f,
                " ({} queues of no connection record among them)",
                self.orphan_queues
            )?;
        }
        write!(f, ", {} push registrations", self.devices)
    }
}

/// Why a copy did not run, or stopped.
#[derive(Debug, Error)]
pub enum CopyError {
    #[error("--from and --to are both {0}: nothing to copy")]
    SameSide(Side),
    #[error(
        "the data directory {} is in use by a running mediator: stop it first",
        .0.display()
    )]
    Running(std::path::PathBuf),
    #[error("the data directory {} holds no store to copy from", .0.display())]
    NoSource(std::path::PathBuf),
    #[error("Redis has live mediator instances ({0}): stop every instance first")]
    Live(String),
    #[error("the {0} target already holds data ({1}): copy into an empty store")]
    NotEmpty(Side, String),
    #[error(
        "copying into a data directory without {SECRET_FILE} needs the cluster's master secret: \
         set master_secret (MEDIATOR_MASTER_SECRET); it is kept in the directory"
    )]
    NoSecret,
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    #[error(transparent)]
    DataDir(#[from] crate::datadir::DataDirError),
    #[error("the embedded store in {} could not be opened", path.display())]
    Embedded {
        path: std::path::PathBuf,
        #[source]
        source: OpenError,
    },
    #[error("Redis check failed")]
    Redis(#[source] redis::RedisError),
    #[error("Redis pool")]
    Pool(#[source] deadpool_redis::PoolError),
    #[error("{0}")]
    Store(String, #[source] mediator_store::StoreError),
    #[error("keylist of connection {connection}: key {key} could not be added ({result:?})")]
    Keylist {
        connection: ConnectionId,
        key: String,
        result: KeylistResult,
    },
}

fn store(what: impl Into<String>) -> impl FnOnce(mediator_store::StoreError) -> CopyError {
    let what = what.into();
    move |e| CopyError::Store(what, e)
}

/// One side, opened.
struct Opened {
    stores: Stores,
    /// The Redis pool, for the live-instance check.
    redis: Option<RedisPool>,
}

/// Copies everything from `from` to `to`, both as `config` describes them (`data_dir`,
/// `storage.redis.*`), after the checks in the module docs. Returns what it wrote.
pub async fn run(config: &Config, from: Side, to: Side) -> Result<Copied, CopyError> {
    if from == to {
        return Err(CopyError::SameSide(from));
    }
    // Redis first: a refusal there leaves the data directory untouched.
    let redis = open(config, Side::Redis, from == Side::Redis).await?;
    if let Some(pool) = &redis.redis {
        refuse_live(config, pool, &redis.stores).await?;
    }
    let embedded = open(config, Side::Embedded, from == Side::Embedded).await?;
    let (source, target) = match from {
        Side::Redis => (redis, embedded),
        Side::Embedded => (embedded, redis),
    };
    refuse_data(to, &target.stores).await?;
    copy(&source.stores, &target.stores).await
}

async fn open(config: &Config, side: Side, source: bool) -> Result<Opened, CopyError> {
    match side {
        Side::Embedded => {
            let config = config.clone();
            tokio::task::spawn_blocking(move || open_embedded(&config, source))
                .await
                .map_err(storage::StorageError::Opening)?
        }
        Side::Redis => {
            let mut config = config.clone();
            config.storage.backend = StorageBackend::Redis;
            let backend = storage::open(&config).await?;
            let pool = backend.bus.as_ref().map(|bus| bus.pool().clone());
            Ok(Opened {
                stores: backend.stores,
                redis: pool,
            })
        }
    }
}

fn open_embedded(config: &Config, source: bool) -> Result<Opened, CopyError> {
    let path = &config.data_dir;
    if source && !path.join(DATABASE_FILE).exists() {
        return Err(CopyError::NoSource(path.clone()));
    }
    let dir = DataDir::create(path)?;
    if !source && !dir.path().join(SECRET_FILE).exists() {
        // The node started on this directory later must derive the cluster's keys.
        if config.master_secret.is_empty() {
            return Err(CopyError::NoSecret);
        }
        dir.keep_master_secret(&config.master_secret)?;
    }
    let stores = EmbeddedStores::open(
        dir.path(),
        config.queue.limits(),
        config.replay.max_ids_per_connection,
    )
    .map_err(|source| match source {
        OpenError::Locked { .. } => CopyError::Running(path.clone()),
        source => CopyError::Embedded {
            path: path.clone(),
            source,
        },
    })?;
    Ok(Opened {
        stores: stores.into_stores(),
        redis: None,
    })
}

/// Refuses when a mediator instance runs on this Redis: every running instance is subscribed to
/// the events channel of its key prefix (from its start until its exit), and one holding live
/// sessions has them in the registry. An instance still starting (not subscribed yet, no
/// session) is not seen: stop the instances before the copy, this only catches a forgotten one.
async fn refuse_live(config: &Config, pool: &RedisPool, stores: &Stores) -> Result<(), CopyError> {
    let channel = crate::bus::events_channel(&config.storage.redis.key_prefix);
    let mut conn = pool.get().await.map_err(CopyError::Pool)?;
    let (command, sub) = if pool.is_cluster() {
        ("PUBSUB", "SHARDNUMSUB")
    } else {
        ("PUBSUB", "NUMSUB")
    };
    // A map on either transport (on a cluster the client asks every node and merges the maps).
    let counts: std::collections::HashMap<String, i64> = redis::cmd(command)
        .arg(sub)
        .arg(&channel)
        .query_async(&mut conn)
        .await
        .map_err(CopyError::Redis)?;
    let subscribers: i64 = counts.values().sum();
    if subscribers > 0 {
        return Err(CopyError::Live(format!(
            "{subscribers} subscribed to {channel}"
        )));
    }
    let holders = stores
        .registry
        .all()
        .await
        .map_err(store("reading the live-session registry"))?;
    if !holders.is_empty() {
        return Err(CopyError::Live(format!(
            "{} live sessions in the registry",
            holders.len()
        )));
    }
    Ok(())
}

async fn refuse_data(side: Side, stores: &Stores) -> Result<(), CopyError> {
    let connections = stores
        .connections
        .list_ids(None, 1)
        .await
        .map_err(store("listing the target's connections"))?;
    if !connections.is_empty() {
        return Err(CopyError::NotEmpty(side, "connections".into()));
    }
    let totals = stores
        .queue
        .totals()
        .await
        .map_err(store("counting the target's queues"))?;
    if totals.messages > 0 {
        return Err(CopyError::NotEmpty(
            side,
            format!("{} queued messages", totals.messages),
        ));
    }
    let devices = stores
        .devices
        .list(None, 1)
        .await
        .map_err(store("listing the target's push registrations"))?;
    if !devices.is_empty() {
        return Err(CopyError::NotEmpty(side, "push registrations".into()));
    }
    Ok(())
}

/// Copies every connection with its mediation record, keylist and queue, and every push
/// registration, from `from` to `to` (which the caller checked: nobody else writes either, `to`
/// is empty).
pub async fn copy(from: &Stores, to: &Stores) -> Result<Copied, CopyError> {
    let mut copied = Copied::default();
    let mut done = std::collections::HashSet::new();
    let mut after: Option<ConnectionId> = None;
    loop {
        let page = from
            .connections
            .list_ids(after.as_ref(), PAGE)
            .await
            .map_err(store("listing connections"))?;
        for id in &page {
            if copy_connection(from, to, id, &mut copied).await? {
                done.insert(id.clone());
            }
        }
        if page.len() < PAGE {
            break;
        }
        after = page.last().cloned();
    }
    // Queues whose connection record is gone (the store does not cascade): copied as well.
    let mut after: Option<ConnectionId> = None;
    loop {
        let page = from
            .queue
            .list_queues(after.as_ref(), PAGE)
            .await
            .map_err(store("listing queues"))?;
        for id in page.iter().filter(|id| !done.contains(*id)) {
            if copy_queue(from, to, id, &mut copied).await? > 0 {
                copied.orphan_queues += 1;
            }
        }
        if page.len() < PAGE {
            break;
        }
        after = page.last().cloned();
    }
    copy_devices(from, to, &mut copied).await?;
    Ok(copied)
}

/// Copies every push registration, whether or not its connection record exists (the store does
/// not cascade: like a queue of no connection record, it is copied as it is).
async fn copy_devices(from: &Stores, to: &Stores, copied: &mut Copied) -> Result<(), CopyError> {
    let mut after: Option<ConnectionId> = None;
    loop {
        let page = from
            .devices
            .list(after.as_ref(), PAGE)
            .await
            .map_err(store("listing push registrations"))?;
        for (id, info) in &page {
            to.devices.set(id, info).await.map_err(store(format!(
                "writing the push registration of connection {id}"
            )))?;
            copied.devices += 1;
        }
        if page.len() < PAGE {
            return Ok(());
        }
        after = page.last().map(|(id, _)| id.clone());
    }
}

async fn copy_connection(
    from: &Stores,
    to: &Stores,
    id: &ConnectionId,
    copied: &mut Copied,
) -> Result<bool, CopyError> {
    let what = |thing: &str| format!("{thing} of connection {id}");
    // Expired since it was listed: it no longer exists (a queue it has is copied as one of no
    // connection record).
    let Some(record) = from
        .connections
        .get(id)
        .await
        .map_err(store(what("reading the record")))?
    else {
        return Ok(false);
    };
    to.connections
        .insert(&record)
        .await
        .map_err(store(what("writing the record")))?;
    copied.connections += 1;

    if let Some(mediation) = from
        .mediation
        .get(id)
        .await
        .map_err(store(what("reading the mediation record")))?
    {
        to.mediation
            .save(&mediation)
            .await
            .map_err(store(what("writing the mediation record")))?;
        copied.mediation_records += 1;
    }

    let mut offset = 0;
    loop {
        let page = from
            .mediation
            .keylist(id, offset, KEYS_PER_BATCH)
            .await
            .map_err(store(what("reading the keylist")))?;
        if page.keys.is_empty() {
            break;
        }
        offset += page.keys.len();
        let updates: Vec<KeylistUpdate> = page
            .keys
            .iter()
            .map(|key| KeylistUpdate {
                key: *key,
                action: KeylistAction::Add,
            })
            .collect();
        let outcomes = to
            .mediation
            .update_keylist(id, &updates)
            .await
            .map_err(store(what("writing the keylist")))?;
        if let Some(bad) = outcomes.iter().find(|o| o.result != KeylistResult::Success) {
            return Err(CopyError::Keylist {
                connection: id.clone(),
                key: bad.key.to_base58(),
                result: bad.result,
            });
        }
        copied.keys += updates.len() as u64;
    }

    copy_queue(from, to, id, copied).await?;
    Ok(true)
}

/// Copies `id`'s queue; returns how many messages it held.
async fn copy_queue(
    from: &Stores,
    to: &Stores,
    id: &ConnectionId,
    copied: &mut Copied,
) -> Result<usize, CopyError> {
    let messages = from
        .queue
        .take(id, usize::MAX, None)
        .await
        .map_err(store(format!("reading the queue of connection {id}")))?;
    for batch in messages.chunks(MESSAGES_PER_BATCH) {
        to.queue
            .restore(id, batch)
            .await
            .map_err(store(format!("writing the queue of connection {id}")))?;
        copied.messages += batch.len() as u64;
    }
    Ok(messages.len())
}

/// `data_dir`'s master secret file, for the message after a copy to Redis.
pub fn secret_file(config: &Config) -> std::path::PathBuf {
    Path::new(&config.data_dir).join(SECRET_FILE)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::Bytes;
    use didcomm_envelope::KeyPair;
    use mediator_store::{
        contract::{connections::sample, devices},
        MediationRecord, MediationState, PushPlatform, StoreError,
    };

    use super::*;

    #[tokio::test]
    async fn copies_connections_keylists_and_queues_also_of_no_connection_record() {
        let (from, to) = (Stores::memory(), Stores::memory());
        let record = sample();
        from.connections.insert(&record).await.unwrap();
        let id = record.id.clone();
        let mediation = MediationRecord {
            connection_id: id.clone(),
            state: MediationState::Granted,
            routing_keys: vec![*KeyPair::generate().unwrap().verkey()],
            endpoint: Some("http://mediator.example".into()),
            created_at_ms: 1,
            updated_at_ms: 2,
        };
        from.mediation.save(&mediation).await.unwrap();
        let keys: Vec<_> = (0..3)
            .map(|_| *KeyPair::generate().unwrap().verkey())
            .collect();
        let adds: Vec<KeylistUpdate> = keys
            .iter()
            .map(|key| KeylistUpdate {
                key: *key,
                action: KeylistAction::Add,
            })
            .collect();
        from.mediation.update_keylist(&id, &adds).await.unwrap();
        for n in 0..3u8 {
            from.queue
                .add(&id, &keys[..1], Bytes::from(vec![n]))
                .await
                .unwrap();
        }
        from.queue.lease(&id, 1, None, 60_000, None).await.unwrap();
        let orphan = ConnectionId::generate();
        from.queue
            .add(&orphan, &keys[1..2], Bytes::from_static(b"alone"))
            .await
            .unwrap();

        let device = devices::sample(PushPlatform::Fcm);
        from.devices.set(&id, &device).await.unwrap();
        // A registration of no connection record (the store does not cascade): copied too.
        let unrecorded = (
            ConnectionId::generate(),
            devices::sample(PushPlatform::Apns),
        );
        from.devices
            .set(&unrecorded.0, &unrecorded.1)
            .await
            .unwrap();

        let copied = copy(&from, &to).await.unwrap();
        assert_eq!(
            copied,
            Copied {
                connections: 1,
                mediation_records: 1,
                keys: 3,
                messages: 4,
                orphan_queues: 1,
                devices: 2,
            }
        );
        assert_eq!(to.devices.get(&id).await.unwrap(), Some(device));
        assert_eq!(
            to.devices.get(&unrecorded.0).await.unwrap(),
            Some(unrecorded.1)
        );
        assert_eq!(to.connections.get(&id).await.unwrap(), Some(record));
        assert_eq!(to.mediation.get(&id).await.unwrap(), Some(mediation));
        assert_eq!(
            to.mediation.keylist(&id, 0, 10).await.unwrap(),
            from.mediation.keylist(&id, 0, 10).await.unwrap()
        );
        for queue in [&id, &orphan] {
            assert_eq!(
                to.queue.take(queue, usize::MAX, None).await.unwrap(),
                from.queue.take(queue, usize::MAX, None).await.unwrap()
            );
            assert_eq!(to.queue.status(queue, None).await.unwrap().in_flight, 0);
        }
        // Again into the same target: the ids are taken, nothing is written twice.
        let err = copy(&from, &to).await.unwrap_err();
        assert!(
            matches!(err, CopyError::Store(_, StoreError::Conflict { .. })),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_target_holding_only_push_registrations_is_refused() {
        let target = Stores::memory();
        refuse_data(Side::Redis, &target).await.unwrap();
        target
            .devices
            .set(
                &ConnectionId::generate(),
                &devices::sample(PushPlatform::Apns),
            )
            .await
            .unwrap();
        let err = refuse_data(Side::Redis, &target).await.unwrap_err();
        assert!(
            matches!(&err, CopyError::NotEmpty(Side::Redis, what) if what.contains("push")),
            "{err:?}"
        );
    }

    #[test]
    fn the_summary_names_every_count() {
        let copied = Copied {
            connections: 2,
            mediation_records: 2,
            keys: 4,
            messages: 10,
            orphan_queues: 1,
            devices: 3,
        };
        assert_eq!(
            copied.to_string(),
            "2 connections, 2 mediation records, 4 keylist keys, 10 queued messages (1 queues of \
             no connection record among them), 3 push registrations"
        );
    }
}
