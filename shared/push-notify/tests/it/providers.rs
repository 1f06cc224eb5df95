//! `testing::Providers` driven by this crate's own senders, configured from the environment the
//! stand-ins write (loaded as the mediator loads its own): a good send is recorded, wrong
//! credentials are refused and reported, scripted replies take effect, waits are woken.

use std::{
    collections::HashMap,
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use push_notify::{
    testing::{ec_key, rsa_key, Notification, Provider, Providers, Reply, ENV_PREFIX},
    ApnsConfig, ApnsPushType, ApnsSender, Device, FcmConfig, FcmMessageKind, FcmSender, Notice,
    Platform, PushConfig, PushSender, Router, Secret, WebhookConfig, WebhookMode, WebhookSender,
};
use serde::Deserialize;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

fn fcm(token: &str) -> Device {
    Device::new(Platform::Fcm, token)
}

fn apns(token: &str) -> Device {
    Device::new(Platform::Apns, token)
}

/// An APNs device token (hex), distinct per `n`.
fn hex_token(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// The mediator's `[push]` table: its own settings, and `PushConfig` flattened into it.
#[derive(Deserialize)]
struct Root {
    push: PushSection,
}

#[derive(Deserialize)]
struct PushSection {
    #[allow(dead_code)]
    interval_ms: u64,
    #[serde(flatten)]
    providers: PushConfig,
}

/// Loads `env` as the mediator's `Config::load` does: built-in defaults, then `MEDIATOR_`
/// variables with `__` between tables, values parsed when they look like numbers or booleans.
fn load(env: Vec<(String, String)>) -> PushConfig {
    let env: HashMap<String, String> = env.into_iter().collect();
    config::Config::builder()
        .add_source(config::File::from_str(
            "[push]\ninterval_ms = 60000\n",
            config::FileFormat::Toml,
        ))
        .add_source(
            config::Environment::with_prefix("MEDIATOR")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(env.into_iter().collect())),
        )
        .build()
        .expect("config")
        .try_deserialize::<Root>()
        .expect("the [push] table")
        .push
        .providers
}

fn router(env: Vec<(String, String)>) -> Router {
    Router::from_config(&load(env)).expect("router")
}

#[tokio::test]
async fn the_environment_is_the_typed_configuration() {
    let providers = Providers::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let env = providers.env(dir.path());
    for (name, value) in &env {
        assert!(name.starts_with(ENV_PREFIX), "{name}");
        assert!(
            !value.bytes().all(|b| b.is_ascii_digit())
                || name.ends_with("_MS")
                || name.ends_with("MAX_ATTEMPTS"),
            "{name}={value}: a string field must not look like a number"
        );
    }
    let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "MEDIATOR_PUSH__FCM__SERVICE_ACCOUNT_FILE",
        "MEDIATOR_PUSH__FCM__SEND_BASE_URL",
        "MEDIATOR_PUSH__APNS__KEY_FILE",
        "MEDIATOR_PUSH__APNS__KEY_ID",
        "MEDIATOR_PUSH__APNS__TEAM_ID",
        "MEDIATOR_PUSH__APNS__TOPIC",
        "MEDIATOR_PUSH__APNS__BASE_URL",
        "MEDIATOR_PUSH__WEBHOOK__URL",
        "MEDIATOR_PUSH__WEBHOOK__SECRET",
        "MEDIATOR_PUSH__WEBHOOK__MODE",
        "MEDIATOR_PUSH__RETRY__MAX_ATTEMPTS",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }

    let loaded = load(env);
    let typed = providers.push_config(dir.path(), Some(WebhookMode::Also));
    // Every field but the secrets shows in Debug; the secret is compared on its own.
    assert_eq!(format!("{loaded:?}"), format!("{typed:?}"));
    let secret = |c: &PushConfig| c.webhook.as_ref().expect("webhook").secret.clone();
    assert_eq!(secret(&loaded), secret(&typed));
    assert_eq!(secret(&loaded).expose(), Providers::WEBHOOK_SECRET);

    let fcm = loaded.fcm.expect("fcm");
    let file = fcm.service_account_file.expect("a key file");
    assert!(file.starts_with(dir.path()));
    let account: Value =
        serde_json::from_str(&std::fs::read_to_string(file).expect("read")).expect("json");
    assert_eq!(account["token_uri"], providers.fcm_token_url().as_str());
    assert_eq!(account["project_id"], Providers::FCM_PROJECT_ID);
    let apns = loaded.apns.expect("apns");
    assert!(apns
        .key_file
        .expect("a key file")
        .ends_with(format!("AuthKey_{}.p8", Providers::APNS_KEY_ID)));
    assert_eq!(apns.base_url, providers.apns_base_url());
    assert_eq!(loaded.retry, providers.retry_policy());
}

