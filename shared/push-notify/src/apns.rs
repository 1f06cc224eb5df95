//! Apple Push Notification service: the HTTP/2 provider API with token-based authentication.
//!
//! Each request carries `authorization: bearer <provider token>`, an ES256 JWT (`kid` = the
//! key's id, `iss` = the team id, `iat` = when it was made) signed with the team's `.p8` key.
//! Apple rejects a token older than an hour and refuses new tokens more often than every 20
//! minutes, so one token is made and reused for [`PROVIDER_TOKEN_LIFETIME`]; when Apple still
//! calls it expired, it is replaced (and the send tried once more) only if it is at least 20
//! minutes old.
//!
//! The payload is fixed: a background push (`{"aps":{"content-available":1}}`, push type
//! `background`, priority 5) or a visible alert with a generic title and body (push type `alert`,
//! priority 10). A 410, or a 400 `BadDeviceToken`, is [`PushError::TokenGone`]. Note that Apple
//! also answers `BadDeviceToken` for a token of the other environment (a development build's token
//! sent to production): point `base_url` at the environment the app's builds use.

use std::{
    fmt,
    path::PathBuf,
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use aws_lc_rs::{
    rand::SystemRandom,
    signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING},
};
use reqwest::{header::HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    fcm::{check_url, default_body, default_timeout_ms, default_title},
    http::{self, Answer},
    jwt, ConfigError, Device, Notice, Permanent, PushError, PushSender, Secret,
};

const PROVIDER: &str = "apns";

/// APNs production.
pub const APNS_PRODUCTION_URL: &str = "https://api.push.apple.com";
/// APNs development (sandbox): the tokens of development builds.
pub const APNS_SANDBOX_URL: &str = "https://api.sandbox.push.apple.com";

/// How long one provider token is used (Apple: at most 60 minutes, new ones at most every 20).
pub(crate) const PROVIDER_TOKEN_LIFETIME: Duration = Duration::from_secs(50 * 60);
/// Apple's minimum interval between new provider tokens (`TooManyProviderTokenUpdates`).
const MIN_TOKEN_INTERVAL: Duration = Duration::from_secs(20 * 60);
/// The longest device token accepted (Apple's are 32 bytes, 64 hex digits, today).
const MAX_TOKEN_LEN: usize = 200;

/// What kind of push APNs sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApnsPushType {
    /// A silent push that wakes the app (`content-available`, priority 5). iOS may delay or
    /// drop background pushes (low power, app force-quit).
    #[default]
    Background,
    /// A visible alert with the configured generic title and body (priority 10).
    Alert,
}

impl ApnsPushType {
    fn header(self) -> &'static str {
        match self {
            ApnsPushType::Background => "background",
            ApnsPushType::Alert => "alert",
        }
    }

    /// Apple requires priority 5 for background pushes; 10 delivers alerts at once.
    fn priority(self) -> &'static str {
        match self {
            ApnsPushType::Background => "5",
            ApnsPushType::Alert => "10",
        }
    }
}

