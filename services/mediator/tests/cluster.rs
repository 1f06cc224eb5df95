//! Several mediator instances on one private redis-server: a Forward taken by any instance
//! reaches the recipient's live WebSocket on another; a late close from an old instance does not
//! remove the newer session; an instance whose subscription dropped resubscribes and reloads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{sync::OnceLock, time::Duration};

use common::{
    cluster::{go_live, routed_everywhere, wait_for},
    forward_for, next_frame, open_ws, Client, Instance, Ws,
};
use mediator_store::ConnectionId;
use mediator_store_redis::testing::RedisServer;
use serde_json::{json, Value};

const SECRET: &str = "cluster-test-master-secret-0123456789abcdef";

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| RedisServer::start().expect("starting the test redis-server"))
}

async fn instance(prefix: &str, name: &str) -> Instance {
    instance_with(prefix, name, &[]).await
}

async fn instance_with(prefix: &str, name: &str, extra: &[(&str, &str)]) -> Instance {
    // The instances' warnings show in a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("mediator=info")
        .with_test_writer()
        .try_init();
    let env = [
        ("MEDIATOR_STORAGE__BACKEND", "redis"),
        ("MEDIATOR_STORAGE__REDIS__URL", server().url()),
        ("MEDIATOR_STORAGE__REDIS__KEY_PREFIX", prefix),
        ("MEDIATOR_MASTER_SECRET", SECRET),
        ("MEDIATOR_CLUSTER__INSTANCE_ID", name),
    ];
    let env: Vec<(&str, &str)> = env.iter().chain(extra).copied().collect();
    let i = Instance::start_with(None, &env).await;
    // Serving starts the subscription: wait until this instance hears its peers.
    wait_for(|| i.mediator.cluster().is_subscribed(), "subscribed").await;
    i
}