#[tokio::test]
async fn good_sends_are_recorded_at_the_provider_and_the_webhook() {
    let providers = Providers::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let router = router(providers.env(dir.path()));
    let (fcm_token, apns_token) = ("fcm-token-1", hex_token(1));

    for device in [fcm(fcm_token), apns(&apns_token)] {
        let outcomes = router.notify(&device, &Notice { message_count: 3 }).await;
        let reasons: Vec<_> = outcomes.iter().map(|o| (o.provider, o.reason())).collect();
        let provider = device.platform.as_str();
        assert_eq!(reasons, [(provider, "sent"), ("webhook", "sent")]);
    }
    providers.assert_checks_passed();

    assert_eq!(providers.notifications_for(fcm_token), 2);
    assert_eq!(providers.notifications_via(Provider::Fcm, fcm_token), 1);
    assert_eq!(providers.notifications_via(Provider::Apns, &apns_token), 1);
    assert_eq!(
        providers.notifications_via(Provider::Webhook, &apns_token),
        1
    );
    assert_eq!(providers.fcm_tokens_issued(), 1);
    let seen = providers.notifications();
    assert_eq!(seen.len(), 4);
    let webhook: Vec<&Notification> = seen
        .iter()
        .filter(|n| n.provider == Provider::Webhook)
        .collect();
    assert_eq!(
        webhook
            .iter()
            .map(|n| (n.platform, n.token.as_str(), n.message_count))
            .collect::<Vec<_>>(),
        [
            (Platform::Fcm, fcm_token, Some(3)),
            (Platform::Apns, apns_token.as_str(), Some(3))
        ]
    );
    let fcm_body = &seen
        .iter()
        .find(|n| n.provider == Provider::Fcm)
        .expect("fcm")
        .body;
    assert_eq!(fcm_body["message"]["data"]["event"], "messages_waiting");
    let apns_body = &seen
        .iter()
        .find(|n| n.provider == Provider::Apns)
        .expect("apns")
        .body;
    assert_eq!(apns_body["aps"]["content-available"], 1);
    assert!(seen.iter().all(|n| n.reply == Reply::Accept));
}

#[tokio::test]
async fn the_webhook_alone_receives_every_notice_when_it_replaces_the_providers() {
    let providers = Providers::start().await;
    let router = router(providers.env_webhook_only());
    assert!(router.supports(Platform::Fcm) && router.supports(Platform::Apns));
    for device in [fcm("f-1"), apns(&hex_token(2))] {
        let outcomes = router.notify(&device, &Notice { message_count: 1 }).await;
        assert_eq!(outcomes.len(), 1);
        assert_eq!(
            (outcomes[0].provider, outcomes[0].reason()),
            ("webhook", "sent")
        );
    }
    providers.assert_checks_passed();
    let seen = providers.notifications();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|n| n.provider == Provider::Webhook));
}

#[tokio::test]
async fn fcm_and_apns_without_the_webhook() {
    let providers = Providers::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let router = router(providers.env_fcm_apns(dir.path()));
    let outcomes = router.notify(&fcm("f-2"), &Notice::default()).await;
    assert_eq!(outcomes.len(), 1);
    assert!(outcomes[0].is_sent(), "{outcomes:?}");
    providers.assert_checks_passed();
    assert_eq!(providers.notifications_via(Provider::Webhook, "f-2"), 0);
    assert_eq!(providers.notifications_via(Provider::Fcm, "f-2"), 1);
}

