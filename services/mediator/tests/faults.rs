//! Fault tests with real processes: mediator binaries on loopback sharing a private
//! redis-server, a live client, and senders posting Forwards to the other instances while
//! something breaks. Each test counts lost (must be 0) and duplicated messages.
//!
//! - kill -9 of the instance holding the live session mid-stream: the client reconnects to
//!   another instance and gets everything;
//! - a Redis restart (append-only file on) during a run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{
    next_frame,
    process::{metric, open_delivery, start_with_metrics, ws_connect, Proc},
    stream::{
        fetch_all, go_live, go_live_recording, read_live, send_all, stream_until_a_third, Tally,
    },
    Client, Ws,
};
use didcomm_envelope::{KeyPair, VerKey};
use mediator_store::{MediationStore, MessageQueue};
use mediator_store_redis::{testing::RedisServer, RedisMediationStore, RedisMessageQueue};
use serde_json::json;
use tokio::time::Instant;

async fn connection_of(
    redis: &RedisServer,
    prefix: &str,
    key: &VerKey,
) -> mediator_store::ConnectionId {
    RedisMediationStore::new(redis.pool().unwrap(), prefix)
        .connection_for_key(key)
        .await
        .unwrap()
        .expect("the key routes to a connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_instance_holding_the_live_session_loses_nothing() {
    const N: u64 = 150;
    let redis = RedisServer::start().unwrap();
    let prefix = format!("kill-{}:", uuid::Uuid::new_v4());
    let mut a = Proc::start("a", redis.url(), &prefix);
    let b = Proc::start("b", redis.url(), &prefix);
    let c = Proc::start("c", redis.url(), &prefix);
    for p in [&a, &b, &c] {
        p.ready().await;
    }
    let mut client = Client::connect_base(&a.base, "didcomm:transport/queue").await;
    let (routing, recipient) = client.mediation_with_key().await;
    let conn = connection_of(&redis, &prefix, recipient.verkey()).await;
    let mut ws = ws_connect(&a.ws_url()).await;
    go_live(&client, &mut ws).await;

    // A probe through B proves the cluster routes to A before the run starts.
    let tally = Arc::new(Mutex::new(Tally::default()));
    let probe_deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (accepted, _) = send_all(
            vec![b.base.clone()],
            routing,
            *recipient.verkey(),
            1,
            Duration::ZERO,
        )
        .await;
        assert!(accepted.contains(&0));
        let got = tokio::time::timeout(Duration::from_millis(500), next_frame(&mut ws)).await;
        if let Ok(frame) = got {
            if open_delivery(&client, &recipient, &frame).is_some() {
                break;
            }
        }
        assert!(
            Instant::now() < probe_deadline,
            "forwards to B never reached A's socket"
        );
    }
    // Start clean: whatever the probe left is fetched and acknowledged.
    fetch_all(&client, &recipient, &Mutex::new(Tally::default())).await;

    // Mid-stream: after a third arrived live on A, A dies.
    let sender = stream_until_a_third(
        &client,
        &recipient,
        &mut ws,
        &tally,
        vec![b.base.clone(), c.base.clone()],
        routing,
        N,
        Duration::from_millis(5),
    )
    .await;
    a.kill9();
    drop(ws);
    let received_before_kill = tally.lock().unwrap().counts.len();

    // The client reconnects elsewhere: picks up what waits, then goes live on B.
    client.use_base(&b.base);
    fetch_all(&client, &recipient, &tally).await;
    let mut ws = ws_connect(&b.ws_url()).await;
    go_live_recording(&client, &mut ws, Some((&recipient, &tally))).await;
    let (accepted, refused) = sender.await.unwrap();
    let all_in = {
        let accepted = accepted.clone();
        move |t: &Tally| accepted.iter().all(|s| t.counts.contains_key(s))
    };
    let ok = read_live(
        &client,
        &recipient,
        &mut ws,
        &tally,
        all_in,
        Duration::from_secs(40),
    )
    .await;
    let (received, duplicates, lost) = tally.lock().unwrap().against(&accepted);
    eprintln!(
        "kill -9: {} accepted ({refused} refusals retried), {received} received \
         ({received_before_kill} before the kill), lost {}, duplicates {duplicates}",
        accepted.len(),
        lost.len(),
    );
    if !lost.is_empty() {
        let queue = RedisMessageQueue::new(
            redis.pool().unwrap(),
            &prefix,
            mediator_store::QueueLimits::UNLIMITED,
        );
        let st = queue.status(&conn, None).await.unwrap();
        let held = queue.take(&conn, 100, None).await.unwrap();
        eprintln!(
            "queue at failure: {st:?}; held: {:?}",
            held.iter()
                .map(|m| (m.id.as_str().to_owned(), m.deliveries, m.received_at_ms))
                .collect::<Vec<_>>()
        );
    }
    assert!(ok, "B's socket failed or went silent");
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert_eq!(accepted.len() as u64, N);
    // Everything acknowledged ends up out of the queue. The client keeps reading and
    // acknowledging meanwhile: what was in flight on A when it died (received, its
    // acknowledgement lost with A) comes again after B's take-over grace.
    let queue = RedisMessageQueue::new(
        redis.pool().unwrap(),
        &prefix,
        mediator_store::QueueLimits::UNLIMITED,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = queue.status(&conn, None).await.unwrap();
        if st.message_count + st.in_flight == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "queue not drained: {st:?}");
        acknowledge_for(
            &client,
            &recipient,
            &mut ws,
            &tally,
            Duration::from_millis(100),
        )
        .await;
    }
}

