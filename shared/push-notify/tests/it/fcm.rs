//! FCM against a local OAuth token server (which verifies the RS256 assertion) and a local send
//! API (which checks the bearer token, the path and the message).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use push_notify::{
    send_with_retry, Device, FcmConfig, FcmMessageKind, FcmSender, Notice, Platform, PushError,
    PushSender, RetryPolicy, Secret, Transient,
};
use serde_json::{json, Value};

use push_notify::testing::{
    check, closed_port, now_unix, rsa_key, serve, silent_server, verify_jws, Alg, Proto, Received,
    Response, Script, Server,
};

const PROJECT: &str = "wallet-project";
const CLIENT_EMAIL: &str = "mediator@wallet-project.iam.gserviceaccount.com";
const KEY_ID: &str = "0123456789abcdef";
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

fn device() -> Device {
    Device::new(Platform::Fcm, "fcm-registration-token:APA91bExampleToken")
}

/// A token server that verifies each assertion with `public` and issues `tok-1`, `tok-2`, …
/// living `expires_in` seconds.
async fn token_server(public: Vec<u8>, expires_in: u64, issued: Arc<Mutex<Vec<String>>>) -> Server {
    let aud: Arc<Mutex<String>> = Arc::default();
    let aud_seen = aud.clone();
    let server = serve(Proto::Http1, move |req: &Received| {
        check(req.method == "POST", || format!("method {}", req.method))?;
        check(req.path == "/token", || format!("path {}", req.path))?;
        check(
            req.header("content-type") == Some("application/x-www-form-urlencoded"),
            || format!("content-type {:?}", req.header("content-type")),
        )?;
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
            .into_owned()
            .collect();
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        check(field("grant_type") == GRANT, || {
            format!("grant_type {}", field("grant_type"))
        })?;
        let (header, claims) = match verify_jws(&field("assertion"), Alg::Rs256, &public) {
            Ok(parts) => parts,
            // What Google answers to a bad signature.
            Err(what) if what == "bad signature" => {
                return Ok(Response::json(
                    400,
                    json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
                ))
            }
            Err(what) => return Err(what),
        };
        check(header["alg"] == "RS256", || format!("alg {}", header["alg"]))?;
        check(header["kid"] == KEY_ID, || format!("kid {}", header["kid"]))?;
        check(claims["iss"] == CLIENT_EMAIL, || format!("iss {}", claims["iss"]))?;
        let aud = aud_seen.lock().expect("lock").clone();
        check(claims["aud"] == aud.as_str(), || {
            format!("aud {} (token_uri {aud})", claims["aud"])
        })?;
        check(
            claims["scope"]
                .as_str()
                .is_some_and(|s| s.split(' ').any(|s| s == SCOPE)),
            || format!("scope {}", claims["scope"]),
        )?;
        let (iat, exp) = (
            claims["iat"].as_i64().unwrap_or(0),
            claims["exp"].as_i64().unwrap_or(0),
        );
        check((iat - now_unix()).abs() <= 60, || format!("iat {iat}"))?;
        check(exp > iat && exp - iat <= 3600, || format!("exp - iat {}", exp - iat))?;
        let mut issued = issued.lock().expect("lock");
        let token = format!("tok-{}", issued.len() + 1);
        issued.push(token.clone());
        Ok(Response::json(
            200,
            json!({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}),
        ))
    })
    .await;
    *aud.lock().expect("lock") = format!("{}/token", server.url());
    server
}

/// The send API: checks the path, that the bearer token was issued (and not `revoked`), and the
/// message's token; answers from `script`.
async fn send_server(
    issued: Arc<Mutex<Vec<String>>>,
    revoked: Vec<String>,
    script: Script,
) -> Server {
    serve(Proto::Http1, move |req: &Received| {
        check(req.method == "POST", || format!("method {}", req.method))?;
        check(
            req.path == format!("/v1/projects/{PROJECT}/messages:send"),
            || format!("path {}", req.path),
        )?;
        check(
            req.header("content-type") == Some("application/json"),
            || format!("content-type {:?}", req.header("content-type")),
        )?;
        let auth = req.header("authorization").unwrap_or_default();
        let token = auth.strip_prefix("Bearer ").unwrap_or_default();
        if revoked.iter().any(|r| r == token) {
            return Ok(Response::json(
                401,
                json!({"error": {"code": 401, "status": "UNAUTHENTICATED",
                    "message": "Request had invalid authentication credentials."}}),
            ));
        }
        check(
            issued.lock().expect("lock").iter().any(|t| t == token),
            || format!("authorization {auth:?} was never issued"),
        )?;
        let body: Value = serde_json::from_slice(&req.body).map_err(|e| e.to_string())?;
        check(body["message"]["token"] == device().token.as_str(), || {
            format!("message.token {}", body["message"]["token"])
        })?;
        Ok(script.next())
    })
    .await
}

