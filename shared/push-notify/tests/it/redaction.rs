//! Secrets and device tokens stay out of `Debug` output and error text.

use std::error::Error as _;

use push_notify::{
    ApnsConfig, ApnsSender, Device, FcmConfig, FcmSender, Notice, Platform, PushConfig, PushSender,
    Router, Secret, WebhookConfig, WebhookMode, WebhookSender,
};
use serde_json::json;

use push_notify::testing::{closed_port, ec_key, rsa_key};

/// A run of the key's base64 body: present in the PEM, must be absent from any output.
fn key_fragment(pem: &str) -> String {
    pem.lines().nth(3).expect("a body line").to_owned()
}

fn assert_hidden(output: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!output.contains(secret), "{secret:?} shows in {output}");
    }
}

#[test]
fn configs_and_senders_redact_their_secrets() {
    let rsa = rsa_key();
    let fcm = FcmConfig {
        service_account_json: Some(Secret::new(
            json!({
                "type": "service_account",
                "project_id": "p",
                "private_key_id": "kid",
                "private_key": rsa.pem,
                "client_email": "a@p.iam.gserviceaccount.com",
                "token_uri": "https://oauth2.googleapis.com/token",
            })
            .to_string(),
        )),
        ..FcmConfig::default()
    };
    let ec = ec_key();
    let apns = ApnsConfig {
        key_pem: Some(Secret::new(ec.pem.clone())),
        ..ApnsConfig::new("KEYID12345", "TEAMID1234", "org.example.wallet")
    };
    let webhook = WebhookConfig::new(
        "https://operator:pa55word@push.example.com/hook?key=qu3ry-secret",
        "hmac-key-d0nt-l0g",
        WebhookMode::Also,
    );
    let secrets = [
        key_fragment(&rsa.pem),
        key_fragment(&ec.pem),
        "hmac-key-d0nt-l0g".to_owned(),
        "pa55word".to_owned(),
        "qu3ry-secret".to_owned(),
        "PRIVATE KEY".to_owned(),
    ];
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();

    let config = PushConfig {
        fcm: Some(fcm.clone()),
        apns: Some(apns.clone()),
        webhook: Some(webhook.clone()),
        retry: Default::default(),
    };
    let outputs = [
        format!("{fcm:?}"),
        format!("{apns:?}"),
        format!("{webhook:?}"),
        format!("{config:#?}"),
        format!("{:?}", FcmSender::new(&fcm).expect("fcm")),
        format!("{:?}", ApnsSender::new(&apns).expect("apns")),
        format!("{:?}", WebhookSender::new(&webhook).expect("webhook")),
        format!("{:?}", Router::from_config(&config).expect("router")),
    ];
    for output in &outputs {
        assert_hidden(output, &secrets);
        assert!(output.contains("<redacted>"), "{output}");
    }
    // Still useful: the non-secret parts show.
    assert!(outputs[1].contains("KEYID12345"));
    assert!(outputs[2].contains("push.example.com"));
}

#[test]
fn a_device_shows_only_the_start_of_its_token() {
    let token = "5f6aa01d8e3358949b7c25d461bb78ad740f4707462c7eafbebcf74fa5ddb387";
    let shown = format!("{:?}", Device::new(Platform::Apns, token));
    assert!(!shown.contains(token), "{shown}");
    assert!(
        shown.contains("5f6aa0") && shown.contains("(64)"),
        "{shown}"
    );
}

#[tokio::test]
async fn transport_errors_do_not_show_the_device_token() {
    // The APNs URL ends with the token; a refused connection must not repeat it.
    let token = "deadbeef0123456789abcdef0123456789abcdef0123456789abcdef01234567";
    let config = ApnsConfig {
        key_pem: Some(Secret::new(ec_key().pem)),
        base_url: format!("http://{}", closed_port().await),
        timeout_ms: 2_000,
        ..ApnsConfig::new("KEYID12345", "TEAMID1234", "org.example.wallet")
    };
    let err = ApnsSender::new(&config)
        .expect("sender")
        .send(&Device::new(Platform::Apns, token), &Notice::default())
        .await
        .expect_err("refused");
    assert_eq!(err.reason(), "connection", "{err:?}");
    let mut text = format!("{err} {err:?}");
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!text.contains("deadbeef"), "{text}");
}