/// Configuration of the APNs sender.
#[derive(Debug, Clone, Deserialize)]
pub struct ApnsConfig {
    /// The token-signing key file (`AuthKey_<key id>.p8`, PKCS#8 PEM). One of this and `key_pem`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The token-signing key itself (PKCS#8 PEM, from a secret store). One of this and
    /// `key_file`.
    #[serde(default)]
    pub key_pem: Option<Secret>,
    /// The key's id (10 characters, shown with the key in the developer account): the token's
    /// `kid`.
    pub key_id: String,
    /// The team id (10 characters): the token's `iss`.
    pub team_id: String,
    /// The app's bundle id: the `apns-topic` header.
    pub topic: String,
    /// The APNs base URL: [`APNS_PRODUCTION_URL`] (default) or [`APNS_SANDBOX_URL`].
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// A background push (default) or a visible alert.
    #[serde(default)]
    pub push_type: ApnsPushType,
    /// The alert's title (`push_type = "alert"` only): generic, no content.
    #[serde(default = "default_title")]
    pub alert_title: String,
    /// The alert's body (`push_type = "alert"` only): generic, no content.
    #[serde(default = "default_body")]
    pub alert_body: String,
    /// How long APNs keeps trying to deliver (the `apns-expiration` header is now + this);
    /// 0: deliver at once or never.
    #[serde(default = "default_expiration_secs")]
    pub expiration_secs: u64,
    /// The timeout of each request, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl ApnsConfig {
    /// A configuration with the defaults and no key (set `key_file` or `key_pem`).
    pub fn new(
        key_id: impl Into<String>,
        team_id: impl Into<String>,
        topic: impl Into<String>,
    ) -> Self {
        Self {
            key_file: None,
            key_pem: None,
            key_id: key_id.into(),
            team_id: team_id.into(),
            topic: topic.into(),
            base_url: default_base_url(),
            push_type: ApnsPushType::default(),
            alert_title: default_title(),
            alert_body: default_body(),
            expiration_secs: default_expiration_secs(),
            timeout_ms: default_timeout_ms(),
        }
    }
}

fn default_base_url() -> String {
    APNS_PRODUCTION_URL.to_owned()
}

fn default_expiration_secs() -> u64 {
    24 * 60 * 60
}

/// A provider token and when it was made.
struct ProviderToken {
    value: String,
    made: Instant,
}

/// Sends through APNs over HTTP/2. Cheap to share (`Arc`); the provider token is shared.
pub struct ApnsSender {
    http: reqwest::Client,
    key: EcdsaKeyPair,
    key_id: String,
    team_id: String,
    topic: HeaderValue,
    base_url: String,
    push_type: ApnsPushType,
    expiration_secs: u64,
    payload: Vec<u8>,
    /// Signing takes microseconds: a std mutex, never held across an await.
    token: Mutex<Option<ProviderToken>>,
}

impl fmt::Debug for ApnsSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApnsSender")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .field("key", &"<redacted>")
            .field("topic", &self.topic)
            .field("base_url", &self.base_url)
            .field("push_type", &self.push_type)
            .finish_non_exhaustive()
    }
}

fn invalid(what: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        provider: PROVIDER,
        what: what.into(),
    }
}

