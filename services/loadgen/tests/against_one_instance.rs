//! The load driver against one real mediator instance (in-memory storage) started in this
//! process on a free loopback port: every accepted message must arrive, once per recipient.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use loadgen::Config;
use mediator::Mediator;
use tokio::{net::TcpListener, sync::oneshot};

/// Starts an instance with `extra` settings; returns its base URL and what stops it.
async fn start_mediator(
    extra: &[(&str, &str)],
) -> (String, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut vars: Vec<(String, String)> = [
        ("MEDIATOR_PUBLIC_HTTP_ENDPOINT", format!("http://{addr}")),
        ("MEDIATOR_PUBLIC_WS_ENDPOINT", format!("ws://{addr}")),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .into();
    // The driver's recipients and senders all come from 127.0.0.1 at hundreds of messages a
    // second: per-address rate limits off (`extra` comes later and may set them).
    vars.extend(mediator::config::RATE_LIMITS_OFF.map(|(k, v)| (k.to_owned(), v.to_owned())));
    // In memory (the default, embedded, is on disk).
    vars.push(("MEDIATOR_STORAGE__BACKEND".to_owned(), "memory".to_owned()));
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let config = Arc::new(mediator::Config::load(None, vars).unwrap());
    let backend = mediator::storage::open(&config).await.unwrap();
    let instance = Mediator::from_backend(config, backend).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        mediator::serve(instance, listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (format!("http://{addr}"), stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_message_arrives_once_with_its_latency() {
    let (base, stop, server) = start_mediator(&[]).await;

    let mut config = Config::new([base.clone()]);
    config.recipients = 3;
    config.senders = 2;
    config.messages = Some(300);
    config.duration = None;
    config.drain_timeout = Duration::from_secs(20);
    let report = loadgen::run(config).await.unwrap();
    println!("{report}");

    assert_eq!(report.planned, 300);
    assert_eq!(report.sent, 300, "{report}");
    assert_eq!(report.accepted, 300, "{report}");
    assert!(report.refused.is_empty(), "{report}");
    assert_eq!(report.post_errors, 0, "{report}");
    assert_eq!(report.delivered, 300, "{report}");
    assert_eq!(report.lost, 0, "{report}");
    // At-least-once allows duplicates; on one healthy instance with open sockets there are none.
    println!("duplicates: {}", report.duplicates);
    assert_eq!(report.duplicates, 0, "{report}");
    assert_eq!(report.foreign, 0, "{report}");
    assert_eq!(report.reconnects, 0, "{report}");
    assert_eq!(
        report.still_queued,
        Some(0),
        "every delivery acknowledged: {report}"
    );
    assert!(report.errors.is_empty(), "{report}");

    let latency = report.latency_ms.as_ref().expect("latencies recorded");
    assert_eq!(latency.count, 300);
    assert!(latency.p50 <= latency.p90 && latency.p90 <= latency.p99 && latency.p99 <= latency.max);
    assert!(report.latency_from_post_ms.is_some() && report.post_ms.is_some());
    // One instance: every Forward went to the recipient's own instance.
    assert_eq!(
        report.latency_same_instance_ms.as_ref().map(|l| l.count),
        Some(300)
    );
    assert!(report.latency_cross_instance_ms.is_none());
    assert!(report.accepted_per_sec > 0.0 && report.delivered_per_sec > 0.0);

    assert_eq!(report.instances.len(), 1);
    let only = &report.instances[0];
    assert_eq!(
        (
            only.url.as_str(),
            only.recipients,
            only.accepted,
            only.delivered
        ),
        (base.as_str(), 3, 300, 300)
    );

    // The JSON report carries the same numbers.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["lost"], 0);
    assert_eq!(json["delivered"], 300);
    assert!(json["latency_ms"]["p99"].as_f64().is_some());

    let _ = stop.send(());
    server.await.unwrap();
}

/// An outbound buffer of one frame: the mediator closes a live session whenever a delivery finds
/// the previous one unwritten. The recipients reconnect, go live again and fetch what was given
/// back with delivery-request; nothing accepted may be missing at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_closed_for_a_full_buffer_lose_nothing() {
    let (base, stop, server) =
        start_mediator(&[("MEDIATOR_WEBSOCKET__OUTBOUND_BUFFER", "1")]).await;

    let mut config = Config::new([base]);
    config.recipients = 2;
    config.senders = 4;
    config.messages = Some(400);
    config.duration = None;
    config.drain_timeout = Duration::from_secs(20);
    let report = loadgen::run(config).await.unwrap();
    println!("{report}");

    assert_eq!(report.accepted, 400, "{report}");
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.delivered, 400, "{report}");
    println!(
        "reconnects: {}, duplicates: {}",
        report.reconnects, report.duplicates
    );

    let _ = stop.send(());
    server.await.unwrap();
}

/// `queue-only` forwarding pushes nothing to live sessions: every accepted message must be
/// reported lost, and the final status must find them all waiting in the queues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_never_arrive_are_reported_lost_and_still_queued() {
    let (base, stop, server) =
        start_mediator(&[("MEDIATOR_PICKUP__FORWARDING", "queue-only")]).await;

    let mut config = Config::new([base]);
    config.recipients = 2;
    config.senders = 2;
    config.messages = Some(20);
    config.duration = None;
    config.drain_timeout = Duration::from_millis(300);
    let report = loadgen::run(config).await.unwrap();
    println!("{report}");

    assert_eq!(report.accepted, 20, "{report}");
    assert_eq!((report.delivered, report.lost), (0, 20), "{report}");
    assert_eq!(report.lost_sample, (0..20).collect::<Vec<u64>>());
    assert_eq!(report.still_queued, Some(20), "{report}");
    assert!(report.latency_ms.is_none());

    let _ = stop.send(());
    server.await.unwrap();
}

#[tokio::test]
async fn an_unreachable_instance_fails_the_set_up() {
    // A port nothing listens on: bind one, then drop it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut config = Config::new([format!("http://127.0.0.1:{port}")]);
    config.recipients = 1;
    config.messages = Some(1);
    let err = loadgen::run(config).await.unwrap_err();
    assert!(
        matches!(err, loadgen::LoadError::Recipient { index: 0, .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_only_with_a_given_invitation_measures_acceptance_and_loses_nothing() {
    let (base, stop, server) = start_mediator(&[]).await;
    // The invitation given, as for another mediator (ACA-Py, credo-ts), not fetched by the driver.
    let invitation: serde_json::Value = reqwest::get(format!("{base}/invitation"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let mut config = Config::new([base.clone()]);
    config.recipients = 2;
    config.senders = 2;
    config.messages = Some(100);
    config.duration = None;
    config.live = false;
    config.invitation = Some(invitation);
    let report = loadgen::run(config).await.unwrap();
    println!("{report}");

    assert_eq!(report.accepted, 100, "{report}");
    assert_eq!(report.delivered, 0, "nobody is live: {report}");
    assert_eq!(
        report.lost, 0,
        "queue only: nothing counts as lost: {report}"
    );
    assert!(report.accepted_per_sec > 0.0);
    let _ = stop.send(());
    server.await.unwrap();
}
