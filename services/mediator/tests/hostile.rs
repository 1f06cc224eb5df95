//! What an attacker on the internet tries, against real mediator processes on a real Redis: each
//! test asserts the exact refusal, that a legitimate client is served meanwhile and afterwards,
//! and that its queued message is not lost. (The transport's limits, timeouts, connection caps
//! and rate limits, are tried in `hostile_transport.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use axum::{http::StatusCode, routing, Router};
use common::{
    new_id, next_frame,
    process::{
        forward, forward_json, open_delivery, refusals, start_with_metrics, ws_connect, Proc,
    },
    Client,
};
use didcomm_did::OwnDid;
use didcomm_envelope::{pack, unpack, ContentEnc, KeyPair, VerKey};
use mediator_store::ConnectionStore;
use mediator_store_redis::{testing::RedisServer, RedisConnectionStore};
use serde_json::{json, Value};

const PROBLEM: &str = "https://didcomm.org/notification/1.0/problem-report";

/// A private Redis and one mediator process on it, with its metrics endpoint.
struct Setup {
    redis: RedisServer,
    prefix: String,
    proc: Proc,
    metrics: String,
}

impl Setup {
    async fn start(extra: &[(&str, &str)]) -> Self {
        let redis = RedisServer::start().unwrap();
        let prefix = format!("hostile-{}:", uuid::Uuid::new_v4());
        let (proc, metrics) = start_with_metrics("hostile", redis.url(), &prefix, extra).await;
        Self {
            redis,
            prefix,
            proc,
            metrics,
        }
    }

    fn base(&self) -> &str {
        &self.proc.base
    }

    async fn refusals(&self, limit: &str) -> u64 {
        refusals(&self.metrics, limit).await
    }

    /// Waits (within `limit`) until `limit_name` refused at least `n` times: refusals made in the
    /// background (an outbound delivery) are seen on the metrics endpoint.
    async fn until_refused(&self, limit_name: &str, n: u64, within: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.refusals(limit_name).await < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{limit_name} did not refuse {n} times within {within:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    fn connections(&self) -> RedisConnectionStore {
        RedisConnectionStore::new(self.redis.pool().unwrap(), &self.prefix)
    }
}

/// A legitimate client with mediation, one registered key and one message waiting before the
/// attack: after it, the message must still be there for it.
struct Legit {
    client: Client,
    routing: VerKey,
    recipient: KeyPair,
}

impl Legit {
    async fn start(base: &str) -> Self {
        Self::on_thread(base, &new_id()).await
    }

    async fn on_thread(base: &str, thid: &str) -> Self {
        let client = Client::connect_on_thread(base, "didcomm:transport/queue", thid).await;
        let (routing, recipient) = client.mediation_with_key().await;
        let legit = Self {
            client,
            routing,
            recipient,
        };
        legit.queue(base, 1).await;
        legit
    }

    async fn queue(&self, base: &str, seq: u64) {
        let status = post(base, forward(&self.routing, self.recipient.verkey(), seq)).await;
        assert_eq!(status.0, 202, "a Forward to the legitimate client");
    }

    /// Picks up what waits (Pickup 2.0 over HTTP, as credo does), acknowledges it, and returns
    /// the sequence numbers.
    async fn pick_up(&self) -> Vec<u64> {
        let delivery = self
            .client
            .call(&Client::msg(
                "messagepickup/2.0/delivery-request",
                json!({"limit": 100}),
            ))
            .await
            .expect("an answer to delivery-request");
        let Some(attachments) = delivery["~attach"].as_array() else {
            return Vec::new();
        };
        let mut seqs = Vec::new();
        let mut ids = Vec::new();
        for a in attachments {
            let inner = serde_json::to_vec(&a["data"]["json"]).unwrap();
            let plain = unpack(&inner, |kid| {
                (kid == self.recipient.verkey_base58()).then_some(&self.recipient)
            })
            .unwrap();
            let v: Value = serde_json::from_slice(&plain.message).unwrap();
            seqs.push(v["seq"].as_u64().unwrap());
            ids.push(a["@id"].clone());
        }
        let status = self
            .client
            .call(&Client::msg(
                "messagepickup/2.0/messages-received",
                json!({"message_id_list": ids}),
            ))
            .await
            .unwrap();
        assert_eq!(status["message_count"], 0, "{status}");
        seqs
    }

    /// Still served: the message queued before the attack, and one queued now, are delivered.
    async fn still_served(&self, base: &str) {
        self.queue(base, 2).await;
        assert_eq!(
            self.pick_up().await,
            [1, 2],
            "the legitimate client's messages"
        );
    }
}

async fn post(base: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    common::post_envelope(base, body).await
}

/// The error code of a refusal's JSON body.
fn code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    v["error"].as_str().unwrap_or_default().to_owned()
}

/// A DID Exchange 1.1 request with a did:peer:2 for `key` whose service is `endpoint`.
fn request(thid: &str, key: &KeyPair, endpoint: &str, label: &str, return_route: bool) -> Value {
    let mut req = json!({
        "@type": "https://didcomm.org/didexchange/1.1/request",
        "@id": thid,
        "label": label,
        "did": OwnDid::new(*key.verkey(), [endpoint], []).peer2(),
    });
    if return_route {
        req["~transport"] = json!({"return_route": "all"});
    }
    req
}

/// Packs `msg` for `to`, authcrypted from `from` (anoncrypted when `None`).
fn envelope(msg: &Value, to: &VerKey, from: Option<&KeyPair>) -> Vec<u8> {
    pack(
        &serde_json::to_vec(msg).unwrap(),
        &[*to],
        from,
        ContentEnc::C20P,
    )
    .unwrap()
}

fn open(key: &KeyPair, bytes: &[u8]) -> Value {
    let plain = unpack(bytes, |kid| (kid == key.verkey_base58()).then_some(key))
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)));
    serde_json::from_slice(&plain.message).unwrap()
}

