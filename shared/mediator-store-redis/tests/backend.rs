//! What the contract suites cannot see: Redis specifics of these backends (stored forms, bad
//! data, prefixes, Redis Cluster slots, a Redis restart) and the test server helper itself.

use std::{sync::Arc, time::Duration};

use didcomm_envelope::{KeyPair, VerKey};
use mediator_store::{
    contract, ConnectionId, ConnectionRecord, ConnectionState, ConnectionStore, DeviceInfo,
    DeviceStore, HandshakeProtocol, KeylistAction, KeylistResult, KeylistUpdate,
    LiveSessionRegistry, MediationStore, MessageQueue, PushPlatform, StoreError,
};
use mediator_store_redis::{
    deadpool_redis::{self, redis, Pool},
    testing::RedisServer,
    RedisConnectionStore, RedisDeviceStore, RedisLiveSessionRegistry, RedisMediationStore,
    RedisMessageQueue, RedisPool,
};

fn key() -> VerKey {
    *KeyPair::generate().expect("key generation").verkey()
}

fn prefix() -> String {
    format!("backend-{}:", uuid::Uuid::new_v4())
}

fn record() -> ConnectionRecord {
    let id = ConnectionId::generate();
    ConnectionRecord {
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
    }
}

fn add(key: VerKey) -> KeylistUpdate {
    KeylistUpdate {
        key,
        action: KeylistAction::Add,
    }
}

async fn raw<T: redis::FromRedisValue>(pool: &Pool, cmd: &redis::Cmd) -> T {
    let mut conn = pool.get().await.expect("pool connection");
    cmd.query_async(&mut conn).await.expect("raw command")
}

fn is_corrupt<T>(result: &Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Corrupt { .. }))
}

fn server() -> RedisServer {
    RedisServer::start().expect("starting a test redis-server")
}

#[tokio::test]
async fn keys_are_stored_in_base58_under_the_store_tag() {
    let server = server();
    let pool = server.pool().expect("pool");
    let mediation = RedisMediationStore::new(pool.clone(), "tenant-a:");
    let conn = ConnectionId::from("c-1");
    let k = key();
    let parsed = VerKey::parse(&k.to_did_key()).expect("did:key");
    mediation
        .update_keylist(&conn, &[add(parsed)])
        .await
        .expect("update_keylist");
    let owner: Option<String> = raw(
        &pool,
        redis::cmd("HGET")
            .arg("{tenant-a:m}:key-owner")
            .arg(k.to_base58()),
    )
    .await;
    assert_eq!(
        owner.as_deref(),
        Some("c-1"),
        "routing entry not under base58"
    );
    let listed: Vec<String> = raw(
        &pool,
        redis::cmd("ZRANGE")
            .arg("{tenant-a:m}:keylist:c-1")
            .arg(0)
            .arg(-1),
    )
    .await;
    assert_eq!(listed, [k.to_base58()], "keylist entry not base58");

    let connections = RedisConnectionStore::new(pool.clone(), "tenant-a:");
    let rec = record();
    connections.insert(&rec).await.expect("insert");
    let by_my: Option<String> = raw(
        &pool,
        redis::cmd("HGET")
            .arg("{tenant-a:c}:by-my-verkey")
            .arg(rec.my_verkey.to_base58()),
    )
    .await;
    assert_eq!(by_my.as_deref(), Some(rec.id.as_str()));
}

