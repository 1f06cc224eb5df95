//! A signed webhook for operators who run their own push service.
//!
//! Each notice is a POST of `{"platform": "fcm"|"apns", "token": "<device token>",
//! "message_count": <n>}` (`application/json`) and nothing else: no connection id, no message.
//! The header `X-Mediator-Signature` (configurable) is `sha256=<hex>`, the HMAC-SHA256 of the exact
//! body bytes under the shared secret; the receiver recomputes it and compares in constant time.
//!
//! The receiver answers 2xx when it took the notice; 410 when the device token is gone (the
//! mediator forgets it); 429 or 5xx (with `Retry-After` if it likes) to be asked again later;
//! 401/403 when the signature is wrong. Any other status is a refusal.

use std::{fmt, time::Duration};

use async_trait::async_trait;
use aws_lc_rs::hmac;
use reqwest::{header::HeaderName, StatusCode};
use serde::{Deserialize, Serialize};

use crate::{
    fcm::{check_url, default_timeout_ms},
    http, ConfigError, Device, Notice, Platform, PushError, PushSender, Secret,
};

const PROVIDER: &str = "webhook";

/// The signature header's default name.
pub const DEFAULT_SIGNATURE_HEADER: &str = "X-Mediator-Signature";

/// Whether the webhook replaces FCM and APNs or is told as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookMode {
    /// Every device's notice goes to the webhook only; FCM and APNs, even if configured, are not
    /// used.
    Instead,
    /// Every device's notice goes to the webhook and to the device's provider (if configured).
    Also,
}

/// Configuration of the webhook sender.
#[derive(Clone, Deserialize)]
pub struct WebhookConfig {
    /// Where notices are POSTed (http or https).
    pub url: String,
    /// The HMAC-SHA256 key shared with the receiver.
    pub secret: Secret,
    /// The signature header's name.
    #[serde(default = "default_header")]
    pub signature_header: String,
    /// Instead of FCM and APNs, or as well: no default, the operator says which.
    pub mode: WebhookMode,
    /// The timeout of each request, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl WebhookConfig {
    /// A configuration with the default header and timeout.
    pub fn new(url: impl Into<String>, secret: impl Into<Secret>, mode: WebhookMode) -> Self {
        Self {
            url: url.into(),
            secret: secret.into(),
            signature_header: default_header(),
            mode,
            timeout_ms: default_timeout_ms(),
        }
    }
}

fn default_header() -> String {
    DEFAULT_SIGNATURE_HEADER.to_owned()
}

/// A URL for logs: no user info, no query (either may hold a credential).
fn redacted_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let had_query = u.query().is_some();
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            let mut s = u.to_string();
            if had_query {
                s.push_str("?<redacted>");
            }
            s
        }
        Err(_) => "<not a URL>".to_owned(),
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &redacted_url(&self.url))
            .field("secret", &self.secret)
            .field("signature_header", &self.signature_header)
            .field("mode", &self.mode)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// POSTs signed notices to the operator's push service.
pub struct WebhookSender {
    http: reqwest::Client,
    url: String,
    key: hmac::Key,
    header: HeaderName,
}

impl fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSender")
            .field("url", &redacted_url(&self.url))
            .field("key", &"<redacted>")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// The body: exactly these fields.
#[derive(Serialize)]
struct Body<'a> {
    platform: Platform,
    token: &'a str,
    message_count: u64,
}

impl WebhookSender {
    /// Builds the sender.
    pub fn new(config: &WebhookConfig) -> Result<Self, ConfigError> {
        let invalid = |what: &str| ConfigError::Invalid {
            provider: PROVIDER,
            what: what.to_owned(),
        };
        check_url(PROVIDER, "url", &config.url)?;
        if config.secret.is_empty() {
            return Err(invalid("secret is empty"));
        }
        let header = HeaderName::from_bytes(config.signature_header.as_bytes())
            .map_err(|_| invalid("signature_header is not a header name"))?;
        Ok(Self {
            http: http::client(PROVIDER, Duration::from_millis(config.timeout_ms), false)?,
            url: config.url.clone(),
            key: hmac::Key::new(hmac::HMAC_SHA256, config.secret.expose().as_bytes()),
            header,
        })
    }

    /// `sha256=<lowercase hex of HMAC-SHA256(secret, body)>`.
    fn signature(&self, body: &[u8]) -> String {
        let tag = hmac::sign(&self.key, body);
        let mut out = String::with_capacity(7 + 64);
        out.push_str("sha256=");
        for b in tag.as_ref() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

#[async_trait]
impl PushSender for WebhookSender {
    async fn send(&self, device: &Device, notice: &Notice) -> Result<(), PushError> {
        let body = serde_json::to_vec(&Body {
            platform: device.platform,
            token: &device.token,
            message_count: notice.message_count,
        })
        .map_err(|e| PushError::Failed {
            provider: PROVIDER,
            kind: crate::Permanent::Protocol,
            status: None,
            detail: "cannot encode the body".into(),
            source: Some(Box::new(e)),
        })?;
        let signature = self.signature(&body);
        let answer = http::exchange(
            PROVIDER,
            self.http
                .post(&self.url)
                .header(self.header.clone(), signature)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body),
        )
        .await?;
        match answer.status {
            s if s.is_success() => Ok(()),
            StatusCode::GONE => Err(PushError::TokenGone {
                provider: PROVIDER,
                detail: "HTTP 410 from the push service".into(),
            }),
            // The operator's service's body is not ours to log.
            s => Err(http::status_error(
                PROVIDER,
                s,
                &answer.headers,
                String::new(),
            )),
        }
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // The widely published HMAC-SHA256 example.
        let sender = WebhookSender::new(&WebhookConfig::new(
            "http://127.0.0.1:1/",
            "key",
            WebhookMode::Instead,
        ))
        .expect("sender");
        assert_eq!(
            sender.signature(b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn urls_are_redacted_for_logs() {
        assert_eq!(
            redacted_url("https://user:pw@push.example.com/hook?token=abc"),
            "https://push.example.com/hook?<redacted>"
        );
        assert_eq!(redacted_url("nonsense"), "<not a URL>");
    }

    #[test]
    fn bad_configs_are_refused() {
        let ok = WebhookConfig::new("https://push.example.com/", "s", WebhookMode::Also);
        assert!(WebhookSender::new(&ok).is_ok());
        let no_secret = WebhookConfig::new("https://push.example.com/", "", WebhookMode::Also);
        assert!(WebhookSender::new(&no_secret).is_err());
        let ftp = WebhookConfig::new("ftp://push.example.com/", "s", WebhookMode::Also);
        assert!(WebhookSender::new(&ftp).is_err());
        let header = WebhookConfig {
            signature_header: "Bad Header".into(),
            ..ok
        };
        assert!(WebhookSender::new(&header).is_err());
    }
}