fn prefix() -> String {
    format!("c-{}:", uuid::Uuid::new_v4())
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

    let mut expected = Vec::new();
    let mut ids = Vec::new();
    for n in 0..30 {
        let via = [&a, &b, &c][n % 3];
        let (body, inner) =
            forward_for(&routing, key.verkey(), format!("{{\"n\":{n}}}").as_bytes());
        assert_eq!(via.post(body).await.0, 202);
        expected.push(inner);
        let delivery = client.ws_next(&mut ws).await;
        assert_eq!(
            delivery["@type"], "https://didcomm.org/messagepickup/2.0/delivery",
            "{delivery}"
        );
        assert_eq!(
            delivery["~attach"][0]["data"]["json"],
            expected[n],
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

    // The socket closes: every instance forgets the route; a Forward then just waits.
    drop(ws);
    for i in [&a, &b, &c] {
        wait_for(
            || !i.mediator.cluster().routes().contains_key(&conn),
            "route removed after close",
        )
        .await;
    }
    let (body, _) = forward_for(&routing, key.verkey(), b"{\"n\":99}");
    assert_eq!(b.post(body).await.0, 202);
    let st = b.mediator.stores().queue.status(&conn, None).await.unwrap();
    assert_eq!(
        (st.message_count, st.in_flight),
        (1, 0),
        "waits, not in flight"
    );
    a.stop().await;
    b.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_moves_is_followed_and_a_late_close_from_the_old_instance_changes_nothing() {
    let p = prefix();
    let a = instance(&p, "a").await;
    let b = instance(&p, "b").await;
    let client = Client::connect(&a).await;
    let (routing, key, conn) = client.mediated_key(&a).await;
    let mut on_a = open_ws(&a).await;
    go_live(&client, &mut on_a).await;
    routed_everywhere(&[&a, &b], &conn, "a").await;
    let old = a.mediator.cluster().routes()[&conn].clone();

    // The client moves to B (a new socket there); A's session is not closed yet.
    let mut on_b = open_ws(&b).await;
    go_live(&client, &mut on_b).await;
    routed_everywhere(&[&a, &b], &conn, "b").await;
    // A stopped treating its old socket as live (taken over).
    wait_for(
        || a.mediator.sessions().live(&conn).is_none(),
        "A's live session taken over",
    )
    .await;

    // A late close from A for its old session: compare-and-delete leaves B's.
    assert!(!a
        .mediator
        .stores()
        .registry
        .close(&conn, &old)
        .await
        .unwrap());
    drop(on_a);
    let holder = b.mediator.stores().registry.holder(&conn).await.unwrap();
    assert_eq!(holder.map(|h| h.instance), Some("b".to_owned()));
    // Forwards to A now go to B's socket.
    let (body, inner) = forward_for(&routing, key.verkey(), b"{\"moved\":true}");
    assert_eq!(a.post(body).await.0, 202);
    let delivery = client.ws_next(&mut on_b).await;
    assert_eq!(delivery["~attach"][0]["data"]["json"], inner);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_whose_subscription_drops_resubscribes_and_reloads_its_routes() {
    let p = prefix();
    let a = instance(&p, "a").await;
    let b = instance(&p, "b").await;
    let client = Client::connect(&a).await;
    let (routing, key, conn) = client.mediated_key(&a).await;
    // Kill B's pub/sub connection (CLIENT KILL TYPE pubsub kills every subscriber: A's too).
    let pool = server().pool().unwrap();
    let mut admin = pool.get().await.unwrap();
    let before = b.mediator.cluster().resubscribes();
    let killed: i64 = mediator_store_redis::deadpool_redis::redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(killed >= 2, "killed {killed} subscribers");
    // While B is away, A's client goes live: B misses the announcement...
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

    // An instance that starts now never heard the announcement: it knows the route from the
    // registry it loads when it subscribes (and it wipes nothing of the others').
    let c = instance(&p, "c").await;
    assert_eq!(
        c.mediator
            .cluster()
            .routes()
            .get(&conn)
            .map(|h| h.instance.clone()),
        Some("a".to_owned()),
        "a new instance did not load the live sessions from the registry"
    );
    let (body, inner) = forward_for(&routing, key.verkey(), b"{\"via\":\"c\"}");
    assert_eq!(c.post(body).await.0, 202);
    assert_eq!(
        client.ws_next(&mut ws).await["~attach"][0]["data"]["json"],
        inner
    );
    assert!(a.mediator.sessions().live(&conn).is_some());
    a.stop().await;
    b.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_removed_through_one_instance_stops_routing_forwards_on_every_instance() {
    let p = prefix();
    let a = instance(&p, "a").await;
    let b = instance(&p, "b").await;
    let client = Client::connect(&a).await;
    let (routing, key, _conn) = client.mediated_key(&a).await;
    // Instance b has routed a Forward to this key (and remembers its connection).
    let (body, _) = forward_for(&routing, key.verkey(), b"{\"n\":1}");
    assert_eq!(b.post(body).await.0, 202);
    assert_eq!(b.mediator.key_routes().len(), 1);

    // The client removes the key through instance a.
    let removed = client
        .call(&Client::msg(
            "coordinate-mediation/1.0/keylist-update",
            json!({"updates": [{"recipient_key": key.verkey_base58(), "action": "remove"}]}),
        ))
        .await
        .unwrap();
    assert_eq!(removed["updated"][0]["result"], "success", "{removed}");
    // b hears the removal and forgets the key; a Forward to it through b is refused.
    wait_for(
        || b.mediator.key_routes().is_empty(),
        "b forgets the removed key",
    )
    .await;
    let (body, _) = forward_for(&routing, key.verkey(), b"{\"n\":2}");
    assert_eq!(b.post(body).await.0, 404);
    a.stop().await;
    b.stop().await;
}

/// Waits until `conn`'s queue holds nothing (waiting or in flight), 10 s at most, reading `ws`
/// meanwhile (the client's WebSocket answers the mediator's pings as it reads: those pongs
/// confirm direct deliveries).
async fn queue_empty(i: &Instance, conn: &ConnectionId, ws: &mut Ws) {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let _ = tokio::time::timeout(Duration::from_millis(20), ws.next()).await;
        let st = i.mediator.stores().queue.status(conn, None).await.unwrap();
        if st.message_count + st.in_flight == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue not emptied: {st:?}"
        );
    }
}

/// `direct` forwarding (implicit pickup) crosses instances: the socket with return route `all`
/// is on a, Forwards go to b and c, and every message comes down a's socket by itself; then the
/// socket moves to b, and Forwards to a and c follow it. Each leaves the queue once the socket
/// confirmed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_forwarding_reaches_the_return_route_socket_on_any_instance() {
    let p = prefix();
    let direct = [("MEDIATOR_PICKUP__FORWARDING", "direct")];
    let a = instance_with(&p, "a", &direct).await;
    let b = instance_with(&p, "b", &direct).await;
    let c = instance_with(&p, "c", &direct).await;
    let client = Client::connect(&a).await;
    let (routing, key, conn) = client.mediated_key(&a).await;
    let ping = || Client::msg("trust_ping/1.0/ping", json!({"response_requested": false}));

    for (holder, senders) in [(&a, [&b, &c]), (&b, [&a, &c])] {
        let name = holder.mediator.cluster().instance_id().to_owned();
        let mut ws = open_ws(holder).await;
        // Any message with return route `all` makes the socket the connection's.
        client.ws_send(&mut ws, &ping()).await;
        routed_everywhere(&[&a, &b, &c], &conn, &name).await;
        for n in 0..12 {
            let via = senders[n % 2];
            let (body, inner) = forward_for(
                &routing,
                key.verkey(),
                format!("{{\"n\":{n},\"to\":\"{name}\"}}").as_bytes(),
            );
            assert_eq!(via.post(body).await.0, 202);
            let frame: Value = serde_json::from_slice(&next_frame(&mut ws).await).unwrap();
            assert_eq!(
                frame,
                inner,
                "message {n}, posted to {}, on {name}'s socket",
                via.mediator.cluster().instance_id()
            );
        }
        queue_empty(holder, &conn, &mut ws).await;
        drop(ws);
        for i in [&a, &b, &c] {
            wait_for(
                || !i.mediator.cluster().routes().contains_key(&conn),
                "route removed after close",
            )
            .await;
        }
    }
    a.stop().await;
    b.stop().await;
    c.stop().await;
}