#[tokio::test]
async fn scripted_replies_take_effect() {
    let providers = Providers::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let router = router(providers.env_fcm_apns(dir.path()));
    let notice = Notice::default();
    let outcome = |outcomes: Vec<push_notify::Outcome>| {
        assert_eq!(outcomes.len(), 1, "{outcomes:?}");
        let o = &outcomes[0];
        (o.reason(), o.attempts)
    };

    // Token gone, at each provider.
    providers.set_reply("f-gone", Reply::Unregistered);
    let gone = router.notify(&fcm("f-gone"), &notice).await;
    assert!(gone[0].is_token_gone(), "{gone:?}");
    let apns_gone = hex_token(3);
    providers.set_reply(&apns_gone, Reply::Unregistered);
    assert_eq!(
        outcome(router.notify(&apns(&apns_gone), &notice).await),
        ("token_gone", 1)
    );

    // 503 every time: retried up to the policy's 3 attempts.
    providers.set_reply("f-down", Reply::Unavailable);
    assert_eq!(
        outcome(router.notify(&fcm("f-down"), &notice).await),
        ("server_error", 3)
    );
    assert_eq!(providers.notifications_for("f-down"), 3);

    // Two 503s, then the standing success: the third attempt gets through.
    let apns_flaky = hex_token(4);
    providers.queue_replies(&apns_flaky, [Reply::Unavailable, Reply::Unavailable]);
    assert_eq!(
        outcome(router.notify(&apns(&apns_flaky), &notice).await),
        ("sent", 3)
    );
    let replies: Vec<Reply> = providers
        .notifications()
        .into_iter()
        .filter(|n| n.token == apns_flaky)
        .map(|n| n.reply)
        .collect();
    assert_eq!(
        replies,
        [Reply::Unavailable, Reply::Unavailable, Reply::Accept]
    );

    // A bare status; then set back to success.
    providers.set_reply("f-400", Reply::Status(400));
    assert_eq!(
        outcome(router.notify(&fcm("f-400"), &notice).await),
        ("rejected", 1)
    );
    providers.set_reply("f-400", Reply::Accept);
    assert_eq!(
        outcome(router.notify(&fcm("f-400"), &notice).await),
        ("sent", 1)
    );

    // Scripted failures are answers, not failed checks.
    providers.assert_checks_passed();
}

#[tokio::test]
async fn a_reply_for_one_provider_leaves_the_other_alone() {
    let providers = Providers::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let router = router(providers.env(dir.path()));
    providers.set_reply_via(Provider::Webhook, "f-3", Reply::Unregistered);
    let outcomes = router.notify(&fcm("f-3"), &Notice::default()).await;
    let reasons: Vec<_> = outcomes.iter().map(|o| (o.provider, o.reason())).collect();
    assert_eq!(reasons, [("fcm", "sent"), ("webhook", "token_gone")]);
    providers.assert_checks_passed();
}

#[tokio::test]
async fn a_hanging_reply_holds_only_its_own_request() {
    let providers = Providers::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = providers.env_fcm_apns(dir.path());
    // Appended overrides win, as in the mediator's loader.
    env.push(("MEDIATOR_PUSH__APNS__TIMEOUT_MS".into(), "300".into()));
    env.push(("MEDIATOR_PUSH__RETRY__MAX_ATTEMPTS".into(), "1".into()));
    let router = Arc::new(router(env));
    let (hung, other) = (hex_token(5), hex_token(6));
    providers.set_reply(&hung, Reply::Hang);

    let started = Instant::now();
    let hanging = {
        let (router, hung) = (router.clone(), hung.clone());
        tokio::spawn(async move { router.notify(&apns(&hung), &Notice::default()).await })
    };
    // Arrived (and recorded) although never answered.
    let seen = providers
        .wait_for_token(&hung, 1, WAIT)
        .await
        .expect("the hung request arrives");
    assert_eq!(seen[0].reply, Reply::Hang);
    // Another device's push, on the same HTTP/2 connection, is not held up.
    let outcomes = router.notify(&apns(&other), &Notice::default()).await;
    assert!(outcomes[0].is_sent(), "{outcomes:?}");
    let outcomes = hanging.await.expect("task");
    assert_eq!(outcomes[0].reason(), "timeout", "{outcomes:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < WAIT,
        "{took:?}"
    );
    providers.assert_checks_passed();
}

