//! Why a push was not sent ([`PushError`]) and why a sender could not be built ([`ConfigError`]).
//!
//! Neither error's text holds a secret or a full device token: provider details are the
//! provider's short reason (`"Unregistered"`, `"UNREGISTERED"`), cut to a few hundred characters,
//! and transport errors lose their URL before they are kept as a source.

use std::{fmt, path::PathBuf, time::Duration};

use thiserror::Error;

use crate::Platform;

/// Any error kept as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure worth trying again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transient {
    /// HTTP 429: too many requests (for the project, or for this device).
    RateLimited,
    /// HTTP 5xx: the provider failed or is unavailable.
    ServerError,
    /// No complete answer within the configured timeout (or HTTP 408).
    Timeout,
    /// The connection could not be made or broke.
    Connection,
}

impl Transient {
    /// The metric label: `"rate_limited"`, `"server_error"`, `"timeout"`, `"connection"`.
    pub fn reason(self) -> &'static str {
        match self {
            Transient::RateLimited => "rate_limited",
            Transient::ServerError => "server_error",
            Transient::Timeout => "timeout",
            Transient::Connection => "connection",
        }
    }
}

impl fmt::Display for Transient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// A failure that sending the same request again will not cure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permanent {
    /// Our credentials were refused: the access token exchange failed, the provider token was
    /// rejected, the sender is not allowed to reach this app (HTTP 401/403).
    Auth,
    /// The provider refused the request for another reason (HTTP 4xx): a bad topic, a token of
    /// another app, a payload it does not accept.
    Rejected,
    /// A local key could not sign.
    Credentials,
    /// The provider answered something this crate does not understand (a token response without
    /// a token, for example).
    Protocol,
}

impl Permanent {
    /// The metric label: `"auth"`, `"rejected"`, `"credentials"`, `"protocol"`.
    pub fn reason(self) -> &'static str {
        match self {
            Permanent::Auth => "auth",
            Permanent::Rejected => "rejected",
            Permanent::Credentials => "credentials",
            Permanent::Protocol => "protocol",
        }
    }
}

impl fmt::Display for Permanent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Why a notification was not sent.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PushError {
    /// The provider reports the device token as no longer valid (FCM `UNREGISTERED`, or
    /// `INVALID_ARGUMENT` about the token; APNs 410, or 400 `BadDeviceToken`; a webhook's 410).
    /// The caller should forget the token.
    #[error("{provider}: the device token is gone ({detail})")]
    TokenGone {
        /// Which sender.
        provider: &'static str,
        /// The provider's reason.
        detail: String,
    },
    /// A transient failure: try again later ([`send_with_retry`](crate::send_with_retry)).
    #[error("{provider}: {kind} (retryable){}", status_suffix(*status))]
    Retryable {
        /// Which sender.
        provider: &'static str,
        /// What happened.
        kind: Transient,
        /// The HTTP status, if there was an answer.
        status: Option<u16>,
        /// How long the provider asked us to wait (`Retry-After`).
        retry_after: Option<Duration>,
        /// The provider's reason, if it gave one.
        detail: String,
        /// The transport error, if any (its URL removed).
        #[source]
        source: Option<BoxError>,
    },
    /// A permanent failure: sending the same request again will fail the same way.
    #[error("{provider}: {kind}{}: {detail}", status_suffix(*status))]
    Failed {
        /// Which sender.
        provider: &'static str,
        /// What happened.
        kind: Permanent,
        /// The HTTP status, if there was an answer.
        status: Option<u16>,
        /// The provider's reason, or what was wrong.
        detail: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The [`Router`](crate::Router) has no sender for this platform.
    #[error("no push sender configured for {0} devices")]
    NoSender(Platform),
}

fn status_suffix(status: Option<u16>) -> String {
    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
}

impl PushError {
    /// A short static label for metrics: `"token_gone"`, `"rate_limited"`, `"server_error"`,
    /// `"timeout"`, `"connection"`, `"auth"`, `"rejected"`, `"credentials"`, `"protocol"`,
    /// `"no_sender"`.
    pub fn reason(&self) -> &'static str {
        match self {
            PushError::TokenGone { .. } => "token_gone",
            PushError::Retryable { kind, .. } => kind.reason(),
            PushError::Failed { kind, .. } => kind.reason(),
            PushError::NoSender(_) => "no_sender",
        }
    }

    /// True when the caller should forget the device token.
    pub fn is_token_gone(&self) -> bool {
        matches!(self, PushError::TokenGone { .. })
    }

    /// True when the same notification may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PushError::Retryable { .. })
    }

    /// How long the provider asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PushError::Retryable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A copy without the source (which cannot be cloned), for callers that share one failure.
    pub(crate) fn without_source(&self) -> PushError {
        match self {
            PushError::TokenGone { provider, detail } => PushError::TokenGone {
                provider,
                detail: detail.clone(),
            },
            PushError::Retryable {
                provider,
                kind,
                status,
                retry_after,
                detail,
                source: _,
            } => PushError::Retryable {
                provider,
                kind: *kind,
                status: *status,
                retry_after: *retry_after,
                detail: detail.clone(),
                source: None,
            },
            PushError::Failed {
                provider,
                kind,
                status,
                detail,
                source: _,
            } => PushError::Failed {
                provider,
                kind: *kind,
                status: *status,
                detail: detail.clone(),
                source: None,
            },
            PushError::NoSender(platform) => PushError::NoSender(*platform),
        }
    }

    /// The HTTP status of the provider's answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            PushError::Retryable { status, .. } | PushError::Failed { status, .. } => *status,
            _ => None,
        }
    }
}

/// Why a sender could not be built from its configuration.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key or service-account file could not be read.
    #[error("{provider}: cannot read {}", path.display())]
    Read {
        /// Which sender.
        provider: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The service-account JSON is not a service-account key.
    #[error("fcm: the service account key is not valid JSON of a service account")]
    ServiceAccount(#[source] serde_json::Error),
    /// A private key is not a PKCS#8 key of the expected type.
    #[error("{provider}: the private key is not usable: {what}")]
    Key {
        /// Which sender.
        provider: &'static str,
        /// What is wrong (never the key).
        what: String,
        /// The crypto library's refusal, if that was it.
        #[source]
        source: Option<BoxError>,
    },
    /// A value is missing or not acceptable.
    #[error("{provider}: {what}")]
    Invalid {
        /// Which sender.
        provider: &'static str,
        /// What is wrong.
        what: String,
    },
    /// The HTTP client could not be built.
    #[error("{provider}: cannot build the HTTP client")]
    Client {
        /// Which sender.
        provider: &'static str,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_static_labels() {
        let gone = PushError::TokenGone {
            provider: "apns",
            detail: "Unregistered".into(),
        };
        assert_eq!(gone.reason(), "token_gone");
        assert!(gone.is_token_gone());
        let retry = PushError::Retryable {
            provider: "fcm",
            kind: Transient::RateLimited,
            status: Some(429),
            retry_after: Some(Duration::from_secs(3)),
            detail: String::new(),
            source: None,
        };
        assert_eq!(retry.reason(), "rate_limited");
        assert_eq!(retry.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(
            retry.to_string(),
            "fcm: rate_limited (retryable) (HTTP 429)"
        );
        let failed = PushError::Failed {
            provider: "webhook",
            kind: Permanent::Auth,
            status: Some(401),
            detail: "bad signature".into(),
            source: None,
        };
        assert_eq!(failed.reason(), "auth");
        assert_eq!(failed.status(), Some(401));
        assert_eq!(PushError::NoSender(Platform::Apns).reason(), "no_sender");
    }
}