#[tokio::test]
async fn a_request_on_another_clients_thread_cannot_take_over_its_connection() {
    let s = Setup::start(&[]).await;
    let thid = new_id();
    let victim = Legit::on_thread(s.base(), &thid).await;
    let (_, invitation) = common::invitation(s.base()).await;

    // The attacker reuses the victim's (completed) handshake thread with its own DID.
    let attacker = KeyPair::generate().unwrap();
    let req = request(&thid, &attacker, "didcomm:transport/queue", "x", true);
    let (status, body) = post(s.base(), envelope(&req, &invitation, Some(&attacker))).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer = open(&attacker, &body);
    assert_eq!(answer["@type"], PROBLEM, "the attacker got {answer}");
    assert_eq!(answer["description"]["code"], "request_not_accepted");
    assert!(answer.get("did").is_none(), "{answer}");
    assert_eq!(s.refusals("handshake_thread").await, 1);

    // The victim's connection is untouched: its keys still work, its messages are its own.
    victim.still_served(s.base()).await;

    // The victim's own retransmission of that request is answered as the first time: the same
    // connection (the mediator's key for it is the one the victim has).
    let again = request(
        &thid,
        &victim.client.key,
        "didcomm:transport/queue",
        "v",
        true,
    );
    let (status, body) = post(
        s.base(),
        envelope(&again, &invitation, Some(&victim.client.key)),
    )
    .await;
    assert_eq!(status, 200);
    let response = open(&victim.client.key, &body);
    assert_eq!(
        response["@type"], "https://didcomm.org/didexchange/1.1/response",
        "{response}"
    );
    let doc = didcomm_did::resolve(response["did"].as_str().unwrap(), None).unwrap();
    assert_eq!(
        doc.didcomm_services().unwrap()[0].recipient_keys[0],
        victim.client.mediator_key,
        "a retransmission gets the same connection"
    );
    victim.queue(s.base(), 3).await;
    assert_eq!(victim.pick_up().await, [3]);
}

