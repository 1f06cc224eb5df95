//! [`Providers`]: FCM, APNs and a webhook receiver stood in for together, each verifying every
//! request the way the real service would refuse it, recording what it accepted, and answering
//! as a test scripted per device token.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use hyper::{Method, Version};
use serde_json::{json, Value};
use tokio::{sync::watch, time::Instant};

use super::{
    keys::{
        check, ec_key, now_unix, rsa_key, verify_jws, webhook_signature_valid, Alg, EcKey, RsaKey,
    },
    server::{bind, lock, spawn, Proto, Received, Response},
};
use crate::{
    ApnsConfig, FcmConfig, Platform, PushConfig, RetryPolicy, WebhookConfig, WebhookMode,
    DEFAULT_SIGNATURE_HEADER,
};

/// The prefix of every variable the `env*` methods return: the mediator's `MEDIATOR_` prefix and
/// its `push` table (`__` separates nested tables).
pub const ENV_PREFIX: &str = "MEDIATOR_PUSH__";

/// FCM's OAuth scope, which the assertion must ask for.
const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The token endpoint's path on its server.
const TOKEN_PATH: &str = "/token";
/// How long an issued FCM access token lives, as Google's do.
const ACCESS_TOKEN_SECS: u64 = 3600;
/// Clock skew allowed on `iat`.
const SKEW_SECS: i64 = 60;

/// One of the stand-ins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// The FCM send endpoint (the token endpoint records no notifications).
    Fcm,
    /// The APNs server.
    Apns,
    /// The webhook receiver.
    Webhook,
}