/// Reads live deliveries from `ws` for `limit`, acknowledging each (a live client that keeps
/// reading).
async fn acknowledge_for(
    client: &Client,
    recipient: &KeyPair,
    ws: &mut Ws,
    tally: &Arc<Mutex<Tally>>,
    limit: Duration,
) {
    use futures_util::StreamExt;
    let deadline = Instant::now() + limit;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        ws.next(),
    )
    .await
    {
        let bytes = frame.into_data();
        let Some(items) = open_delivery(client, recipient, &bytes) else {
            continue;
        };
        let mut ids = Vec::new();
        for (id, seq) in items {
            tally.lock().unwrap().record(seq);
            ids.push(id);
        }
        client
            .ws_send(
                ws,
                &Client::msg(
                    "messagepickup/2.0/messages-received",
                    json!({"message_id_list": ids}),
                ),
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_with_aof_during_a_run_loses_nothing() {
    const N: u64 = 120;
    let mut redis =
        RedisServer::start_with_args(["--appendonly", "yes", "--appendfsync", "always"]).unwrap();
    let prefix = format!("restart-{}:", uuid::Uuid::new_v4());
    let a = Proc::start("a", redis.url(), &prefix);
    let b = Proc::start("b", redis.url(), &prefix);
    for p in [&a, &b] {
        p.ready().await;
    }
    let client = Client::connect_base(&a.base, "didcomm:transport/queue").await;
    let (routing, recipient) = client.mediation_with_key().await;
    let mut ws = ws_connect(&a.ws_url()).await;
    go_live(&client, &mut ws).await;

    let tally = Arc::new(Mutex::new(Tally::default()));
    let sender = tokio::spawn(send_all(
        vec![b.base.clone(), a.base.clone()],
        routing,
        *recipient.verkey(),
        N,
        Duration::from_millis(10),
    ));
    assert!(
        read_live(
            &client,
            &recipient,
            &mut ws,
            &tally,
            |t| t.counts.len() as u64 >= N / 4,
            Duration::from_secs(30)
        )
        .await
    );
    // Redis dies (kill -9) and comes back on the same port with its append-only file.
    redis.stop().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // the outage itself, not a wait for a state
    redis.restart().unwrap();
    for p in [&a, &b] {
        p.ready().await;
    }
    let (accepted, refused) = sender.await.unwrap();
    // The live socket on A survived the outage; what could not be acknowledged during it comes
    // again (redelivery); anything stranded is fetched as a reconnecting client would.
    let all_in = {
        let accepted = accepted.clone();
        move |t: &Tally| accepted.iter().all(|s| t.counts.contains_key(s))
    };
    let _ = read_live(
        &client,
        &recipient,
        &mut ws,
        &tally,
        all_in.clone(),
        Duration::from_secs(20),
    )
    .await;
    let fetched = !all_in(&tally.lock().unwrap());
    if fetched {
        fetch_all(&client, &recipient, &tally).await;
    }
    let (received, duplicates, lost) = tally.lock().unwrap().against(&accepted);
    eprintln!(
        "redis restart: {} accepted ({refused} refusals during the outage, retried), {received} \
         received ({}), lost {}, duplicates {duplicates}",
        accepted.len(),
        if fetched {
            "some fetched by delivery-request"
        } else {
            "all live"
        },
        lost.len(),
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
}

/// At-least-once on one socket: live deliveries whose acknowledgement fails (Redis is down when
/// the client sends `messages-received`) come again on the same session once the redelivery
/// period (2 s here) has passed, with no reconnect; acknowledged then, the queue empties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_live_deliveries_come_again_on_the_same_session() {
    use futures_util::StreamExt;
    const N: u64 = 10;
    let mut redis =
        RedisServer::start_with_args(["--appendonly", "yes", "--appendfsync", "always"]).unwrap();
    let prefix = format!("again-{}:", uuid::Uuid::new_v4());
    let (a, metrics) = start_with_metrics("a", redis.url(), &prefix, &[]).await;
    let client = Client::connect_base(&a.base, "didcomm:transport/queue").await;
    let (routing, recipient) = client.mediation_with_key().await;
    let conn = connection_of(&redis, &prefix, recipient.verkey()).await;
    let mut ws = ws_connect(&a.ws_url()).await;
    go_live(&client, &mut ws).await;
    let (accepted, _) = send_all(
        vec![a.base.clone()],
        routing,
        *recipient.verkey(),
        N,
        Duration::ZERO,
    )
    .await;
    assert_eq!(accepted.len() as u64, N);

    // Every message arrives live; none is acknowledged yet.
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (tally.lock().unwrap().counts.len() as u64) < N {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, next_frame(&mut ws))
            .await
            .expect("the live deliveries did not all arrive");
        for (id, seq) in open_delivery(&client, &recipient, &frame).unwrap_or_default() {
            tally.lock().unwrap().record(seq);
            ids.push(id);
        }
    }
    // The acknowledgement goes out while Redis is down: it cannot remove anything.
    redis.stop().unwrap();
    client
        .ws_send(
            &mut ws,
            &Client::msg(
                "messagepickup/2.0/messages-received",
                json!({"message_id_list": ids}),
            ),
        )
        .await;
    // The refusal (or nothing) comes back on the socket; the socket stays open.
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.next()).await;
    redis.restart().unwrap();
    a.ready().await;

    // Without reconnecting: each message comes again, and is acknowledged this time.
    let twice = |t: &Tally| t.counts.len() as u64 == N && t.counts.values().all(|n| *n >= 2);
    let again = read_live(
        &client,
        &recipient,
        &mut ws,
        &tally,
        twice,
        Duration::from_secs(20),
    )
    .await;
    let (received, duplicates, lost) = tally.lock().unwrap().against(&accepted);
    eprintln!("unacknowledged: {received} received, {duplicates} delivered again, lost {lost:?}");
    assert!(
        again,
        "the unacknowledged messages were not delivered again on the open session"
    );
    assert!(lost.is_empty());
    let queue = RedisMessageQueue::new(
        redis.pool().unwrap(),
        &prefix,
        mediator_store::QueueLimits::UNLIMITED,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = queue.status(&conn, None).await.unwrap();
        if st.message_count + st.in_flight == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "queue not drained: {st:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let redelivered = metric(&metrics, "mediator_messages_redelivered_total").await;
    assert_eq!(
        redelivered,
        Some(duplicates as f64),
        "the redelivery counter is not what the client saw twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_pubsub_connections_mid_stream_lose_nothing() {
    const N: u64 = 150;
    let redis = RedisServer::start().unwrap();
    let prefix = format!("pubsub-{}:", uuid::Uuid::new_v4());
    let a = Proc::start("a", redis.url(), &prefix);
    let b = Proc::start("b", redis.url(), &prefix);
    for p in [&a, &b] {
        p.ready().await;
    }
    let client = Client::connect_base(&a.base, "didcomm:transport/queue").await;
    let (routing, recipient) = client.mediation_with_key().await;
    let mut ws = ws_connect(&a.ws_url()).await;
    go_live(&client, &mut ws).await;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let sender = tokio::spawn(send_all(
        vec![b.base.clone()],
        routing,
        *recipient.verkey(),
        N,
        Duration::from_millis(5),
    ));
    // Every subscriber connection (both instances') is killed, three times during the stream.
    let admin_pool = redis.pool().unwrap();
    for round in 1..=3u64 {
        assert!(
            read_live(
                &client,
                &recipient,
                &mut ws,
                &tally,
                |t| t.counts.len() as u64 >= round * N / 5,
                Duration::from_secs(30)
            )
            .await
        );
        let mut admin = admin_pool.get().await.unwrap();
        let killed: i64 = mediator_store_redis::deadpool_redis::redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut admin)
            .await
            .unwrap();
        assert!(killed >= 2, "round {round}: killed {killed} subscribers");
    }
    let (accepted, _) = sender.await.unwrap();
    let all_in = {
        let accepted = accepted.clone();
        move |t: &Tally| accepted.iter().all(|s| t.counts.contains_key(s))
    };
    // Every message still arrives live: notices that reached a deaf instance are remembered and
    // sent again when it re-announces its live session after resubscribing.
    let ok = read_live(
        &client,
        &recipient,
        &mut ws,
        &tally,
        all_in,
        Duration::from_secs(30),
    )
    .await;
    let (received, duplicates, lost) = tally.lock().unwrap().against(&accepted);
    eprintln!(
        "pub/sub drops: {} accepted, {received} received live, lost {}, duplicates {duplicates}",
        accepted.len(),
        lost.len()
    );
    assert!(ok && lost.is_empty(), "lost: {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_live_sockets_so_clients_reconnect_elsewhere_and_lose_nothing() {
    const N: u64 = 120;
    let redis = RedisServer::start().unwrap();
    let prefix = format!("term-{}:", uuid::Uuid::new_v4());
    let mut a = Proc::start("a", redis.url(), &prefix);
    let b = Proc::start("b", redis.url(), &prefix);
    for p in [&a, &b] {
        p.ready().await;
    }
    let mut client = Client::connect_base(&a.base, "didcomm:transport/queue").await;
    let (routing, recipient) = client.mediation_with_key().await;
    let conn = connection_of(&redis, &prefix, recipient.verkey()).await;
    let mut ws = ws_connect(&a.ws_url()).await;
    go_live(&client, &mut ws).await;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let sender = tokio::spawn(send_all(
        vec![b.base.clone()],
        routing,
        *recipient.verkey(),
        N,
        Duration::from_millis(5),
    ));
    assert!(
        read_live(
            &client,
            &recipient,
            &mut ws,
            &tally,
            |t| t.counts.len() as u64 >= N / 3,
            Duration::from_secs(30)
        )
        .await
    );
    // SIGTERM: A closes the socket with a close frame (the reader sees the end), deregisters the
    // live session and exits cleanly within its grace period.
    let term = tokio::task::spawn_blocking(move || {
        let clean = a.sigterm_and_wait(Duration::from_secs(20));
        (a, clean)
    });
    let still_open = read_live(
        &client,
        &recipient,
        &mut ws,
        &tally,
        |_| false,
        Duration::from_secs(20),
    )
    .await;
    assert!(!still_open, "A's socket did not end");
    let (_a, clean) = term.await.unwrap();
    assert!(clean, "A did not exit cleanly on SIGTERM");
    let registry =
        mediator_store_redis::RedisLiveSessionRegistry::new(redis.pool().unwrap(), &prefix);
    let holder = mediator_store::LiveSessionRegistry::holder(&registry, &conn)
        .await
        .unwrap();
    assert!(
        holder.is_none(),
        "A left its live session in the registry: {holder:?}"
    );

    client.use_base(&b.base);
    fetch_all(&client, &recipient, &tally).await;
    let mut ws = ws_connect(&b.ws_url()).await;
    go_live_recording(&client, &mut ws, Some((&recipient, &tally))).await;
    let (accepted, _) = sender.await.unwrap();
    let all_in = {
        let accepted = accepted.clone();
        move |t: &Tally| accepted.iter().all(|s| t.counts.contains_key(s))
    };
    let ok = read_live(
        &client,
        &recipient,
        &mut ws,
        &tally,
        all_in,
        Duration::from_secs(30),
    )
    .await;
    let (received, duplicates, lost) = tally.lock().unwrap().against(&accepted);
    eprintln!(
        "sigterm: {} accepted, {received} received, lost {}, duplicates {duplicates}",
        accepted.len(),
        lost.len()
    );
    assert!(ok && lost.is_empty(), "lost: {lost:?}");
}

/// One node on the embedded store (no Redis, no master secret configured), kill -9 in the middle
/// of a stream of Forwards (a few hundred a second) while a live client reads: restarted on the
/// same data directory, it is the same mediator (same invitation, same routing key, the client's
/// connection and mediation still there: no new handshake), and every Forward that got a 202 is
/// delivered. Duplicates (what was in flight when it died) are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_single_embedded_instance_loses_no_accepted_forward() {
    const N: u64 = 600;
    let data = tempfile::tempdir().unwrap();
    let port = mediator::testing::free_port();
    let mut first = Proc::start_embedded_on(port, "embedded-1", data.path(), &[]);
    first.ready().await;
    let (invitation_before, _) = common::invitation(&first.base).await;
    let mut client = Client::connect_base(&first.base, "didcomm:transport/queue").await;
    let (routing, recipient) = client.mediation_with_key().await;
    let mut ws = ws_connect(&first.ws_url()).await;
    go_live(&client, &mut ws).await;

    let tally = Arc::new(Mutex::new(Tally::default()));
    let sender = stream_until_a_third(
        &client,
        &recipient,
        &mut ws,
        &tally,
        vec![first.base.clone()],
        routing,
        N,
        Duration::from_millis(2),
    )
    .await;
    first.kill9();
    drop(ws);
    let received_before_kill = tally.lock().unwrap().counts.len();

    // The same directory and port, still no secret configured: the same mediator.
    let second = Proc::start_embedded_on(port, "embedded-2", data.path(), &[]);
    second.ready().await;
    let (invitation_after, _) = common::invitation(&second.base).await;
    assert_eq!(
        invitation_after, invitation_before,
        "the invitation changed"
    );
    // The client's connection survived (its messages are understood without a handshake), and
    // so did its mediation: the grant names the same routing key.
    client.use_base(&second.base);
    let grant = client.mediate().await;
    assert_eq!(
        grant["routing_keys"][0].as_str(),
        Some(routing.to_did_key().as_str()),
        "{grant}"
    );
    fetch_all(&client, &recipient, &tally).await;
    let mut ws = ws_connect(&second.ws_url()).await;
    // Forwards are still arriving: one queued just before live mode went on is counted in the
    // status and fetched, as credo-ts does.
    if go_live_recording(&client, &mut ws, Some((&recipient, &tally))).await > 0 {
        fetch_all(&client, &recipient, &tally).await;
    }
    let (accepted, refused) = sender.await.unwrap();
    let all_in = {
        let accepted = accepted.clone();
        move |t: &Tally| accepted.iter().all(|s| t.counts.contains_key(s))
    };
    let ok = read_live(
        &client,
        &recipient,
        &mut ws,
        &tally,
        all_in,
        Duration::from_secs(60),
    )
    .await;
    let (received, duplicates, lost) = tally.lock().unwrap().against(&accepted);
    eprintln!(
        "embedded kill -9: {} accepted ({refused} refusals retried), {received} received \
         ({received_before_kill} before the kill), lost {}, duplicates {duplicates}",
        accepted.len(),
        lost.len(),
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(ok, "the restarted instance's socket failed or went silent");
    assert_eq!(accepted.len() as u64, N);
}