impl ApnsSender {
    /// Reads the key and builds the sender. No request is made until the first send.
    pub fn new(config: &ApnsConfig) -> Result<Self, ConfigError> {
        let pem = match (&config.key_file, &config.key_pem) {
            (Some(path), None) => {
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    provider: PROVIDER,
                    path: path.clone(),
                    source,
                })?
            }
            (None, Some(pem)) => pem.expose().to_owned(),
            (Some(_), Some(_)) => return Err(invalid("set one of key_file and key_pem, not both")),
            (None, None) => return Err(invalid("set key_file or key_pem")),
        };
        let der = jwt::pem_block(&pem, "PRIVATE KEY").map_err(|what| ConfigError::Key {
            provider: PROVIDER,
            what,
            source: None,
        })?;
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).map_err(|e| {
                ConfigError::Key {
                    provider: PROVIDER,
                    what: "not a PKCS#8 P-256 private key".into(),
                    source: Some(Box::new(e)),
                }
            })?;
        for (name, value) in [
            ("key_id", &config.key_id),
            ("team_id", &config.team_id),
            ("topic", &config.topic),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(format!("{name} is empty")));
            }
        }
        let topic = HeaderValue::from_str(&config.topic)
            .map_err(|_| invalid("topic is not a valid header value"))?;
        check_url(PROVIDER, "base_url", &config.base_url)?;

        let payload = match config.push_type {
            ApnsPushType::Background => json!({"aps": {"content-available": 1}}),
            ApnsPushType::Alert => json!({"aps": {
                "alert": {"title": config.alert_title, "body": config.alert_body},
                "sound": "default",
            }}),
        };
        Ok(Self {
            http: http::client(PROVIDER, Duration::from_millis(config.timeout_ms), true)?,
            key,
            key_id: config.key_id.clone(),
            team_id: config.team_id.clone(),
            topic,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            push_type: config.push_type,
            expiration_secs: config.expiration_secs,
            payload: payload.to_string().into_bytes(),
            token: Mutex::new(None),
        })
    }

    /// The cached provider token, or a new one once it is [`PROVIDER_TOKEN_LIFETIME`] old.
    fn provider_token(&self) -> Result<String, PushError> {
        let mut cached = self.token.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(token) = cached.as_ref() {
            if token.made.elapsed() < PROVIDER_TOKEN_LIFETIME {
                return Ok(token.value.clone());
            }
        }
        let value = self.sign_token()?;
        *cached = Some(ProviderToken {
            value: value.clone(),
            made: Instant::now(),
        });
        Ok(value)
    }

    /// Forgets `used` if it is still the cached token and old enough for Apple to accept a new
    /// one; true if it was forgotten.
    fn forget_token(&self, used: &str) -> bool {
        let mut cached = self.token.lock().unwrap_or_else(|p| p.into_inner());
        let replace = cached
            .as_ref()
            .is_some_and(|t| t.value == used && may_replace(t.made.elapsed()));
        if replace {
            *cached = None;
        }
        replace
    }

    fn sign_token(&self) -> Result<String, PushError> {
        let header = json!({"alg": "ES256", "kid": self.key_id});
        let claims = json!({"iss": self.team_id, "iat": jwt::now_unix()});
        let credentials = |source: crate::BoxError| PushError::Failed {
            provider: PROVIDER,
            kind: Permanent::Credentials,
            status: None,
            detail: "cannot sign the provider token".into(),
            source: Some(source),
        };
        let input = jwt::signing_input(&header, &claims).map_err(|e| credentials(Box::new(e)))?;
        let sig = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|e| credentials(Box::new(e)))?;
        Ok(jwt::compact(&input, sig.as_ref()))
    }

    async fn post(&self, device_token: &str, provider_token: &str) -> Result<Sent, PushError> {
        let expiration = match self.expiration_secs {
            0 => 0,
            secs => jwt::now_unix().saturating_add(secs),
        };
        let request = self
            .http
            .post(format!("{}/3/device/{device_token}", self.base_url))
            .header(
                reqwest::header::AUTHORIZATION,
                format!("bearer {provider_token}"),
            )
            .header("apns-topic", self.topic.clone())
            .header("apns-push-type", self.push_type.header())
            .header("apns-priority", self.push_type.priority())
            .header("apns-expiration", expiration.to_string())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(self.payload.clone());
        let answer = http::exchange(PROVIDER, request).await?;
        Ok(classify(&answer))
    }
}

/// Whether a provider token of this age may be replaced without tripping Apple's
/// `TooManyProviderTokenUpdates`.
fn may_replace(age: Duration) -> bool {
    age >= MIN_TOKEN_INTERVAL
}

/// APNs device tokens are hex; anything else cannot be one (and must not reach the URL path).
fn well_formed(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token.bytes().all(|b| b.is_ascii_hexdigit())
}

#[async_trait]
impl PushSender for ApnsSender {
    async fn send(&self, device: &Device, _notice: &Notice) -> Result<(), PushError> {
        if !well_formed(&device.token) {
            return Err(PushError::TokenGone {
                provider: PROVIDER,
                detail: "not a hex device token (checked before sending)".into(),
            });
        }
        let token = self.provider_token()?;
        match self.post(&device.token, &token).await? {
            Sent::Done(result) => result,
            Sent::ExpiredProviderToken(error) => {
                if !self.forget_token(&token) {
                    // Made less than 20 minutes ago: our clock, not the token's age, is wrong.
                    return Err(error);
                }
                let token = self.provider_token()?;
                match self.post(&device.token, &token).await? {
                    Sent::Done(result) => result,
                    Sent::ExpiredProviderToken(error) => Err(error),
                }
            }
        }
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }
}