impl Provider {
    /// `"fcm"`, `"apns"`, `"webhook"`: the senders' [`provider`](crate::PushSender::provider)
    /// names.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Fcm => "fcm",
            Provider::Apns => "apns",
            Provider::Webhook => "webhook",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a stand-in answers a notification that passed its checks (see [`Providers::set_reply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reply {
    /// Success: FCM 200 with a message name, APNs 200 with an `apns-id`, webhook 204.
    #[default]
    Accept,
    /// The device token is gone: FCM 404 `NOT_FOUND` with FCM error code `UNREGISTERED`, APNs
    /// 410 `Unregistered`, webhook 410. The senders report [`PushError::TokenGone`].
    ///
    /// [`PushError::TokenGone`]: crate::PushError::TokenGone
    Unregistered,
    /// The service is down for now: 503 (FCM `UNAVAILABLE`, APNs `ServiceUnavailable`), without
    /// `Retry-After`. The senders report a retryable failure.
    Unavailable,
    /// This status, with an empty body.
    Status(u16),
    /// No answer at all: the request is held open until the sender's timeout (or until the
    /// stand-ins stop). For "a provider that hangs does not slow anything else down".
    Hang,
}

/// A notification a stand-in accepted (its checks passed), in order of arrival.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Which stand-in received it.
    pub provider: Provider,
    /// The device's platform: FCM or APNs for those; for the webhook, the body's `platform`.
    pub platform: Platform,
    /// The device token: FCM `message.token`, the APNs path's `/3/device/<token>`, the webhook
    /// body's `token`.
    pub token: String,
    /// The webhook body's `message_count` (`None` for FCM and APNs, which do not carry it).
    pub message_count: Option<u64>,
    /// The JSON body as received: FCM's `{"message": ...}`, the APNs payload, the webhook body.
    pub body: Value,
    /// How it was answered.
    pub reply: Reply,
}

/// [`Providers::wait_for`] gave up: what had arrived by then.
#[derive(Debug, Clone)]
pub struct WaitTimedOut {
    /// How long it waited.
    pub waited: Duration,
    /// Every notification received by then.
    pub notifications: Vec<Notification>,
    /// Every check failure by then (a request that failed its checks is not a notification,
    /// which is often why the wait failed).
    pub failures: Vec<String>,
}

impl fmt::Display for WaitTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the condition was not met within {:?}; {} notification(s): [",
            self.waited,
            self.notifications.len()
        )?;
        for (i, n) in self.notifications.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{} {} {:?}", n.provider, n.token, n.reply)?;
        }
        write!(f, "]; check failures: {:?}", self.failures)
    }
}

impl std::error::Error for WaitTimedOut {}

/// Stand-ins for FCM (OAuth token endpoint and send API), APNs (HTTP/2 over cleartext) and a
/// webhook receiver, on 127.0.0.1 ports of their own, for end-to-end tests of whatever sends
/// push notifications (the mediator).
///
/// # What is verified
///
/// A request that fails a check is recorded as a failure ([`check_failures`]; panic on any with
/// [`assert_checks_passed`]), is not a [`Notification`], and is refused the way the real service
/// would (so the sender sees an authentication error or a refusal, never success):
///
/// - FCM token endpoint (`POST /token`, HTTP/1): form-encoded, `grant_type` is the JWT bearer
///   grant, the `assertion` is an RS256 JWS whose signature verifies with the generated
///   service-account key, `kid` = [`FCM_KEY_ID`](Self::FCM_KEY_ID), `iss` =
///   [`FCM_CLIENT_EMAIL`](Self::FCM_CLIENT_EMAIL), `aud` = this endpoint's URL, `scope` includes
///   `https://www.googleapis.com/auth/firebase.messaging`, `iat` within a minute of now and
///   `exp` after it by at most an hour. Refused: 400 `invalid_grant`. Accepted: a new bearer
///   access token living an hour.
/// - FCM send API (HTTP/1): `POST /v1/projects/<FCM_PROJECT_ID>/messages:send` (else 404),
///   `Authorization: Bearer <a token the endpoint issued>` (else 401 `UNAUTHENTICATED`), a JSON
///   body whose `message.token` is a non-empty string and which has `data` or `notification`
///   (else 400 `INVALID_ARGUMENT`).
/// - APNs (HTTP/2 only, h2c): `POST /3/device/<hex token>` (else 404 `BadPath` / 400
///   `BadDeviceToken`), `authorization: bearer <ES256 JWS>` whose signature verifies with the
///   generated `.p8` key, `kid` = [`APNS_KEY_ID`](Self::APNS_KEY_ID), `iss` =
///   [`APNS_TEAM_ID`](Self::APNS_TEAM_ID), `iat` at most an hour old (else 403
///   `InvalidProviderToken` / `ExpiredProviderToken` / `MissingProviderToken`); `apns-topic` =
///   [`APNS_TOPIC`](Self::APNS_TOPIC), `apns-push-type` `background` (with priority `5` and
///   `aps.content-available` = 1) or `alert` (priority `5` or `10`), `apns-expiration` 0 or a
///   time not in the past (else 400 with Apple's reason: `DeviceTokenNotForTopic`,
///   `InvalidPushType`, `BadPriority`, `BadExpirationDate`, `PayloadEmpty`...).
/// - Webhook (`POST /push`, HTTP/1): `content-type: application/json`, the
///   `X-Mediator-Signature` header is `sha256=<hex HMAC-SHA256 of the exact body>` under
///   [`WEBHOOK_SECRET`](Self::WEBHOOK_SECRET), checked with the `hmac` crate rather than the
///   sender's implementation (else 401), and the body is exactly `platform` (`fcm`|`apns`),
///   `token` (non-empty) and `message_count` (an integer ≥ 0) (else 400).
///
/// What is not verified: the content of FCM messages and APNs payloads beyond the above (they
/// are recorded in [`Notification::body`] for a test to look at), TLS, and rate limits.
///
/// # Use
///
/// Start it, give the system under test [`env`](Self::env) (or a variant, or the typed configs),
/// script failures with [`set_reply`](Self::set_reply), wait for what should arrive with
/// [`wait_for`](Self::wait_for), and end with [`assert_checks_passed`](Self::assert_checks_passed).
///
/// Clones share the stand-ins; they stop (ports closed, hanging requests dropped) when the last
/// clone is dropped or the runtime ends. This is for tests only.
///
/// [`check_failures`]: Self::check_failures
/// [`assert_checks_passed`]: Self::assert_checks_passed
#[derive(Clone)]
pub struct Providers {
    inner: Arc<Inner>,
    _stop: Arc<watch::Sender<()>>,
}

struct Inner {
    fcm_token: SocketAddr,
    fcm_send: SocketAddr,
    apns: SocketAddr,
    webhook: SocketAddr,
    fcm_key: RsaKey,
    apns_key: EcKey,
    state: Mutex<State>,
    /// Bumped on every notification and every failure: what [`Providers::wait_for`] waits on.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    notifications: Vec<Notification>,
    failures: Vec<String>,
    /// Standing replies: for one provider, or (`None`) for any.
    replies: HashMap<(Option<Provider>, String), Reply>,
    /// One-shot replies, used before the standing ones.
    queued: HashMap<String, VecDeque<Reply>>,
    /// FCM access tokens issued.
    issued: Vec<String>,
}

impl fmt::Debug for Providers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Providers")
            .field("fcm_token_url", &self.fcm_token_url())
            .field("fcm_send_base_url", &self.fcm_send_base_url())
            .field("apns_base_url", &self.apns_base_url())
            .field("webhook_url", &self.webhook_url())
            .finish_non_exhaustive()
    }
}

impl Providers {
    /// The service account's project (the key's `project_id`).
    pub const FCM_PROJECT_ID: &'static str = "mediator-test-project";
    /// The service account's `client_email`: the assertion's `iss`.
    pub const FCM_CLIENT_EMAIL: &'static str =
        "push-sender@mediator-test-project.iam.gserviceaccount.com";
    /// The service account's `private_key_id`: the assertion's `kid`.
    pub const FCM_KEY_ID: &'static str = "5b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c";
    /// The APNs key id: the provider token's `kid` (and the `.p8` file's name).
    pub const APNS_KEY_ID: &'static str = "KEY456TEST";
    /// The APNs team id: the provider token's `iss`. Not all digits: see [`env`](Self::env).
    pub const APNS_TEAM_ID: &'static str = "TEAM123ABC";
    /// The app's bundle id: `apns-topic`.
    pub const APNS_TOPIC: &'static str = "org.example.wallet";
    /// The webhook's HMAC key.
    pub const WEBHOOK_SECRET: &'static str = "webhook-test-secret-3c9a";
    /// The webhook's path on its server.
    pub const WEBHOOK_PATH: &'static str = "/push";
    /// The per-request timeout the `env*` methods and typed configs set, in milliseconds.
    pub const TIMEOUT_MS: u64 = 5_000;
    /// The service-account file [`write_service_account`](Self::write_service_account) writes.
    pub const SERVICE_ACCOUNT_FILE: &'static str = "fcm-service-account.json";