/// Expired connection records go with every index entry and their expiry entry, whether an
/// insert takes their identities or the sweep removes them: nothing is left behind.
#[tokio::test]
async fn expired_connections_leave_no_keys() {
    let server = server();
    let pool = server.pool().expect("pool");
    let p = prefix();
    let store = RedisConnectionStore::new(pool.clone(), &p);
    let past = mediator_store::unix_ms_now() - 1_000;
    let swept = ConnectionRecord {
        expires_at_ms: Some(past),
        ..record()
    };
    let replaced = ConnectionRecord {
        expires_at_ms: Some(past),
        their_keys: vec![key(), key()],
        ..record()
    };
    store.insert(&swept).await.expect("insert");
    store.insert(&replaced).await.expect("insert");
    let successor = ConnectionRecord {
        my_verkey: replaced.my_verkey,
        thread_id: replaced.thread_id.clone(),
        ..record()
    };
    store
        .insert(&successor)
        .await
        .expect("insert over an expired record");
    assert_eq!(store.sweep_expired(10).await.expect("sweep"), 1);
    assert!(store.delete(&successor.id).await.expect("delete"));
    let names = [
        "records",
        "by-my-verkey",
        "by-thread",
        "by-their-verkey",
        "expiring",
    ];
    for name in names {
        let exists: i64 = raw(&pool, redis::cmd("EXISTS").arg(format!("{{{p}c}}:{name}"))).await;
        assert_eq!(exists, 0, "{name} still holds entries of removed records");
    }
}

#[tokio::test]
async fn prefixes_isolate_and_same_prefix_shares() {
    let server = server();
    let (a, b) = (prefix(), prefix());
    let store_a = RedisMediationStore::new(server.pool().expect("pool"), &a);
    let store_b = RedisMediationStore::new(server.pool().expect("pool"), &b);
    let again_a = RedisMediationStore::new(server.pool().expect("pool"), &a);
    let k = key();
    let (ca, cb) = (ConnectionId::generate(), ConnectionId::generate());
    store_a.update_keylist(&ca, &[add(k)]).await.expect("add");
    assert_eq!(
        store_b
            .update_keylist(&cb, &[add(k)])
            .await
            .expect("add")
            .first()
            .map(|o| o.result),
        Some(KeylistResult::Success),
        "a key of another prefix's store is taken here"
    );
    assert_eq!(
        again_a.connection_for_key(&k).await.expect("lookup"),
        Some(ca),
        "a second store on the same prefix does not see the first's keys"
    );
}

#[tokio::test]
async fn undecodable_records_are_corrupt_errors_not_panics() {
    let server = server();
    let pool = server.pool().expect("pool");
    let p = prefix();
    let connections = RedisConnectionStore::new(pool.clone(), &p);
    let rec = record();
    connections.insert(&rec).await.expect("insert");
    let records = format!("{{{p}c}}:records");
    let () = raw(
        &pool,
        redis::cmd("HSET")
            .arg(&records)
            .arg(rec.id.as_str())
            .arg("{not a record"),
    )
    .await;
    let got = connections.get(&rec.id).await;
    assert!(is_corrupt(&got), "get of a damaged record: {got:?}");
    let got = connections.find_by_my_verkey(&rec.my_verkey).await;
    assert!(
        is_corrupt(&got),
        "find_by_my_verkey of a damaged record: {got:?}"
    );
    let got = connections.find_by_their_verkey(&rec.their_keys[0]).await;
    assert!(
        is_corrupt(&got),
        "find_by_their_verkey of a damaged record: {got:?}"
    );
    let got = connections.update(&rec).await;
    assert!(is_corrupt(&got), "update of a damaged record: {got:?}");
    let got = connections.delete(&rec.id).await;
    assert!(is_corrupt(&got), "delete of a damaged record: {got:?}");

    let mediation = RedisMediationStore::new(pool.clone(), &p);
    let conn = ConnectionId::generate();
    let () = raw(
        &pool,
        redis::cmd("HSET")
            .arg(format!("{{{p}m}}:records"))
            .arg(conn.as_str())
            .arg("[]"),
    )
    .await;
    let got = mediation.get(&conn).await;
    assert!(is_corrupt(&got), "get of a damaged mediation: {got:?}");
    let () = raw(
        &pool,
        redis::cmd("ZADD")
            .arg(format!("{{{p}m}}:keylist:{conn}"))
            .arg(1)
            .arg("not-base58-0OIl"),
    )
    .await;
    let got = mediation.keylist(&conn, 0, 10).await;
    assert!(is_corrupt(&got), "a damaged keylist entry: {got:?}");

    // A key of the wrong type is the backend's failure (WRONGTYPE), with the client's error kept.
    let () = raw(&pool, redis::cmd("SET").arg(&records).arg("x")).await;
    match connections.get(&rec.id).await {
        Err(err @ StoreError::Backend(_)) => {
            let source = std::error::Error::source(&err).expect("source kept");
            assert!(
                source.downcast_ref::<redis::RedisError>().is_some(),
                "backend error source is not the redis error: {source:?}"
            );
        }
        other => panic!("get on a wrong-type key: expected Backend, got {other:?}"),
    }
}