#[tokio::test]
async fn wait_for_is_woken_by_arrivals_and_times_out_with_what_arrived() {
    let providers = Providers::start().await;
    let sender =
        WebhookSender::new(&providers.webhook_config(WebhookMode::Instead)).expect("sender");
    // Nothing sent: the wait ends at its deadline, saying what it saw.
    let started = Instant::now();
    let err = providers
        .wait_for(|seen| !seen.is_empty(), Duration::from_millis(100))
        .await
        .expect_err("nothing arrives");
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(err.notifications.is_empty());
    assert!(err.to_string().contains("0 notification(s)"), "{err}");

    // Sent from another task while waiting.
    let sending = tokio::spawn(async move {
        for n in 0..3u64 {
            sender
                .send(&fcm("w-1"), &Notice { message_count: n })
                .await
                .expect("sent");
        }
    });
    let seen = providers
        .wait_for(|seen| seen.iter().any(|n| n.message_count == Some(2)), WAIT)
        .await
        .expect("the third notice");
    assert_eq!(seen.len(), 3);
    sending.await.expect("task");
    providers.assert_checks_passed();
}

/// Runs `assert_checks_passed` and returns its panic message.
fn checks_panic(providers: &Providers) -> String {
    let panic = std::panic::catch_unwind(AssertUnwindSafe(|| providers.assert_checks_passed()))
        .expect_err("the checks failed");
    panic.downcast_ref::<String>().cloned().unwrap_or_default()
}

#[tokio::test]
async fn credentials_signed_with_other_keys_are_refused_and_reported() {
    let providers = Providers::start().await;
    let dir = tempfile::tempdir().expect("tempdir");

    // FCM: a service account whose key is not the one the token endpoint knows.
    let mut account: Value = serde_json::from_str(&providers.service_account_json()).expect("json");
    account["private_key"] = rsa_key().pem.into();
    let fcm_config = FcmConfig {
        service_account_file: None,
        service_account_json: Some(Secret::new(account.to_string())),
        ..providers.fcm_config(dir.path())
    };
    let err = FcmSender::new(&fcm_config)
        .expect("sender")
        .send(&fcm("f-4"), &Notice::default())
        .await
        .expect_err("refused");
    assert_eq!(err.reason(), "auth", "{err:?}");
    assert!(err.to_string().contains("invalid_grant"), "{err}");

    // APNs: a provider token signed with another key.
    let apns_config = ApnsConfig {
        key_file: None,
        key_pem: Some(Secret::new(ec_key().pem)),
        ..providers.apns_config(dir.path())
    };
    let err = ApnsSender::new(&apns_config)
        .expect("sender")
        .send(&apns(&hex_token(7)), &Notice::default())
        .await
        .expect_err("refused");
    assert_eq!(err.reason(), "auth", "{err:?}");
    assert!(err.to_string().contains("InvalidProviderToken"), "{err}");

    // Webhook: another secret.
    let webhook_config = WebhookConfig {
        secret: Secret::new("not-the-secret"),
        ..providers.webhook_config(WebhookMode::Also)
    };
    let err = WebhookSender::new(&webhook_config)
        .expect("sender")
        .send(&fcm("f-4"), &Notice::default())
        .await
        .expect_err("refused");
    assert_eq!(err.status(), Some(401), "{err:?}");

    assert!(providers.notifications().is_empty());
    assert_eq!(providers.fcm_tokens_issued(), 0);
    let failures = providers.check_failures();
    assert_eq!(failures.len(), 3, "{failures:#?}");
    assert!(failures[0].starts_with("fcm token endpoint: assertion: bad signature"));
    assert!(failures[1].starts_with("apns: provider token: bad signature"));
    assert!(failures[2].starts_with("webhook: X-Mediator-Signature"));
    let message = checks_panic(&providers);
    assert!(message.contains("3 check(s) failed"), "{message}");
    assert!(message.contains("bad signature"), "{message}");
}

