//! The backends on a real three-master Redis Cluster (private, one per test binary) through the
//! cluster client (`RedisPool::Cluster`): every contract check, one test each, and what only a
//! cluster shows: queues spread over the masters, each store keeps to one slot, and a script
//! flushed from its node is loaded again.

use std::{collections::HashSet, sync::OnceLock};

use bytes::Bytes;
use didcomm_envelope::{KeyPair, VerKey};
use mediator_store::{ConnectionId, MessageQueue, QueueLimits};
use mediator_store_redis::{
    deadpool_redis::redis, testing::RedisCluster, RedisConnectionStore, RedisMessageQueue,
    RedisPool,
};

/// The cluster of this test binary. Held in a static, so never dropped: the watchdogs of its
/// nodes kill them when the binary exits.
fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start(3).expect("starting the test Redis Cluster"))
}

/// A cluster pool for the calling test (pooled connections must not outlive their runtime).
fn pool() -> RedisPool {
    cluster()
        .pool()
        .expect("pool for the test Redis Cluster")
        .into()
}

fn unique_prefix() -> String {
    format!("cluster-{}:", uuid::Uuid::new_v4())
}

fn key() -> VerKey {
    *KeyPair::generate().expect("key generation").verkey()
}

/// How many of `keys` each node holds itself (asked on the node, over a plain connection: a
/// key of another node's slot is answered with `MOVED`, which counts as not here).
async fn held_per_node(keys: &[String]) -> Vec<usize> {
    let mut held = Vec::new();
    for node in cluster().nodes() {
        let pool = node.pool().expect("pool to one node");
        let mut conn = pool.get().await.expect("connection to one node");
        let mut here = 0;
        for key in keys {
            let exists: Result<i64, _> = redis::cmd("EXISTS").arg(key).query_async(&mut conn).await;
            match exists {
                Ok(1) => here += 1,
                Ok(_) => {}
                Err(err)
                    if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::Moved) => {}
                Err(err) => panic!("EXISTS {key} on {}: {err}", node.url()),
            }
        }
        held.push(here);
    }
    held
}

mod connection_store {
    use std::sync::Arc;

    use mediator_store_redis::RedisConnectionStore;

    mediator_store::connection_store_contract_tests!(|| async {
        Arc::new(RedisConnectionStore::new(
            super::pool(),
            &super::unique_prefix(),
        ))
    });
}

mod message_queue {
    use std::sync::Arc;

    use mediator_store_redis::RedisMessageQueue;

    mediator_store::message_queue_contract_tests!(|limits| async move {
        Arc::new(RedisMessageQueue::new(
            super::pool(),
            &super::unique_prefix(),
            limits,
        ))
    });
}

mod seen_messages {
    use std::sync::Arc;

    use mediator_store_redis::RedisSeenMessages;

    mediator_store::seen_messages_contract_tests!(|cap| async move {
        Arc::new(RedisSeenMessages::new(
            super::pool(),
            &super::unique_prefix(),
            cap,
        ))
    });
}

mod live_session_registry {
    use std::sync::Arc;

    use mediator_store_redis::RedisLiveSessionRegistry;

    mediator_store::live_session_registry_contract_tests!(|| async {
        Arc::new(RedisLiveSessionRegistry::new(
            super::pool(),
            &super::unique_prefix(),
        ))
    });
}

mod mediation_store {
    use std::sync::Arc;

    use mediator_store_redis::RedisMediationStore;

    mediator_store::mediation_store_contract_tests!(|| async {
        Arc::new(RedisMediationStore::new(
            super::pool(),
            &super::unique_prefix(),
        ))
    });
}

