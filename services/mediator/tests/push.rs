//! Push notifications end to end: a real instance (in memory, or three on one private
//! redis-server) sends to local stand-ins for FCM (token and send endpoints), APNs (HTTP/2) and a
//! webhook, each of which verifies what it receives (JWT signatures, APNs headers, the webhook's
//! HMAC; see `push_notify::testing`). A client registers its device with RFC 0734 / 0699
//! messages, and Forwards for it are posted while it is offline or live.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{path::Path, sync::OnceLock, time::Duration};

use common::{cluster::wait_for, forward_for, open_ws, Client, Instance};
use didcomm_envelope::VerKey;
use mediator_store_redis::testing::RedisServer;
use push_notify::testing::{Providers, Reply};
use serde_json::{json, Value};

const FCM_TOKEN: &str = "fcm-token:APA91b_offline-wallet";
const WAIT: Duration = Duration::from_secs(20);

fn apns_token(n: u8) -> String {
    format!("{:02x}", n).repeat(32)
}

/// An instance that sends through `providers` (the variables `env` gives), plus `extra`.
async fn instance(env: Vec<(String, String)>, extra: &[(&str, &str)]) -> Instance {
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.extend_from_slice(extra);
    Instance::start_with(None, &all).await
}

fn counts(i: &Instance) -> std::collections::BTreeMap<String, u64> {
    i.mediator.notifier().expect("push is configured").counts()
}

fn count(i: &Instance, what: &str) -> u64 {
    counts(i).get(what).copied().unwrap_or(0)
}

/// Registers `token` for `platform` ("fcm" or "apns") on `client`'s connection: no answer.
async fn register(client: &Client, platform: &str, token: Option<&str>) {
    let body = match platform {
        "fcm" => json!({"device_token": token, "device_platform": "android"}),
        _ => json!({"device_token": token}),
    };
    let reply = client
        .call(&Client::msg(
            &format!("push-notifications-{platform}/1.0/set-device-info"),
            body,
        ))
        .await;
    assert!(
        reply.is_none(),
        "set-device-info is not answered: {reply:?}"
    );
}

async fn device_info(client: &Client, platform: &str) -> Value {
    let msg = Client::msg(
        &format!("push-notifications-{platform}/1.0/get-device-info"),
        json!({}),
    );
    let reply = client.call(&msg).await.expect("device-info");
    assert_eq!(
        reply["@type"],
        format!("https://didcomm.org/push-notifications-{platform}/1.0/device-info"),
        "{reply}"
    );
    assert_eq!(reply["~thread"]["thid"], msg["@id"]);
    reply
}

