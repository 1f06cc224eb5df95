//! `mediator copy` (issue 14, one node to a cluster): a real embedded-store mediator is filled by
//! clients (connections, mediation, keylists, Forwards queued while they are offline, some in
//! flight) and stopped, and its connections given push registrations; the real binary copies its store to a fresh Redis and back to a fresh
//! data directory, and every side is compared store by store; then two instances on the copied
//! Redis, given the node's master secret, deliver every queued message to the same clients,
//! without a new handshake. And the copy refuses a running instance on either side, and a target
//! that holds data.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::BTreeSet,
    path::Path,
    process::{Command, Output},
    sync::Arc,
    time::Duration,
};

use common::{
    process::{forward, Proc},
    Client,
};
use didcomm_envelope::{unpack, KeyPair, VerKey};
use mediator_store::{ConnectionId, DeviceInfo, PushPlatform, QueueLimits, Stores};
use mediator_store_embedded::{EmbeddedStores, OpenError};
use mediator_store_redis::{
    deadpool_redis::redis,
    testing::{RedisCluster, RedisServer},
    RedisConnectionStore, RedisDeviceStore, RedisLiveSessionRegistry, RedisMediationStore,
    RedisMessageQueue, RedisPool, RedisSeenMessages,
};
use serde_json::{json, Value};

/// Runs the real binary's `mediator copy --from <from> --to <to>` with these variables (and no
/// other `MEDIATOR_*` of this process's environment). Waits at most a minute.
async fn run_copy(from: &str, to: &str, vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(Proc::binary());
    command.args(["copy", "--from", from, "--to", to]);
    for (name, _) in std::env::vars() {
        if name.starts_with("MEDIATOR_") {
            command.env_remove(name);
        }
    }
    command.envs(vars.iter().copied());
    let run = tokio::task::spawn_blocking(move || command.output().expect("run mediator copy"));
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("mediator copy did not finish within a minute")
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn redis_stores(pool: impl Into<RedisPool>, prefix: &str) -> Stores {
    let pool: RedisPool = pool.into();
    Stores {
        connections: Arc::new(RedisConnectionStore::new(pool.clone(), prefix)),
        mediation: Arc::new(RedisMediationStore::new(pool.clone(), prefix)),
        queue: Arc::new(RedisMessageQueue::new(
            pool.clone(),
            prefix,
            QueueLimits::UNLIMITED,
        )),
        registry: Arc::new(RedisLiveSessionRegistry::new(pool.clone(), prefix)),
        seen: Arc::new(RedisSeenMessages::new(pool.clone(), prefix, 100)),
        devices: Arc::new(RedisDeviceStore::new(pool, prefix)),
    }
}

fn embedded_stores(dir: &Path) -> Stores {
    EmbeddedStores::open(dir, QueueLimits::UNLIMITED, 100)
        .expect("open the embedded store")
        .into_stores()
}

async fn all_ids(stores: &Stores) -> Vec<ConnectionId> {
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = stores
            .connections
            .list_ids(after.as_ref(), 2)
            .await
            .unwrap();
        let last = page.len() < 2;
        after = page.last().cloned();
        ids.extend(page);
        if last {
            return ids;
        }
    }
}

/// Every push registration, read in pages of 2.
async fn all_devices(stores: &Stores) -> Vec<(ConnectionId, DeviceInfo)> {
    let mut devices = Vec::new();
    let mut after = None;
    loop {
        let page = stores.devices.list(after.as_ref(), 2).await.unwrap();
        let last = page.len() < 2;
        after = page.last().map(|(id, _)| id.clone());
        devices.extend(page);
        if last {
            return devices;
        }
    }
}

