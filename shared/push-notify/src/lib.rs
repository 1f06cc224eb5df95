//! Push notifications that tell a wallet "messages are waiting for you": the sending half of
//! Aries push notifications.
//!
//! A notification is only a wake-up call. It carries no message content and no connection
//! identifier beyond the device token the provider needs; the wallet connects and picks its
//! messages up itself. Three senders implement one trait, [`PushSender`]:
//!
//! - [`FcmSender`]: Firebase Cloud Messaging HTTP v1. A service-account key signs an RS256
//!   assertion that is exchanged for an OAuth 2.0 access token (JWT bearer grant, RFC 7523). The
//!   token is cached until shortly before it expires, and concurrent sends share one refresh.
//! - [`ApnsSender`]: Apple Push Notification service over HTTP/2 with token-based authentication:
//!   an ES256 provider token signed with the team's `.p8` key, cached for 50 minutes (Apple
//!   refuses tokens older than an hour and refreshes more often than every 20 minutes).
//! - [`WebhookSender`]: a JSON POST (`platform`, `token`, `message_count`) signed with
//!   HMAC-SHA256, for operators who run their own push service.
//!
//! [`Router`] holds the configured senders and picks one by [`Platform`]; a webhook, when
//! configured, receives every device's notice either instead of the providers or as well
//! ([`WebhookMode`]). [`send_with_retry`] retries what is [`PushError::Retryable`] with capped
//! exponential backoff, honouring `Retry-After`.
//!
//! Every send ends in a typed result: `Ok(())`, or a [`PushError`] whose
//! [`reason`](PushError::reason) is a short static string fit for a metric label. A device token
//! the provider reports as gone is [`PushError::TokenGone`]: the caller removes it. The crate
//! keeps no metrics and no device registry of its own: both are the caller's business.
//!
//! What it must not do: log or show a secret or a full device token. Every `Debug` of a config
//! or sender redacts keys and secrets, [`Device`]'s `Debug` shows a token's first characters
//! only, and transport errors are stripped of their URL (an APNs URL holds the device token).
//! Every request has a timeout ([`FcmConfig::timeout_ms`] and its siblings), so a provider that
//! hangs never holds a caller for longer than that.
//!
//! Endpoints are configurable (`send_base_url`, `token_url`, `base_url`, `url`) so that tests
//! point the senders at local stand-in servers; an `http://` APNs base URL is spoken as HTTP/2
//! with prior knowledge (h2c).
//!
//! # Testing
//!
//! Feature `test-support` adds `testing`: `testing::Providers`, stand-ins for FCM, APNs and a
//! webhook receiver that verify what they receive (signatures, claims, headers), record it, and
//! answer as a test scripts per device token, with the key files and environment variables a
//! mediator needs to reach them; and the plain servers, keys and JWS verification under them
//! (this crate's own tests enable it, so `cargo test --workspace` runs them).

mod apns;
mod error;
mod fcm;
mod http;
mod jwt;
mod retry;
mod router;
mod secret;
#[cfg(feature = "test-support")]
pub mod testing;
mod webhook;

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use apns::{ApnsConfig, ApnsPushType, ApnsSender, APNS_PRODUCTION_URL, APNS_SANDBOX_URL};
pub use error::{BoxError, ConfigError, Permanent, PushError, Transient};
pub use fcm::{FcmConfig, FcmMessageKind, FcmSender, FCM_SEND_URL, GOOGLE_TOKEN_URL};
pub use retry::{send_with_retry, Outcome, RetryPolicy};
pub use router::{PushConfig, Router};
pub use secret::Secret;
pub use webhook::{WebhookConfig, WebhookMode, WebhookSender, DEFAULT_SIGNATURE_HEADER};

/// The default timeout of one request (connect, send, response body), in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// The push service a device token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    /// Firebase Cloud Messaging (Android, and iOS apps that register through Firebase).
    Fcm,
    /// Apple Push Notification service.
    Apns,
}

impl Platform {
    /// `"fcm"` or `"apns"`, as in configuration and in the webhook body.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Fcm => "fcm",
            Platform::Apns => "apns",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A device to wake: the token its app registered with the mediator.
///
/// `Debug` shows the token's first characters and its length, never the whole token.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Device {
    /// Which push service issued the token.
    pub platform: Platform,
    /// The provider's device token (FCM registration token, APNs hex device token).
    pub token: String,
}

impl Device {
    /// A device of `platform` with `token`.
    pub fn new(platform: Platform, token: impl Into<String>) -> Self {
        Self {
            platform,
            token: token.into(),
        }
    }

    /// The token's first characters and its length, for logs: `"d1e2f3…(64)"`.
    pub fn token_hint(&self) -> String {
        token_hint(&self.token)
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("platform", &self.platform)
            .field("token", &self.token_hint())
            .finish()
    }
}

/// Enough of a token to tell tokens apart in a log, too little to use it.
pub(crate) fn token_hint(token: &str) -> String {
    let prefix: String = token.chars().take(6).collect();
    format!("{prefix}…({})", token.len())
}

/// What the mediator knows when it wakes a device. Only the webhook carries it on (the FCM and
/// APNs payloads are fixed and generic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notice {
    /// How many messages wait in the connection's queue.
    pub message_count: u64,
}

/// One way of sending a push notification.
///
/// Implementations classify every failure ([`PushError`]); they do not retry on their own,
/// except to replace credentials the provider has just reported as expired (once).
#[async_trait]
pub trait PushSender: Send + Sync + fmt::Debug {
    /// Sends one notification to `device`. The device's platform is the [`Router`]'s business: a
    /// sender sends to whatever token it is given.
    async fn send(&self, device: &Device, notice: &Notice) -> Result<(), PushError>;

    /// A short static name for metrics and logs: `"fcm"`, `"apns"`, `"webhook"`.
    fn provider(&self) -> &'static str;
}