    /// Generates the keys (an RSA service-account key, a P-256 `.p8` key) and starts the four
    /// servers on free 127.0.0.1 ports.
    pub async fn start() -> Self {
        let (fcm_token, fcm_send, apns, webhook) =
            (bind().await, bind().await, bind().await, bind().await);
        let addr = |l: &tokio::net::TcpListener| l.local_addr().expect("the listener's address");
        // RSA key generation takes a while unoptimised: off the runtime's threads.
        let fcm_key = tokio::task::spawn_blocking(rsa_key)
            .await
            .expect("RSA key generation");
        let inner = Arc::new(Inner {
            fcm_token: addr(&fcm_token),
            fcm_send: addr(&fcm_send),
            apns: addr(&apns),
            webhook: addr(&webhook),
            fcm_key,
            apns_key: ec_key(),
            state: Mutex::default(),
            changed: watch::Sender::new(0),
        });
        let (stop, stopped) = watch::channel(());
        let servers: [(_, Proto, Endpoint); 4] = [
            (fcm_token, Proto::Http1, fcm_token_endpoint),
            (fcm_send, Proto::Http1, fcm_send_endpoint),
            (apns, Proto::H2c, apns_endpoint),
            (webhook, Proto::Http1, webhook_endpoint),
        ];
        for (listener, proto, endpoint) in servers {
            let inner = inner.clone();
            spawn(
                listener,
                proto,
                Arc::new(move |req| endpoint(&inner, req)),
                stopped.clone(),
            );
        }
        Self {
            inner,
            _stop: Arc::new(stop),
        }
    }

    /// The FCM token endpoint: the service account's `token_uri`, the assertion's `aud`.
    pub fn fcm_token_url(&self) -> String {
        format!("http://{}{TOKEN_PATH}", self.inner.fcm_token)
    }

    /// The FCM send API's base URL (`[push.fcm] send_base_url`).
    pub fn fcm_send_base_url(&self) -> String {
        format!("http://{}", self.inner.fcm_send)
    }

    /// The APNs base URL (`[push.apns] base_url`): `http://`, so spoken as h2c.
    pub fn apns_base_url(&self) -> String {
        format!("http://{}", self.inner.apns)
    }

    /// The webhook's URL (`[push.webhook] url`).
    pub fn webhook_url(&self) -> String {
        format!("http://{}{}", self.inner.webhook, Self::WEBHOOK_PATH)
    }

    /// The service-account key JSON (`type`, `project_id`, `private_key_id`, `private_key`,
    /// `client_email`, `token_uri` = [`fcm_token_url`](Self::fcm_token_url)).
    pub fn service_account_json(&self) -> String {
        json!({
            "type": "service_account",
            "project_id": Self::FCM_PROJECT_ID,
            "private_key_id": Self::FCM_KEY_ID,
            "private_key": self.inner.fcm_key.pem,
            "client_email": Self::FCM_CLIENT_EMAIL,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.fcm_token_url(),
        })
        .to_string()
    }

    /// The APNs token-signing key, PKCS#8 PEM (what an `AuthKey_<key id>.p8` holds).
    pub fn apns_key_pem(&self) -> String {
        self.inner.apns_key.pem.clone()
    }