/// Gives the connections whose clients hold these recipient keys a push registration each (FCM
/// and APNs in turn), in the stopped node's data directory (the mediator cannot be told one yet),
/// and closes it again before the copy runs.
async fn register_devices(dir: &Path, recipients: &[&KeyPair]) -> Vec<(ConnectionId, DeviceInfo)> {
    let mut registered = Vec::new();
    {
        let stores = embedded_stores(dir);
        for (n, recipient) in recipients.iter().enumerate() {
            let id = stores
                .mediation
                .connection_for_key(recipient.verkey())
                .await
                .unwrap()
                .expect("the key routes to a connection");
            let info = DeviceInfo {
                platform: if n % 2 == 0 {
                    PushPlatform::Fcm
                } else {
                    PushPlatform::Apns
                },
                token: format!("device-token-{n}-{}", "x".repeat(100)),
                device_platform: (n % 2 == 0).then(|| "android".to_owned()),
                updated_at_ms: 1_700_000_000_000 + n as u64,
            };
            stores.devices.set(&id, &info).await.unwrap();
            registered.push((id, info));
        }
    }
    // The copy (another process) must find the directory free: the last store of ours may go a
    // moment after the drop (a blocking read finishing), so wait until this process can open it
    // again, then close that too.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match EmbeddedStores::open(dir, QueueLimits::UNLIMITED, 100) {
            Ok(stores) => break drop(stores),
            Err(OpenError::Locked { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(err) => panic!("opening the data directory again failed: {err}"),
        }
    }
    registered.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    registered
}

/// What `to` holds equals what `from` holds, store by store, and nothing in `to` is in flight.
/// Returns (connections, keys, messages, push registrations) compared.
async fn same(from: &Stores, to: &Stores) -> (usize, usize, usize, usize) {
    let ids = all_ids(from).await;
    assert_eq!(all_ids(to).await, ids, "the connections listed differ");
    let devices = all_devices(from).await;
    assert_eq!(
        all_devices(to).await,
        devices,
        "the push registrations differ"
    );
    let (mut keys, mut messages) = (0, 0);
    for id in &ids {
        assert_eq!(
            to.devices.get(id).await.unwrap(),
            from.devices.get(id).await.unwrap(),
            "push registration of {id}"
        );
        assert_eq!(
            to.connections.get(id).await.unwrap(),
            from.connections.get(id).await.unwrap(),
            "connection record {id}"
        );
        assert_eq!(
            to.mediation.get(id).await.unwrap(),
            from.mediation.get(id).await.unwrap(),
            "mediation record of {id}"
        );
        let keylist = from.mediation.keylist(id, 0, usize::MAX).await.unwrap();
        assert_eq!(
            to.mediation.keylist(id, 0, usize::MAX).await.unwrap(),
            keylist,
            "keylist of {id}"
        );
        for key in &keylist.keys {
            assert_eq!(
                to.mediation.connection_for_key(key).await.unwrap().as_ref(),
                Some(id),
                "key {key} routes elsewhere"
            );
        }
        keys += keylist.keys.len();
        let queued = from.queue.take(id, usize::MAX, None).await.unwrap();
        // Every field: id, connection, recipient keys, payload, received time, deliveries.
        assert_eq!(
            to.queue.take(id, usize::MAX, None).await.unwrap(),
            queued,
            "queue of {id}"
        );
        messages += queued.len();
        let status = to.queue.status(id, None).await.unwrap();
        assert_eq!(
            (status.message_count, status.in_flight),
            (queued.len(), 0),
            "the copy of {id}'s queue: every message waits, none in flight"
        );
    }
    (ids.len(), keys, messages, devices.len())
}

