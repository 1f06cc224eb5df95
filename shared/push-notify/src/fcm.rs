//! Firebase Cloud Messaging, HTTP v1 API.
//!
//! Authentication is a service account's OAuth 2.0 access token: an RS256 assertion signed with
//! the account's private key (`iss` = the account's email, `aud` = the token URL, `scope` =
//! `firebase.messaging`, one hour of life) is exchanged at the token URL with the JWT bearer grant
//! (RFC 7523). The access token is cached until [`TOKEN_REFRESH_MARGIN`] before it expires;
//! the refresh runs under a lock, so concurrent sends on a cold or stale cache make one exchange,
//! and those that waited for a refresh that failed get its error rather than trying in turn.
//! A 401 from FCM (the token revoked or expired early) drops the token and sends once more with a
//! new one.
//!
//! A token is reported gone only on FCM's own verdicts about the token: the error code
//! `UNREGISTERED`, or `INVALID_ARGUMENT` whose violation or message names the registration token.
//! A bare 404 (a wrong project id answers that too) or an `INVALID_ARGUMENT` about another field
//! is a refusal, so that a misconfiguration never makes the caller delete every token.

use std::{
    fmt,
    path::PathBuf,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use aws_lc_rs::{rand::SystemRandom, rsa::KeyPair as RsaKeyPair, signature};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

use crate::{
    http::{self, Answer},
    jwt, ConfigError, Device, Notice, Permanent, PushError, PushSender, Secret, DEFAULT_TIMEOUT_MS,
};

const PROVIDER: &str = "fcm";

/// Google's OAuth 2.0 token endpoint: the token URL when neither the configuration nor the key
/// names one.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

/// The FCM API's base URL.
pub const FCM_SEND_URL: &str = "https://fcm.googleapis.com";

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The longest life Google accepts for an assertion.
const ASSERTION_LIFETIME_SECS: u64 = 3600;
/// An access token is replaced this long before it expires (clock skew, the request's own time).
pub(crate) const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// The data of a data message: it says what happened, not to whom or what.
const DATA_EVENT: &str = "messages_waiting";

/// How FCM sends the notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FcmMessageKind {
    /// A data message (`{"event": "messages_waiting"}`, high priority on Android, a background
    /// `content-available` push for iOS apps registered through Firebase): the app wakes and
    /// fetches its messages; nothing is shown unless the app shows it.
    #[default]
    Data,
    /// A visible notification with the configured generic title and body.
    Notification,
}

/// Configuration of the FCM sender.
#[derive(Debug, Clone, Deserialize)]
pub struct FcmConfig {
    /// A service-account key file (JSON, from the Firebase console). One of this and
    /// `service_account_json`.
    #[serde(default)]
    pub service_account_file: Option<PathBuf>,
    /// The service-account key JSON itself (from a secret store). One of this and
    /// `service_account_file`.
    #[serde(default)]
    pub service_account_json: Option<Secret>,
    /// The Firebase project; default: the key's `project_id`.
    #[serde(default)]
    pub project_id: Option<String>,
    /// Where access tokens are obtained (also the assertion's audience); default: the key's
    /// `token_uri`, else [`GOOGLE_TOKEN_URL`].
    #[serde(default)]
    pub token_url: Option<String>,
    /// The FCM API's base URL; messages go to `<this>/v1/projects/<project>/messages:send`.
    #[serde(default = "default_send_base_url")]
    pub send_base_url: String,
    /// A data message (default) or a visible notification.
    #[serde(default)]
    pub message: FcmMessageKind,
    /// The notification's title (`message = "notification"` only): generic, no content.
    #[serde(default = "default_title")]
    pub title: String,
    /// The notification's body (`message = "notification"` only): generic, no content.
    #[serde(default = "default_body")]
    pub body: String,
    /// How long FCM keeps an undelivered message (Android `ttl`); default: FCM's (4 weeks).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// The timeout of each request (token exchange, send), in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for FcmConfig {
    fn default() -> Self {
        Self {
            service_account_file: None,
            service_account_json: None,
            project_id: None,
            token_url: None,
            send_base_url: default_send_base_url(),
            message: FcmMessageKind::default(),
            title: default_title(),
            body: default_body(),
            ttl_secs: None,
            timeout_ms: default_timeout_ms(),
        }
    }
}

fn default_send_base_url() -> String {
    FCM_SEND_URL.to_owned()
}

pub(crate) fn default_title() -> String {
    "New messages".to_owned()
}