/// APNs's answer to a send.
enum Sent {
    Done(Result<(), PushError>),
    /// 403 `ExpiredProviderToken`.
    ExpiredProviderToken(PushError),
}

fn classify(answer: &Answer) -> Sent {
    if answer.status.is_success() {
        return Sent::Done(Ok(()));
    }
    #[derive(Deserialize, Default)]
    struct ErrorBody {
        #[serde(default)]
        reason: String,
    }
    let reason = serde_json::from_slice::<ErrorBody>(&answer.body)
        .unwrap_or_default()
        .reason;
    let gone = answer.status == StatusCode::GONE
        || (answer.status == StatusCode::BAD_REQUEST && reason == "BadDeviceToken");
    if gone {
        let detail = if reason.is_empty() {
            "HTTP 410".to_owned()
        } else {
            http::truncate(reason)
        };
        return Sent::Done(Err(PushError::TokenGone {
            provider: PROVIDER,
            detail,
        }));
    }
    let expired = answer.status == StatusCode::FORBIDDEN && reason == "ExpiredProviderToken";
    let error = http::status_error(PROVIDER, answer.status, &answer.headers, reason);
    if expired {
        Sent::ExpiredProviderToken(error)
    } else {
        Sent::Done(Err(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn reason(status: u16, apns_reason: &str) -> &'static str {
        let answer = Answer {
            status: StatusCode::from_u16(status).expect("status"),
            headers: HeaderMap::new(),
            body: json!({"reason": apns_reason}).to_string().into_bytes(),
        };
        match classify(&answer) {
            Sent::Done(Ok(())) => "sent",
            Sent::Done(Err(e)) => e.reason(),
            Sent::ExpiredProviderToken(_) => "expired_provider_token",
        }
    }

    #[test]
    fn apple_reasons() {
        assert_eq!(reason(200, ""), "sent");
        assert_eq!(reason(410, "Unregistered"), "token_gone");
        assert_eq!(reason(410, "ExpiredToken"), "token_gone");
        assert_eq!(reason(400, "BadDeviceToken"), "token_gone");
        assert_eq!(reason(400, "DeviceTokenNotForTopic"), "rejected");
        assert_eq!(reason(400, "BadTopic"), "rejected");
        assert_eq!(reason(413, "PayloadTooLarge"), "rejected");
        assert_eq!(reason(403, "InvalidProviderToken"), "auth");
        assert_eq!(
            reason(403, "ExpiredProviderToken"),
            "expired_provider_token"
        );
        assert_eq!(reason(429, "TooManyRequests"), "rate_limited");
        assert_eq!(reason(500, "InternalServerError"), "server_error");
        assert_eq!(reason(503, "ServiceUnavailable"), "server_error");
    }

    #[test]
    fn provider_tokens_are_replaced_at_most_every_20_minutes() {
        assert!(!may_replace(Duration::from_secs(0)));
        assert!(!may_replace(Duration::from_secs(19 * 60)));
        assert!(may_replace(Duration::from_secs(20 * 60)));
        const { assert!(PROVIDER_TOKEN_LIFETIME.as_secs() >= 20 * 60) };
        const { assert!(PROVIDER_TOKEN_LIFETIME.as_secs() < 60 * 60) };
    }

    #[test]
    fn device_tokens_are_hex() {
        assert!(well_formed(&"ab01".repeat(16)));
        assert!(!well_formed(""));
        assert!(!well_formed("abc/../../x"));
        assert!(!well_formed("abc?x=1"));
        assert!(!well_formed(&"a".repeat(MAX_TOKEN_LEN + 1)));
    }
}