#[tokio::test]
async fn a_request_must_prove_the_key_of_the_did_it_presents() {
    let s = Setup::start(&[]).await;
    let legit = Legit::start(s.base()).await;
    let (_, invitation) = common::invitation(s.base()).await;
    let owner = KeyPair::generate().unwrap();

    // Somebody else's DID, anoncrypted: no proof at all.
    let req = request(&new_id(), &owner, "didcomm:transport/queue", "x", true);
    let (status, body) = post(s.base(), envelope(&req, &invitation, None)).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (403, "handshake_proof"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // Somebody else's DID, authcrypted by the attacker's key.
    let attacker = KeyPair::generate().unwrap();
    let (status, body) = post(s.base(), envelope(&req, &invitation, Some(&attacker))).await;
    assert_eq!((status, code(&body).as_str()), (403, "handshake_proof"));
    assert_eq!(s.refusals("handshake_proof").await, 2);
    assert!(
        s.connections()
            .find_by_thread(req["@id"].as_str().unwrap())
            .await
            .unwrap()
            .is_none(),
        "no connection was made"
    );
    legit.still_served(s.base()).await;
}

#[tokio::test]
async fn handshake_fields_are_capped_and_nothing_is_stored() {
    let s = Setup::start(&[]).await;
    let legit = Legit::start(s.base()).await;
    let (_, invitation) = common::invitation(s.base()).await;
    let attacker = KeyPair::generate().unwrap();
    let huge_label = "L".repeat(600_000);
    let long_thread = "t".repeat(300);
    for req in [
        request(
            &new_id(),
            &attacker,
            "didcomm:transport/queue",
            &huge_label,
            true,
        ),
        request(
            &long_thread,
            &attacker,
            "didcomm:transport/queue",
            "x",
            true,
        ),
    ] {
        let (status, body) = post(s.base(), envelope(&req, &invitation, Some(&attacker))).await;
        assert_eq!(
            (status, code(&body).as_str()),
            (400, "handshake_size"),
            "{}",
            String::from_utf8_lossy(&body)
        );
        let thid = req["@id"].as_str().unwrap();
        assert!(s
            .connections()
            .find_by_thread(thid)
            .await
            .unwrap()
            .is_none());
    }
    assert_eq!(s.refusals("handshake_size").await, 2);
    legit.still_served(s.base()).await;
}

/// An HTTP endpoint on loopback that counts the POSTs it gets and answers `status`.
async fn counting_endpoint(status: StatusCode) -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let app = Router::new().route(
        "/internal/admin",
        routing::post(move || {
            seen.fetch_add(1, Ordering::SeqCst);
            async move { status }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("{addr}"), count)
}

#[tokio::test]
async fn handshake_replies_never_reach_private_endpoints() {
    let s = Setup::start(&[("MEDIATOR_DELIVERY__ALLOW_PRIVATE_ENDPOINTS", "false")]).await;
    let legit = Legit::start(s.base()).await;
    let (_, invitation) = common::invitation(s.base()).await;
    let (addr, posts) = counting_endpoint(StatusCode::OK).await;
    let port = addr.rsplit(':').next().unwrap();
    let attacker = KeyPair::generate().unwrap();
    // By address (refused before anything is sent), then by a name that resolves to loopback
    // (refused when it is resolved, in the background).
    for (n, endpoint) in [
        format!("http://{addr}/internal/admin"),
        format!("http://localhost:{port}/internal/admin"),
    ]
    .iter()
    .enumerate()
    {
        let req = request(&new_id(), &attacker, endpoint, "x", false);
        let (status, _) = post(s.base(), envelope(&req, &invitation, Some(&attacker))).await;
        assert_eq!(status, 202, "the request itself is fine");
        s.until_refused(
            "private_endpoint",
            n as u64 + 1,
            std::time::Duration::from_secs(10),
        )
        .await;
    }
    assert_eq!(
        posts.load(Ordering::SeqCst),
        0,
        "the mediator POSTed to loopback"
    );
    legit.still_served(s.base()).await;
}

#[tokio::test]
async fn a_handshake_reply_is_tried_a_bounded_number_of_times() {
    let s = Setup::start(&[
        ("MEDIATOR_DELIVERY__MAX_HANDSHAKE_ATTEMPTS", "3"),
        ("MEDIATOR_DELIVERY__RETRY_INITIAL_MS", "10"),
    ])
    .await;
    let legit = Legit::start(s.base()).await;
    let (_, invitation) = common::invitation(s.base()).await;
    let (addr, posts) = counting_endpoint(StatusCode::INTERNAL_SERVER_ERROR).await;
    let attacker = KeyPair::generate().unwrap();
    let endpoint = format!("http://{addr}/internal/admin");
    let req = request(&new_id(), &attacker, &endpoint, "x", false);
    let (status, _) = post(s.base(), envelope(&req, &invitation, Some(&attacker))).await;
    assert_eq!(status, 202);
    s.until_refused("outbound_gave_up", 1, std::time::Duration::from_secs(20))
        .await;
    // Given up: the task that retried has ended, so this count is final.
    assert_eq!(posts.load(Ordering::SeqCst), 3);
    legit.still_served(s.base()).await;
}

/// One keylist-update adding `n` fresh keys; the answer.
async fn add_fresh_keys(client: &Client, n: usize) -> Value {
    let keys: Vec<String> = (0..n)
        .map(|_| KeyPair::generate().unwrap().verkey().to_did_key())
        .collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    client.add_keys(&refs).await
}

#[tokio::test]
async fn keylists_are_capped_per_connection_and_per_update() {
    let s = Setup::start(&[
        ("MEDIATOR_MEDIATION__MAX_KEYS_PER_CONNECTION", "5"),
        ("MEDIATOR_MEDIATION__MAX_KEYLIST_UPDATE", "10"),
    ])
    .await;
    let legit = Legit::start(s.base()).await; // one key registered
    let attacker = Client::connect_base(s.base(), "didcomm:transport/queue").await;
    attacker.mediate().await;
    let r = add_fresh_keys(&attacker, 8).await;
    let results: Vec<&str> = r["updated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results,
        [
            "success",
            "success",
            "success",
            "success",
            "success",
            "client_error",
            "client_error",
            "client_error"
        ]
    );
    assert_eq!(s.refusals("keylist_size").await, 1);
    let r = add_fresh_keys(&attacker, 11).await;
    assert_eq!(r["@type"], PROBLEM, "{r}");
    assert_eq!(s.refusals("keylist_update").await, 1);
    legit.still_served(s.base()).await;
}

/// A discover-features 2.0 query of `n` times "every protocol".
async fn discover(client: &Client, n: usize) -> Value {
    let queries: Vec<Value> = (0..n)
        .map(|_| json!({"feature-type": "protocol", "match": "*"}))
        .collect();
    client
        .call(&Client::msg(
            "discover-features/2.0/queries",
            json!({"queries": queries}),
        ))
        .await
        .unwrap()
}

#[tokio::test]
async fn discover_features_answers_are_bounded() {
    let s = Setup::start(&[]).await;
    let legit = Legit::start(s.base()).await;
    let answer = discover(&legit.client, 32).await;
    let disclosures = answer["disclosures"].as_array().unwrap();
    let mut ids: Vec<&str> = disclosures
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "each protocol once: {answer}");
    assert!(n <= 16, "{n} disclosures");
    let answer = discover(&legit.client, 33).await;
    assert_eq!(answer["@type"], PROBLEM, "{answer}");
    assert_eq!(s.refusals("discover_queries").await, 1);
    legit.still_served(s.base()).await;
}

#[tokio::test]
async fn an_envelope_with_many_recipients_is_refused_before_any_lookup() {
    let s = Setup::start(&[]).await;
    let legit = Legit::start(s.base()).await;
    let keys: Vec<VerKey> = (0..100)
        .map(|_| *KeyPair::generate().unwrap().verkey())
        .collect();
    let body = pack(b"{}", &keys, None, ContentEnc::C20P).unwrap();
    let (status, body) = post(s.base(), body).await;
    assert_eq!((status, code(&body).as_str()), (400, "envelope_recipients"));
    assert_eq!(s.refusals("envelope_recipients").await, 1);
    legit.still_served(s.base()).await;
}

#[tokio::test]
async fn refusals_to_strangers_name_no_connection_and_no_key() {
    let s = Setup::start(&[]).await;
    let legit = Legit::start(s.base()).await;
    // To a key nobody has.
    let stranger = KeyPair::generate().unwrap();
    let unknown = *KeyPair::generate().unwrap().verkey();
    let msg = json!({"@type": "https://didcomm.org/trust_ping/1.0/ping", "@id": new_id()});
    let (status, body) = post(s.base(), envelope(&msg, &unknown, Some(&stranger))).await;
    assert_eq!(status, 403);
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains(&unknown.to_base58()), "{text}");
    // To the legitimate client's connection key, from somebody else.
    let (status, body) = post(
        s.base(),
        envelope(&msg, &legit.client.mediator_key, Some(&stranger)),
    )
    .await;
    assert_eq!((status, code(&body).as_str()), (403, "not_from_connection"));
    let conn = s
        .connections()
        .find_by_my_verkey(&legit.client.mediator_key)
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains(conn.id.as_str()), "{text}");
    assert!(
        !text.contains(&legit.client.mediator_key.to_base58()),
        "{text}"
    );
    legit.still_served(s.base()).await;
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// A Forward whose inner message (anoncrypted for `recipient`) carries `filler` bytes.
fn large_forward(routing: &VerKey, recipient: &VerKey, seq: u64, filler: usize) -> Vec<u8> {
    forward_json(
        routing,
        recipient,
        &json!({ "seq": seq, "filler": "f".repeat(filler) }),
    )
}