pub(crate) fn default_body() -> String {
    "You have new messages.".to_owned()
}

pub(crate) fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// The fields of a service-account key this sender uses. No `Debug`: it holds the private key.
#[derive(Deserialize)]
struct ServiceAccount {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    private_key_id: Option<String>,
    private_key: String,
    client_email: String,
    #[serde(default)]
    token_uri: Option<String>,
}

/// An access token and when to stop using it.
struct AccessToken {
    value: String,
    refresh_at: Instant,
}

/// Sends through FCM HTTP v1. Cheap to share (`Arc`); every clone of the `Arc` shares the token
/// cache.
pub struct FcmSender {
    http: reqwest::Client,
    key: RsaKeyPair,
    key_id: Option<String>,
    client_email: String,
    token_url: String,
    send_url: String,
    /// The message's fields other than `token`.
    message: Map<String, Value>,
    /// Held across a refresh, so that one caller refreshes for all.
    token: Mutex<TokenCache>,
}

/// The access token, and the last refresh's failure.
#[derive(Default)]
struct TokenCache {
    token: Option<AccessToken>,
    /// When the last refresh failed, and how. The callers that waited for that refresh get its
    /// error rather than each trying in turn (behind a hanging token server, the last of N
    /// waiters would otherwise wait N timeouts).
    failure: Option<(Instant, PushError)>,
}

impl fmt::Debug for FcmSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FcmSender")
            .field("client_email", &self.client_email)
            .field("key_id", &self.key_id)
            .field("key", &"<redacted>")
            .field("token_url", &self.token_url)
            .field("send_url", &self.send_url)
            .finish_non_exhaustive()
    }
}

fn invalid(what: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        provider: PROVIDER,
        what: what.into(),
    }
}

/// Checks that `url` is an absolute http(s) URL.
pub(crate) fn check_url(provider: &'static str, name: &str, url: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(()),
        _ => Err(ConfigError::Invalid {
            provider,
            what: format!("{name} is not an http(s) URL"),
        }),
    }
}