fn ok() -> Response {
    Response::json(
        200,
        json!({"name": format!("projects/{PROJECT}/messages/0:1")}),
    )
}

fn google_error(code: u16, status: &str, message: &str, fcm_code: &str) -> Response {
    Response::json(
        code,
        json!({"error": {"code": code, "status": status, "message": message, "details": [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code}
        ]}}),
    )
}

fn service_account(pem: &str, token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": KEY_ID,
        "private_key": pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    })
    .to_string()
}

struct Fixture {
    tokens: Server,
    sends: Server,
    issued: Arc<Mutex<Vec<String>>>,
    config: FcmConfig,
}

impl Fixture {
    fn sender(&self) -> FcmSender {
        FcmSender::new(&self.config).expect("sender")
    }

    fn assert_checks_passed(&self) {
        self.tokens.assert_checks_passed();
        self.sends.assert_checks_passed();
    }
}

async fn fixture(expires_in: u64, revoked: Vec<String>, script: Script) -> Fixture {
    let key = rsa_key();
    let issued: Arc<Mutex<Vec<String>>> = Arc::default();
    let tokens = token_server(key.public, expires_in, issued.clone()).await;
    let sends = send_server(issued.clone(), revoked, script).await;
    let config = FcmConfig {
        service_account_json: Some(Secret::new(service_account(
            &key.pem,
            &format!("{}/token", tokens.url()),
        ))),
        send_base_url: sends.url(),
        timeout_ms: 5_000,
        ..FcmConfig::default()
    };
    Fixture {
        tokens,
        sends,
        issued,
        config,
    }
}

#[tokio::test]
async fn sends_share_one_cached_access_token() {
    let f = fixture(3600, vec![], Script::new(ok())).await;
    let sender = f.sender();
    sender
        .send(&device(), &Notice::default())
        .await
        .expect("first send");
    sender
        .send(&device(), &Notice::default())
        .await
        .expect("second send");
    f.assert_checks_passed();
    assert_eq!(f.tokens.count(), 1, "one token exchange for two sends");
    let sends = f.sends.received();
    assert_eq!(sends.len(), 2);
    for send in &sends {
        assert_eq!(send.header("authorization"), Some("Bearer tok-1"));
        // A data message: no content, no connection, no count.
        assert_eq!(
            send.json(),
            json!({"message": {
                "token": device().token,
                "data": {"event": "messages_waiting"},
                "android": {"priority": "high"},
                "apns": {
                    "headers": {"apns-push-type": "background", "apns-priority": "5"},
                    "payload": {"aps": {"content-available": 1}},
                },
            }})
        );
    }
}

#[tokio::test]
async fn concurrent_sends_on_a_cold_cache_make_one_exchange() {
    let f = fixture(3600, vec![], Script::new(ok())).await;
    let sender = Arc::new(f.sender());
    let sends: Vec<_> = (0..8)
        .map(|_| {
            let sender = sender.clone();
            tokio::spawn(async move { sender.send(&device(), &Notice::default()).await })
        })
        .collect();
    for send in sends {
        send.await.expect("task").expect("send");
    }
    f.assert_checks_passed();
    assert_eq!(f.tokens.count(), 1);
    assert_eq!(f.sends.count(), 8);
}

