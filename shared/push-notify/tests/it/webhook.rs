//! The webhook against a local receiver that recomputes the HMAC-SHA256 over the exact body with
//! an implementation other than the sender's (`testing::webhook_signature_valid`: the `hmac`
//! crate) and compares in constant time.

use push_notify::{
    Device, Notice, Platform, PushError, PushSender, Transient, WebhookConfig, WebhookMode,
    WebhookSender, DEFAULT_SIGNATURE_HEADER,
};
use serde_json::json;

use push_notify::testing::{
    check, serve, webhook_signature_valid, Proto, Received, Response, Script, Server,
};

const SECRET: &str = "webhook-shared-secret-0f9e8d";

/// A receiver that answers 401 to a wrong or missing signature (not a failed check: a sender
/// with the wrong secret is a case under test) and `script` otherwise.
async fn receiver(secret: &'static str, header: &'static str, script: Script) -> Server {
    serve(Proto::Http1, move |req: &Received| {
        check(req.method == "POST", || format!("method {}", req.method))?;
        check(req.path == "/hooks/push", || format!("path {}", req.path))?;
        check(
            req.header("content-type") == Some("application/json"),
            || format!("content-type {:?}", req.header("content-type")),
        )?;
        if webhook_signature_valid(secret.as_bytes(), &req.body, req.header(header)) {
            Ok(script.next())
        } else {
            Ok(Response::empty(401))
        }
    })
    .await
}

fn config(server: &Server, secret: &str) -> WebhookConfig {
    WebhookConfig {
        timeout_ms: 5_000,
        ..WebhookConfig::new(
            format!("{}/hooks/push", server.url()),
            secret,
            WebhookMode::Instead,
        )
    }
}

#[tokio::test]
async fn the_body_is_signed_and_carries_only_the_device_and_the_count() {
    let server = receiver(
        SECRET,
        DEFAULT_SIGNATURE_HEADER,
        Script::new(Response::empty(204)),
    )
    .await;
    let sender = WebhookSender::new(&config(&server, SECRET)).expect("sender");
    let device = Device::new(Platform::Apns, "a1b2c3d4");
    sender
        .send(&device, &Notice { message_count: 5 })
        .await
        .expect("sent");
    sender
        .send(
            &Device::new(Platform::Fcm, "fcm-token"),
            &Notice { message_count: 0 },
        )
        .await
        .expect("sent");
    server.assert_checks_passed();
    let received = server.received();
    assert_eq!(
        received[0].json(),
        json!({"platform": "apns", "token": "a1b2c3d4", "message_count": 5})
    );
    assert_eq!(
        received[1].json(),
        json!({"platform": "fcm", "token": "fcm-token", "message_count": 0})
    );
    let signature = received[0].header("x-mediator-signature").expect("header");
    assert!(
        signature.starts_with("sha256=") && signature.len() == 7 + 64,
        "{signature}"
    );
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_receiver() {
    let server = receiver(
        SECRET,
        DEFAULT_SIGNATURE_HEADER,
        Script::new(Response::empty(204)),
    )
    .await;
    let sender = WebhookSender::new(&config(&server, "another-secret")).expect("sender");
    let err = sender
        .send(&Device::new(Platform::Fcm, "t"), &Notice::default())
        .await
        .expect_err("refused");
    server.assert_checks_passed();
    assert_eq!(err.reason(), "auth", "{err:?}");
    assert_eq!(err.status(), Some(401));
}

#[tokio::test]
async fn a_configured_header_name_is_used() {
    let server = receiver(
        SECRET,
        "x-push-signature",
        Script::new(Response::empty(200)),
    )
    .await;
    let sender = WebhookSender::new(&WebhookConfig {
        signature_header: "X-Push-Signature".into(),
        ..config(&server, SECRET)
    })
    .expect("sender");
    sender
        .send(&Device::new(Platform::Fcm, "t"), &Notice::default())
        .await
        .expect("sent");
    server.assert_checks_passed();
    assert!(server.received()[0]
        .header("x-mediator-signature")
        .is_none());
}

#[tokio::test]
async fn gone_and_transient_answers() {
    let script = Script::new(Response::empty(200))
        .then(Response::empty(410))
        .then(Response::empty(503).with_header("retry-after", "2"))
        .then(Response::empty(400));
    let server = receiver(SECRET, DEFAULT_SIGNATURE_HEADER, script).await;
    let sender = WebhookSender::new(&config(&server, SECRET)).expect("sender");
    let device = Device::new(Platform::Fcm, "t");
    let notice = Notice::default();
    let send = || sender.send(&device, &notice);
    let gone = send().await.expect_err("410");
    assert!(matches!(gone, PushError::TokenGone { .. }), "{gone:?}");
    let unavailable = send().await.expect_err("503");
    assert!(
        matches!(
            unavailable,
            PushError::Retryable {
                kind: Transient::ServerError,
                ..
            }
        ),
        "{unavailable:?}"
    );
    assert_eq!(
        unavailable.retry_after(),
        Some(std::time::Duration::from_secs(2))
    );
    assert_eq!(send().await.expect_err("400").reason(), "rejected");
    send().await.expect("200");
    server.assert_checks_passed();
}

#[test]
fn the_mode_must_be_chosen() {
    let missing = serde_json::from_value::<WebhookConfig>(json!({
        "url": "https://push.example.com/hook",
        "secret": "s",
    }));
    let err = missing.expect_err("no mode");
    assert!(err.to_string().contains("mode"), "{err}");
    let config: WebhookConfig = serde_json::from_value(json!({
        "url": "https://push.example.com/hook",
        "secret": "s",
        "mode": "also",
    }))
    .expect("config");
    assert_eq!(config.mode, WebhookMode::Also);
    assert_eq!(config.signature_header, "X-Mediator-Signature");
}