/// Picks up and acknowledges everything queued for `client` (through the instance it uses);
/// returns the sequence numbers of the Forwards' inner messages.
async fn fetch_all(client: &Client, recipient: &KeyPair) -> BTreeSet<u64> {
    let mut seqs = BTreeSet::new();
    for _ in 0..100 {
        let reply = client
            .call(&Client::msg(
                "messagepickup/2.0/delivery-request",
                json!({"limit": 4}),
            ))
            .await
            .unwrap();
        if reply["@type"] != "https://didcomm.org/messagepickup/2.0/delivery" {
            assert_eq!(reply["message_count"], 0, "{reply}");
            return seqs;
        }
        let mut ids = Vec::new();
        for a in reply["~attach"].as_array().unwrap() {
            let inner = serde_json::to_vec(&a["data"]["json"]).unwrap();
            let plain = unpack(&inner, |kid| {
                (kid == recipient.verkey_base58()).then_some(recipient)
            })
            .unwrap();
            let v: Value = serde_json::from_slice(&plain.message).unwrap();
            assert!(seqs.insert(v["seq"].as_u64().unwrap()), "delivered twice");
            ids.push(a["@id"].clone());
        }
        client
            .call(&Client::msg(
                "messagepickup/2.0/messages-received",
                json!({"message_id_list": ids}),
            ))
            .await;
    }
    panic!("the queue did not empty in 100 pickups");
}

struct Holder {
    client: Client,
    routing: VerKey,
    recipient: KeyPair,
    sent: BTreeSet<u64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_to_a_cluster_and_back_keeps_every_connection_key_and_message() {
    let redis = RedisServer::start().unwrap();
    let prefix = "moved:";
    let data = tempfile::tempdir().unwrap();
    let back = tempfile::tempdir().unwrap();

    // One node on the embedded store, leases long enough to be seen after it stops.
    let mut node = Proc::start_embedded_on(
        mediator::testing::free_port(),
        "copy-node",
        data.path(),
        &[("MEDIATOR_PICKUP__REDELIVERY_AFTER_MS", "600000")],
    );
    node.ready().await;
    let mut holders = Vec::new();
    for (n, count) in [(0u64, 7u64), (1, 3)] {
        let client = Client::connect_base(&node.base, "didcomm:transport/queue").await;
        let (routing, recipient) = client.mediation_with_key().await;
        // A second key (unused) so the keylists have an order to keep.
        let spare = KeyPair::generate().unwrap();
        let r = client.add_keys(&[&spare.verkey().to_did_key()]).await;
        assert_eq!(r["updated"][0]["result"], "success", "{r}");
        let mut sent = BTreeSet::new();
        for i in 0..count {
            let seq = n * 1000 + i;
            let (status, body) =
                common::post_envelope(&node.base, forward(&routing, recipient.verkey(), seq)).await;
            assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
            sent.insert(seq);
        }
        holders.push(Holder {
            client,
            routing,
            recipient,
            sent,
        });
    }
    // The first client picks up two and never acknowledges them: in flight when the node stops.
    let reply = holders[0]
        .client
        .call(&Client::msg(
            "messagepickup/2.0/delivery-request",
            json!({"limit": 2}),
        ))
        .await
        .unwrap();
    assert_eq!(
        reply["~attach"].as_array().map(Vec::len),
        Some(2),
        "{reply}"
    );
    assert!(
        node.sigterm_and_wait(Duration::from_secs(20)),
        "the node did not stop cleanly"
    );
    let secret = std::fs::read_to_string(data.path().join("master_secret")).unwrap();
    let secret = secret.trim().to_owned();
    let registered =
        register_devices(data.path(), &[&holders[0].recipient, &holders[1].recipient]).await;

    let data_dir = data.path().display().to_string();
    let back_dir = back.path().display().to_string();
    let to_redis = [
        ("MEDIATOR_DATA_DIR", data_dir.as_str()),
        ("MEDIATOR_STORAGE__REDIS__URL", redis.url()),
        ("MEDIATOR_STORAGE__REDIS__KEY_PREFIX", prefix),
    ];
    let out = run_copy("embedded", "redis", &to_redis).await;
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(
            "2 connections, 2 mediation records, 4 keylist keys, 10 queued messages, 2 push \
             registrations"
        ),
        "{}",
        text(&out)
    );
    // Into a store that holds data: refused, nothing written twice.
    let again = run_copy("embedded", "redis", &to_redis).await;
    assert!(!again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds data"),
        "{}",
        text(&again)
    );