impl FcmSender {
    /// Reads the service-account key and builds the sender. No request is made until the first
    /// send.
    pub fn new(config: &FcmConfig) -> Result<Self, ConfigError> {
        let json = match (&config.service_account_file, &config.service_account_json) {
            (Some(path), None) => {
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    provider: PROVIDER,
                    path: path.clone(),
                    source,
                })?
            }
            (None, Some(json)) => json.expose().to_owned(),
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "set one of service_account_file and service_account_json, not both",
                ))
            }
            (None, None) => {
                return Err(invalid("set service_account_file or service_account_json"))
            }
        };
        let account: ServiceAccount =
            serde_json::from_str(&json).map_err(ConfigError::ServiceAccount)?;
        if let Some(kind) = account.kind.as_deref() {
            if kind != "service_account" {
                return Err(invalid(format!(
                    "the key's type is \"{kind}\", not \"service_account\""
                )));
            }
        }
        let der = jwt::pem_block(&account.private_key, "PRIVATE KEY").map_err(|what| {
            ConfigError::Key {
                provider: PROVIDER,
                what,
                source: None,
            }
        })?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|e| ConfigError::Key {
            provider: PROVIDER,
            what: "not a PKCS#8 RSA private key".into(),
            source: Some(Box::new(e)),
        })?;
        if account.client_email.is_empty() {
            return Err(invalid("the key has no client_email"));
        }

        let project = config
            .project_id
            .clone()
            .or(account.project_id)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| invalid("no project_id: set it, or use a key that names it"))?;
        if !project
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            return Err(invalid(
                "project_id has characters a project id cannot have",
            ));
        }
        let token_url = config
            .token_url
            .clone()
            .or(account.token_uri)
            .unwrap_or_else(|| GOOGLE_TOKEN_URL.to_owned());
        check_url(PROVIDER, "token_url", &token_url)?;
        check_url(PROVIDER, "send_base_url", &config.send_base_url)?;
        let send_url = format!(
            "{}/v1/projects/{project}/messages:send",
            config.send_base_url.trim_end_matches('/')
        );

        Ok(Self {
            http: http::client(PROVIDER, Duration::from_millis(config.timeout_ms), false)?,
            key,
            key_id: account.private_key_id,
            client_email: account.client_email,
            token_url,
            send_url,
            message: message_fields(config),
            token: Mutex::default(),
        })
    }

    /// The signed assertion exchanged for an access token.
    fn assertion(&self) -> Result<String, PushError> {
        let iat = jwt::now_unix();
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.key_id {
            header["kid"] = json!(kid);
        }
        let claims = json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_url,
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME_SECS,
        });
        let input = jwt::signing_input(&header, &claims).map_err(|e| credentials(Box::new(e)))?;
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .map_err(|e| credentials(Box::new(e)))?;
        Ok(jwt::compact(&input, &sig))
    }

    /// The cached access token, or a new one. Concurrent callers wait for one refresh, and
    /// share its failure.
    async fn access_token(&self) -> Result<String, PushError> {
        let arrived = Instant::now();
        let mut cache = self.token.lock().await;
        if let Some(token) = &cache.token {
            if Instant::now() < token.refresh_at {
                return Ok(token.value.clone());
            }
        }
        if let Some((failed_at, error)) = &cache.failure {
            if *failed_at >= arrived {
                return Err(error.without_source());
            }
        }
        match self.fetch_token().await {
            Ok(token) => {
                let value = token.value.clone();
                *cache = TokenCache {
                    token: Some(token),
                    failure: None,
                };
                Ok(value)
            }
            Err(error) => {
                cache.failure = Some((Instant::now(), error.without_source()));
                Err(error)
            }
        }
    }

    /// Forgets `used` if it is still the cached token (a concurrent send may have replaced it).
    async fn forget_token(&self, used: &str) {
        let mut cache = self.token.lock().await;
        if cache.token.as_ref().is_some_and(|t| t.value == used) {
            cache.token = None;
        }
    }

    async fn fetch_token(&self) -> Result<AccessToken, PushError> {
        let assertion = self.assertion()?;
        let started = Instant::now();
        let answer = http::exchange(
            PROVIDER,
            self.http
                .post(&self.token_url)
                .form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)]),
        )
        .await?;
        if !answer.status.is_success() {
            return Err(token_error(&answer));
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            access_token: String,
            expires_in: u64,
            #[serde(default)]
            token_type: Option<String>,
        }
        let response: TokenResponse =
            serde_json::from_slice(&answer.body).map_err(|e| PushError::Failed {
                provider: PROVIDER,
                kind: Permanent::Protocol,
                status: Some(answer.status.as_u16()),
                detail: "the token response has no access_token and expires_in".into(),
                source: Some(Box::new(e)),
            })?;
        if response
            .token_type
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
            || response.access_token.is_empty()
        {
            return Err(PushError::Failed {
                provider: PROVIDER,
                kind: Permanent::Protocol,
                status: Some(answer.status.as_u16()),
                detail: "the token response is not a bearer token".into(),
                source: None,
            });
        }
        let life = Duration::from_secs(response.expires_in);
        tracing::debug!(
            push.provider = PROVIDER,
            push.expires_in = response.expires_in,
            "FCM access token obtained"
        );
        Ok(AccessToken {
            value: response.access_token,
            // A token that lives less than the margin is used for this send and not kept.
            refresh_at: started + life.saturating_sub(TOKEN_REFRESH_MARGIN),
        })
    }

    async fn post(&self, token: &str, body: &Value) -> Result<Sent, PushError> {
        let answer = http::exchange(
            PROVIDER,
            self.http.post(&self.send_url).bearer_auth(token).json(body),
        )
        .await?;
        Ok(classify(&answer))
    }
}

fn credentials(source: crate::BoxError) -> PushError {
    PushError::Failed {
        provider: PROVIDER,
        kind: Permanent::Credentials,
        status: None,
        detail: "cannot sign the access token assertion".into(),
        source: Some(source),
    }
}

/// The message's fields other than `token`: fixed at construction, no content, no identifiers.
fn message_fields(config: &FcmConfig) -> Map<String, Value> {
    let mut android = Map::new();
    android.insert("priority".into(), json!("high"));
    if let Some(ttl) = config.ttl_secs {
        android.insert("ttl".into(), json!(format!("{ttl}s")));
    }
    let mut message = Map::new();
    match config.message {
        FcmMessageKind::Data => {
            message.insert("data".into(), json!({ "event": DATA_EVENT }));
            // iOS apps registered through Firebase get a background push; without it a data
            // message never wakes them.
            message.insert(
                "apns".into(),
                json!({
                    "headers": {"apns-push-type": "background", "apns-priority": "5"},
                    "payload": {"aps": {"content-available": 1}},
                }),
            );
        }
        FcmMessageKind::Notification => {
            message.insert(
                "notification".into(),
                json!({ "title": config.title, "body": config.body }),
            );
        }
    }
    message.insert("android".into(), Value::Object(android));
    message
}

