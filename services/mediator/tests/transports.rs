//! Return routes on the WebSocket, and delivery to clients that have their own endpoint (retried
//! until it succeeds, queued meanwhile).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{body::Bytes, extract::State, http::StatusCode, routing::post, Router};
use common::{forward_for, Client, Instance};
use didcomm_envelope::{KeyPair, VerKey};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[tokio::test]
async fn websocket_return_route_and_bad_frames_do_not_disturb_the_session() {
    let i = Instance::start(None).await;
    let client = Client::connect(&i).await;
    let ws_url = i.base.replacen("http://", "ws://", 1);
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();

    let ping = Client::msg("trust_ping/1.0/ping", json!({"response_requested": true}));
    ws.send(WsMessage::Binary(client.pack(&ping).into()))
        .await
        .unwrap();
    let reply = next_data(&mut ws).await;
    let pong = client.open(&reply);
    assert_eq!(
        pong["@type"],
        "https://didcomm.org/trust_ping/1.0/ping_response"
    );
    assert_eq!(pong["~thread"]["thid"], ping["@id"]);

    // Garbage gets an error frame; the same session goes on serving.
    ws.send(WsMessage::Text("not an envelope".into()))
        .await
        .unwrap();
    let err: serde_json::Value = serde_json::from_slice(&next_data(&mut ws).await).unwrap();
    assert_eq!(err["error"], "bad_envelope");

    // Text frames carry envelopes too.
    let ping2 = Client::msg("trust_ping/1.0/ping", json!({}));
    let text = String::from_utf8(client.pack(&ping2)).unwrap();
    ws.send(WsMessage::Text(text.into())).await.unwrap();
    let pong2 = client.open(&next_data(&mut ws).await);
    assert_eq!(pong2["~thread"]["thid"], ping2["@id"]);
    ws.close(None).await.unwrap();
    i.stop().await;
}

async fn next_data<S>(ws: &mut S) -> Vec<u8>
where
    S: StreamExt<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("socket open")
            .unwrap();
        match frame {
            WsMessage::Binary(b) => return b.to_vec(),
            WsMessage::Text(t) => return t.as_bytes().to_vec(),
            _ => continue,
        }
    }
}

/// A client endpoint that refuses the first `failures` POSTs with 503, then holds the next one
/// until released, then accepts.
#[derive(Clone)]
struct Endpoint {
    attempts: Arc<AtomicUsize>,
    failures: usize,
    release: Arc<Notify>,
    events: mpsc::UnboundedSender<(usize, Bytes)>,
}

async fn receive(State(e): State<Endpoint>, body: Bytes) -> StatusCode {
    let n = e.attempts.fetch_add(1, Ordering::SeqCst) + 1;
    let _ = e.events.send((n, body));
    if n <= e.failures {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    e.release.notified().await;
    StatusCode::OK
}

#[tokio::test]
async fn forward_to_a_client_endpoint_is_retried_and_stays_queued_until_delivered() {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let endpoint = Endpoint {
        attempts: Arc::new(AtomicUsize::new(0)),
        failures: 2,
        release: Arc::new(Notify::new()),
        events: events_tx,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/", post(receive))
        .with_state(endpoint.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let i = Instance::start_with(None, &[("MEDIATOR_DELIVERY__RETRY_INITIAL_MS", "20")]).await;
    let client = Client::connect_with_endpoint(&i, &url).await;
    let grant = client.mediate().await;
    let routing_key = VerKey::parse(grant["routing_keys"][0].as_str().unwrap()).unwrap();
    let recipient = KeyPair::generate().unwrap();
    client.add_keys(&[recipient.verkey_base58()]).await;

    let (body, inner) = forward_for(&routing_key, recipient.verkey(), b"{\"hello\":1}");
    assert_eq!(i.post(body).await.0, 202);

    // Two refused attempts: the message is still queued.
    for expected in 1..=2 {
        let (n, payload) = events.recv().await.unwrap();
        assert_eq!(n, expected);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&payload).unwrap(),
            inner
        );
    }
    let (n, _) = events.recv().await.unwrap();
    assert_eq!(n, 3, "third attempt arrives and is held open");
    let status = Client::msg("messagepickup/2.0/status-request", json!({}));
    assert_eq!(
        client.call(&status).await.unwrap()["message_count"],
        1,
        "queued while undelivered"
    );

    endpoint.release.notify_one();
    // Removal follows the successful POST; wait for it (bounded), without guessing a delay.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if client.call(&status).await.unwrap()["message_count"] == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivered message never left the queue"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        endpoint.attempts.load(Ordering::SeqCst),
        3,
        "no delivery after the successful one"
    );
    i.stop().await;
    server.abort();
}