/// A registration is its JSON under the connection's tag, listed in the index; a claim is a key
/// that expires with its interval; a damaged registration is a corrupt error, never a panic.
#[tokio::test]
async fn device_info_is_stored_as_json_and_claims_expire_by_themselves() {
    let server = server();
    let pool = server.pool().expect("pool");
    let p = prefix();
    let store = RedisDeviceStore::new(pool.clone(), &p);
    let conn = ConnectionId::from("c-1");
    let info = contract::devices::sample(PushPlatform::Fcm);
    store.set(&conn, &info).await.expect("set");
    let stored: String = raw(&pool, redis::cmd("GET").arg(format!("{{{p}d:c-1}}:device"))).await;
    let json: serde_json::Value = serde_json::from_str(&stored).expect("JSON");
    assert_eq!(json["platform"], "fcm", "{stored}");
    assert_eq!(json["token"], info.token.as_str(), "{stored}");
    let indexed: Vec<String> = raw(
        &pool,
        redis::cmd("ZRANGE")
            .arg(format!("{{{p}x}}:devices"))
            .arg(0)
            .arg(-1),
    )
    .await;
    assert_eq!(indexed, vec!["c-1".to_owned()]);

    assert!(store
        .claim_notification(&conn, 60_000)
        .await
        .expect("claim"));
    let ttl: i64 = raw(&pool, redis::cmd("PTTL").arg(format!("{{{p}d:c-1}}:claim"))).await;
    assert!(
        (1..=60_000).contains(&ttl),
        "the claim key does not expire with its interval: PTTL {ttl}"
    );
    assert!(store.clear(&conn).await.expect("clear"));
    let indexed: Vec<String> = raw(
        &pool,
        redis::cmd("ZRANGE")
            .arg(format!("{{{p}x}}:devices"))
            .arg(0)
            .arg(-1),
    )
    .await;
    assert!(
        indexed.is_empty(),
        "a cleared registration is still indexed"
    );

    let damaged = ConnectionId::from("c-2");
    store.set(&damaged, &info).await.expect("set");
    let () = raw(
        &pool,
        redis::cmd("SET")
            .arg(format!("{{{p}d:c-2}}:device"))
            .arg("{not json"),
    )
    .await;
    let got = store.get(&damaged).await;
    assert!(is_corrupt(&got), "get of a damaged registration: {got:?}");
    let got = store.clear_if_token(&damaged, &info.token).await;
    assert!(is_corrupt(&got), "clear_if_token of a damaged one: {got:?}");
    let got = store.list(None, 10).await;
    assert!(is_corrupt(&got), "list over a damaged one: {got:?}");
    assert!(
        store.clear(&damaged).await.expect("clear"),
        "a damaged registration cannot be cleared"
    );
}

