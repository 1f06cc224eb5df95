//! What an operator sees, with real processes: mediator binaries on loopback sharing a private
//! redis-server.
//!
//! - OTLP: an OTLP/HTTP receiver in this process gets, as one trace, the spans of a Forward taken
//!   by instance A and delivered live by instance B (A exports protobuf, B JSON), and the
//!   metrics of both;
//! - `/readyz` goes not-ready while Redis is stopped and ready again once it is back;
//! - every metric name the Grafana dashboard queries is one the mediator exports on `/metrics`,
//!   and every metric it exports is on the dashboard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::{BTreeSet, HashMap},
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{body::Bytes, http::HeaderMap, routing::post, Router};
use common::{
    process::{forward, open_delivery, ws_connect, Proc},
    Client, Ws,
};
use didcomm_envelope::{KeyPair, VerKey};
use mediator_store_redis::testing::RedisServer;
use opentelemetry_proto::tonic::{
    collector::{
        metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse},
        trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    },
    common::v1::{any_value, KeyValue},
    metrics::v1::{metric, number_data_point},
};
use prost::Message as _;
use serde_json::{json, Value};
use tokio::{sync::Notify, time::Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `check` gives a value (re-checked whenever `notify` fires, or every 100 ms for
/// conditions outside this process), failing with `what` after `limit`.
async fn until<T, F, Fut>(what: &str, limit: Duration, notify: Option<&Notify>, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let woken = notify.map(Notify::notified);
        if let Some(v) = check().await {
            return v;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out after {limit:?}: {what}");
        match woken {
            Some(w) => {
                let _ = tokio::time::timeout(left.min(Duration::from_millis(500)), w).await;
            }
            None => tokio::time::sleep(left.min(Duration::from_millis(100))).await,
        }
    }
}

/// Everything the OTLP receiver was sent.
#[derive(Default)]
struct Received {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    /// Content types seen, per signal path.
    content_types: BTreeSet<(String, String)>,
}

/// An OTLP/HTTP receiver (protobuf and JSON bodies) on a loopback port.
struct Receiver {
    endpoint: String,
    received: Arc<Mutex<Received>>,
    notify: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

impl Receiver {
    async fn start() -> Self {
        let received = Arc::new(Mutex::new(Received::default()));
        let notify = Arc::new(Notify::new());
        let (r1, n1, r2, n2) = (
            received.clone(),
            notify.clone(),
            received.clone(),
            notify.clone(),
        );
        let app = Router::new()
            .route(
                "/v1/traces",
                post(move |headers: HeaderMap, body: Bytes| async move {
                    let request: ExportTraceServiceRequest = if is_json(&headers) {
                        serde_json::from_slice(&body).expect("OTLP/JSON trace export")
                    } else {
                        ExportTraceServiceRequest::decode(body).expect("OTLP/protobuf trace export")
                    };
                    let mut r = r1.lock().unwrap();
                    r.content_types
                        .insert(("traces".into(), content_type(&headers)));
                    r.traces.push(request);
                    drop(r);
                    n1.notify_waiters();
                    reply(
                        &headers,
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }),
            )
            .route(
                "/v1/metrics",
                post(move |headers: HeaderMap, body: Bytes| async move {
                    let request: ExportMetricsServiceRequest = if is_json(&headers) {
                        serde_json::from_slice(&body).expect("OTLP/JSON metrics export")
                    } else {
                        ExportMetricsServiceRequest::decode(body)
                            .expect("OTLP/protobuf metrics export")
                    };
                    let mut r = r2.lock().unwrap();
                    r.content_types
                        .insert(("metrics".into(), content_type(&headers)));
                    r.metrics.push(request);
                    drop(r);
                    n2.notify_waiters();
                    reply(
                        &headers,
                        ExportMetricsServiceResponse::default().encode_to_vec(),
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            endpoint,
            received,
            notify,
            task,
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(request: &HeaderMap, protobuf: Vec<u8>) -> axum::response::Response {
    use axum::response::IntoResponse;
    if is_json(request) {
        ([("content-type", "application/json")], "{}").into_response()
    } else {
        ([("content-type", "application/x-protobuf")], protobuf).into_response()
    }
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            other => Some(format!("{other:?}")),
        }
    })
}

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct SpanSeen {
    instance: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: Vec<KeyValue>,
}

fn spans(received: &Received) -> Vec<SpanSeen> {
    let mut out = Vec::new();
    for request in &received.traces {
        for rs in &request.resource_spans {
            let instance = rs
                .resource
                .as_ref()
                .and_then(|r| string_attribute(&r.attributes, "service.instance.id"))
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    out.push(SpanSeen {
                        instance: instance.clone(),
                        name: s.name.clone(),
                        trace_id: s.trace_id.clone(),
                        span_id: s.span_id.clone(),
                        parent_span_id: s.parent_span_id.clone(),
                        attributes: s.attributes.clone(),
                    });
                }
            }
        }
    }
    out
}

/// The latest value of metric `name` from `instance` (a sum or gauge data point whose attributes
/// include `with`, or a histogram's count), across every export received.
fn metric_value(
    received: &Received,
    instance: &str,
    name: &str,
    with: &[(&str, &str)],
) -> Option<f64> {
    let mut latest = None;
    for request in &received.metrics {
        for rm in &request.resource_metrics {
            let from = rm
                .resource
                .as_ref()
                .and_then(|r| string_attribute(&r.attributes, "service.instance.id"));
            if from.as_deref() != Some(instance) {
                continue;
            }
            for sm in &rm.scope_metrics {
                for m in sm.metrics.iter().filter(|m| m.name == name) {
                    let matches = |attributes: &[KeyValue]| {
                        with.iter()
                            .all(|(k, v)| string_attribute(attributes, k).as_deref() == Some(*v))
                    };
                    let number = |p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| {
                        match p.value {
                            Some(number_data_point::Value::AsInt(i)) => i as f64,
                            Some(number_data_point::Value::AsDouble(d)) => d,
                            None => 0.0,
                        }
                    };
                    match &m.data {
                        Some(metric::Data::Sum(sum)) => {
                            for p in sum.data_points.iter().filter(|p| matches(&p.attributes)) {
                                latest = Some(number(p));
                            }
                        }
                        Some(metric::Data::Gauge(gauge)) => {
                            for p in gauge.data_points.iter().filter(|p| matches(&p.attributes)) {
                                latest = Some(number(p));
                            }
                        }
                        Some(metric::Data::Histogram(h)) => {
                            for p in h.data_points.iter().filter(|p| matches(&p.attributes)) {
                                latest = Some(p.count as f64);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    latest
}

/// Turns live mode on over `ws` and waits for the `status` that confirms it.
async fn go_live(client: &Client, ws: &mut Ws) {
    let change = Client::msg(
        "messagepickup/2.0/live-delivery-change",
        json!({"live_delivery": true}),
    );
    client.ws_send(ws, &change).await;
    let status = client.ws_next(ws).await;
    assert_eq!(status["live_delivery"], true, "{status}");
}

/// Posts a Forward of sequence number `seq` for `recipient` to `base`; it must be accepted (202).
async fn post_forward(base: &str, routing: &VerKey, recipient: &KeyPair, seq: u64) {
    let status = reqwest::Client::new()
        .post(base)
        .header("content-type", "application/didcomm-envelope-enc")
        .body(forward(routing, recipient.verkey(), seq))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 202);
}

/// The next Pickup 2.0 `delivery` on `ws`: (queued id, sequence number) per message.
async fn next_delivery(client: &Client, recipient: &KeyPair, ws: &mut Ws) -> Vec<(Value, u64)> {
    loop {
        let frame = common::next_frame(ws).await;
        if let Some(items) = open_delivery(client, recipient, &frame) {
            return items;
        }
    }
}

/// Acknowledges `delivered` on `ws` (`messages-received`).
async fn acknowledge(client: &Client, ws: &mut Ws, delivered: &[(Value, u64)]) {
    let ids: Vec<Value> = delivered.iter().map(|(id, _)| id.clone()).collect();
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

fn otlp_env<'a>(endpoint: &'a str, protocol: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("MEDIATOR_TELEMETRY__OTLP__ENDPOINT", endpoint),
        ("MEDIATOR_TELEMETRY__OTLP__PROTOCOL", protocol),
        ("MEDIATOR_TELEMETRY__OTLP__TRACES_DELAY_MS", "100"),
        ("MEDIATOR_TELEMETRY__OTLP__METRICS_INTERVAL_MS", "300"),
        ("MEDIATOR_TELEMETRY__QUEUE_SAMPLE_INTERVAL_MS", "200"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_otlp_receiver_gets_one_trace_across_instances_and_the_metrics() {
    let receiver = Receiver::start().await;
    let redis = RedisServer::start().unwrap();
    let prefix = format!("otlp-{}:", uuid::Uuid::new_v4());
    let a = Proc::start_with(
        "a",
        redis.url(),
        &prefix,
        &otlp_env(&receiver.endpoint, "http/protobuf"),
    );
    let b = Proc::start_with(
        "b",
        redis.url(),
        &prefix,
        &otlp_env(&receiver.endpoint, "http/json"),
    );
    for p in [&a, &b] {
        p.ready().await;
    }

    // The recipient is live on B.
    let client = Client::connect_base(&b.base, "didcomm:transport/queue").await;
    let (routing, recipient) = client.mediation_with_key().await;
    let mut ws = ws_connect(&b.ws_url()).await;
    go_live(&client, &mut ws).await;
    // A knows it (its routing gauge says so), so a Forward to A goes to B in a notice.
    until(
        "A's metrics show it knows B's live session",
        Duration::from_secs(20),
        Some(&receiver.notify),
        || async {
            let r = receiver.received.lock().unwrap();
            (metric_value(&r, "a", "mediator.cluster.routes", &[]) >= Some(1.0)).then_some(())
        },
    )
    .await;

    post_forward(&a.base, &routing, &recipient, 7).await;
    let delivered = next_delivery(&client, &recipient, &mut ws).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        delivered[0].1, 7,
        "the Forward's message was delivered live"
    );
    acknowledge(&client, &mut ws, &delivered).await;

    // The spans: B's delivery, a child (through the notice) of A's request span, and A's store
    // operation for the enqueue, all in one trace.
    let (inbound, deliver, store) = until(
        "the Forward's spans from A and the delivery's from B",
        Duration::from_secs(20),
        Some(&receiver.notify),
        || async {
            let all = spans(&receiver.received.lock().unwrap());
            let deliver = all
                .iter()
                .find(|s| s.instance == "b" && s.name == "cluster.deliver")?;
            let inbound = all
                .iter()
                .find(|s| s.span_id == deliver.parent_span_id && s.instance == "a")?;
            let store = all.iter().find(|s| {
                s.instance == "a" && s.name == "queue.add_leased" && s.trace_id == inbound.trace_id
            })?;
            Some((inbound.clone(), deliver.clone(), store.clone()))
        },
    )
    .await;
    assert_eq!(inbound.name, "inbound");
    assert_eq!(
        inbound.trace_id, deliver.trace_id,
        "one trace across instances"
    );
    assert!(
        inbound.parent_span_id.is_empty(),
        "A's request span is the root"
    );
    assert_eq!(
        string_attribute(&inbound.attributes, "mediator.instance").as_deref(),
        Some("a")
    );
    assert_eq!(
        string_attribute(&deliver.attributes, "mediator.instance").as_deref(),
        Some("b")
    );
    assert_eq!(
        string_attribute(&store.attributes, "db.system").as_deref(),
        Some("redis")
    );

    // The metrics of both instances.
    until(
        "A's and B's metrics for the Forward and its live delivery",
        Duration::from_secs(20),
        Some(&receiver.notify),
        || async {
            let r = receiver.received.lock().unwrap();
            let got =
                |instance, name, with: &[(&str, &str)]| metric_value(&r, instance, name, with);
            (got("a", "mediator.forwards.received", &[]) >= Some(1.0)
                && got("a", "mediator.forwards.queued", &[]) >= Some(1.0)
                && got("a", "mediator.inbound.messages", &[("transport", "http")]) >= Some(1.0)
                && got("b", "mediator.messages.delivered", &[("mode", "live")]) >= Some(1.0)
                && got("b", "mediator.delivery.latency", &[("mode", "live")]) >= Some(1.0)
                && got("b", "mediator.messages.acknowledged", &[]) >= Some(1.0)
                && got("b", "mediator.live_sessions", &[]) == Some(1.0)
                && got("a", "mediator.live_sessions", &[]) == Some(0.0)
                && got(
                    "a",
                    "mediator.store.operation.duration",
                    &[("backend", "redis"), ("operation", "queue.add_leased")],
                ) >= Some(1.0)
                && got("a", "mediator.pubsub.reconnects", &[]).is_some()
                && got("b", "mediator.queue.messages", &[]).is_some())
            .then_some(())
        },
    )
    .await;
    let content_types = receiver.received.lock().unwrap().content_types.clone();
    for signal in ["traces", "metrics"] {
        for ty in ["application/x-protobuf", "application/json"] {
            assert!(
                content_types.contains(&(signal.to_owned(), ty.to_owned())),
                "no {signal} export as {ty}: {content_types:?}"
            );
        }
    }
}

async fn status_of(url: &str) -> Option<u16> {
    reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Stops `redis` and waits until `/readyz` of `p` says not ready (while `/healthz` still says
/// alive), then starts it again and waits until `/readyz` says ready.
async fn redis_outage(redis: &mut RedisServer, p: &Proc) {
    let readyz = format!("{}/readyz", p.base);
    redis.stop().unwrap();
    until(
        "/readyz is 503 while Redis is stopped",
        Duration::from_secs(30),
        None,
        || async { (status_of(&readyz).await == Some(503)).then_some(()) },
    )
    .await;
    assert_eq!(
        status_of(&format!("{}/healthz", p.base)).await,
        Some(200),
        "/healthz: the process is alive while Redis is down"
    );
    redis.restart().unwrap();
    until(
        "/readyz is 200 again once Redis is back",
        Duration::from_secs(30),
        None,
        || async { (status_of(&readyz).await == Some(200)).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_not_ready_while_redis_is_stopped_and_ready_when_it_is_back() {
    let mut redis = RedisServer::start().unwrap();
    let prefix = format!("ready-{}:", uuid::Uuid::new_v4());
    let a = Proc::start("a", redis.url(), &prefix);
    a.ready().await;
    redis_outage(&mut redis, &a).await;
    // Twice: the subscription and the pool recover every time, not once.
    redis_outage(&mut redis, &a).await;
}

/// The metric names a Grafana dashboard's queries use (`mediator_…` identifiers in `expr`).
fn dashboard_metric_names(dashboard: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == "expr" || k == "query" {
                        if let Some(expr) = v.as_str() {
                            names_in(expr, out);
                        }
                    }
                    walk(v, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    fn names_in(expr: &str, out: &mut BTreeSet<String>) {
        let bytes = expr.as_bytes();
        let mut i = 0;
        while let Some(at) = expr[i..].find("mediator_") {
            let start = i + at;
            let boundary = start == 0
                || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            if boundary {
                out.insert(expr[start..end].to_owned());
            }
            i = end;
        }
    }
    let mut out = BTreeSet::new();
    walk(dashboard, &mut out);
    out
}

/// The metric names in a Prometheus text exposition, with their sample values summed.
fn exposition(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry(line[..name_end].to_owned()).or_insert(0.0) += value;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_exported() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/dashboards/mediator.json"
    );
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard JSON")).unwrap();
    let wanted = dashboard_metric_names(&dashboard);
    assert!(
        wanted.len() >= 10,
        "the dashboard queries few mediator metrics: {wanted:?}"
    );

    let mut redis = RedisServer::start().unwrap();
    let prefix = format!("dash-{}:", uuid::Uuid::new_v4());
    let metrics_port = free_port().to_string();
    let listen = format!("127.0.0.1:{metrics_port}");
    let a = Proc::start_with(
        "a",
        redis.url(),
        &prefix,
        &[
            ("MEDIATOR_TELEMETRY__PROMETHEUS__LISTEN", listen.as_str()),
            ("MEDIATOR_TELEMETRY__QUEUE_SAMPLE_INTERVAL_MS", "200"),
        ],
    );
    a.ready().await;
    // Traffic: a live delivery, acknowledged; a Redis outage (store errors, a pub/sub reconnect).
    let client = Client::connect_base(&a.base, "didcomm:transport/queue").await;
    let (routing, recipient) = client.mediation_with_key().await;
    let mut ws = ws_connect(&a.ws_url()).await;
    go_live(&client, &mut ws).await;
    post_forward(&a.base, &routing, &recipient, 1).await;
    let delivered = next_delivery(&client, &recipient, &mut ws).await;
    acknowledge(&client, &mut ws, &delivered).await;
    // The acknowledgement is answered with a status once the message is removed.
    let status = client.ws_next(&mut ws).await;
    assert_eq!(status["message_count"], 0, "{status}");
    redis_outage(&mut redis, &a).await;

    let scrape = format!("http://{listen}/metrics");
    let exported = until(
        "a scrape that shows the traffic",
        Duration::from_secs(20),
        None,
        || async {
            let text = reqwest::get(&scrape).await.ok()?.text().await.ok()?;
            let exported = exposition(&text);
            let seen = |name: &str| exported.get(name).copied().unwrap_or(0.0);
            (seen("mediator_messages_acknowledged_total") >= 1.0
                && seen("mediator_store_errors_total") >= 1.0
                && seen("mediator_pubsub_reconnects_total") >= 1.0)
                .then_some(exported)
        },
    )
    .await;
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|n| !exported.contains_key(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics the mediator does not export: {missing:?}\nexported: {:?}",
        exported.keys().collect::<BTreeSet<_>>()
    );
    // And the other way: every metric of the mediator is on the dashboard (a histogram counts
    // as shown when one of its series is).
    let names: BTreeSet<&str> = exported.keys().map(String::as_str).collect();
    let family = |name: &str| -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if names.contains(format!("{base}_bucket").as_str()) {
                    return base.to_owned();
                }
            }
        }
        name.to_owned()
    };
    let shown: BTreeSet<String> = wanted.iter().map(|n| family(n)).collect();
    let unshown: BTreeSet<String> = names
        .iter()
        .filter(|n| n.starts_with("mediator_"))
        .map(|n| family(n))
        .filter(|f| !shown.contains(f))
        .collect();
    assert!(
        unshown.is_empty(),
        "metrics the dashboard does not show: {unshown:?}"
    );
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian's openssl package) runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA and a server certificate it signed for 127.0.0.1, in `dir`: `ca.crt`, `server.crt`,
/// `server.key`.
fn test_certificates(dir: &std::path::Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=mediator test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
}

/// Managed Redis services speak TLS: with a `rediss://` URL the mediator queues, answers
/// `/readyz` (stores and pub/sub) and delivers through a TLS-only port, trusting the CA named by
/// `SSL_CERT_FILE` (the system's roots otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_behind_tls_is_used_through_a_rediss_url() {
    let certs = tempfile::tempdir().unwrap();
    test_certificates(certs.path());
    let path = |f: &str| certs.path().join(f).to_string_lossy().into_owned();
    let tls_port = free_port().to_string();
    // The plain port is the test harness's (it waits for PING there); the mediator gets only
    // the TLS one.
    let redis = RedisServer::start_with_args([
        "--tls-port".to_owned(),
        tls_port.clone(),
        "--tls-cert-file".to_owned(),
        path("server.crt"),
        "--tls-key-file".to_owned(),
        path("server.key"),
        "--tls-ca-cert-file".to_owned(),
        path("ca.crt"),
        "--tls-auth-clients".to_owned(),
        "no".to_owned(),
    ])
    .unwrap();
    let url = format!("rediss://127.0.0.1:{tls_port}/");
    let prefix = format!("tls-{}:", uuid::Uuid::new_v4());
    let ca = path("ca.crt");
    let a = Proc::start_with("a", &url, &prefix, &[("SSL_CERT_FILE", ca.as_str())]);
    a.ready().await;

    let client = Client::connect_base(&a.base, "didcomm:transport/queue").await;
    let (routing, recipient) = client.mediation_with_key().await;
    post_forward(&a.base, &routing, &recipient, 3).await;
    let status = client
        .call(&Client::msg("messagepickup/2.0/status-request", json!({})))
        .await
        .unwrap();
    assert_eq!(status["message_count"], 1, "{status}");
    // The server's plain port (the harness's) shows that it was this server that stored it.
    let stored = mediator_store::MediationStore::connection_for_key(
        &mediator_store_redis::RedisMediationStore::new(redis.pool().unwrap(), &prefix),
        recipient.verkey(),
    )
    .await
    .unwrap();
    assert!(stored.is_some(), "the key's route is not in this Redis");
    drop(redis);
}
