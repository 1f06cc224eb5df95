//! APNs against a local HTTP/2-only (h2c) server that verifies the ES256 provider token and
//! checks the APNs headers, path and payload.

use std::time::{Duration, Instant};

use push_notify::{
    send_with_retry, ApnsConfig, ApnsPushType, ApnsSender, Device, Notice, Platform, PushError,
    PushSender, RetryPolicy, Secret, Transient,
};
use serde_json::{json, Value};

use push_notify::testing::{
    check, ec_key, now_unix, serve, silent_server, verify_jws, Alg, Proto, Received, Response,
    Script, Server,
};

const KEY_ID: &str = "ABC123DEFG";
const TEAM_ID: &str = "DEF123GHIJ";
const TOPIC: &str = "org.example.wallet";

fn device() -> Device {
    Device::new(
        Platform::Apns,
        "5f6aa01d8e3358949b7c25d461bb78ad740f4707462c7eafbebcf74fa5ddb387",
    )
}

/// What the server expects of the headers.
#[derive(Clone, Copy)]
struct Expect {
    push_type: &'static str,
    priority: &'static str,
    /// 0, or the configured seconds from now.
    expiration_secs: i64,
}

/// An h2c server that verifies each provider token with `public` (answering 403
/// `InvalidProviderToken` to a bad signature, as Apple does) and checks the request.
async fn apns_server(public: Vec<u8>, expect: Expect, script: Script) -> Server {
    serve(Proto::H2c, move |req: &Received| {
        check(req.version == hyper::Version::HTTP_2, || {
            format!("version {:?}", req.version)
        })?;
        check(req.method == "POST", || format!("method {}", req.method))?;
        check(req.path == format!("/3/device/{}", device().token), || {
            format!("path {}", req.path)
        })?;
        let auth = req.header("authorization").unwrap_or_default();
        let jwt = auth
            .strip_prefix("bearer ")
            .ok_or_else(|| format!("authorization {auth:?}"))?;
        let (header, claims) = match verify_jws(jwt, Alg::Es256, &public) {
            Ok(parts) => parts,
            Err(what) if what == "bad signature" => {
                return Ok(Response::json(
                    403,
                    json!({"reason": "InvalidProviderToken"}),
                ))
            }
            Err(what) => return Err(what),
        };
        check(header["alg"] == "ES256", || {
            format!("alg {}", header["alg"])
        })?;
        check(header["kid"] == KEY_ID, || format!("kid {}", header["kid"]))?;
        check(claims["iss"] == TEAM_ID, || {
            format!("iss {}", claims["iss"])
        })?;
        let iat = claims["iat"].as_i64().unwrap_or(0);
        check((iat - now_unix()).abs() <= 60, || format!("iat {iat}"))?;
        check(req.header("apns-topic") == Some(TOPIC), || {
            format!("apns-topic {:?}", req.header("apns-topic"))
        })?;
        check(
            req.header("apns-push-type") == Some(expect.push_type),
            || format!("apns-push-type {:?}", req.header("apns-push-type")),
        )?;
        check(req.header("apns-priority") == Some(expect.priority), || {
            format!("apns-priority {:?}", req.header("apns-priority"))
        })?;
        let expiration: i64 = req
            .header("apns-expiration")
            .and_then(|v| v.parse().ok())
            .ok_or("no apns-expiration")?;
        if expect.expiration_secs == 0 {
            check(expiration == 0, || format!("apns-expiration {expiration}"))?;
        } else {
            let want = now_unix() + expect.expiration_secs;
            check((expiration - want).abs() <= 60, || {
                format!("apns-expiration {expiration}, want about {want}")
            })?;
        }
        Ok(script.next())
    })
    .await
}

const BACKGROUND: Expect = Expect {
    push_type: "background",
    priority: "5",
    expiration_secs: 86_400,
};

fn ok() -> Response {
    Response::empty(200).with_header("apns-id", "EC1BF194-B3B2-424A-89A7-1CBDA4A6A7F4")
}