/// Index entries whose registration is gone (a failure between the two steps of a write, or a
/// key deleted by hand) are skipped, and pages before the last stay full.
#[tokio::test]
async fn device_list_skips_index_entries_of_gone_registrations() {
    let server = server();
    let pool = server.pool().expect("pool");
    let p = prefix();
    let store = RedisDeviceStore::new(pool.clone(), &p);
    let mut all: Vec<(ConnectionId, DeviceInfo)> = Vec::new();
    for n in 0..8 {
        let conn = ConnectionId::from(format!("c-{n}"));
        let info = contract::devices::sample(PushPlatform::Apns);
        store.set(&conn, &info).await.expect("set");
        all.push((conn, info));
    }
    // Gone behind the store's back: the first, two in the middle, the last.
    for n in [0, 3, 4, 7] {
        let () = raw(
            &pool,
            redis::cmd("DEL").arg(format!("{{{p}d:c-{n}}}:device")),
        )
        .await;
    }
    let left: Vec<_> = all
        .into_iter()
        .enumerate()
        .filter(|(n, _)| ![0, 3, 4, 7].contains(n))
        .map(|(_, device)| device)
        .collect();
    let mut listed = Vec::new();
    let mut after: Option<ConnectionId> = None;
    loop {
        let page = store.list(after.as_ref(), 2).await.expect("list");
        let last = page.len() < 2;
        after = page.last().map(|(id, _)| id.clone());
        listed.extend(page);
        if last {
            break;
        }
        assert!(listed.len() <= left.len(), "list: pages past the end");
    }
    assert_eq!(listed, left);
}

/// A one-node Redis Cluster owning every slot rejects any command or script whose keys span
/// slots (CROSSSLOT): both suites passing there shows each store keeps to one slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn suites_pass_on_a_one_node_cluster() {
    let server = RedisServer::start_with_args([
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
    ])
    .expect("starting a cluster-mode redis-server");
    let pool = server.pool().expect("pool");
    let () = raw(
        &pool,
        redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(0).arg(16383),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = raw(&pool, redis::cmd("CLUSTER").arg("INFO")).await;
        if info.contains("cluster_state:ok") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the one-node cluster did not become ok: {info}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Really in cluster mode: two untagged keys in one MSET are refused.
    let mut conn = pool.get().await.expect("pool connection");
    let crossslot: Result<(), _> = redis::cmd("MSET")
        .arg("a")
        .arg(1)
        .arg("b")
        .arg(2)
        .query_async(&mut conn)
        .await;
    drop(conn);
    assert!(
        crossslot.is_err(),
        "cluster mode does not refuse cross-slot commands"
    );

    contract::connection_store(|| async {
        Arc::new(RedisConnectionStore::new(pool.clone(), &prefix())) as Arc<dyn ConnectionStore>
    })
    .await;
    contract::mediation_store(|| async {
        Arc::new(RedisMediationStore::new(pool.clone(), &prefix())) as Arc<dyn MediationStore>
    })
    .await;
    contract::live_session_registry(|| async {
        Arc::new(RedisLiveSessionRegistry::new(pool.clone(), &prefix()))
            as Arc<dyn LiveSessionRegistry>
    })
    .await;
    contract::device_store(|| async {
        Arc::new(RedisDeviceStore::new(pool.clone(), &prefix())) as Arc<dyn DeviceStore>
    })
    .await;
    let queue_pool = pool.clone();
    contract::message_queue(move |limits| {
        let pool = queue_pool.clone();
        async move {
            Arc::new(RedisMessageQueue::new(pool, &prefix(), limits)) as Arc<dyn MessageQueue>
        }
    })
    .await;
}

/// With the append-only file, data survives a kill -9 and a restart on the same port; while the
/// server is down operations fail as backend errors; after it, the scripts (gone with the
/// restart) are loaded again by themselves.
#[tokio::test]
async fn restart_with_aof_keeps_data_and_reloads_scripts() {
    let mut server =
        RedisServer::start_with_args(["--appendonly", "yes", "--appendfsync", "always"])
            .expect("starting a redis-server with AOF");
    let port = server.port();
    let first_pid = server.pid();
    let store = RedisConnectionStore::new(server.pool().expect("pool"), &prefix());
    let rec = record();
    store.insert(&rec).await.expect("insert");
    assert!(
        store
            .find_by_my_verkey(&rec.my_verkey)
            .await
            .expect("find")
            .is_some(),
        "inserted record not found"
    );

    server.stop().expect("stop");
    assert_eq!(server.pid(), None, "stopped server still has a pid");
    let down = store.get(&rec.id).await;
    assert!(
        matches!(down, Err(StoreError::Backend(_))),
        "with Redis down: expected a backend error, got {down:?}"
    );

    server.restart().expect("restart");
    assert_eq!(server.port(), port, "restart moved the port");
    assert_ne!(server.pid(), first_pid, "restart kept the old process");
    // The same store and pool: the pool drops its connection to the killed process on recycle.
    assert_eq!(
        store
            .find_by_my_verkey(&rec.my_verkey)
            .await
            .expect("find after restart (script loaded again)"),
        Some(rec),
        "record lost across a restart with appendfsync always"
    );
}