    let moved = redis_stores(redis.pool().unwrap(), prefix);
    // Each directory is opened once by this process (the binary's copies run while it is not).
    let node_stores = embedded_stores(data.path());
    {
        let first = holders_connection(&node_stores, &holders[0]).await;
        let status = node_stores.queue.status(&first, None).await.unwrap();
        assert_eq!(
            (status.message_count, status.in_flight),
            (5, 2),
            "the node's queue: two in flight (the test's premise)"
        );
        assert_eq!(
            same(&node_stores, &moved).await,
            (2, 4, 10, 2),
            "connections, keys, messages, push registrations compared"
        );
        assert_eq!(
            all_devices(&moved).await,
            registered,
            "the registrations made are not what was copied"
        );
    }

    // And back, to a fresh data directory: the cluster's secret is kept there.
    let to_embedded = [
        ("MEDIATOR_DATA_DIR", back_dir.as_str()),
        ("MEDIATOR_STORAGE__REDIS__URL", redis.url()),
        ("MEDIATOR_STORAGE__REDIS__KEY_PREFIX", prefix),
        ("MEDIATOR_MASTER_SECRET", secret.as_str()),
    ];
    let out = run_copy("redis", "embedded", &to_embedded).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(back.path().join("master_secret"))
            .unwrap()
            .trim(),
        secret
    );
    let back_stores = embedded_stores(back.path());
    assert_eq!(same(&moved, &back_stores).await, (2, 4, 10, 2));
    assert_eq!(same(&node_stores, &back_stores).await, (2, 4, 10, 2));
    drop((node_stores, back_stores));

    // A cluster on the copied Redis, with the node's master secret.
    let extra = [("MEDIATOR_MASTER_SECRET", secret.as_str())];
    let one = Proc::start_with("copy-c1", redis.url(), prefix, &extra);
    let two = Proc::start_with("copy-c2", redis.url(), prefix, &extra);
    one.ready().await;
    two.ready().await;
    // A copy from a Redis that instances use: refused.
    let busy = tempfile::tempdir().unwrap();
    let busy_dir = busy.path().display().to_string();
    let refused = run_copy(
        "redis",
        "embedded",
        &[
            ("MEDIATOR_DATA_DIR", busy_dir.as_str()),
            ("MEDIATOR_STORAGE__REDIS__URL", redis.url()),
            ("MEDIATOR_STORAGE__REDIS__KEY_PREFIX", prefix),
            ("MEDIATOR_MASTER_SECRET", secret.as_str()),
        ],
    )
    .await;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("live mediator instances"),
        "{}",
        text(&refused)
    );
    assert_eq!(
        std::fs::read_dir(busy.path()).unwrap().count(),
        0,
        "a refused copy wrote into the data directory"
    );

    // The same clients, no new handshake: the same routing key, every queued message.
    for (holder, instance) in holders.iter_mut().zip([&two, &one]) {
        holder.client.use_base(&instance.base);
        let grant = holder.client.mediate().await;
        assert_eq!(
            grant["routing_keys"][0].as_str(),
            Some(holder.routing.to_did_key().as_str()),
            "{grant}"
        );
        assert_eq!(
            fetch_all(&holder.client, &holder.recipient).await,
            holder.sent,
            "delivered by {}",
            instance.name
        );
    }
}

