//! The mediator on a three-master Redis Cluster (private: three `redis-server
//! --cluster-enabled yes` joined by `redis-cli --cluster create`, one cluster per test binary):
//! a Forward taken by any of three instances reaches the live WebSocket held by one of them
//! (sharded pub/sub), the queues of several connections spread over the masters, an instance
//! whose shard subscription drops resubscribes and reloads, a seed that is down is skipped, and
//! the start-up checks look at every master.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::HashSet, sync::OnceLock};

use common::{
    cluster::{go_live, routed_everywhere, wait_for},
    forward_for, open_ws, Client, Instance,
};
use mediator::config::Config;
use mediator_store::ConnectionId;
use mediator_store_redis::{deadpool_redis::redis, testing::RedisCluster};
use serde_json::{json, Value};

const SECRET: &str = "redis-cluster-test-master-secret-0123456789";

fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start(3).expect("starting the test Redis Cluster"))
}

fn prefix() -> String {
    format!("rc-{}:", uuid::Uuid::new_v4())
}

/// Settings of an instance on `cluster` under `prefix`, seeded with `seeds`.
fn cluster_env(seeds: &[String], prefix: &str, name: &str) -> Vec<(String, String)> {
    [
        ("MEDIATOR_STORAGE__BACKEND", "redis"),
        ("MEDIATOR_STORAGE__REDIS__CLUSTER", "true"),
        ("MEDIATOR_STORAGE__REDIS__CLUSTER_NODES", &seeds.join(",")),
        ("MEDIATOR_STORAGE__REDIS__KEY_PREFIX", prefix),
        ("MEDIATOR_MASTER_SECRET", SECRET),
        ("MEDIATOR_CLUSTER__INSTANCE_ID", name),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

async fn instance_with_seeds(seeds: &[String], prefix: &str, name: &str) -> Instance {
    let env = cluster_env(seeds, prefix, name);
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let i = Instance::start_with(None, &refs).await;
    // Serving starts the subscription: wait until this instance hears its peers.
    wait_for(|| i.mediator.cluster().is_subscribed(), "subscribed").await;
    i
}

async fn instance(prefix: &str, name: &str) -> Instance {
    instance_with_seeds(&cluster().urls(), prefix, name).await
}

/// The index (in `cluster().nodes()`) of the node holding `key`, asked of each node itself over
/// a plain connection (another node's key is answered with MOVED).
async fn node_holding(key: &str) -> Option<usize> {
    for (n, node) in cluster().nodes().iter().enumerate() {
        let pool = node.pool().unwrap();
        let mut conn = pool.get().await.unwrap();
        let exists: Result<i64, _> = redis::cmd("EXISTS").arg(key).query_async(&mut conn).await;
        match exists {
            Ok(1) => return Some(n),
            Ok(_) => {}
            Err(err) if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::Moved) => {}
            Err(err) => panic!("EXISTS {key} on {}: {err}", node.url()),
        }
    }
    None
}

/// The queue payload key of `conn` under `prefix` (the layout of mediator-store-redis).
fn queue_key(prefix: &str, conn: &ConnectionId) -> String {
    format!("{{{prefix}q:{conn}}}:msg")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_to_any_instance_arrive_live_on_the_instance_holding_the_socket() {
    let p = prefix();
    let a = instance(&p, "a").await;
    let b = instance(&p, "b").await;
    let c = instance(&p, "c").await;
    let client = Client::connect(&a).await;
    let (routing, key, conn) = client.mediated_key(&a).await;
    let mut ws = open_ws(&a).await;
    go_live(&client, &mut ws).await;
    routed_everywhere(&[&a, &b, &c], &conn, "a").await;

    let mut ids = Vec::new();
    for n in 0..30 {
        let via = [&a, &b, &c][n % 3];
        let (body, inner) =
            forward_for(&routing, key.verkey(), format!("{{\"n\":{n}}}").as_bytes());
        assert_eq!(via.post(body).await.0, 202);
        let delivery = client.ws_next(&mut ws).await;
        assert_eq!(
            delivery["@type"], "https://didcomm.org/messagepickup/2.0/delivery",
            "{delivery}"
        );
        assert_eq!(
            delivery["~attach"][0]["data"]["json"],
            inner,
            "message {n}, posted to instance {}",
            n % 3
        );
        ids.push(delivery["~attach"][0]["@id"].clone());
    }
    client
        .ws_send(
            &mut ws,
            &Client::msg(
                "messagepickup/2.0/messages-received",
                json!({"message_id_list": ids}),
            ),
        )
        .await;
    assert_eq!(client.ws_next(&mut ws).await["message_count"], 0);
    let held = a.mediator.stores().queue.status(&conn, None).await.unwrap();
    assert_eq!(
        (held.message_count, held.in_flight),
        (0, 0),
        "all acknowledged"
    );
    let redelivered: u64 = [&a, &b, &c]
        .iter()
        .map(|i| i.mediator.stats().snapshot().redelivered)
        .sum();
    assert_eq!(redelivered, 0);
    a.stop().await;
    b.stop().await;
    c.stop().await;
}

/// Queues are tagged per connection: the queues of a dozen connections, filled through two
/// instances, land on more than one master (on three, almost always), and each client picks up
/// its own messages through any instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_of_several_connections_spread_over_the_masters() {
    let p = prefix();
    let a = instance(&p, "a").await;
    let b = instance(&p, "b").await;
    let mut clients = Vec::new();
    for _ in 0..12 {
        let client = Client::connect(&a).await;
        let (routing, key, conn) = client.mediated_key(&a).await;
        let (body, inner) = forward_for(&routing, key.verkey(), b"{\"queued\":true}");
        assert_eq!(b.post(body).await.0, 202);
        clients.push((client, conn, inner));
    }
    let mut masters = HashSet::new();
    for (_, conn, _) in &clients {
        let node = node_holding(&queue_key(&p, conn))
            .await
            .unwrap_or_else(|| panic!("the queue of {conn} is on no node"));
        masters.insert(node);
    }
    assert!(
        masters.len() > 1,
        "the queues of 12 connections are all on master {masters:?}"
    );
    for (client, conn, inner) in &clients {
        let st = b.mediator.stores().queue.status(conn, None).await.unwrap();
        assert_eq!(st.message_count, 1, "queue of {conn}");
        let delivery = client
            .call(&Client::msg(
                "messagepickup/2.0/delivery-request",
                json!({"limit": 10}),
            ))
            .await
            .unwrap();
        assert_eq!(delivery["~attach"][0]["data"]["json"], *inner);
    }
    a.stop().await;
    b.stop().await;
}

/// Kills every shard-channel subscriber on every node of `cluster` (`CLIENT KILL ID` of each
/// client whose `CLIENT LIST` entry has shard subscriptions); returns how many were killed.
async fn kill_shard_subscribers(cluster: &RedisCluster) -> usize {
    let mut killed = 0;
    for node in cluster.nodes() {
        let pool = node.pool().unwrap();
        let mut conn = pool.get().await.unwrap();
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut conn)
            .await
            .unwrap();
        for line in list.lines() {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|f| f.strip_prefix(name))
                    .map(str::to_owned)
            };
            let shard_subscriptions: usize =
                field("ssub=").and_then(|n| n.parse().ok()).unwrap_or(0);
            if shard_subscriptions == 0 {
                continue;
            }
            let id = field("id=").unwrap();
            let n: i64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(&id)
                .query_async(&mut conn)
                .await
                .unwrap();
            killed += usize::try_from(n).unwrap();
        }
    }
    killed
}