    /// Writes [`service_account_json`](Self::service_account_json) to
    /// `dir/`[`SERVICE_ACCOUNT_FILE`](Self::SERVICE_ACCOUNT_FILE) and returns the path.
    ///
    /// # Panics
    ///
    /// If the file cannot be written.
    pub fn write_service_account(&self, dir: &Path) -> PathBuf {
        let path = dir.join(Self::SERVICE_ACCOUNT_FILE);
        std::fs::write(&path, self.service_account_json())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// Writes [`apns_key_pem`](Self::apns_key_pem) to `dir/AuthKey_<APNS_KEY_ID>.p8` and returns
    /// the path.
    ///
    /// # Panics
    ///
    /// If the file cannot be written.
    pub fn write_apns_key(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("AuthKey_{}.p8", Self::APNS_KEY_ID));
        std::fs::write(&path, self.apns_key_pem())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    // ---- configuration: environment variables -------------------------------------------------

    /// Everything on: FCM and APNs ([`env_fcm`](Self::env_fcm), [`env_apns`](Self::env_apns),
    /// writing their key files into `dir`), the webhook as well as them
    /// ([`env_webhook`](Self::env_webhook) with [`WebhookMode::Also`]: each notice then reaches
    /// the device's provider *and* the webhook, two notifications), and quick retries
    /// ([`env_retry`](Self::env_retry)).
    ///
    /// The variables are the mediator's (`MEDIATOR_` prefix, `__` between nested tables, field
    /// names of [`PushConfig`] and its tables in capitals): `MEDIATOR_PUSH__FCM__SEND_BASE_URL`
    /// is `[push.fcm] send_base_url`. Give them to the configuration loader as they are (the
    /// mediator's `Config::load(file, env)`), not through the process environment. To change
    /// one, append the variable again: the mediator's loader collects them into a map, the last
    /// wins (e.g. `MEDIATOR_PUSH__APNS__TIMEOUT_MS=300`).
    ///
    /// No value is all digits: a loader that parses numbers (`try_parsing`) would hand a number
    /// to a string field, which a `#[serde(flatten)]`ed [`PushConfig`] refuses.
    ///
    /// # Panics
    ///
    /// If the key files cannot be written, or `dir` is not UTF-8.
    pub fn env(&self, dir: &Path) -> Vec<(String, String)> {
        [
            self.env_fcm(dir),
            self.env_apns(dir),
            self.env_webhook(WebhookMode::Also),
            self.env_retry(),
        ]
        .concat()
    }

    /// FCM and APNs, no webhook, quick retries (see [`env`](Self::env)).
    ///
    /// # Panics
    ///
    /// If the key files cannot be written, or `dir` is not UTF-8.
    pub fn env_fcm_apns(&self, dir: &Path) -> Vec<(String, String)> {
        [self.env_fcm(dir), self.env_apns(dir), self.env_retry()].concat()
    }

    /// The webhook instead of FCM and APNs ([`WebhookMode::Instead`]), quick retries; no key
    /// files.
    pub fn env_webhook_only(&self) -> Vec<(String, String)> {
        [self.env_webhook(WebhookMode::Instead), self.env_retry()].concat()
    }

    /// `[push.fcm]`: writes the service-account file into `dir` and names it
    /// (`SERVICE_ACCOUNT_FILE`), `SEND_BASE_URL`, `TIMEOUT_MS`. The project id and the token URL
    /// come from the key file (`project_id`, `token_uri`), as with a real key.
    ///
    /// # Panics
    ///
    /// If the file cannot be written, or `dir` is not UTF-8.
    pub fn env_fcm(&self, dir: &Path) -> Vec<(String, String)> {
        let file = self.write_service_account(dir);
        vec![
            var("FCM__SERVICE_ACCOUNT_FILE", utf8(&file)),
            var("FCM__SEND_BASE_URL", self.fcm_send_base_url()),
            var("FCM__TIMEOUT_MS", Self::TIMEOUT_MS.to_string()),
        ]
    }

    /// `[push.apns]`: writes the `.p8` key into `dir` and names it (`KEY_FILE`), `KEY_ID`,
    /// `TEAM_ID`, `TOPIC`, `BASE_URL`, `TIMEOUT_MS`. Push type, expiration: the defaults.
    ///
    /// # Panics
    ///
    /// If the file cannot be written, or `dir` is not UTF-8.
    pub fn env_apns(&self, dir: &Path) -> Vec<(String, String)> {
        let file = self.write_apns_key(dir);
        vec![
            var("APNS__KEY_FILE", utf8(&file)),
            var("APNS__KEY_ID", Self::APNS_KEY_ID),
            var("APNS__TEAM_ID", Self::APNS_TEAM_ID),
            var("APNS__TOPIC", Self::APNS_TOPIC),
            var("APNS__BASE_URL", self.apns_base_url()),
            var("APNS__TIMEOUT_MS", Self::TIMEOUT_MS.to_string()),
        ]
    }

    /// `[push.webhook]`: `URL`, `SECRET`, `MODE` (`instead` or `also`), `TIMEOUT_MS`; the
    /// signature header is the default.
    pub fn env_webhook(&self, mode: WebhookMode) -> Vec<(String, String)> {
        let mode = match mode {
            WebhookMode::Instead => "instead",
            WebhookMode::Also => "also",
        };
        vec![
            var("WEBHOOK__URL", self.webhook_url()),
            var("WEBHOOK__SECRET", Self::WEBHOOK_SECRET),
            var("WEBHOOK__MODE", mode),
            var("WEBHOOK__TIMEOUT_MS", Self::TIMEOUT_MS.to_string()),
        ]
    }

    /// `[push.retry]`: [`retry_policy`](Self::retry_policy)'s quick retries (3 attempts, 20 ms
    /// doubling to at most 200 ms), so that a scripted 503 is retried without slowing a test.
    pub fn env_retry(&self) -> Vec<(String, String)> {
        let retry = self.retry_policy();
        vec![
            var("RETRY__MAX_ATTEMPTS", retry.max_attempts.to_string()),
            var("RETRY__BASE_DELAY_MS", retry.base_delay_ms.to_string()),
            var("RETRY__MAX_DELAY_MS", retry.max_delay_ms.to_string()),
        ]
    }

    // ---- configuration: typed, the same values ------------------------------------------------

    /// What [`env_fcm`](Self::env_fcm) describes, typed (and the same file written).
    ///
    /// # Panics
    ///
    /// If the file cannot be written.
    pub fn fcm_config(&self, dir: &Path) -> FcmConfig {
        FcmConfig {
            service_account_file: Some(self.write_service_account(dir)),
            send_base_url: self.fcm_send_base_url(),
            timeout_ms: Self::TIMEOUT_MS,
            ..FcmConfig::default()
        }
    }

    /// What [`env_apns`](Self::env_apns) describes, typed (and the same file written).
    ///
    /// # Panics
    ///
    /// If the file cannot be written.
    pub fn apns_config(&self, dir: &Path) -> ApnsConfig {
        ApnsConfig {
            key_file: Some(self.write_apns_key(dir)),
            base_url: self.apns_base_url(),
            timeout_ms: Self::TIMEOUT_MS,
            ..ApnsConfig::new(Self::APNS_KEY_ID, Self::APNS_TEAM_ID, Self::APNS_TOPIC)
        }
    }

    /// What [`env_webhook`](Self::env_webhook) describes, typed.
    pub fn webhook_config(&self, mode: WebhookMode) -> WebhookConfig {
        WebhookConfig {
            timeout_ms: Self::TIMEOUT_MS,
            ..WebhookConfig::new(self.webhook_url(), Self::WEBHOOK_SECRET, mode)
        }
    }

    /// Quick retries: 3 attempts, 20 ms doubling to at most 200 ms, with jitter.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base_delay_ms: 20,
            max_delay_ms: 200,
            ..RetryPolicy::default()
        }
    }