async fn post_forward(base: &str, routing: &VerKey, recipient: &VerKey, n: usize) {
    let (body, _) = forward_for(routing, recipient, format!("{{\"n\":{n}}}").as_bytes());
    let (status, reply) = common::post_envelope(base, body).await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&reply));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_client_is_woken_once_per_interval_through_fcm_and_apns() {
    let providers = Providers::start().await;
    let dir = tempfile::tempdir().unwrap();
    let i = instance(providers.env_fcm_apns(dir.path()), &[]).await;
    let android = Client::connect(&i).await;
    let (routing, a_key, _) = android.mediated_key(&i).await;
    register(&android, "fcm", Some(FCM_TOKEN)).await;
    let info = device_info(&android, "fcm").await;
    assert_eq!(info["device_token"], FCM_TOKEN);
    assert_eq!(info["device_platform"], "android");
    let iphone = Client::connect(&i).await;
    let (_, i_key, _) = iphone.mediated_key(&i).await;
    let apns = apns_token(7);
    register(&iphone, "apns", Some(&apns)).await;
    assert_eq!(device_info(&iphone, "apns").await["device_token"], apns);

    post_forward(&i.base, &routing, a_key.verkey(), 0).await;
    post_forward(&i.base, &routing, i_key.verkey(), 0).await;
    providers.wait_for_token(FCM_TOKEN, 1, WAIT).await.unwrap();
    providers.wait_for_token(&apns, 1, WAIT).await.unwrap();

    // A burst within the interval: no more notifications; each Forward is accounted for.
    for n in 1..=50 {
        post_forward(&i.base, &routing, a_key.verkey(), n).await;
    }
    wait_for(
        || count(&i, "skipped:claimed") == 50,
        "50 Forwards found the notification claimed",
    )
    .await;
    assert_eq!(providers.notifications_for(FCM_TOKEN), 1);
    assert_eq!(providers.notifications_for(&apns), 1);
    assert_eq!(count(&i, "fcm:sent"), 1, "{:?}", counts(&i));
    assert_eq!(count(&i, "apns:sent"), 1, "{:?}", counts(&i));
    providers.assert_checks_passed();
    // No content, no identifiers: the provider payloads carry neither the message nor the
    // connection.
    for n in providers.notifications() {
        let text = n.body.to_string();
        assert!(!text.contains("\"n\""), "{text}");
    }
    i.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_client_gets_no_notification() {
    let providers = Providers::start().await;
    let dir = tempfile::tempdir().unwrap();
    let i = instance(providers.env(dir.path()), &[]).await;
    let client = Client::connect(&i).await;
    let (routing, key, _) = client.mediated_key(&i).await;
    register(&client, "fcm", Some(FCM_TOKEN)).await;
    let mut ws = open_ws(&i).await;
    common::cluster::go_live(&client, &mut ws).await;
    for n in 0..10 {
        post_forward(&i.base, &routing, key.verkey(), n).await;
        let delivery = client.ws_next(&mut ws).await;
        assert_eq!(
            delivery["@type"], "https://didcomm.org/messagepickup/2.0/delivery",
            "{delivery}"
        );
    }
    // Delivered live: nothing even looked for the device.
    assert_eq!(providers.notifications().len(), 0);
    assert_eq!(count(&i, "skipped:no_device") + count(&i, "fcm:sent"), 0);
    // The socket closes: the next Forward wakes it.
    drop(ws);
    wait_for(
        || i.mediator.sessions().live_connections().is_empty(),
        "the live session ended",
    )
    .await;
    post_forward(&i.base, &routing, key.verkey(), 10).await;
    providers.wait_for_token(FCM_TOKEN, 2, WAIT).await.unwrap(); // FCM and the webhook (also)
    providers.assert_checks_passed();
    i.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_provider_reports_gone_is_forgotten_and_a_cleared_one_is_not_used() {
    let providers = Providers::start().await;
    let dir = tempfile::tempdir().unwrap();
    let i = instance(providers.env_fcm_apns(dir.path()), &[]).await;
    let client = Client::connect(&i).await;
    let (routing, key, _) = client.mediated_key(&i).await;
    let apns = apns_token(9);
    register(&client, "apns", Some(&apns)).await;
    providers.set_reply(&apns, Reply::Unregistered);
    post_forward(&i.base, &routing, key.verkey(), 0).await;
    wait_for(
        || count(&i, "apns:token_gone") == 1,
        "APNs said the token is gone",
    )
    .await;
    assert_eq!(
        device_info(&client, "apns").await["device_token"],
        Value::Null
    );

    // Registered again, then cleared by the client (empty token): not used either.
    let other = Client::connect(&i).await;
    let (_, other_key, _) = other.mediated_key(&i).await;
    register(&other, "fcm", Some(FCM_TOKEN)).await;
    register(&other, "fcm", Some("")).await;
    assert_eq!(
        device_info(&other, "fcm").await["device_token"],
        Value::Null
    );
    post_forward(&i.base, &routing, other_key.verkey(), 1).await;
    wait_for(
        || count(&i, "skipped:no_device") == 1,
        "no device for the cleared one",
    )
    .await;
    assert_eq!(providers.notifications_for(FCM_TOKEN), 0);
    providers.assert_checks_passed();
    i.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_hangs_does_not_hold_up_forwards() {
    let providers = Providers::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The provider's timeout far beyond this test: what it sent stays unanswered throughout.
    let i = instance(
        providers.env_fcm_apns(dir.path()),
        &[("MEDIATOR_PUSH__FCM__TIMEOUT_MS", "600000")],
    )
    .await;
    let client = Client::connect(&i).await;
    let (routing, key, _) = client.mediated_key(&i).await;
    register(&client, "fcm", Some(FCM_TOKEN)).await;
    providers.set_reply(FCM_TOKEN, Reply::Hang);
    post_forward(&i.base, &routing, key.verkey(), 0).await;
    providers.wait_for_token(FCM_TOKEN, 1, WAIT).await.unwrap();
    // The notification hangs; Forwards are answered all the same (each 202 asserted).
    for n in 1..=30 {
        post_forward(&i.base, &routing, key.verkey(), n).await;
    }
    assert_eq!(
        count(&i, "fcm:sent") + count(&i, "fcm:timeout"),
        0,
        "{:?}",
        counts(&i)
    );
    assert_eq!(providers.notifications_for(FCM_TOKEN), 1);
    i.stop().await;
}

fn redis() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| RedisServer::start().expect("starting the test redis-server"))
}

async fn cluster_instance(providers: &Providers, dir: &Path, prefix: &str, name: &str) -> Instance {
    let _ = dir;
    instance(
        providers.env_webhook_only(),
        &[
            ("MEDIATOR_STORAGE__BACKEND", "redis"),
            ("MEDIATOR_STORAGE__REDIS__URL", redis().url()),
            ("MEDIATOR_STORAGE__REDIS__KEY_PREFIX", prefix),
            (
                "MEDIATOR_MASTER_SECRET",
                "push-test-master-secret-0123456789abcdef",
            ),
            ("MEDIATOR_CLUSTER__INSTANCE_ID", name),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_send_one_notification_per_interval_in_all() {
    let providers = Providers::start().await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("push-{}:", uuid::Uuid::new_v4());
    let mut instances = Vec::new();
    for name in ["a", "b", "c"] {
        instances.push(cluster_instance(&providers, dir.path(), &prefix, name).await);
    }
    for i in &instances {
        wait_for(|| i.mediator.cluster().is_subscribed(), "subscribed").await;
    }
    let client = Client::connect(&instances[0]).await;
    let (routing, key, _) = client.mediated_key(&instances[0]).await;
    let apns = apns_token(3);
    register(&client, "apns", Some(&apns)).await;
    const N: usize = 30;
    for n in 0..N {
        post_forward(&instances[n % 3].base, &routing, key.verkey(), n).await;
    }
    providers.wait_for_token(&apns, 1, WAIT).await.unwrap();
    let accounted = || {
        instances
            .iter()
            .map(|i| count(i, "webhook:sent") + count(i, "skipped:claimed"))
            .sum::<u64>()
    };
    wait_for(
        || accounted() == N as u64,
        "every Forward sent or found it claimed",
    )
    .await;
    assert_eq!(
        providers.notifications_for(&apns),
        1,
        "{:?}",
        providers.notifications()
    );
    let n = &providers.notifications()[0];
    assert!(n.message_count.is_some_and(|c| c >= 1), "{n:?}");

    // Live on B: Forwards taken by A and C reach it there, and wake nobody.
    let mut ws = open_ws(&instances[1]).await;
    common::cluster::go_live(&client, &mut ws).await;
    let conn = instances[0]
        .mediator
        .stores()
        .mediation
        .connection_for_key(key.verkey())
        .await
        .unwrap()
        .unwrap();
    let refs: Vec<&Instance> = instances.iter().collect();
    common::cluster::routed_everywhere(&refs, &conn, "b").await;
    for n in 0..10 {
        post_forward(
            &instances[if n % 2 == 0 { 0 } else { 2 }].base,
            &routing,
            key.verkey(),
            N + n,
        )
        .await;
        let delivery = client.ws_next(&mut ws).await;
        assert_eq!(
            delivery["@type"], "https://didcomm.org/messagepickup/2.0/delivery",
            "{delivery}"
        );
    }
    assert_eq!(
        accounted(),
        N as u64,
        "a Forward to a live client looked for a device"
    );
    assert_eq!(providers.notifications_for(&apns), 1);
    providers.assert_checks_passed();
    for i in instances {
        i.stop().await;
    }
}