#[test]
fn drop_kills_and_reaps_the_server_and_removes_its_dir() {
    let server = server();
    let pid = server.pid().expect("running");
    let dir = server.dir().to_owned();
    assert_ne!(server.port(), 6379, "a test server on the shared port");
    assert!(dir.exists());
    drop(server);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "redis-server {pid} still exists (running or unreaped) after drop"
    );
    assert!(!dir.exists(), "directory left behind");
}

#[test]
fn bad_arguments_are_an_error_with_the_log() {
    let err = RedisServer::start_with_args(["--no-such-option", "1"])
        .expect_err("redis-server started with a bad option");
    let text = err.to_string();
    assert!(
        text.contains("exited") && text.to_lowercase().contains("no-such-option"),
        "error does not say it exited, with the log: {text}"
    );
}

/// A Redis that never answers (a listener that accepts and stays silent): requests that wait for
/// one connection attempt fail with it, instead of each making its own (one timeout each).
#[tokio::test(flavor = "current_thread")]
async fn requests_waiting_for_a_failed_connection_attempt_fail_with_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    let url = format!(
        "redis://{}",
        listener.local_addr().expect("the listener's address")
    );
    // Accepts and keeps every socket open, never writing (the listener thread ends with the test
    // process; it holds no other resource).
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let mut config = deadpool_redis::Config::from_url(url);
    config.pool = Some(deadpool_redis::PoolConfig {
        max_size: 32,
        timeouts: deadpool_redis::Timeouts {
            wait: None,
            create: Some(Duration::from_millis(300)),
            recycle: None,
        },
        ..Default::default()
    });
    let pool = RedisPool::from(
        config
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .expect("a pool"),
    );
    let gets = (0..20).map(|_| pool.get());
    let results = tokio::time::timeout(
        Duration::from_secs(60),
        futures_util::future::join_all(gets),
    )
    .await
    .expect("the attempts end");
    assert!(results.iter().all(Result::is_err));
    assert_eq!(
        pool.connection_attempts(),
        1,
        "one attempt for twenty waiting requests"
    );
}