    /// FCM and APNs, the webhook if `webhook` says how, quick retries: what [`env`](Self::env)
    /// (`Some(Also)`), [`env_fcm_apns`](Self::env_fcm_apns) (`None`) describe, typed.
    ///
    /// # Panics
    ///
    /// If the key files cannot be written.
    pub fn push_config(&self, dir: &Path, webhook: Option<WebhookMode>) -> PushConfig {
        PushConfig {
            fcm: Some(self.fcm_config(dir)),
            apns: Some(self.apns_config(dir)),
            webhook: webhook.map(|mode| self.webhook_config(mode)),
            retry: self.retry_policy(),
        }
    }

    // ---- scripting ----------------------------------------------------------------------------

    /// From now on, every stand-in answers notifications for `token` with `reply` (until set
    /// again; [`Reply::Accept`] is the default). A reply set for one provider
    /// ([`set_reply_via`](Self::set_reply_via)) takes precedence.
    pub fn set_reply(&self, token: &str, reply: Reply) {
        lock(&self.inner.state)
            .replies
            .insert((None, token.to_owned()), reply);
    }

    /// From now on, `provider` answers notifications for `token` with `reply` (the others keep
    /// theirs): with the webhook told as well, one can fail while the other succeeds.
    pub fn set_reply_via(&self, provider: Provider, token: &str, reply: Reply) {
        lock(&self.inner.state)
            .replies
            .insert((Some(provider), token.to_owned()), reply);
    }

    /// The next notifications for `token` (at whichever stand-in, one each, in order) are
    /// answered with `replies`; then the standing reply again. E.g. `[Unavailable]` then
    /// success: a retry that gets through.
    pub fn queue_replies(&self, token: &str, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.inner.state)
            .queued
            .entry(token.to_owned())
            .or_default()
            .extend(replies);
    }

    // ---- what was received --------------------------------------------------------------------

    /// Every notification accepted so far (checks passed, whatever the reply), in order.
    pub fn notifications(&self) -> Vec<Notification> {
        lock(&self.inner.state).notifications.clone()
    }

    /// How many notifications for `token` arrived, at every stand-in together (hung and refused
    /// replies included).
    pub fn notifications_for(&self, token: &str) -> usize {
        lock(&self.inner.state)
            .notifications
            .iter()
            .filter(|n| n.token == token)
            .count()
    }

    /// How many notifications for `token` arrived at `provider`.
    pub fn notifications_via(&self, provider: Provider, token: &str) -> usize {
        lock(&self.inner.state)
            .notifications
            .iter()
            .filter(|n| n.provider == provider && n.token == token)
            .count()
    }

    /// How many FCM access tokens the token endpoint issued (one per accepted exchange).
    pub fn fcm_tokens_issued(&self) -> usize {
        lock(&self.inner.state).issued.len()
    }

    /// Every failed check so far, each prefixed with the stand-in that saw it.
    pub fn check_failures(&self) -> Vec<String> {
        lock(&self.inner.state).failures.clone()
    }

    /// Panics, listing them, if any request failed a check.
    pub fn assert_checks_passed(&self) {
        let failures = self.check_failures();
        assert!(
            failures.is_empty(),
            "push provider stand-ins: {} check(s) failed: {failures:#?}",
            failures.len()
        );
    }

    /// Waits until `condition` holds over the notifications received (tested now, then again
    /// each time a notification or a failure arrives, never by polling), for at most `timeout`.
    /// `Ok` with the notifications that satisfied it; `Err` with what had arrived by the
    /// deadline.
    pub async fn wait_for<F>(
        &self,
        mut condition: F,
        timeout: Duration,
    ) -> Result<Vec<Notification>, WaitTimedOut>
    where
        F: FnMut(&[Notification]) -> bool,
    {
        let deadline = Instant::now() + timeout;
        let mut changed = self.inner.changed.subscribe();
        loop {
            // Marked seen before looking: whatever arrives after the look wakes the wait.
            changed.borrow_and_update();
            let seen = self.notifications();
            if condition(&seen) {
                return Ok(seen);
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives as long as `self`: neither happens before the deadline.
                Ok(Err(_)) | Err(_) => {
                    return Err(WaitTimedOut {
                        waited: timeout,
                        notifications: self.notifications(),
                        failures: self.check_failures(),
                    })
                }
            }
        }
    }

    /// Waits until at least `count` notifications for `token` arrived (at any stand-in).
    pub async fn wait_for_token(
        &self,
        token: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Notification>, WaitTimedOut> {
        self.wait_for(
            |seen| seen.iter().filter(|n| n.token == token).count() >= count,
            timeout,
        )
        .await
    }
}