#[tokio::test]
async fn wrong_claims_headers_and_paths_are_reported() {
    let providers = Providers::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let device = apns(&hex_token(8));
    let send_apns = |config: ApnsConfig| {
        let device = device.clone();
        async move {
            ApnsSender::new(&config)
                .expect("sender")
                .send(&device, &Notice::default())
                .await
                .expect_err("refused")
        }
    };
    let base = providers.apns_config(dir.path());
    let err = send_apns(ApnsConfig {
        topic: "org.example.other".into(),
        ..base.clone()
    })
    .await;
    assert!(err.to_string().contains("DeviceTokenNotForTopic"), "{err}");
    let err = send_apns(ApnsConfig {
        key_id: "OTHERKEY00".into(),
        ..base.clone()
    })
    .await;
    assert_eq!(err.reason(), "auth", "{err:?}");
    let err = send_apns(ApnsConfig {
        team_id: "OTHERTEAM0".into(),
        ..base.clone()
    })
    .await;
    assert_eq!(err.reason(), "auth", "{err:?}");

    // FCM: another project (the path), and a bearer token the endpoint never issued.
    let err = FcmSender::new(&FcmConfig {
        project_id: Some("another-project".into()),
        ..providers.fcm_config(dir.path())
    })
    .expect("sender")
    .send(&fcm("f-5"), &Notice::default())
    .await
    .expect_err("refused");
    assert_eq!(
        (err.reason(), err.status()),
        ("rejected", Some(404)),
        "{err:?}"
    );
    let forged = reqwest::Client::new()
        .post(format!(
            "{}/v1/projects/{}/messages:send",
            providers.fcm_send_base_url(),
            Providers::FCM_PROJECT_ID
        ))
        .bearer_auth("forged")
        .json(&serde_json::json!({"message": {"token": "f-5", "data": {}}}))
        .send()
        .await
        .expect("answered");
    assert_eq!(forged.status(), 401);

    assert!(providers.notifications().is_empty());
    let failures = providers.check_failures();
    let expected = [
        "apns: apns-topic",
        "apns: kid",
        "apns: iss",
        "fcm: path",
        "fcm: authorization \"Bearer forged\"",
    ];
    assert_eq!(failures.len(), expected.len(), "{failures:#?}");
    for (failure, prefix) in failures.iter().zip(expected) {
        assert!(failure.starts_with(prefix), "{failure} (want {prefix})");
    }
}

#[tokio::test]
async fn alerts_and_visible_notifications_pass_the_checks() {
    let providers = Providers::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    ApnsSender::new(&ApnsConfig {
        push_type: ApnsPushType::Alert,
        expiration_secs: 0,
        ..providers.apns_config(dir.path())
    })
    .expect("sender")
    .send(&apns(&hex_token(9)), &Notice::default())
    .await
    .expect("sent");
    FcmSender::new(&FcmConfig {
        message: FcmMessageKind::Notification,
        ..providers.fcm_config(dir.path())
    })
    .expect("sender")
    .send(&fcm("f-6"), &Notice::default())
    .await
    .expect("sent");
    providers.assert_checks_passed();
    let seen = providers.notifications();
    assert_eq!(
        seen[0].body["aps"]["alert"]["body"],
        "You have new messages."
    );
    assert_eq!(
        seen[1].body["message"]["notification"]["title"],
        "New messages"
    );
}

#[tokio::test]
async fn the_stand_ins_stop_when_dropped() {
    let providers = Providers::start().await;
    let sender = WebhookSender::new(&WebhookConfig {
        timeout_ms: 2_000,
        ..providers.webhook_config(WebhookMode::Instead)
    })
    .expect("sender");
    sender
        .send(&fcm("f-7"), &Notice::default())
        .await
        .expect("sent while running");
    drop(providers);
    let err = sender
        .send(&fcm("f-7"), &Notice::default())
        .await
        .expect_err("stopped");
    assert!(err.is_retryable(), "{err:?}");
}