#[tokio::test]
async fn a_delivery_is_bounded_in_bytes_and_parallel_ones_do_not_grow_memory() {
    // A full queue (~24 MiB of ~534 KB queued messages, under a 25 MiB cap: smaller than the
    // default 100 MiB, to keep the test short) and the default 2 MiB delivery budget (three such
    // messages). Without the budget each delivery would carry the whole queue.
    let s = Setup::start(&[("MEDIATOR_QUEUE__MAX_BYTES", "26214400")]).await;
    let pid = s.proc.pid().unwrap();
    let legit = Legit::start(s.base()).await;
    let victim = Client::connect_base(s.base(), "didcomm:transport/queue").await;
    let (routing, recipient) = victim.mediation_with_key().await;
    let filler = 400_000;
    for seq in 0..45 {
        let (status, body) = post(
            s.base(),
            large_forward(&routing, recipient.verkey(), seq, filler),
        )
        .await;
        assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    }
    let delivery_request =
        || Client::msg("messagepickup/2.0/delivery-request", json!({"limit": 100}));
    // The peak RSS from here on (writing 5 to clear_refs resets VmHWM to the current RSS).
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let before = proc_status_kib(pid, "VmRSS");
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let (victim, msg) = (&victim, delivery_request());
            async move { victim.post_raw(&msg).await }
        })
        .collect();
    let answers = futures_util::future::join_all(requests).await;
    let peak = proc_status_kib(pid, "VmHWM");
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{}", String::from_utf8_lossy(body));
        assert!(
            body.len() < 3 * 1024 * 1024,
            "a delivery of {} bytes (budget 2 MiB)",
            body.len()
        );
        let delivery = victim.open(body);
        let n = delivery["~attach"].as_array().unwrap().len();
        assert!((1..=3).contains(&n), "{n} messages in one delivery");
    }
    let grew_mib = peak.saturating_sub(before) / 1024;
    assert!(
        grew_mib < 64,
        "four parallel deliveries grew the mediator by {grew_mib} MiB"
    );
    legit.still_served(s.base()).await;
}

