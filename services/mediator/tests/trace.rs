//! One trace across instances: a Forward taken by instance B and delivered live by instance A
//! (two instances in this process on a private redis-server) are spans of the same trace, the
//! delivery a child of the Forward's request, through the `traceparent` in the notice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{forward_for, open_ws, Client, Instance};
use mediator_store_redis::testing::RedisServer;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_on_b_and_its_live_delivery_on_a_are_one_trace() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry().with(mediator::telemetry::layer(&provider));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let redis = RedisServer::start().unwrap();
    let prefix = format!("trace-{}:", uuid::Uuid::new_v4());
    let env = |name: &'static str| {
        vec![
            ("MEDIATOR_STORAGE__BACKEND", "redis".to_owned()),
            ("MEDIATOR_STORAGE__REDIS__URL", redis.url().to_owned()),
            ("MEDIATOR_STORAGE__REDIS__KEY_PREFIX", prefix.clone()),
            (
                "MEDIATOR_MASTER_SECRET",
                "trace-test-master-secret-0123456789abcdef".to_owned(),
            ),
            ("MEDIATOR_CLUSTER__INSTANCE_ID", name.to_owned()),
        ]
    };
    let start = |name| {
        let vars = env(name);
        async move {
            let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
            Instance::start_with(None, &refs).await
        }
    };
    let a = start("a").await;
    let b = start("b").await;
    let client = Client::connect(&a).await;
    let (routing, key, conn) = client.mediated_key(&a).await;
    let mut ws = open_ws(&a).await;
    client
        .ws_send(
            &mut ws,
            &Client::msg(
                "messagepickup/2.0/live-delivery-change",
                json!({"live_delivery": true}),
            ),
        )
        .await;
    assert_eq!(client.ws_next(&mut ws).await["live_delivery"], true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !b.mediator.cluster().routes().contains_key(&conn) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never learned the route"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (body, inner) = forward_for(&routing, key.verkey(), b"{\"traced\":true}");
    assert_eq!(b.post(body).await.0, 202);
    let delivery = client.ws_next(&mut ws).await;
    assert_eq!(delivery["~attach"][0]["data"]["json"], inner);

    // The spans: the delivery on A, and its parent, the Forward's request on B.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (deliver, forward) = loop {
        let _ = provider.force_flush();
        let spans = exporter.get_finished_spans().unwrap();
        let deliver = spans.iter().find(|s| s.name == "cluster.deliver").cloned();
        if let Some(deliver) = deliver {
            let parent = spans
                .iter()
                .find(|s| s.span_context.span_id() == deliver.parent_span_id)
                .cloned();
            if let Some(parent) = parent {
                break (deliver, parent);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no cluster.deliver span with its parent exported: {:?}",
            spans.iter().map(|s| s.name.to_string()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        deliver.span_context.trace_id(),
        forward.span_context.trace_id(),
        "one trace"
    );
    assert!(
        deliver.parent_span_is_remote,
        "the parent came in the notice"
    );
    assert_eq!(forward.name, "inbound");
    assert_eq!(
        attribute(&forward, "mediator.instance").as_deref(),
        Some("b")
    );
    assert_eq!(
        attribute(&deliver, "mediator.instance").as_deref(),
        Some("a")
    );
    a.stop().await;
    b.stop().await;
}