#[tokio::test]
async fn a_token_about_to_expire_is_refreshed() {
    // 30 s of life is inside the 60 s refresh margin: never reused.
    let f = fixture(30, vec![], Script::new(ok())).await;
    let sender = f.sender();
    sender
        .send(&device(), &Notice::default())
        .await
        .expect("first send");
    sender
        .send(&device(), &Notice::default())
        .await
        .expect("second send");
    f.assert_checks_passed();
    assert_eq!(f.tokens.count(), 2);
    let auth: Vec<_> = f
        .sends
        .received()
        .iter()
        .map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert_eq!(
        auth,
        [
            Some("Bearer tok-1".to_owned()),
            Some("Bearer tok-2".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_revoked_access_token_is_replaced_once() {
    let f = fixture(3600, vec!["tok-1".into()], Script::new(ok())).await;
    let sender = f.sender();
    sender
        .send(&device(), &Notice::default())
        .await
        .expect("send");
    f.assert_checks_passed();
    assert_eq!(f.tokens.count(), 2);
    assert_eq!(*f.issued.lock().expect("lock"), ["tok-1", "tok-2"]);
    assert_eq!(f.sends.count(), 2);
}

#[tokio::test]
async fn unregistered_is_token_gone() {
    let script = Script::new(ok()).then(google_error(
        404,
        "NOT_FOUND",
        "Requested entity was not found.",
        "UNREGISTERED",
    ));
    let f = fixture(3600, vec![], script).await;
    let err = f
        .sender()
        .send(&device(), &Notice::default())
        .await
        .expect_err("gone");
    f.assert_checks_passed();
    assert!(matches!(err, PushError::TokenGone { .. }), "{err:?}");
    assert_eq!(err.reason(), "token_gone");
}

#[tokio::test]
async fn an_invalid_registration_token_is_token_gone() {
    let script = Script::new(ok()).then(google_error(
        400,
        "INVALID_ARGUMENT",
        "The registration token is not a valid FCM registration token",
        "INVALID_ARGUMENT",
    ));
    let f = fixture(3600, vec![], script).await;
    let err = f
        .sender()
        .send(&device(), &Notice::default())
        .await
        .expect_err("gone");
    f.assert_checks_passed();
    assert_eq!(err.reason(), "token_gone", "{err:?}");
}

#[tokio::test]
async fn an_invalid_argument_about_the_message_is_not_token_gone() {
    let script = Script::new(ok()).then(google_error(
        400,
        "INVALID_ARGUMENT",
        "Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration)",
        "INVALID_ARGUMENT",
    ));
    let f = fixture(3600, vec![], script).await;
    let err = f
        .sender()
        .send(&device(), &Notice::default())
        .await
        .expect_err("refused");
    f.assert_checks_passed();
    assert_eq!(err.reason(), "rejected", "{err:?}");
    assert_eq!(err.status(), Some(400));
}

#[tokio::test]
async fn unavailable_is_retryable_and_the_retry_helper_gets_through() {
    let unavailable = || {
        google_error(
            503,
            "UNAVAILABLE",
            "The service is currently unavailable.",
            "UNAVAILABLE",
        )
    };
    let script = Script::new(ok()).then(unavailable().with_header("retry-after", "7"));
    let f = fixture(3600, vec![], script.clone()).await;
    let sender = f.sender();
    let err = sender
        .send(&device(), &Notice::default())
        .await
        .expect_err("503");
    assert!(
        matches!(
            err,
            PushError::Retryable {
                kind: Transient::ServerError,
                status: Some(503),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));

    // Two more 503s, then the default 200: the third attempt gets through.
    let _ = script.then(unavailable()).then(unavailable());
    let policy = RetryPolicy {
        max_attempts: 3,
        base_delay_ms: 10,
        max_delay_ms: 50,
        jitter: false,
    };
    let outcome = send_with_retry(&sender, &device(), &Notice::default(), &policy).await;
    f.assert_checks_passed();
    assert_eq!(outcome.reason(), "sent", "{outcome:?}");
    assert_eq!(outcome.attempts, 3);
    assert_eq!(f.sends.count(), 4);
}

#[tokio::test]
async fn quota_exceeded_is_rate_limited() {
    let script = Script::new(ok()).then(
        google_error(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded.",
            "QUOTA_EXCEEDED",
        )
        .with_header("retry-after", "30"),
    );
    let f = fixture(3600, vec![], script).await;
    let err = f
        .sender()
        .send(&device(), &Notice::default())
        .await
        .expect_err("429");
    assert_eq!(err.reason(), "rate_limited");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
}

#[tokio::test]
async fn an_assertion_signed_with_another_key_is_refused() {
    let f = fixture(3600, vec![], Script::new(ok())).await;
    // The account file's key is not the one the token server knows.
    let other = rsa_key();
    let config = FcmConfig {
        service_account_json: Some(Secret::new(service_account(
            &other.pem,
            &format!("{}/token", f.tokens.url()),
        ))),
        ..f.config.clone()
    };
    let err = FcmSender::new(&config)
        .expect("sender")
        .send(&device(), &Notice::default())
        .await
        .expect_err("refused");
    f.assert_checks_passed();
    assert_eq!(err.reason(), "auth", "{err:?}");
    assert!(err.to_string().contains("invalid_grant"), "{err}");
    assert_eq!(f.sends.count(), 0);
}

#[tokio::test]
async fn a_send_api_that_never_answers_times_out() {
    let f = fixture(3600, vec![], Script::new(ok())).await;
    let silent = silent_server().await;
    let config = FcmConfig {
        send_base_url: silent.url(),
        timeout_ms: 300,
        ..f.config.clone()
    };
    let started = Instant::now();
    let err = FcmSender::new(&config)
        .expect("sender")
        .send(&device(), &Notice::default())
        .await
        .expect_err("timeout");
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            PushError::Retryable {
                kind: Transient::Timeout,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_token_server_that_never_answers_times_out_once_for_all_waiters() {
    let silent = silent_server().await;
    let key = rsa_key();
    let config = FcmConfig {
        service_account_json: Some(Secret::new(service_account(
            &key.pem,
            &format!("{}/token", silent.url()),
        ))),
        send_base_url: format!("http://{}", closed_port().await),
        timeout_ms: 300,
        ..FcmConfig::default()
    };
    let sender = Arc::new(FcmSender::new(&config).expect("sender"));
    let started = Instant::now();
    let sends: Vec<_> = (0..5)
        .map(|_| {
            let sender = sender.clone();
            tokio::spawn(async move { sender.send(&device(), &Notice::default()).await })
        })
        .collect();
    for send in sends {
        let err = send.await.expect("task").expect_err("timeout");
        assert_eq!(err.reason(), "timeout", "{err:?}");
    }
    // The senders that waited for the hanging refresh share its failure: one exchange was
    // tried, not one after another.
    assert_eq!(silent.accepted(), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_connection_refused_is_retryable() {
    let f = fixture(3600, vec![], Script::new(ok())).await;
    let config = FcmConfig {
        send_base_url: format!("http://{}", closed_port().await),
        ..f.config.clone()
    };
    let err = FcmSender::new(&config)
        .expect("sender")
        .send(&device(), &Notice::default())
        .await
        .expect_err("refused");
    assert_eq!(err.reason(), "connection", "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_key_file_a_project_override_and_a_visible_notification() {
    let f = fixture(3600, vec![], Script::new(ok())).await;
    let json = f
        .config
        .service_account_json
        .as_ref()
        .expect("json")
        .expose()
        .replace(
            &format!("\"project_id\":\"{PROJECT}\""),
            "\"project_id\":\"ignored-project\"",
        );
    assert!(json.contains("ignored-project"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("service-account.json");
    std::fs::write(&path, json).expect("write");
    let config = FcmConfig {
        service_account_file: Some(path),
        service_account_json: None,
        project_id: Some(PROJECT.into()),
        message: FcmMessageKind::Notification,
        ttl_secs: Some(3600),
        ..f.config.clone()
    };
    FcmSender::new(&config)
        .expect("sender")
        .send(
            &device(),
            &Notice {
                message_count: 4242,
            },
        )
        .await
        .expect("send");
    f.assert_checks_passed();
    let message = &f.sends.received()[0].json()["message"];
    assert_eq!(
        message["notification"],
        json!({"title": "New messages", "body": "You have new messages."})
    );
    assert_eq!(
        message["android"],
        json!({"priority": "high", "ttl": "3600s"})
    );
    assert!(message.get("data").is_none());
    assert!(
        !message.to_string().contains("4242"),
        "no message count: {message}"
    );
}

#[test]
fn bad_configurations_are_refused_at_construction() {
    let none = FcmSender::new(&FcmConfig::default()).expect_err("no key");
    assert!(none.to_string().contains("service_account"), "{none}");
    let not_json = FcmConfig {
        service_account_json: Some(Secret::new("{not json")),
        ..FcmConfig::default()
    };
    assert!(FcmSender::new(&not_json).is_err());
    let bad_key = FcmConfig {
        service_account_json: Some(Secret::new(service_account(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "https://oauth2.googleapis.com/token",
        ))),
        ..FcmConfig::default()
    };
    let err = FcmSender::new(&bad_key).expect_err("bad key");
    assert!(err.to_string().contains("private key"), "{err}");
    let missing = FcmConfig {
        service_account_file: Some("/nonexistent/sa.json".into()),
        ..FcmConfig::default()
    };
    assert!(FcmSender::new(&missing).is_err());
}

#[test]
fn the_config_deserializes_with_defaults() {
    let config: FcmConfig = serde_json::from_value(json!({
        "service_account_file": "/run/secrets/fcm.json",
        "message": "notification",
    }))
    .expect("config");
    assert_eq!(config.send_base_url, "https://fcm.googleapis.com");
    assert_eq!(config.message, FcmMessageKind::Notification);
    assert_eq!(config.timeout_ms, 10_000);
    assert_eq!(config.token_url, None);
}

#[tokio::test]
async fn each_sender_keeps_its_own_token_cache() {
    // Two senders built from one configuration each keep their own token cache.
    let f = fixture(3600, vec![], Script::new(ok())).await;
    let (a, b) = (f.sender(), f.sender());
    a.send(&device(), &Notice::default()).await.expect("a");
    b.send(&device(), &Notice::default()).await.expect("b");
    a.send(&device(), &Notice::default())
        .await
        .expect("a again");
    f.assert_checks_passed();
    assert_eq!(f.tokens.count(), 2);
    assert_eq!(f.sends.count(), 3);
}