#[async_trait]
impl PushSender for FcmSender {
    async fn send(&self, device: &Device, _notice: &Notice) -> Result<(), PushError> {
        let mut message = self.message.clone();
        message.insert("token".into(), json!(device.token));
        let body = json!({ "message": message });

        let token = self.access_token().await?;
        match self.post(&token, &body).await? {
            Sent::Done(result) => result,
            Sent::StaleToken(_) => {
                // The token was revoked or expired early: one more try with a new one.
                self.forget_token(&token).await;
                let token = self.access_token().await?;
                match self.post(&token, &body).await? {
                    Sent::Done(result) => result,
                    Sent::StaleToken(error) => Err(error),
                }
            }
        }
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }
}

/// FCM's answer to a send.
enum Sent {
    Done(Result<(), PushError>),
    /// 401: the access token is no good; a new one may be.
    StaleToken(PushError),
}

/// The error part of an FCM (Google API) error body.
#[derive(Deserialize, Default)]
struct GoogleError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Value>,
}

impl GoogleError {
    fn parse(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Body {
            error: GoogleError,
        }
        serde_json::from_slice::<Body>(body)
            .map(|b| b.error)
            .unwrap_or_default()
    }

    /// The FcmError detail's `errorCode`.
    fn fcm_code(&self) -> Option<&str> {
        self.details
            .iter()
            .find_map(|d| d.get("errorCode").and_then(Value::as_str))
    }

    /// True when a `BadRequest` violation names the token, or the message says the
    /// registration token is invalid (FCM's words: "The registration token is not a valid FCM
    /// registration token").
    fn about_the_token(&self) -> bool {
        let field_is_token = self
            .details
            .iter()
            .filter_map(|d| d.get("fieldViolations").and_then(Value::as_array))
            .flatten()
            .any(|v| v.get("field").and_then(Value::as_str) == Some("message.token"));
        field_is_token
            || self
                .message
                .to_ascii_lowercase()
                .contains("registration token")
    }

    fn detail(&self) -> String {
        let code = self.fcm_code().unwrap_or(&self.status);
        match (code.is_empty(), self.message.is_empty()) {
            (false, false) => format!("{code}: {}", self.message),
            (false, true) => code.to_owned(),
            (true, _) => self.message.clone(),
        }
    }
}

fn classify(answer: &Answer) -> Sent {
    if answer.status.is_success() {
        return Sent::Done(Ok(()));
    }
    let error = GoogleError::parse(&answer.body);
    let code = error.fcm_code().unwrap_or(&error.status);
    let gone = code == "UNREGISTERED" || (code == "INVALID_ARGUMENT" && error.about_the_token());
    if gone {
        return Sent::Done(Err(PushError::TokenGone {
            provider: PROVIDER,
            detail: http::truncate(error.detail()),
        }));
    }
    let failure = http::status_error(PROVIDER, answer.status, &answer.headers, error.detail());
    // 401 is our access token; THIRD_PARTY_AUTH_ERROR (also 401) is the APNs credential in the
    // Firebase project, which a new access token does not fix.
    if answer.status == reqwest::StatusCode::UNAUTHORIZED && code != "THIRD_PARTY_AUTH_ERROR" {
        Sent::StaleToken(failure)
    } else {
        Sent::Done(Err(failure))
    }
}