fn var(name: &str, value: impl Into<String>) -> (String, String) {
    (format!("{ENV_PREFIX}{name}"), value.into())
}

fn utf8(path: &Path) -> String {
    path.to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8", path.display()))
        .to_owned()
}

impl Inner {
    fn changed(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    fn fail(&self, provider: &str, what: String) {
        lock(&self.state)
            .failures
            .push(format!("{provider}: {what}"));
        self.changed();
    }

    /// The reply for this notification (consuming a queued one), recorded with it.
    fn accept(
        &self,
        provider: Provider,
        platform: Platform,
        token: &str,
        message_count: Option<u64>,
        body: Value,
    ) -> Reply {
        let reply = {
            let mut state = lock(&self.state);
            let queued = state.queued.get_mut(token).and_then(VecDeque::pop_front);
            let reply = queued
                .or_else(|| {
                    let key = |p| (p, token.to_owned());
                    let replies = &state.replies;
                    replies
                        .get(&key(Some(provider)))
                        .or_else(|| replies.get(&key(None)))
                        .copied()
                })
                .unwrap_or_default();
            state.notifications.push(Notification {
                provider,
                platform,
                token: token.to_owned(),
                message_count,
                body,
                reply,
            });
            reply
        };
        self.changed();
        reply
    }
}

/// One stand-in's request handling.
type Endpoint = fn(&Inner, Received) -> Option<Response>;

/// A failed check: what failed, and the real service's answer to it.
struct Refusal {
    what: String,
    response: Response,
}

/// `Err(Refusal)` unless `cond`.
fn require(
    cond: bool,
    response: impl FnOnce() -> Response,
    what: impl FnOnce() -> String,
) -> Result<(), Refusal> {
    if cond {
        Ok(())
    } else {
        Err(Refusal {
            what: what(),
            response: response(),
        })
    }
}

// ---- FCM ------------------------------------------------------------------------------------

fn fcm_token_endpoint(inner: &Inner, req: Received) -> Option<Response> {
    match check_assertion(inner, &req) {
        Ok(()) => {
            let token = {
                let mut state = lock(&inner.state);
                let token = format!("stand-in-access-token-{}", state.issued.len() + 1);
                state.issued.push(token.clone());
                token
            };
            Some(Response::json(
                200,
                json!({"access_token": token, "expires_in": ACCESS_TOKEN_SECS, "token_type": "Bearer"}),
            ))
        }
        Err(what) => {
            inner.fail("fcm token endpoint", what.clone());
            // What Google answers to an assertion it does not accept.
            Some(Response::json(
                400,
                json!({"error": "invalid_grant", "error_description": what}),
            ))
        }
    }
}

fn check_assertion(inner: &Inner, req: &Received) -> Result<(), String> {
    check(req.method == Method::POST, || {
        format!("method {}", req.method)
    })?;
    check(req.path == TOKEN_PATH, || format!("path {}", req.path))?;
    check(
        req.header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")),
        || format!("content-type {:?}", req.header("content-type")),
    )?;
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    check(field("grant_type") == JWT_BEARER_GRANT, || {
        format!("grant_type {:?}", field("grant_type"))
    })?;
    let (header, claims) = verify_jws(field("assertion"), Alg::Rs256, &inner.fcm_key.public)
        .map_err(|e| format!("assertion: {e}"))?;
    check(header["alg"] == "RS256", || {
        format!("alg {}", header["alg"])
    })?;
    check(header["kid"] == Providers::FCM_KEY_ID, || {
        format!("kid {}", header["kid"])
    })?;
    check(claims["iss"] == Providers::FCM_CLIENT_EMAIL, || {
        format!("iss {}", claims["iss"])
    })?;
    let aud = format!("http://{}{TOKEN_PATH}", inner.fcm_token);
    check(claims["aud"] == aud.as_str(), || {
        format!("aud {} (the token endpoint is {aud})", claims["aud"])
    })?;
    check(
        claims["scope"]
            .as_str()
            .is_some_and(|s| s.split(' ').any(|s| s == FCM_SCOPE)),
        || format!("scope {} lacks {FCM_SCOPE}", claims["scope"]),
    )?;
    let (iat, exp) = (claims["iat"].as_i64(), claims["exp"].as_i64());
    let (Some(iat), Some(exp)) = (iat, exp) else {
        return Err(format!("iat {} exp {}", claims["iat"], claims["exp"]));
    };
    check((iat - now_unix()).abs() <= SKEW_SECS, || {
        format!("iat {iat} is not now")
    })?;
    check(exp > iat && exp - iat <= 3600, || {
        format!("exp - iat = {} (at most an hour)", exp - iat)
    })
}

/// A Google API error body.
fn google_error(code: u16, status: &str, message: &str, fcm_code: Option<&str>) -> Response {
    let details: Vec<Value> = fcm_code
        .map(|c| json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": c}))
        .into_iter()
        .collect();
    Response::json(
        code,
        json!({"error": {"code": code, "status": status, "message": message, "details": details}}),
    )
}

fn fcm_send_endpoint(inner: &Inner, req: Received) -> Option<Response> {
    match check_fcm_send(inner, &req) {
        Ok((token, body)) => {
            let reply = inner.accept(Provider::Fcm, Platform::Fcm, &token, None, body);
            match reply {
                Reply::Accept => Some(Response::json(
                    200,
                    json!({"name": format!("projects/{}/messages/0:{}", Providers::FCM_PROJECT_ID, now_unix())}),
                )),
                Reply::Unregistered => Some(google_error(
                    404,
                    "NOT_FOUND",
                    "Requested entity was not found.",
                    Some("UNREGISTERED"),
                )),
                Reply::Unavailable => Some(google_error(
                    503,
                    "UNAVAILABLE",
                    "The service is currently unavailable.",
                    Some("UNAVAILABLE"),
                )),
                Reply::Status(status) => Some(Response::empty(status)),
                Reply::Hang => None,
            }
        }
        Err(refusal) => {
            inner.fail("fcm", refusal.what);
            Some(refusal.response)
        }
    }
}

fn check_fcm_send(inner: &Inner, req: &Received) -> Result<(String, Value), Refusal> {
    let not_found = || google_error(404, "NOT_FOUND", "Requested entity was not found.", None);
    let invalid = || {
        google_error(
            400,
            "INVALID_ARGUMENT",
            "Request contains an invalid argument.",
            None,
        )
    };
    let path = format!("/v1/projects/{}/messages:send", Providers::FCM_PROJECT_ID);
    require(req.method == Method::POST, not_found, || {
        format!("method {}", req.method)
    })?;
    require(req.path == path, not_found, || {
        format!("path {} (want {path})", req.path)
    })?;
    let auth = req.header("authorization").unwrap_or_default();
    let issued = auth
        .strip_prefix("Bearer ")
        .is_some_and(|t| lock(&inner.state).issued.iter().any(|i| i == t));
    require(
        issued,
        || {
            google_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
                None,
            )
        },
        || format!("authorization {auth:?} is not a bearer token the endpoint issued"),
    )?;
    require(
        req.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        invalid,
        || format!("content-type {:?}", req.header("content-type")),
    )?;
    let body: Value = serde_json::from_slice(&req.body).map_err(|e| Refusal {
        what: format!("body: {e}"),
        response: invalid(),
    })?;
    let message = &body["message"];
    let token = message["token"].as_str().unwrap_or_default().to_owned();
    require(!token.is_empty(), invalid, || {
        format!("message.token {}", message["token"])
    })?;
    require(
        message.get("data").is_some() || message.get("notification").is_some(),
        invalid,
        || "the message has neither data nor notification".to_owned(),
    )?;
    Ok((token, body))
}

// ---- APNs -----------------------------------------------------------------------------------

fn apns_error(status: u16, reason: &str) -> Response {
    Response::json(status, json!({ "reason": reason }))
}

fn apns_endpoint(inner: &Inner, req: Received) -> Option<Response> {
    match check_apns(inner, &req) {
        Ok((token, body)) => {
            let reply = inner.accept(Provider::Apns, Platform::Apns, &token, None, body);
            match reply {
                Reply::Accept => Some(Response::empty(200).with_header(
                    "apns-id",
                    &format!("00000000-0000-4000-8000-{:012x}", now_unix()),
                )),
                Reply::Unregistered => Some(Response::json(
                    410,
                    json!({"reason": "Unregistered", "timestamp": now_unix() * 1000}),
                )),
                Reply::Unavailable => Some(apns_error(503, "ServiceUnavailable")),
                Reply::Status(status) => Some(Response::empty(status)),
                Reply::Hang => None,
            }
        }
        Err(refusal) => {
            inner.fail("apns", refusal.what);
            Some(refusal.response)
        }
    }
}

fn check_apns(inner: &Inner, req: &Received) -> Result<(String, Value), Refusal> {
    let refuse = |status: u16, reason: &'static str| move || apns_error(status, reason);
    require(
        req.version == Version::HTTP_2,
        refuse(400, "BadPath"),
        || format!("version {:?} (APNs is HTTP/2 only)", req.version),
    )?;
    require(
        req.method == Method::POST,
        refuse(405, "MethodNotAllowed"),
        || format!("method {}", req.method),
    )?;
    let token = req.path.strip_prefix("/3/device/").ok_or_else(|| Refusal {
        what: format!("path {}", req.path),
        response: apns_error(404, "BadPath"),
    })?;
    require(
        !token.is_empty() && token.bytes().all(|b| b.is_ascii_hexdigit()),
        refuse(400, "BadDeviceToken"),
        || format!("device token {token:?} is not hex"),
    )?;

    let auth = req.header("authorization").ok_or_else(|| Refusal {
        what: "no authorization".into(),
        response: apns_error(403, "MissingProviderToken"),
    })?;
    let invalid_token = refuse(403, "InvalidProviderToken");
    let jwt = auth.strip_prefix("bearer ").ok_or_else(|| Refusal {
        what: format!("authorization {auth:?} is not `bearer <token>`"),
        response: invalid_token(),
    })?;
    let (header, claims) =
        verify_jws(jwt, Alg::Es256, &inner.apns_key.public).map_err(|e| Refusal {
            what: format!("provider token: {e}"),
            response: invalid_token(),
        })?;
    require(header["alg"] == "ES256", invalid_token, || {
        format!("alg {}", header["alg"])
    })?;
    require(
        header["kid"] == Providers::APNS_KEY_ID,
        invalid_token,
        || format!("kid {}", header["kid"]),
    )?;
    require(
        claims["iss"] == Providers::APNS_TEAM_ID,
        invalid_token,
        || format!("iss {}", claims["iss"]),
    )?;
    let iat = claims["iat"].as_i64().unwrap_or(0);
    let now = now_unix();
    require(iat <= now + SKEW_SECS, invalid_token, || {
        format!("iat {iat} is in the future")
    })?;
    require(
        now - iat <= 3600,
        refuse(403, "ExpiredProviderToken"),
        || format!("iat {iat} is more than an hour old"),
    )?;

    let topic = req.header("apns-topic");
    require(topic.is_some(), refuse(400, "MissingTopic"), || {
        "no apns-topic".into()
    })?;
    require(
        topic == Some(Providers::APNS_TOPIC),
        refuse(400, "DeviceTokenNotForTopic"),
        || format!("apns-topic {topic:?}"),
    )?;
    let push_type = req.header("apns-push-type").unwrap_or_default();
    let priority = req.header("apns-priority").unwrap_or_default();
    require(
        matches!(push_type, "background" | "alert"),
        refuse(400, "InvalidPushType"),
        || format!("apns-push-type {push_type:?}"),
    )?;
    let priority_ok = match push_type {
        // Apple: background pushes must have priority 5.
        "background" => priority == "5",
        _ => matches!(priority, "5" | "10"),
    };
    require(priority_ok, refuse(400, "BadPriority"), || {
        format!("apns-priority {priority:?} for {push_type}")
    })?;
    let expiration = req.header("apns-expiration");
    let expiration_ok = expiration
        .and_then(|e| e.parse::<i64>().ok())
        .is_some_and(|e| e == 0 || e >= now - SKEW_SECS);
    require(expiration_ok, refuse(400, "BadExpirationDate"), || {
        format!("apns-expiration {expiration:?}")
    })?;

    let body: Value = serde_json::from_slice(&req.body).map_err(|e| Refusal {
        what: format!("payload: {e}"),
        response: apns_error(400, "PayloadEmpty"),
    })?;
    require(body["aps"].is_object(), refuse(400, "PayloadEmpty"), || {
        format!("payload without aps: {body}")
    })?;
    if push_type == "background" {
        require(
            body["aps"]["content-available"] == 1,
            refuse(400, "PayloadEmpty"),
            || format!("a background push without content-available 1: {body}"),
        )?;
    }
    Ok((token.to_owned(), body))
}

// ---- webhook --------------------------------------------------------------------------------

fn webhook_endpoint(inner: &Inner, req: Received) -> Option<Response> {
    match check_webhook(&req) {
        Ok((platform, token, count, body)) => {
            let reply = inner.accept(Provider::Webhook, platform, &token, Some(count), body);
            match reply {
                Reply::Accept => Some(Response::empty(204)),
                Reply::Unregistered => Some(Response::empty(410)),
                Reply::Unavailable => Some(Response::empty(503)),
                Reply::Status(status) => Some(Response::empty(status)),
                Reply::Hang => None,
            }
        }
        Err(refusal) => {
            inner.fail("webhook", refusal.what);
            Some(refusal.response)
        }
    }
}

fn check_webhook(req: &Received) -> Result<(Platform, String, u64, Value), Refusal> {
    let status = |s: u16| move || Response::empty(s);
    require(req.method == Method::POST, status(405), || {
        format!("method {}", req.method)
    })?;
    require(req.path == Providers::WEBHOOK_PATH, status(404), || {
        format!("path {}", req.path)
    })?;
    require(
        req.header("content-type") == Some("application/json"),
        status(400),
        || format!("content-type {:?}", req.header("content-type")),
    )?;
    let signature = req.header(DEFAULT_SIGNATURE_HEADER);
    require(
        webhook_signature_valid(Providers::WEBHOOK_SECRET.as_bytes(), &req.body, signature),
        status(401),
        || format!("{DEFAULT_SIGNATURE_HEADER} {signature:?} is not the body's HMAC-SHA256"),
    )?;
    let body: Value = serde_json::from_slice(&req.body).map_err(|e| Refusal {
        what: format!("body: {e}"),
        response: Response::empty(400),
    })?;
    let bad = || Refusal {
        what: format!("body {body} is not exactly platform, token, message_count"),
        response: Response::empty(400),
    };
    let fields = body.as_object().ok_or_else(bad)?;
    if fields.len() != 3 {
        return Err(bad());
    }
    let platform = match fields.get("platform").and_then(Value::as_str) {
        Some("fcm") => Platform::Fcm,
        Some("apns") => Platform::Apns,
        _ => return Err(bad()),
    };
    let token = fields
        .get("token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(bad)?
        .to_owned();
    let count = fields
        .get("message_count")
        .and_then(Value::as_u64)
        .ok_or_else(bad)?;
    Ok((platform, token, count, body))
}