/// Queues are tagged per connection, so the queues of a few dozen connections land on every
/// master; the sweep's index of queues is one set (one slot) and still finds them all.
#[tokio::test]
async fn queues_spread_over_every_master_and_the_sweep_still_finds_them() {
    let pool = pool();
    assert!(pool.is_cluster());
    let prefix = unique_prefix();
    let limits = QueueLimits {
        message_ttl_ms: Some(60_000),
        ..QueueLimits::UNLIMITED
    };
    let queue = RedisMessageQueue::new(pool.clone(), &prefix, limits);
    let k = key();
    let connections: Vec<ConnectionId> = (0..48).map(|_| ConnectionId::generate()).collect();
    for c in &connections {
        queue
            .add(c, &[k], Bytes::from_static(b"{\"queued\":true}"))
            .await
            .expect("add");
    }
    let payload_keys: Vec<String> = connections
        .iter()
        .map(|c| format!("{{{prefix}q:{c}}}:msg"))
        .collect();
    let held = held_per_node(&payload_keys).await;
    assert_eq!(
        held.iter().sum::<usize>(),
        connections.len(),
        "every queue on exactly one node: {held:?}"
    );
    assert!(
        held.iter().all(|&n| n > 0),
        "queues of 48 connections did not reach every master: queues per node {held:?}"
    );
    for c in &connections {
        let status = queue.status(c, None).await.expect("status");
        assert_eq!(status.message_count, 1, "queue of {c}");
    }
    // Nothing is expired yet: the sweep walks the whole index without an error (a cross-slot
    // call would fail here) and removes nothing.
    let mut removed = 0;
    for _ in 0..10 {
        removed += queue.sweep_expired(100).await.expect("sweep");
    }
    assert_eq!(removed, 0);
}

/// All keys of the connection store share one hash tag: they hash to one slot.
#[tokio::test]
async fn a_store_keeps_to_one_slot() {
    use mediator_store::{ConnectionRecord, ConnectionState, ConnectionStore, HandshakeProtocol};

    let pool = pool();
    let prefix = unique_prefix();
    let store = RedisConnectionStore::new(pool.clone(), &prefix);
    let id = ConnectionId::generate();
    let record = ConnectionRecord {
        thread_id: format!("thread-{id}"),
        invitation_id: None,
        their_label: None,
        their_did: "did:peer:2.test".to_owned(),
        their_did_doc: None,
        their_keys: vec![key()],
        their_routing_keys: Vec::new(),
        their_endpoint: None,
        my_did: "did:peer:2.mediator".to_owned(),
        my_verkey: key(),
        state: ConnectionState::Completed,
        protocol: HandshakeProtocol::DidExchange { minor: 1 },
        created_at_ms: 1,
        updated_at_ms: 1,
        expires_at_ms: None,
        id,
    };
    store.insert(&record).await.expect("insert");
    let mut conn = pool.get().await.expect("connection");
    let mut slots = HashSet::new();
    for suffix in ["records", "by-my-verkey", "by-thread", "by-their-verkey"] {
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(format!("{{{prefix}c}}:{suffix}"))
            .query_async(&mut conn)
            .await
            .expect("CLUSTER KEYSLOT");
        let stored: i64 = redis::cmd("CLUSTER")
            .arg("COUNTKEYSINSLOT")
            .arg(slot)
            .query_async(&mut conn)
            .await
            .expect("CLUSTER COUNTKEYSINSLOT");
        assert!(stored >= 4, "slot {slot} holds {stored} keys");
        slots.insert(slot);
    }
    assert_eq!(slots.len(), 1, "connection store keys in slots {slots:?}");
}

/// A node that lost its scripts (`SCRIPT FLUSH`, as after a restart or failover) answers
/// `NOSCRIPT`; the script is loaded again and the call goes through.
#[tokio::test]
async fn scripts_flushed_from_every_node_are_loaded_again() {
    let pool = pool();
    let queue = RedisMessageQueue::new(pool.clone(), &unique_prefix(), QueueLimits::UNLIMITED);
    let c = ConnectionId::generate();
    queue
        .add(&c, &[key()], Bytes::from_static(b"{}"))
        .await
        .expect("add");
    let mut conn = pool.get().await.expect("connection");
    // SCRIPT FLUSH goes to every node.
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .expect("SCRIPT FLUSH");
    drop(conn);
    assert_eq!(
        queue.status(&c, None).await.expect("status").message_count,
        1
    );
    queue
        .add(&c, &[key()], Bytes::from_static(b"{}"))
        .await
        .expect("add after the flush");
    assert_eq!(queue.take(&c, 10, None).await.expect("take").len(), 2);
}

mod device_store {
    use std::sync::Arc;

    use mediator_store_redis::RedisDeviceStore;

    mediator_store::device_store_contract_tests!(|| async {
        Arc::new(RedisDeviceStore::new(
            super::pool(),
            &super::unique_prefix(),
        ))
    });
}