/// A queue written before arrival scores were `received_ms * 1000 + n` (a plain counter in
/// `:order`, the counter in `:seq`) keeps working: its messages come first, are read, expire by
/// their meta and are removed; once empty, no key is left (`:seq` included).
#[tokio::test]
async fn queues_written_with_arrival_counters_keep_working() {
    let server = server();
    let pool = server.pool().expect("pool");
    let queue = RedisMessageQueue::new(
        pool.clone(),
        "compat:",
        mediator_store::QueueLimits {
            max_messages: None,
            max_bytes: None,
            message_ttl_ms: Some(60_000),
        },
    );
    let conn = ConnectionId::from("c-old");
    let k = key();
    let base = "{compat:q:c-old}:";
    let now_ms = mediator_store::unix_ms_now();
    // Two messages as the counter scheme wrote them: one older than the TTL, one recent.
    for (seq, id, received) in [(1, "old-1", now_ms - 120_000), (2, "old-2", now_ms - 1_000)] {
        let _: () = raw(
            &pool,
            redis::cmd("ZADD")
                .arg(format!("{base}order"))
                .arg(seq)
                .arg(id),
        )
        .await;
        let _: () = raw(
            &pool,
            redis::cmd("HSET").arg(format!("{base}msg")).arg(id).arg(id),
        )
        .await;
        let _: () = raw(
            &pool,
            redis::cmd("HSET")
                .arg(format!("{base}meta"))
                .arg(id)
                .arg(format!("{received}|0|{}", k.to_base58())),
        )
        .await;
    }
    let _: () = raw(&pool, redis::cmd("SET").arg(format!("{base}bytes")).arg(10)).await;
    let _: () = raw(&pool, redis::cmd("SET").arg(format!("{base}seq")).arg(2)).await;

    let new = queue
        .add(&conn, &[k], bytes::Bytes::from_static(b"new"))
        .await
        .expect("add to an old queue");
    let held = queue.take(&conn, 10, None).await.expect("take");
    let ids: Vec<&str> = held.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        ["old-2", new.as_str()],
        "old messages first, the expired one gone"
    );
    assert_eq!(queue.expired_count(), 1, "the old message past its TTL");
    assert_eq!(&held[0].payload[..], b"old-2");
    assert!(held[1].received_at_ms >= held[0].received_at_ms);
    let status = queue.status(&conn, None).await.expect("status");
    assert_eq!((status.message_count, status.total_bytes), (2, 8));
    let removed = queue
        .remove(&conn, &[held[0].id.clone(), new.clone(), new])
        .await
        .expect("remove");
    assert_eq!(removed, 2, "a repeated id counts once");
    let left: Vec<String> = raw(&pool, redis::cmd("KEYS").arg("{compat:q:*")).await;
    assert!(left.is_empty(), "an emptied queue left keys: {left:?}");
}

/// Group commit (one node): adds that wait while a call is out go to Redis together, in one
/// script call, and each keeps what a lone add would do: its queue's caps checked message by
/// message, FIFO within a queue, the queue listed for the sweep, an answer of its own.
#[tokio::test(flavor = "current_thread")]
async fn adds_waiting_together_are_committed_in_one_call_each_with_its_own_outcome() {
    let server = server();
    let pool = server.pool().expect("pool");
    let queue = RedisMessageQueue::new(
        pool.clone(),
        "group:",
        // No TTL: a full queue then refuses at once (with one, the add is retried after an
        // expiry pass, alone, and the call count below would count those too).
        mediator_store::QueueLimits {
            max_messages: Some(15),
            max_bytes: None,
            message_ttl_ms: None,
        },
    );
    let k = key();
    // The script is loaded by a first add, so the figures below count only the adds.
    let warm = ConnectionId::from("warm-up");
    let warm_id = queue
        .add(&warm, &[k], bytes::Bytes::from_static(b"w"))
        .await
        .expect("first add");
    queue.remove(&warm, &[warm_id]).await.expect("remove");
    let () = raw(&pool, redis::cmd("CONFIG").arg("RESETSTAT")).await;

    // 200 adds to 10 queues (20 each, 15 fit), each a task of its own as requests are, all
    // started before any is answered: on this one-thread runtime every task hands its message
    // over before the committer (spawned by the first) first runs. Each notes when it handed its
    // message to the store (nothing between that and the hand-over waits): the order the store
    // must keep within a queue.
    let connections: Vec<ConnectionId> = (0..10)
        .map(|i| ConnectionId::from(format!("c{i}")))
        .collect();
    let handed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let (queue, handed) = (queue.clone(), Arc::clone(&handed));
            let conn = connections[n % 10].clone();
            tokio::spawn(async move {
                let order = handed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let result = queue
                    .add(&conn, &[k], bytes::Bytes::from(format!("m{n}")))
                    .await;
                (order, n, conn, result)
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("add task"));
    }
    results.sort_by_key(|(order, ..)| *order);

    let stats: String = raw(&pool, redis::cmd("INFO").arg("commandstats")).await;
    let evalsha = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse::<u64>().ok())
        .unwrap_or(0);
    assert_eq!(
        evalsha, 2,
        "200 waiting adds are two calls (128 + 72), not one each: {stats}"
    );
    let sadd = stats.lines().any(|l| l.starts_with("cmdstat_sadd:"));
    assert!(sadd, "the add script lists new queues: {stats}");

    for conn in &connections {
        // This queue's adds in the order they were handed over.
        let mine: Vec<_> = results.iter().filter(|(_, _, c, _)| c == conn).collect();
        let outcomes: Vec<&str> = mine
            .iter()
            .map(|(_, _, _, r)| match r {
                Ok(_) => "added",
                Err(StoreError::QueueFull {
                    cap: mediator_store::QueueCap::Messages(15),
                    ..
                }) => "full",
                Err(_) => "other error",
            })
            .collect();
        let mut expected_outcomes = vec!["added"; 15];
        expected_outcomes.extend(["full"; 5]);
        assert_eq!(outcomes, expected_outcomes, "queue {conn}");
        let held = queue.take(conn, 100, None).await.expect("take");
        let got: Vec<(String, Vec<u8>)> = held
            .iter()
            .map(|m| (m.id.to_string(), m.payload.to_vec()))
            .collect();
        let expected: Vec<(String, Vec<u8>)> = mine
            .iter()
            .filter_map(|(_, n, _, r)| {
                let id = r.as_ref().ok()?;
                Some((id.to_string(), format!("m{n}").into_bytes()))
            })
            .collect();
        assert_eq!(got, expected, "queue {conn} in the order of its adds");
    }
    let listed: Vec<String> = raw(&pool, redis::cmd("SMEMBERS").arg("{group:x}:queues")).await;
    for conn in &connections {
        assert!(
            listed.iter().any(|c| c == conn.as_str()),
            "{conn} not listed for the sweep: {listed:?}"
        );
    }
}