/// A refused token exchange: 4xx (other than 408/429) is our credentials (`invalid_grant`,
/// `invalid_client`), the rest is the generic reading.
fn token_error(answer: &Answer) -> PushError {
    #[derive(Deserialize, Default)]
    struct OAuthError {
        #[serde(default)]
        error: String,
        #[serde(default)]
        error_description: String,
    }
    let e: OAuthError = serde_json::from_slice(&answer.body).unwrap_or_default();
    let detail = format!("token exchange: {} {}", e.error, e.error_description)
        .trim_end()
        .to_owned();
    let status = answer.status;
    if status.is_client_error()
        && status != reqwest::StatusCode::TOO_MANY_REQUESTS
        && status != reqwest::StatusCode::REQUEST_TIMEOUT
    {
        PushError::Failed {
            provider: PROVIDER,
            kind: Permanent::Auth,
            status: Some(status.as_u16()),
            detail: http::truncate(detail),
            source: None,
        }
    } else {
        http::status_error(PROVIDER, status, &answer.headers, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::{header::HeaderMap, StatusCode};

    fn answer(status: u16, body: Value) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).expect("status"),
            headers: HeaderMap::new(),
            body: serde_json::to_vec(&body).expect("json"),
        }
    }

    fn google(code: u16, status: &str, message: &str, details: Value) -> Answer {
        answer(
            code,
            json!({"error": {"code": code, "status": status, "message": message, "details": details}}),
        )
    }

    fn fcm_error(code: &str) -> Value {
        json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}])
    }

    fn reason(sent: Sent) -> &'static str {
        match sent {
            Sent::Done(Ok(())) => "sent",
            Sent::Done(Err(e)) => e.reason(),
            Sent::StaleToken(_) => "stale_token",
        }
    }

    #[test]
    fn token_verdicts() {
        let unregistered = google(
            404,
            "NOT_FOUND",
            "Requested entity was not found.",
            fcm_error("UNREGISTERED"),
        );
        assert_eq!(reason(classify(&unregistered)), "token_gone");
        let bad_token = google(
            400,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            fcm_error("INVALID_ARGUMENT"),
        );
        assert_eq!(reason(classify(&bad_token)), "token_gone");
        let violation = google(
            400,
            "INVALID_ARGUMENT",
            "Request contains an invalid argument.",
            json!([{"@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}]}]),
        );
        assert_eq!(reason(classify(&violation)), "token_gone");
    }

    #[test]
    fn misconfiguration_is_not_a_token_verdict() {
        // A wrong project id: 404 without UNREGISTERED.
        let no_project = google(
            404,
            "NOT_FOUND",
            "Requested entity was not found.",
            json!([]),
        );
        assert_eq!(reason(classify(&no_project)), "rejected");
        let bad_ttl = google(
            400,
            "INVALID_ARGUMENT",
            "Invalid value at 'message.android.ttl'",
            json!([{"@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "message.android.ttl"}]}]),
        );
        assert_eq!(reason(classify(&bad_ttl)), "rejected");
        let mismatch = google(
            403,
            "PERMISSION_DENIED",
            "SenderId mismatch",
            fcm_error("SENDER_ID_MISMATCH"),
        );
        assert_eq!(reason(classify(&mismatch)), "auth");
    }

    #[test]
    fn transient_and_auth_answers() {
        assert_eq!(
            reason(classify(&google(
                503,
                "UNAVAILABLE",
                "",
                fcm_error("UNAVAILABLE")
            ))),
            "server_error"
        );
        assert_eq!(
            reason(classify(&google(
                429,
                "RESOURCE_EXHAUSTED",
                "",
                fcm_error("QUOTA_EXCEEDED")
            ))),
            "rate_limited"
        );
        assert_eq!(
            reason(classify(&google(401, "UNAUTHENTICATED", "", json!([])))),
            "stale_token"
        );
        assert_eq!(
            reason(classify(&google(
                401,
                "UNAUTHENTICATED",
                "",
                fcm_error("THIRD_PARTY_AUTH_ERROR")
            ))),
            "auth"
        );
        assert_eq!(reason(classify(&answer(200, json!({"name": "x"})))), "sent");
        // Not JSON at all (a proxy's page): the status decides.
        let html = Answer {
            status: StatusCode::BAD_GATEWAY,
            headers: HeaderMap::new(),
            body: b"<html>".to_vec(),
        };
        assert_eq!(reason(classify(&html)), "server_error");
    }

    #[test]
    fn token_exchange_refusals() {
        let refused = answer(
            400,
            json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
        );
        let e = token_error(&refused);
        assert_eq!(e.reason(), "auth");
        assert!(e.to_string().contains("invalid_grant"), "{e}");
        assert_eq!(
            token_error(&answer(503, json!({}))).reason(),
            "server_error"
        );
        assert_eq!(
            token_error(&answer(429, json!({}))).reason(),
            "rate_limited"
        );
    }

    #[test]
    fn messages_carry_no_content() {
        let data = message_fields(&FcmConfig::default());
        assert_eq!(data["data"], json!({"event": "messages_waiting"}));
        assert!(data.get("notification").is_none());
        let shown = message_fields(&FcmConfig {
            message: FcmMessageKind::Notification,
            ttl_secs: Some(600),
            ..FcmConfig::default()
        });
        assert_eq!(
            shown["notification"],
            json!({"title": "New messages", "body": "You have new messages."})
        );
        assert_eq!(shown["android"], json!({"priority": "high", "ttl": "600s"}));
        assert!(shown.get("data").is_none());
    }
}