#[tokio::test]
async fn a_replayed_live_delivery_change_does_not_move_the_live_session() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let s = Setup::start(&[]).await;
    let victim = Legit::start(s.base()).await;
    assert_eq!(victim.pick_up().await, [1]);
    let mut own = ws_connect(&s.proc.ws_url()).await;
    let change = Client::msg(
        "messagepickup/2.0/live-delivery-change",
        json!({"live_delivery": true}),
    );
    let captured = victim.client.pack(&change);
    own.send(WsMessage::Binary(captured.clone().into()))
        .await
        .unwrap();
    let status = victim.client.ws_next(&mut own).await;
    assert_eq!(status["live_delivery"], true, "{status}");

    // The same envelope, played again on the attacker's socket.
    let mut attacker = ws_connect(&s.proc.ws_url()).await;
    attacker
        .send(WsMessage::Binary(captured.into()))
        .await
        .unwrap();
    let report = victim.client.open(&next_frame(&mut attacker).await);
    assert_eq!(report["@type"], PROBLEM, "{report}");
    assert_eq!(s.refusals("replay").await, 1);

    // Forwards still go to the victim's own socket.
    victim.queue(s.base(), 2).await;
    let frame = next_frame(&mut own).await;
    let delivered = open_delivery(&victim.client, &victim.recipient, &frame).unwrap();
    assert_eq!(
        delivered.iter().map(|(_, seq)| *seq).collect::<Vec<_>>(),
        [2]
    );
}

