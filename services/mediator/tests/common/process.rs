//! Real mediator processes (the binary) on loopback sharing a Redis, and the Forwards and
//! deliveries the process tests exchange with them.

use super::{Client, Ws};
use didcomm_envelope::{pack, unpack, ContentEnc, KeyPair, VerKey};
use serde_json::{json, Value};

pub use mediator::testing::MediatorProcess as Proc;

/// Opens a delivery envelope's attachments: (queued id, sequence number) each.
pub fn open_delivery(
    client: &Client,
    recipient: &KeyPair,
    frame: &[u8],
) -> Option<Vec<(Value, u64)>> {
    // Not every frame is an envelope: a refused acknowledgement (storage down) is a JSON error.
    let plain = unpack(frame, |kid| {
        (kid == client.key.verkey_base58()).then_some(&client.key)
    })
    .ok()?;
    let msg: Value = serde_json::from_slice(&plain.message).ok()?;
    if msg["@type"] != "https://didcomm.org/messagepickup/2.0/delivery" {
        return None;
    }
    let mut out = Vec::new();
    for a in msg["~attach"].as_array()? {
        let inner = serde_json::to_vec(&a["data"]["json"]).ok()?;
        let plain = unpack(&inner, |kid| {
            (kid == recipient.verkey_base58()).then_some(recipient)
        })
        .ok()?;
        let v: Value = serde_json::from_slice(&plain.message).ok()?;
        out.push((a["@id"].clone(), v["seq"].as_u64()?));
    }
    Some(out)
}

/// A Forward of sequence number `seq` for `recipient`.
pub fn forward(routing: &VerKey, recipient: &VerKey, seq: u64) -> Vec<u8> {
    forward_json(routing, recipient, &json!({ "seq": seq }))
}

/// A Forward for `recipient` of `inner` (anoncrypted for it).
pub fn forward_json(routing: &VerKey, recipient: &VerKey, inner: &Value) -> Vec<u8> {
    let inner = pack(
        inner.to_string().as_bytes(),
        &[*recipient],
        None,
        ContentEnc::C20P,
    )
    .unwrap();
    let inner: Value = serde_json::from_slice(&inner).unwrap();
    let fwd = json!({
        "@type": "https://didcomm.org/routing/1.0/forward",
        "@id": super::new_id(),
        "to": recipient.to_base58(),
        "msg": inner,
    });
    pack(
        &serde_json::to_vec(&fwd).unwrap(),
        &[*routing],
        None,
        ContentEnc::C20P,
    )
    .unwrap()
}

pub async fn ws_connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// `mediator_limits_refused_total{limit}` on the Prometheus endpoint at `metrics` (host:port):
/// how many times that limit refused something (0 when the scrape fails).
pub async fn refusals(metrics: &str, limit: &str) -> u64 {
    let Ok(response) = reqwest::get(format!("http://{metrics}/metrics")).await else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    let label = format!("limit=\"{limit}\"");
    text.lines()
        .filter(|l| l.starts_with("mediator_limits_refused_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// The value of the unlabelled metric `name` on the Prometheus endpoint at `metrics` (host:port),
/// `None` when the scrape fails or the metric is not there.
pub async fn metric(metrics: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Starts `name` with a Prometheus endpoint of its own, on free ports; returns it, ready, and the
/// endpoint's address. The free ports are found by binding and letting go: another process may
/// take one before the mediator binds it; then it exits at once, saying so, and gets other ports.
pub async fn start_with_metrics(
    name: &str,
    redis: &str,
    prefix: &str,
    extra: &[(&str, &str)],
) -> (Proc, String) {
    let mut log = String::new();
    for _ in 0..5 {
        let metrics = free_addr();
        let mut env = vec![("MEDIATOR_TELEMETRY__PROMETHEUS__LISTEN", metrics.as_str())];
        env.extend_from_slice(extra);
        let mut proc = Proc::start_with(name, redis, prefix, &env);
        match proc.try_ready().await {
            Ok(()) => return (proc, metrics),
            Err(text) if text.contains("Address already in use") => log = text,
            Err(text) => panic!("the mediator did not start; its log:\n{text}"),
        }
    }
    panic!("no free ports for the mediator after 5 tries; last log:\n{log}");
}

/// A free loopback address for a listener (`127.0.0.1:<port>`).
pub fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}