async fn holders_connection(stores: &Stores, holder: &Holder) -> ConnectionId {
    stores
        .mediation
        .connection_for_key(holder.recipient.verkey())
        .await
        .unwrap()
        .expect("the key routes to a connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_refuses_a_data_directory_in_use() {
    let redis = RedisServer::start().unwrap();
    let data = tempfile::tempdir().unwrap();
    let node = Proc::start_embedded_on(
        mediator::testing::free_port(),
        "copy-locked",
        data.path(),
        &[],
    );
    node.ready().await;
    let data_dir = data.path().display().to_string();
    let out = run_copy(
        "embedded",
        "redis",
        &[
            ("MEDIATOR_DATA_DIR", data_dir.as_str()),
            ("MEDIATOR_STORAGE__REDIS__URL", redis.url()),
            ("MEDIATOR_STORAGE__REDIS__KEY_PREFIX", "locked:"),
        ],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by a running mediator"),
        "{}",
        text(&out)
    );
    let moved = redis_stores(redis.pool().unwrap(), "locked:");
    assert!(all_ids(&moved).await.is_empty(), "nothing is copied");
}

/// On a Redis Cluster (sharded pub/sub, keys over three masters): the copy is refused while an
/// instance runs under the prefix, and once it stopped, everything is copied and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_a_redis_cluster() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3).unwrap())
        .await
        .unwrap();
    let seeds = cluster.urls().join(",");
    let prefix = "moved-rc:";
    let data = tempfile::tempdir().unwrap();
    let mut node = Proc::start_embedded_on(
        mediator::testing::free_port(),
        "copy-rc-node",
        data.path(),
        &[],
    );
    node.ready().await;
    let mut client = Client::connect_base(&node.base, "didcomm:transport/queue").await;
    let (routing, recipient) = client.mediation_with_key().await;
    let sent: BTreeSet<u64> = (0..5).collect();
    for seq in &sent {
        let (status, body) =
            common::post_envelope(&node.base, forward(&routing, recipient.verkey(), *seq)).await;
        assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    }
    assert!(
        node.sigterm_and_wait(Duration::from_secs(20)),
        "the node did not stop cleanly"
    );
    let secret = std::fs::read_to_string(data.path().join("master_secret")).unwrap();
    let secret = secret.trim().to_owned();
    register_devices(data.path(), &[&recipient]).await;
    let instance_env = [
        ("MEDIATOR_STORAGE__REDIS__CLUSTER", "true"),
        ("MEDIATOR_STORAGE__REDIS__CLUSTER_NODES", seeds.as_str()),
        ("MEDIATOR_MASTER_SECRET", secret.as_str()),
    ];
    let data_dir = data.path().display().to_string();
    let vars = [
        ("MEDIATOR_DATA_DIR", data_dir.as_str()),
        ("MEDIATOR_STORAGE__REDIS__CLUSTER", "true"),
        ("MEDIATOR_STORAGE__REDIS__CLUSTER_NODES", seeds.as_str()),
        ("MEDIATOR_STORAGE__REDIS__KEY_PREFIX", prefix),
    ];

    let mut early = Proc::start_with("copy-rc-early", &cluster.urls()[0], prefix, &instance_env);
    early.ready().await;
    let refused = run_copy("embedded", "redis", &vars).await;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("live mediator instances"),
        "{}",
        text(&refused)
    );
    assert!(
        early.sigterm_and_wait(Duration::from_secs(20)),
        "the instance did not stop cleanly"
    );
    // Its subscription ends when Redis has handled its connection's close: wait for that.
    let pool = RedisPool::from(cluster.pool().unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut conn = pool.get().await.unwrap();
        let counts: std::collections::HashMap<String, i64> = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .arg(format!("{prefix}live:events"))
            .query_async(&mut conn)
            .await
            .unwrap();
        if counts.values().sum::<i64>() == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stopped instance is still subscribed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let out = run_copy("embedded", "redis", &vars).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(
            "1 connections, 1 mediation records, 1 keylist keys, 5 queued messages, 1 push \
                 registrations"
        ),
        "{}",
        text(&out)
    );
    {
        let node_stores = embedded_stores(data.path());
        assert_eq!(
            same(&node_stores, &redis_stores(pool.clone(), prefix)).await,
            (1, 1, 5, 1)
        );
    }

    let instance = Proc::start_with("copy-rc-1", &cluster.urls()[0], prefix, &instance_env);
    instance.ready().await;
    client.use_base(&instance.base);
    assert_eq!(fetch_all(&client, &recipient).await, sent);
}