#[tokio::test]
async fn a_replayed_delivery_request_does_not_hold_the_victims_messages() {
    let s = Setup::start(&[]).await;
    let victim = Legit::start(s.base()).await;
    let request = Client::msg("messagepickup/2.0/delivery-request", json!({"limit": 10}));
    let captured = victim.client.pack(&request);
    let (status, body) = post(s.base(), captured.clone()).await;
    assert_eq!(status, 200);
    let delivery = victim.client.open(&body);
    let ids = delivery["~attach"].as_array().unwrap().len();
    assert_eq!(ids, 1, "{delivery}");
    let ack = victim
        .client
        .call(&Client::msg(
            "messagepickup/2.0/messages-received",
            json!({"message_id_list": [delivery["~attach"][0]["@id"]]}),
        ))
        .await
        .unwrap();
    assert_eq!(ack["message_count"], 0);

    // A new message waits; the captured request is played again by someone else.
    victim.queue(s.base(), 2).await;
    let (status, body) = post(s.base(), captured).await;
    assert_eq!(status, 200);
    let report = victim.client.open(&body);
    assert_eq!(report["@type"], PROBLEM, "{report}");
    assert_eq!(s.refusals("replay").await, 1);
    // The new message was not put in flight by the replay: the victim gets it at once.
    assert_eq!(victim.pick_up().await, [2]);
}

async fn redis_config_set(s: &Setup, key: &str, value: &str) {
    let mut conn = s.redis.pool().unwrap().get().await.unwrap();
    let _: () = mediator_store_redis::deadpool_redis::redis::cmd("CONFIG")
        .arg("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut conn)
        .await
        .unwrap();
}

async fn until_ready_is(s: &Setup, want: u16) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let status = reqwest::get(format!("{}/readyz", s.base()))
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if status == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never said {want} (last {status})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readiness_says_not_ready_while_writes_fail() {
    let s = Setup::start(&[]).await;
    let legit = Legit::start(s.base()).await;
    // Redis at maxmemory with noeviction: it answers PING and reads, and refuses every write.
    redis_config_set(&s, "maxmemory", "1").await;
    until_ready_is(&s, 503).await;
    let (status, body) = post(
        s.base(),
        forward(&legit.routing, legit.recipient.verkey(), 9),
    )
    .await;
    assert_eq!((status, code(&body).as_str()), (503, "storage_unavailable"));
    redis_config_set(&s, "maxmemory", "0").await;
    until_ready_is(&s, 200).await;
    legit.still_served(s.base()).await;
}

#[tokio::test]
async fn an_unfinished_handshake_expires_and_a_completed_one_stays() {
    let s = Setup::start(&[("MEDIATOR_HANDSHAKE__PENDING_TTL_SECS", "1")]).await;
    let legit = Legit::start(s.base()).await;
    let (_, invitation) = common::invitation(s.base()).await;
    let stranger = KeyPair::generate().unwrap();
    let thid = new_id();
    let req = request(&thid, &stranger, "didcomm:transport/queue", "x", true);
    let (status, body) = post(s.base(), envelope(&req, &invitation, Some(&stranger))).await;
    assert_eq!(status, 200);
    let response = open(&stranger, &body);
    assert_eq!(
        response["@type"], "https://didcomm.org/didexchange/1.1/response",
        "{response}"
    );
    assert!(s
        .connections()
        .find_by_thread(&thid)
        .await
        .unwrap()
        .is_some());
    // Never completed: gone after the pending TTL.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while s
        .connections()
        .find_by_thread(&thid)
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the unfinished connection never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Its key is unknown now.
    let doc = didcomm_did::resolve(response["did"].as_str().unwrap(), None).unwrap();
    let key = doc.didcomm_services().unwrap()[0].recipient_keys[0];
    let ping = json!({"@type": "https://didcomm.org/trust_ping/1.0/ping", "@id": new_id()});
    let (status, body) = post(s.base(), envelope(&ping, &key, Some(&stranger))).await;
    assert_eq!((status, code(&body).as_str()), (403, "unknown_recipient"));
    // The completed one (made before, older than the TTL) is served.
    legit.still_served(s.base()).await;
}