fn config(pem: &str, server: &Server) -> ApnsConfig {
    ApnsConfig {
        key_pem: Some(Secret::new(pem)),
        base_url: server.url(),
        timeout_ms: 5_000,
        ..ApnsConfig::new(KEY_ID, TEAM_ID, TOPIC)
    }
}

async fn fixture(expect: Expect, script: Script) -> (Server, ApnsConfig) {
    let key = ec_key();
    let server = apns_server(key.public, expect, script).await;
    let config = config(&key.pem, &server);
    (server, config)
}

async fn send_once(expect: Expect, reply: Response) -> (Server, Result<(), PushError>) {
    let (server, config) = fixture(expect, Script::new(ok()).then(reply)).await;
    let result = ApnsSender::new(&config)
        .expect("sender")
        .send(&device(), &Notice::default())
        .await;
    server.assert_checks_passed();
    (server, result)
}

#[tokio::test]
async fn a_background_push_over_http2_with_one_provider_token() {
    let (server, config) = fixture(BACKGROUND, Script::new(ok())).await;
    let sender = ApnsSender::new(&config).expect("sender");
    sender
        .send(&device(), &Notice { message_count: 3 })
        .await
        .expect("first");
    sender
        .send(&device(), &Notice { message_count: 4 })
        .await
        .expect("second");
    server.assert_checks_passed();
    let received = server.received();
    assert_eq!(received.len(), 2);
    for req in &received {
        assert_eq!(req.json(), json!({"aps": {"content-available": 1}}));
        assert_eq!(req.header("content-type"), Some("application/json"));
    }
    // The provider token is made once and reused.
    assert_eq!(
        received[0].header("authorization"),
        received[1].header("authorization")
    );
}

#[tokio::test]
async fn an_alert_push_has_a_generic_title_and_body() {
    let expect = Expect {
        push_type: "alert",
        priority: "10",
        expiration_secs: 0,
    };
    let (server, config) = fixture(expect, Script::new(ok())).await;
    let config = ApnsConfig {
        push_type: ApnsPushType::Alert,
        alert_title: "Wallet".into(),
        expiration_secs: 0,
        ..config
    };
    ApnsSender::new(&config)
        .expect("sender")
        .send(&device(), &Notice { message_count: 3 })
        .await
        .expect("send");
    server.assert_checks_passed();
    let payload: Value = server.received()[0].json();
    assert_eq!(
        payload,
        json!({"aps": {"alert": {"title": "Wallet", "body": "You have new messages."}, "sound": "default"}})
    );
}

#[tokio::test]
async fn unregistered_410_is_token_gone() {
    let (_, result) = send_once(
        BACKGROUND,
        Response::json(
            410,
            json!({"reason": "Unregistered", "timestamp": 1_700_000_000_000u64}),
        ),
    )
    .await;
    let err = result.expect_err("gone");
    assert!(matches!(err, PushError::TokenGone { .. }), "{err:?}");
    assert!(err.to_string().contains("Unregistered"), "{err}");
}

#[tokio::test]
async fn bad_device_token_400_is_token_gone() {
    let (_, result) = send_once(
        BACKGROUND,
        Response::json(400, json!({"reason": "BadDeviceToken"})),
    )
    .await;
    assert_eq!(result.expect_err("gone").reason(), "token_gone");
}

#[tokio::test]
async fn a_token_of_another_app_is_rejected_not_gone() {
    let (_, result) = send_once(
        BACKGROUND,
        Response::json(400, json!({"reason": "DeviceTokenNotForTopic"})),
    )
    .await;
    let err = result.expect_err("rejected");
    assert_eq!(err.reason(), "rejected");
    assert!(err.to_string().contains("DeviceTokenNotForTopic"), "{err}");
}