/// On a cluster of its own, so that killing subscribers disturbs no other test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_whose_shard_subscription_drops_resubscribes_and_reloads_its_routes() {
    let own = tokio::task::spawn_blocking(|| RedisCluster::start(3).unwrap())
        .await
        .unwrap();
    let p = prefix();
    let a = instance_with_seeds(&own.urls(), &p, "a").await;
    let b = instance_with_seeds(&own.urls(), &p, "b").await;
    let client = Client::connect(&a).await;
    let (routing, key, conn) = client.mediated_key(&a).await;
    let before = b.mediator.cluster().resubscribes();
    let killed = kill_shard_subscribers(&own).await;
    assert!(killed >= 2, "killed {killed} shard subscribers");
    // While B is away, A's client goes live: B may miss the announcement...
    let mut ws = open_ws(&a).await;
    go_live(&client, &mut ws).await;
    // ...and learns it from the registry when it resubscribes.
    wait_for(
        || b.mediator.cluster().resubscribes() > before && b.mediator.cluster().is_subscribed(),
        "B resubscribed",
    )
    .await;
    routed_everywhere(&[&b], &conn, "a").await;
    let (body, inner) = forward_for(&routing, key.verkey(), b"{\"after\":\"resubscribe\"}");
    assert_eq!(b.post(body).await.0, 202);
    let delivery: Value = client.ws_next(&mut ws).await;
    assert_eq!(delivery["~attach"][0]["data"]["json"], inner);
    a.stop().await;
    b.stop().await;
}

