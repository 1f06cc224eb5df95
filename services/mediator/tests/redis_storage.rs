//! The mediator on the Redis backend (a private redis-server per test binary): the protocol
//! flows on Redis, two instances sharing one Redis, and the start-up checks of the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::OnceLock;

use common::{forward_for, open_ws, Client, Instance};
use mediator::config::Config;
use mediator_store_redis::testing::RedisServer;
use serde_json::{json, Value};

const SECRET: &str = "redis-storage-test-master-secret-0123456789";

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| RedisServer::start().expect("starting the test redis-server"))
}

/// Settings of an instance on the shared test Redis under `prefix`.
fn redis_env(prefix: &str) -> Vec<(String, String)> {
    vec![
        ("MEDIATOR_STORAGE__BACKEND".into(), "redis".into()),
        (
            "MEDIATOR_STORAGE__REDIS__URL".into(),
            server().url().to_owned(),
        ),
        (
            "MEDIATOR_STORAGE__REDIS__KEY_PREFIX".into(),
            prefix.to_owned(),
        ),
        ("MEDIATOR_MASTER_SECRET".into(), SECRET.into()),
        // The test server runs without AOF; that is only warned about.
    ]
}

async fn instance(prefix: &str) -> Instance {
    let env = redis_env(prefix);
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Instance::start_with(None, &refs).await
}

fn prefix() -> String {
    format!("t-{}:", uuid::Uuid::new_v4())
}

#[tokio::test]
async fn connect_mediate_forward_live_and_pick_up_on_redis() {
    let i = instance(&prefix()).await;
    let client = Client::connect(&i).await;
    let (routing, key, conn) = client.mediated_key(&i).await;
    let (body, inner) = forward_for(&routing, key.verkey(), b"{\"n\":1}");
    assert_eq!(i.post(body).await.0, 202);
    let st = client
        .call(&Client::msg("messagepickup/2.0/status-request", json!({})))
        .await
        .unwrap();
    assert_eq!(st["message_count"], 1);
    let delivery = client
        .call(&Client::msg(
            "messagepickup/2.0/delivery-request",
            json!({"limit": 10}),
        ))
        .await
        .unwrap();
    assert_eq!(delivery["~attach"][0]["data"]["json"], inner);
    let id = delivery["~attach"][0]["@id"].clone();

    // Live on a WebSocket: the next Forward comes down it at once.
    let mut ws = open_ws(&i).await;
    let change = Client::msg(
        "messagepickup/2.0/live-delivery-change",
        json!({"live_delivery": true}),
    );
    client.ws_send(&mut ws, &change).await;
    let st = client.ws_next(&mut ws).await;
    assert_eq!(st["live_delivery"], true);
    assert_eq!(st["message_count"], 0, "the delivered one is in flight");
    let (body, inner2) = forward_for(&routing, key.verkey(), b"{\"n\":2}");
    assert_eq!(i.post(body).await.0, 202);
    let live = client.ws_next(&mut ws).await;
    assert_eq!(live["~attach"][0]["data"]["json"], inner2);
    let id2 = live["~attach"][0]["@id"].clone();
    client
        .ws_send(
            &mut ws,
            &Client::msg(
                "messagepickup/2.0/messages-received",
                json!({"message_id_list": [id, id2]}),
            ),
        )
        .await;
    assert_eq!(client.ws_next(&mut ws).await["message_count"], 0);
    let held = i.mediator.stores().queue.status(&conn, None).await.unwrap();
    assert_eq!((held.message_count, held.in_flight), (0, 0));
    i.stop().await;
}

#[tokio::test]
async fn two_instances_share_connections_keys_and_queues() {
    let p = prefix();
    let a = instance(&p).await;
    let b = instance(&p).await;
    // Same secret, same store: the same invitation and routing keys on both.
    assert_eq!(
        a.mediator.keys().routing_key().verkey(),
        b.mediator.keys().routing_key().verkey()
    );
    assert_eq!(
        a.mediator.invitation(false).id(),
        b.mediator.invitation(false).id()
    );
    let client = Client::connect(&a).await;
    let (routing, key, _) = client.mediated_key(&a).await;
    // Forwards to B land in the queue the client reads through A.
    let mut inners = Vec::new();
    for n in 0..3 {
        let (body, inner) =
            forward_for(&routing, key.verkey(), format!("{{\"n\":{n}}}").as_bytes());
        assert_eq!(b.post(body).await.0, 202);
        inners.push(inner);
    }
    let delivery = client
        .call(&Client::msg(
            "messagepickup/2.0/delivery-request",
            json!({"limit": 10}),
        ))
        .await
        .unwrap();
    let got: Vec<Value> = delivery["~attach"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["data"]["json"].clone())
        .collect();
    assert_eq!(got, inners, "oldest first, across instances");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn an_evicting_redis_is_refused_at_start_unless_allowed() {
    let lru = RedisServer::start_with_args(["--maxmemory-policy", "allkeys-lru"]).unwrap();
    let env = |allow: bool| {
        vec![
            ("MEDIATOR_STORAGE__BACKEND".to_owned(), "redis".to_owned()),
            (
                "MEDIATOR_STORAGE__REDIS__URL".to_owned(),
                lru.url().to_owned(),
            ),
            (
                "MEDIATOR_STORAGE__REDIS__REQUIRE_NOEVICTION".to_owned(),
                (!allow).to_string(),
            ),
        ]
    };
    let config = Config::load(None, env(false)).unwrap();
    let err = mediator::storage::open(&config)
        .await
        .expect_err("an allkeys-lru Redis must be refused");
    assert!(
        matches!(&err, mediator::storage::StorageError::Evicting { policy, .. } if policy == "allkeys-lru"),
        "{err:?}"
    );
    assert!(err.to_string().contains("noeviction"), "{err}");
    let config = Config::load(None, env(true)).unwrap();
    assert!(mediator::storage::open(&config).await.is_ok());

    // A Redis that is not there: a clear error, not a hang or a panic.
    let mut gone = RedisServer::start().unwrap();
    let url = gone.url().to_owned();
    gone.stop().unwrap();
    let config = Config::load(
        None,
        vec![
            ("MEDIATOR_STORAGE__BACKEND".to_owned(), "redis".to_owned()),
            ("MEDIATOR_STORAGE__REDIS__URL".to_owned(), url),
        ],
    )
    .unwrap();
    let err = mediator::storage::open(&config)
        .await
        .expect_err("no Redis");
    assert!(
        matches!(err, mediator::storage::StorageError::Unreachable { .. }),
        "{err:?}"
    );
}