#[tokio::test]
async fn too_many_requests_is_retryable_and_retried() {
    let too_many = || Response::json(429, json!({"reason": "TooManyRequests"}));
    let (server, config) = fixture(
        BACKGROUND,
        Script::new(ok()).then(too_many()).then(too_many()),
    )
    .await;
    let sender = ApnsSender::new(&config).expect("sender");
    let err = sender
        .send(&device(), &Notice::default())
        .await
        .expect_err("429");
    assert!(
        matches!(
            err,
            PushError::Retryable {
                kind: Transient::RateLimited,
                status: Some(429),
                ..
            }
        ),
        "{err:?}"
    );
    // The second 429, then the default 200.
    let policy = RetryPolicy {
        max_attempts: 2,
        base_delay_ms: 10,
        max_delay_ms: 10,
        jitter: false,
    };
    let retried = send_with_retry(&sender, &device(), &Notice::default(), &policy).await;
    server.assert_checks_passed();
    assert_eq!(retried.reason(), "sent", "{retried:?}");
    assert_eq!(retried.attempts, 2);
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn a_provider_token_signed_with_another_key_is_refused() {
    let (server, config) = fixture(BACKGROUND, Script::new(ok())).await;
    let other = ec_key();
    let config = ApnsConfig {
        key_pem: Some(Secret::new(other.pem)),
        ..config
    };
    let err = ApnsSender::new(&config)
        .expect("sender")
        .send(&device(), &Notice::default())
        .await
        .expect_err("refused");
    server.assert_checks_passed();
    assert_eq!(err.reason(), "auth", "{err:?}");
    assert!(err.to_string().contains("InvalidProviderToken"), "{err}");
}

#[tokio::test]
async fn a_malformed_device_token_is_gone_without_a_request() {
    let (server, config) = fixture(BACKGROUND, Script::new(ok())).await;
    let err = ApnsSender::new(&config)
        .expect("sender")
        .send(
            &Device::new(Platform::Apns, "../../admin?x=1"),
            &Notice::default(),
        )
        .await
        .expect_err("malformed");
    assert_eq!(err.reason(), "token_gone");
    assert_eq!(server.count(), 0);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let silent = silent_server().await;
    let config = ApnsConfig {
        key_pem: Some(Secret::new(ec_key().pem)),
        base_url: silent.url(),
        timeout_ms: 300,
        ..ApnsConfig::new(KEY_ID, TEAM_ID, TOPIC)
    };
    let started = Instant::now();
    let err = ApnsSender::new(&config)
        .expect("sender")
        .send(&device(), &Notice::default())
        .await
        .expect_err("timeout");
    let took = started.elapsed();
    assert_eq!(err.reason(), "timeout", "{err:?}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn bad_configurations_are_refused_at_construction() {
    let key = ec_key();
    let with_key = |c: ApnsConfig| ApnsConfig {
        key_pem: Some(Secret::new(key.pem.clone())),
        ..c
    };
    assert!(ApnsSender::new(&with_key(ApnsConfig::new(KEY_ID, TEAM_ID, TOPIC))).is_ok());
    assert!(ApnsSender::new(&ApnsConfig::new(KEY_ID, TEAM_ID, TOPIC)).is_err());
    assert!(ApnsSender::new(&with_key(ApnsConfig::new("", TEAM_ID, TOPIC))).is_err());
    assert!(ApnsSender::new(&with_key(ApnsConfig::new(KEY_ID, TEAM_ID, "bad\ntopic"))).is_err());
    // An RSA key is not an APNs key.
    let rsa = ApnsConfig {
        key_pem: Some(Secret::new(push_notify::testing::rsa_key().pem)),
        ..ApnsConfig::new(KEY_ID, TEAM_ID, TOPIC)
    };
    let err = ApnsSender::new(&rsa).expect_err("RSA");
    assert!(err.to_string().contains("P-256"), "{err}");
}

#[test]
fn the_config_deserializes_with_defaults() {
    let config: ApnsConfig = serde_json::from_value(json!({
        "key_file": "/run/secrets/AuthKey_ABC123DEFG.p8",
        "key_id": KEY_ID,
        "team_id": TEAM_ID,
        "topic": TOPIC,
        "push_type": "alert",
    }))
    .expect("config");
    assert_eq!(config.base_url, "https://api.push.apple.com");
    assert_eq!(config.push_type, ApnsPushType::Alert);
    assert_eq!(config.expiration_secs, 86_400);
    assert!(serde_json::from_value::<ApnsConfig>(json!({"key_id": KEY_ID})).is_err());
}
