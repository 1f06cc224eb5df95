//! Which sender(s) a device's notice goes to.

use std::sync::Arc;

use push_notify::{
    Device, Notice, Platform, PushConfig, PushError, RetryPolicy, Router, WebhookMode,
};

use crate::common::Scripted;

fn senders() -> (Arc<Scripted>, Arc<Scripted>, Arc<Scripted>) {
    (
        Arc::new(Scripted::new("fcm", vec![])),
        Arc::new(Scripted::new("apns", vec![])),
        Arc::new(Scripted::new("webhook", vec![])),
    )
}

fn providers(outcomes: &[push_notify::Outcome]) -> Vec<&'static str> {
    outcomes.iter().map(|o| o.provider).collect()
}

#[tokio::test]
async fn each_platform_goes_to_its_provider() {
    let (fcm, apns, _) = senders();
    let router = Router::new(RetryPolicy::none())
        .with_fcm(fcm.clone())
        .with_apns(apns.clone());
    let out = router
        .notify(&Device::new(Platform::Apns, "ab"), &Notice::default())
        .await;
    assert_eq!(providers(&out), ["apns"]);
    let out = router
        .notify(&Device::new(Platform::Fcm, "f"), &Notice::default())
        .await;
    assert_eq!(providers(&out), ["fcm"]);
    assert_eq!((fcm.calls(), apns.calls()), (1, 1));
}

#[tokio::test]
async fn a_webhook_instead_replaces_the_providers() {
    let (fcm, apns, webhook) = senders();
    let router = Router::new(RetryPolicy::none())
        .with_fcm(fcm.clone())
        .with_apns(apns.clone())
        .with_webhook(webhook.clone(), WebhookMode::Instead);
    let out = router
        .notify(&Device::new(Platform::Fcm, "f"), &Notice::default())
        .await;
    assert_eq!(providers(&out), ["webhook"]);
    assert_eq!((fcm.calls(), apns.calls(), webhook.calls()), (0, 0, 1));
}

#[tokio::test]
async fn a_webhook_also_is_told_as_well() {
    let (fcm, _, webhook) = senders();
    let router = Router::new(RetryPolicy::none())
        .with_fcm(fcm.clone())
        .with_webhook(webhook.clone(), WebhookMode::Also);
    let out = router
        .notify(&Device::new(Platform::Fcm, "f"), &Notice::default())
        .await;
    assert_eq!(providers(&out), ["fcm", "webhook"]);
    assert!(out.iter().all(|o| o.is_sent()));
    // No APNs sender: the webhook alone hears of an APNs device.
    let out = router
        .notify(&Device::new(Platform::Apns, "ab"), &Notice::default())
        .await;
    assert_eq!(providers(&out), ["webhook"]);
    assert!(router.supports(Platform::Apns));
}

#[tokio::test]
async fn no_sender_is_an_outcome_too() {
    let (fcm, _, _) = senders();
    let router = Router::new(RetryPolicy::none()).with_fcm(fcm);
    assert!(!router.supports(Platform::Apns));
    let out = router
        .notify(&Device::new(Platform::Apns, "ab"), &Notice::default())
        .await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].reason(), "no_sender");
    assert_eq!(out[0].attempts, 0);
    assert!(matches!(
        out[0].result,
        Err(PushError::NoSender(Platform::Apns))
    ));
}

#[test]
fn an_empty_configuration_is_a_disabled_router() {
    let config: PushConfig = serde_json::from_value(serde_json::json!({})).expect("config");
    let router = Router::from_config(&config).expect("router");
    assert!(!router.is_enabled());
    assert!(!router.supports(Platform::Fcm));
}

#[test]
fn a_configuration_builds_its_senders() {
    let config: PushConfig = serde_json::from_value(serde_json::json!({
        "webhook": {"url": "https://push.example.com/hook", "secret": "s", "mode": "instead"},
        "retry": {"max_attempts": 2},
    }))
    .expect("config");
    let router = Router::from_config(&config).expect("router");
    assert!(router.is_enabled());
    assert!(router.supports(Platform::Fcm) && router.supports(Platform::Apns));
    // A bad key stops start-up.
    let bad: PushConfig = serde_json::from_value(serde_json::json!({
        "apns": {"key_pem": "nope", "key_id": "K", "team_id": "T", "topic": "a.b"},
    }))
    .expect("config");
    assert!(Router::from_config(&bad).is_err());
}