/// Group commit of removals (one node): acknowledgements that wait while a call is out go to
/// Redis together, in one script call, and each gets its own count: an id of another queue, a
/// repeated id and an unknown one remove nothing, and a queue emptied leaves no key.
#[tokio::test(flavor = "current_thread")]
async fn removals_waiting_together_are_committed_in_one_call_each_with_its_own_count() {
    let server = server();
    let pool = server.pool().expect("pool");
    let queue = RedisMessageQueue::new(
        pool.clone(),
        "groupr:",
        mediator_store::QueueLimits::default(),
    );
    let k = key();
    let connections: Vec<ConnectionId> = (0..10)
        .map(|i| ConnectionId::from(format!("c{i}")))
        .collect();
    let mut ids: Vec<Vec<mediator_store::MessageId>> = Vec::new();
    for conn in &connections {
        let mut mine = Vec::new();
        for n in 0..13 {
            let id = queue
                .add(conn, &[k], bytes::Bytes::from(format!("m{n}")))
                .await
                .expect("add");
            mine.push(id);
        }
        ids.push(mine);
    }
    // Loads the script, so the figures below count only the removals.
    assert_eq!(queue.remove(&connections[0], &[]).await.expect("none"), 0);
    let unknown = mediator_store::MessageId::from("no-such-message");
    assert_eq!(
        queue
            .remove(&connections[0], std::slice::from_ref(&unknown))
            .await
            .expect("unknown"),
        0
    );
    let () = raw(&pool, redis::cmd("CONFIG").arg("RESETSTAT")).await;

    // 130 acknowledgements, each a task of its own (started before any is answered: on this
    // one-thread runtime each hands its removal over before the committer first runs): message n
    // of its queue, listed twice, with a message of the next queue and an unknown id.
    let tasks: Vec<_> = (0..130)
        .map(|j| {
            let (q, n) = (j % 10, j / 10);
            let queue = queue.clone();
            let conn = connections[q].clone();
            let list = vec![
                ids[q][n].clone(),
                ids[(q + 1) % 10][n].clone(),
                ids[q][n].clone(),
                unknown.clone(),
            ];
            tokio::spawn(async move { queue.remove(&conn, &list).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task").expect("remove"), 1);
    }
    let stats: String = raw(&pool, redis::cmd("INFO").arg("commandstats")).await;
    let evalsha = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse::<u64>().ok())
        .unwrap_or(0);
    assert_eq!(
        evalsha, 2,
        "130 waiting removals are two calls (128 + 2), not one each: {stats}"
    );
    for conn in &connections {
        let status = queue.status(conn, None).await.expect("status");
        assert_eq!(status.message_count + status.in_flight, 0, "queue {conn}");
    }
    let left: Vec<String> = raw(&pool, redis::cmd("KEYS").arg("{groupr:q:*")).await;
    assert!(left.is_empty(), "emptied queues left keys: {left:?}");
}

/// A Forward to a live session on another instance: the add publishes the holder's notice in
/// the same script (one round trip), with the id the message got; the subscriber count comes
/// back; a refused add publishes nothing. The lone add and the grouped one behave alike.
#[tokio::test]
async fn an_announced_add_publishes_its_notice_in_the_same_call() {
    use futures_util::StreamExt;
    use mediator_store::Announcement;

    let server = server();
    let pool = server.pool().expect("pool");
    let client = redis::Client::open(server.url()).expect("client");
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
    pubsub.subscribe("to:holder").await.expect("subscribe");
    let mut heard = pubsub.into_on_message();
    let k = key();
    for group_commit in [true, false] {
        let queue = RedisMessageQueue::new(
            pool.clone(),
            &prefix(),
            mediator_store::QueueLimits {
                max_messages: Some(1),
                max_bytes: None,
                message_ttl_ms: None,
            },
        )
        .with_group_commit(group_commit);
        let conn = ConnectionId::generate();
        let notice = |id: &mediator_store::MessageId| format!("deliver {id}").into_bytes();
        let announce = |channel| Announcement {
            channel,
            notice: &notice,
        };
        let (id, count) = queue
            .add_leased_announced(
                &conn,
                &[k],
                bytes::Bytes::from_static(b"m"),
                30_000,
                announce("to:holder"),
            )
            .await
            .expect("announced add");
        assert_eq!(
            count,
            Some(1),
            "one subscriber heard it (group commit {group_commit})"
        );
        let message = tokio::time::timeout(Duration::from_secs(5), heard.next())
            .await
            .expect("the notice arrives")
            .expect("subscription open");
        let text: String = message.get_payload().expect("payload");
        assert_eq!(text, format!("deliver {id}"));
        let held = queue.take(&conn, 10, None).await.expect("take");
        assert_eq!(held.len(), 1);
        assert_eq!(
            (&held[0].id, held[0].deliveries),
            (&id, 1),
            "stored in flight"
        );

        // Over the cap: refused, nothing published (the next notice seen is the one below).
        let refused = queue
            .add_leased_announced(
                &conn,
                &[k],
                bytes::Bytes::from_static(b"m2"),
                30_000,
                announce("to:holder"),
            )
            .await;
        assert!(
            matches!(refused, Err(StoreError::QueueFull { .. })),
            "{refused:?}"
        );
        // Nobody on the channel: stored, heard by none.
        let other = ConnectionId::generate();
        let (_, count) = queue
            .add_leased_announced(
                &other,
                &[k],
                bytes::Bytes::from_static(b"m3"),
                30_000,
                announce("to:nobody"),
            )
            .await
            .expect("announced add, nobody listening");
        assert_eq!(count, Some(0));
        let marker = queue
            .add_leased_announced(
                &ConnectionId::generate(),
                &[k],
                bytes::Bytes::from_static(b"m4"),
                30_000,
                announce("to:holder"),
            )
            .await
            .expect("marker")
            .0;
        let message = tokio::time::timeout(Duration::from_secs(5), heard.next())
            .await
            .expect("the marker's notice arrives")
            .expect("subscription open");
        let text: String = message.get_payload().expect("payload");
        assert_eq!(
            text,
            format!("deliver {marker}"),
            "the refused add published nothing"
        );
    }
}
