//! Push-notification registrations (Aries RFC 0734 `push-notifications-fcm/1.0`, RFC 0699
//! `push-notifications-apns/1.0`): the device token each connection's wallet gave its mediator,
//! and the cluster-wide claim that lets exactly one instance notify a connection per interval.
//!
//! One device per connection: a newer registration, of either platform, replaces the older. The
//! store keeps what the client sent and decides nothing about it: which messages wake a device,
//! how long a token may be, what the provider said about it, is the callers' business. This
//! module must not send anything to a push provider.

use std::{fmt, str::FromStr};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{error::Result, ids::ConnectionId};

/// The longest claim interval a backend honours, ms (one year): a longer one counts as this, so
/// that expiry times stay far from any overflow.
pub const MAX_CLAIM_INTERVAL_MS: u64 = 365 * 24 * 60 * 60 * 1000;

/// Which push service issued a device token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PushPlatform {
    /// Firebase Cloud Messaging (RFC 0734).
    Fcm,
    /// Apple Push Notification service (RFC 0699).
    Apns,
}

impl PushPlatform {
    /// The platform's name as it is stored and serialised: `fcm` or `apns`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fcm => "fcm",
            Self::Apns => "apns",
        }
    }
}

impl fmt::Display for PushPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`PushPlatform`]'s (a stored value a backend cannot read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown push platform {0:?}")]
pub struct UnknownPlatform(pub String);

impl FromStr for PushPlatform {
    type Err = UnknownPlatform;

    /// The inverse of [`PushPlatform::as_str`] (exact, lower case).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "fcm" => Ok(Self::Fcm),
            "apns" => Ok(Self::Apns),
            other => Err(UnknownPlatform(other.to_owned())),
        }
    }
}

/// A connection's push-notification registration.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Which service issued the token.
    pub platform: PushPlatform,
    /// The provider's device token, as the client sent it (non-empty; the caller bounds its
    /// length).
    pub token: String,
    /// FCM's `device_platform` (e.g. "android"), as the client sent it; None for APNs.
    #[serde(default)]
    pub device_platform: Option<String>,
    /// When it was set (unix ms).
    pub updated_at_ms: u64,
}

/// How many characters of a token `Debug` shows.
const TOKEN_SHOWN_CHARS: usize = 6;

/// A device token is a credential to wake the device: logs get its first characters and length.
impl fmt::Debug for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceInfo")
            .field("platform", &self.platform)
            .field("token", &TokenPreview(&self.token))
            .field("device_platform", &self.device_platform)
            .field("updated_at_ms", &self.updated_at_ms)
            .finish()
    }
}

/// `"abcdef"… (152 chars)`: the first [`TOKEN_SHOWN_CHARS`] characters and the length.
struct TokenPreview<'a>(&'a str);

impl fmt::Debug for TokenPreview<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.0.chars().take(TOKEN_SHOWN_CHARS).collect();
        write!(f, "{shown:?}… ({} chars)", self.0.chars().count())
    }
}

/// Each connection's push registration, and the claims that pace notifications. Used as
/// `Arc<dyn DeviceStore>`.
///
/// Every instance of a cluster shares one store, so [`DeviceStore::claim_notification`] decides
/// across all of them. Connections never see each other's registrations or claims.
#[async_trait]
pub trait DeviceStore: Send + Sync + fmt::Debug {
    /// Sets the connection's device info, replacing any (one device per connection: a newer
    /// registration, of either platform, replaces the older).
    async fn set(&self, connection_id: &ConnectionId, info: &DeviceInfo) -> Result<()>;

    /// The connection's device info.
    async fn get(&self, connection_id: &ConnectionId) -> Result<Option<DeviceInfo>>;

    /// Clears it (the client sent an empty/null token); returns whether there was one.
    async fn clear(&self, connection_id: &ConnectionId) -> Result<bool>;

    /// Clears it only if its token is still `token` (the provider reported that token gone; a
    /// registration made since stays). Returns whether it cleared. One atomic step.
    async fn clear_if_token(&self, connection_id: &ConnectionId, token: &str) -> Result<bool>;

    /// Claims the right to notify `connection_id` now: true for exactly one caller among all
    /// that share the store (every instance of a cluster), then false for everyone until
    /// `interval_ms` has passed since that successful claim. Atomic.
    ///
    /// The interval is timed by the store's clock (the process's for the memory backend, the
    /// Redis server's for Redis, the wall clock for the embedded one). An `interval_ms` of 0
    /// claims nothing: every call is true. One longer than [`MAX_CLAIM_INTERVAL_MS`] counts as
    /// that. A claim does not depend on a registration: clearing or replacing the device info
    /// leaves the connection's claim in force.
    async fn claim_notification(
        &self,
        connection_id: &ConnectionId,
        interval_ms: u64,
    ) -> Result<bool>;

    /// Up to `limit` (connection, device info) in ascending order of the connection id's text
    /// (byte order), after `after` (None: from the first); a page shorter than `limit` is the
    /// last. For offline use (`mediator copy`), never a request path. Registrations set or
    /// cleared while the pages are read may or may not be listed.
    async fn list(
        &self,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<Vec<(ConnectionId, DeviceInfo)>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(token: &str) -> DeviceInfo {
        DeviceInfo {
            platform: PushPlatform::Fcm,
            token: token.to_owned(),
            device_platform: Some("android".to_owned()),
            updated_at_ms: 7,
        }
    }

    #[test]
    fn debug_shows_six_chars_of_the_token_and_its_length() {
        let token = "abcdefSECRET-REST-OF-THE-TOKEN";
        let shown = format!("{:?}", info(token));
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("\"abcdef\"… (30 chars)"), "{shown}");
        assert!(
            shown.contains("android") && shown.contains("Fcm"),
            "{shown}"
        );
        // Characters, not bytes: a multi-byte token is never cut inside a character.
        let shown = format!("{:?}", info("ééééééééé"));
        assert!(shown.contains("\"éééééé\"… (9 chars)"), "{shown}");
        assert!(format!("{:?}", info("ab")).contains("\"ab\"… (2 chars)"));
    }

    #[test]
    fn platforms_serialise_in_kebab_case_and_parse_back() {
        for (platform, name) in [(PushPlatform::Fcm, "fcm"), (PushPlatform::Apns, "apns")] {
            assert_eq!(
                serde_json::to_string(&platform).expect("serialise"),
                format!("\"{name}\"")
            );
            assert_eq!(platform.as_str(), name);
            assert_eq!(name.parse::<PushPlatform>(), Ok(platform));
        }
        assert_eq!(
            "FCM".parse::<PushPlatform>(),
            Err(UnknownPlatform("FCM".to_owned()))
        );
    }

    #[test]
    fn device_info_round_trips_through_json() {
        let apns = DeviceInfo {
            platform: PushPlatform::Apns,
            device_platform: None,
            ..info("tok\"en\\ü")
        };
        for value in [info("t"), apns] {
            let json = serde_json::to_string(&value).expect("serialise");
            let back: DeviceInfo = serde_json::from_str(&json).expect("deserialise");
            assert_eq!(back, value);
        }
    }
}