/// A first seed nobody listens on: the pool and the subscriber use the next ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_that_is_down_is_skipped() {
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!(
            "redis://127.0.0.1:{}/",
            listener.local_addr().unwrap().port()
        )
    };
    let mut seeds = vec![down];
    seeds.extend(cluster().urls().into_iter().take(1));
    let p = prefix();
    let a = instance_with_seeds(&seeds, &p, "a").await;
    let b = instance(&p, "b").await;
    let client = Client::connect(&a).await;
    let (routing, key, conn) = client.mediated_key(&a).await;
    let mut ws = open_ws(&a).await;
    go_live(&client, &mut ws).await;
    routed_everywhere(&[&a, &b], &conn, "a").await;
    let (body, inner) = forward_for(&routing, key.verkey(), b"{\"seed\":\"skipped\"}");
    assert_eq!(b.post(body).await.0, 202);
    assert_eq!(
        client.ws_next(&mut ws).await["~attach"][0]["data"]["json"],
        inner
    );
    a.stop().await;
    b.stop().await;
}

/// Every master is checked at start-up: one evicting master is enough to refuse (unless
/// allowed), and the error names it. A cluster of its own, so that no other test sees it.
#[tokio::test]
async fn an_evicting_master_is_refused_at_start_unless_allowed() {
    let other = tokio::task::spawn_blocking(|| RedisCluster::start(3).unwrap())
        .await
        .unwrap();
    let evicting = &other.nodes()[2];
    let pool = evicting.pool().unwrap();
    let mut conn = pool.get().await.unwrap();
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async(&mut conn)
        .await
        .unwrap();
    drop(conn);
    let env = |allow: bool| {
        let mut env = cluster_env(&other.urls()[..1], &prefix(), "checked");
        env.push((
            "MEDIATOR_STORAGE__REDIS__REQUIRE_NOEVICTION".to_owned(),
            (!allow).to_string(),
        ));
        env
    };
    let config = Config::load(None, env(false)).unwrap();
    let err = mediator::storage::open(&config)
        .await
        .expect_err("a cluster with an allkeys-lru master must be refused");
    match &err {
        mediator::storage::StorageError::Evicting { url, policy } => {
            assert_eq!(policy, "allkeys-lru");
            assert!(
                url.contains(&evicting.port().to_string()),
                "the error names {url}, not the evicting master {}",
                evicting.url()
            );
        }
        other => panic!("expected Evicting, got {other:?}"),
    }
    let config = Config::load(None, env(true)).unwrap();
    assert!(mediator::storage::open(&config).await.is_ok());
}
