//! A live client reading a stream of Forwards the way the fault and race tests need it: the
//! sender (each Forward retried until some instance accepts it), the tally of what arrived
//! (lost and duplicated), live reading with acknowledgements, and draining over HTTP.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use didcomm_envelope::{unpack, KeyPair, VerKey};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{
    next_frame,
    process::{forward, open_delivery},
    Client, Ws,
};

/// What the client got: sequence numbers with how often each came.
#[derive(Default)]
pub struct Tally {
    pub counts: BTreeMap<u64, u32>,
}

impl Tally {
    pub fn record(&mut self, seq: u64) {
        *self.counts.entry(seq).or_default() += 1;
    }
    pub fn duplicates(&self) -> u32 {
        self.counts.values().map(|n| n - 1).sum()
    }

    /// (distinct received, duplicates, the accepted ones never received).
    pub fn against(&self, accepted: &BTreeSet<u64>) -> (usize, u32, Vec<u64>) {
        let lost = accepted
            .iter()
            .filter(|s| !self.counts.contains_key(s))
            .copied()
            .collect();
        (self.counts.len(), self.duplicates(), lost)
    }
}

/// Posts `n` Forwards round-robin to `targets`, each retried until one instance accepts it
/// (202); returns the accepted sequence numbers and how many refusals there were.
pub async fn send_all(
    targets: Vec<String>,
    routing: VerKey,
    recipient: VerKey,
    n: u64,
    pace: Duration,
) -> (BTreeSet<u64>, u32) {
    let http = reqwest::Client::new();
    let mut accepted = BTreeSet::new();
    let mut refused = 0;
    for seq in 0..n {
        let body = forward(&routing, &recipient, seq);
        let mut attempt = 0usize;
        loop {
            let target = &targets[(seq as usize + attempt) % targets.len()];
            let sent = http
                .post(target)
                .header("content-type", "application/didcomm-envelope-enc")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().as_u16() == 202 => {
                    accepted.insert(seq);
                    break;
                }
                _ => {
                    refused += 1;
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        tokio::time::sleep(pace).await;
    }
    (accepted, refused)
}

pub async fn go_live(client: &Client, ws: &mut Ws) {
    go_live_recording(client, ws, None).await;
}

/// Turns live mode on; deliveries that come before the `status` answer (traffic is flowing) are
/// recorded and acknowledged like any other, never dropped. Returns the status's
/// `message_count`: what waits in the queue and is not delivered live (queued before live mode
/// was on), which a client fetches with delivery-requests, as credo-ts does.
pub async fn go_live_recording(
    client: &Client,
    ws: &mut Ws,
    recording: Option<(&KeyPair, &Arc<Mutex<Tally>>)>,
) -> u64 {
    let change = Client::msg(
        "messagepickup/2.0/live-delivery-change",
        json!({"live_delivery": true}),
    );
    client.ws_send(ws, &change).await;
    loop {
        let frame = next_frame(ws).await;
        if let Some((recipient, tally)) = recording {
            if let Some(items) = open_delivery(client, recipient, &frame) {
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
                continue;
            }
        }
        let msg = client.open(&frame);
        if msg["@type"] == "https://didcomm.org/messagepickup/2.0/status"
            && msg["~thread"]["thid"] == change["@id"]
        {
            assert_eq!(msg["live_delivery"], true);
            return msg["message_count"].as_u64().unwrap_or(0);
        }
    }
}

/// Drains the queue over HTTP with delivery-requests (acknowledging), as a reconnecting client
/// does before it turns live mode on again.
pub async fn fetch_all(client: &Client, recipient: &KeyPair, tally: &Mutex<Tally>) {
    loop {
        let reply = client
            .call(&Client::msg(
                "messagepickup/2.0/delivery-request",
                json!({"limit": 50}),
            ))
            .await
            .unwrap();
        if reply["@type"] != "https://didcomm.org/messagepickup/2.0/delivery" {
            return;
        }
        let mut ids = Vec::new();
        for a in reply["~attach"].as_array().unwrap() {
            let inner = serde_json::to_vec(&a["data"]["json"]).unwrap();
            let plain = unpack(&inner, |kid| {
                (kid == recipient.verkey_base58()).then_some(recipient)
            })
            .unwrap();
            let v: Value = serde_json::from_slice(&plain.message).unwrap();
            tally.lock().unwrap().record(v["seq"].as_u64().unwrap());
            ids.push(a["@id"].clone());
        }
        client
            .call(&Client::msg(
                "messagepickup/2.0/messages-received",
                json!({"message_id_list": ids}),
            ))
            .await;
    }
}

/// Reads live deliveries from `ws`, acknowledging each on the socket, until `done(tally)` or the
/// socket fails (returns false then).
pub async fn read_live(
    client: &Client,
    recipient: &KeyPair,
    ws: &mut Ws,
    tally: &Arc<Mutex<Tally>>,
    mut done: impl FnMut(&Tally) -> bool,
    limit: Duration,
) -> bool {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let deadline = Instant::now() + limit;
    loop {
        if done(&tally.lock().unwrap()) {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = match tokio::time::timeout(left, ws.next()).await {
            Err(_) => {
                eprintln!(
                    "no live delivery within {limit:?} ({} distinct received so far)",
                    tally.lock().unwrap().counts.len()
                );
                return false;
            }
            Ok(None) | Ok(Some(Err(_))) => return false,
            Ok(Some(Ok(frame))) => frame,
        };
        let bytes = match frame {
            WsMessage::Binary(b) => b.to_vec(),
            WsMessage::Text(t) => t.as_bytes().to_vec(),
            WsMessage::Close(_) => return false,
            _ => continue,
        };
        let Some(items) = open_delivery(client, recipient, &bytes) else {
            continue; // a status answering an acknowledgement
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

/// Starts sending `n` Forwards to `targets` (the task returns what [`send_all`] does) and reads
/// live deliveries on `ws` until a third of them arrived: the moment a kill test kills.
#[allow(clippy::too_many_arguments)]
pub async fn stream_until_a_third(
    client: &Client,
    recipient: &KeyPair,
    ws: &mut Ws,
    tally: &Arc<Mutex<Tally>>,
    targets: Vec<String>,
    routing: VerKey,
    n: u64,
    pace: Duration,
) -> tokio::task::JoinHandle<(BTreeSet<u64>, u32)> {
    let sender = tokio::spawn(send_all(targets, routing, *recipient.verkey(), n, pace));
    let alive = read_live(
        client,
        recipient,
        ws,
        tally,
        |t| t.counts.len() as u64 >= n / 3,
        Duration::from_secs(30),
    )
    .await;
    assert!(alive, "the live socket failed before the kill");
    sender
}
