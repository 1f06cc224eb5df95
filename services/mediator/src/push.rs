//! Waking an offline wallet: a push notification when a Forward is queued for a connection that
//! registered a device (Aries RFC 0734 FCM, RFC 0699 APNs; see [`crate::protocols::push`]) and
//! has no live session anywhere in the cluster.
//!
//! What holds:
//! - **Never in the Forward's way.** The Forward is queued and answered first; the notification
//!   is a task of its own ([`Notifier::queued`] only spawns), bounded by `push.max_in_flight`:
//!   past it a notification is not started (counted as `busy`), and the next Forward tries again.
//! - **One per connection per interval, cluster-wide.** Before sending, an instance claims the
//!   connection's notification in the shared store ([`DeviceStore::claim_notification`]): exactly
//!   one claim succeeds per `push.interval_ms`, whichever instance took the Forwards.
//! - **None while live.** A connection with a live session here, or one the routing cache or the
//!   live-session registry places on another instance, is not notified.
//! - **Tokens that are gone are forgotten.** FCM `UNREGISTERED`, APNs 410 / `BadDeviceToken`:
//!   the device info is cleared, if it still holds that token (a newer registration stays).
//! - **No content.** Providers get a fixed, generic payload; only the operator's webhook gets the
//!   waiting message count. Tokens are logged by their first characters only.
//!
//! Per Forward to an offline connection this costs a device look-up in the store (a round trip
//! on Redis) and, for a connection with a device, the registry look-up and the claim: none of it
//! on the request's path.

use std::sync::Arc;

use mediator_store::{ConnectionId, DeviceInfo, PushPlatform};
use opentelemetry::{metrics::Counter, KeyValue};
use push_notify::{Device, Notice, Platform, Router};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::Mediator;

/// `[push]`: when and how notifications are sent; no provider configured: none are.
#[derive(Debug, Clone, Deserialize)]
pub struct PushSettings {
    /// At most one notification per connection per this many ms, across the cluster, while
    /// messages keep arriving.
    pub interval_ms: u64,
    /// Notifications being sent at once by this instance, at most.
    pub max_in_flight: usize,
    /// Longest device token a client may register, bytes.
    pub max_token_bytes: usize,
    /// Longest FCM `device_platform` a client may register, bytes.
    pub max_device_platform_bytes: usize,
    /// `[push.fcm]`: Firebase Cloud Messaging, for FCM registrations.
    #[serde(default)]
    pub fcm: Option<push_notify::FcmConfig>,
    /// `[push.apns]`: Apple Push Notification service, for APNs registrations.
    #[serde(default)]
    pub apns: Option<push_notify::ApnsConfig>,
    /// `[push.webhook]`: the operator's own push service, instead of FCM and APNs or as well.
    #[serde(default)]
    pub webhook: Option<push_notify::WebhookConfig>,
    /// `[push.retry]`: retries of transient failures.
    #[serde(default)]
    pub retry: push_notify::RetryPolicy,
}

// Not `#[serde(flatten)]` of `PushConfig`: flattening loses the field types, and the layered
// config would then read a numeric-looking string (a team id, a secret) as a number.
impl PushSettings {
    /// Whether any provider is configured.
    pub fn enabled(&self) -> bool {
        self.fcm.is_some() || self.apns.is_some() || self.webhook.is_some()
    }

    /// The sending crate's configuration.
    pub fn providers(&self) -> push_notify::PushConfig {
        push_notify::PushConfig {
            fcm: self.fcm.clone(),
            apns: self.apns.clone(),
            webhook: self.webhook.clone(),
            retry: self.retry.clone(),
        }
    }
}

/// The push platform of a registration, as the sending crate names it.
fn platform(p: PushPlatform) -> Platform {
    match p {
        PushPlatform::Fcm => Platform::Fcm,
        PushPlatform::Apns => Platform::Apns,
    }
}

/// Sends the notifications of one instance (see the module docs). Cheap to share.
#[derive(Debug)]
pub struct Notifier {
    router: Router,
    interval_ms: u64,
    in_flight: Arc<Semaphore>,
    /// `mediator_push_notifications_total{provider, outcome}`: every send's outcome (`sent`, or
    /// why not: `token_gone`, `timeout`, `rate_limited`...).
    outcomes: Counter<u64>,
    /// `mediator_push_skipped_total{reason}`: Forwards that started no notification, and why
    /// (`no_device`, `live`, `claimed`, `busy`, `unsupported`, `store`).
    skipped: Counter<u64>,
    /// The same counts, readable here (tests, diagnostics): `outcome` or `skipped:<reason>`.
    counts: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

/// The provider configuration could not be used (a key that does not parse, a file missing).
#[derive(Debug, thiserror::Error)]
#[error("push notifications: {0}")]
pub struct PushSetupError(#[from] push_notify::ConfigError);

impl Notifier {
    /// The notifier of `settings`; `None` when no provider is configured. Reads every key now:
    /// a bad one stops the start.
    pub fn new(
        settings: &PushSettings,
        meter: &opentelemetry::metrics::Meter,
    ) -> Result<Option<Arc<Self>>, PushSetupError> {
        if !settings.enabled() {
            return Ok(None);
        }
        let router = Router::from_config(&settings.providers())?;
        Ok(Some(Arc::new(Self {
            router,
            interval_ms: settings.interval_ms.max(1),
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            outcomes: meter
                .u64_counter("mediator_push_notifications")
                .with_description(
                    "Push notifications sent to wake an offline client, by provider and outcome \
                     (sent, or the failure: token_gone, timeout, rate_limited, server_error...)",
                )
                .build(),
            skipped: meter
                .u64_counter("mediator_push_skipped")
                .with_description(
                    "Forwards to a connection without a live session that started no push \
                     notification, by reason (no_device, live, claimed: one was sent within the \
                     interval, busy, unsupported, store)",
                )
                .build(),
            counts: std::sync::Mutex::default(),
        })))
    }

    /// Whether a registration for `platform` can be served (a provider, or the webhook).
    pub fn supports(&self, platform: PushPlatform) -> bool {
        self.router.supports(self::platform(platform))
    }

    fn skip(&self, reason: &'static str) {
        self.skipped.add(1, &[KeyValue::new("reason", reason)]);
        self.count(format!("skipped:{reason}"));
    }

    fn count(&self, what: String) {
        *self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(what)
            .or_default() += 1;
    }

    /// What this instance counted since it started: each send's outcome by `provider:outcome`
    /// (`fcm:sent`, `apns:token_gone`...), and `skipped:<reason>` for Forwards that started no
    /// notification (see `mediator_push_skipped_total`).
    pub fn counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A Forward was queued for `connection`, which had no live session known here: maybe wake
    /// it. Returns at once.
    // Hot path (Forwards to offline clients): a permit and a spawn.
    pub fn queued(self: &Arc<Self>, m: &Mediator, connection: &ConnectionId) {
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            self.skip("busy");
            return;
        };
        let (this, m, connection) = (Arc::clone(self), m.clone(), connection.clone());
        tokio::spawn(async move {
            this.wake(&m, &connection).await;
            drop(permit);
        });
    }

    async fn wake(&self, m: &Mediator, connection: &ConnectionId) {
        let stores = m.stores();
        let device = match stores.devices.get(connection).await {
            Ok(Some(device)) => device,
            Ok(None) => return self.skip("no_device"),
            Err(err) => {
                warn!(error = %err, connection = %connection, "push: device look-up failed");
                return self.skip("store");
            }
        };
        if !self.supports(device.platform) {
            return self.skip("unsupported");
        }
        if is_live_anywhere(m, connection).await {
            return self.skip("live");
        }
        match stores
            .devices
            .claim_notification(connection, self.interval_ms)
            .await
        {
            Ok(true) => {}
            Ok(false) => return self.skip("claimed"),
            Err(err) => {
                warn!(error = %err, connection = %connection, "push: claim failed");
                return self.skip("store");
            }
        }
        let waiting = match stores.queue.status(connection, None).await {
            Ok(status) => status.message_count as u64,
            Err(_) => 1,
        };
        self.send(m, connection, &device, waiting).await;
    }

    async fn send(&self, m: &Mediator, connection: &ConnectionId, info: &DeviceInfo, waiting: u64) {
        let device = Device::new(platform(info.platform), info.token.clone());
        let notice = Notice {
            message_count: waiting,
        };
        for outcome in self.router.notify(&device, &notice).await {
            let reason = outcome.reason();
            self.count(format!("{}:{reason}", outcome.provider));
            self.outcomes.add(
                1,
                &[
                    KeyValue::new("provider", outcome.provider),
                    KeyValue::new("outcome", reason),
                ],
            );
            match &outcome.result {
                Ok(()) => {
                    debug!(connection = %connection, provider = outcome.provider, attempts = outcome.attempts, "push notification sent");
                }
                Err(push_notify::PushError::TokenGone { .. }) => {
                    info!(connection = %connection, provider = outcome.provider, token = %device.token_hint(), "push: the provider says the device token is gone; it is forgotten");
                    if let Err(err) = m
                        .stores()
                        .devices
                        .clear_if_token(connection, &info.token)
                        .await
                    {
                        warn!(error = %err, connection = %connection, "push: clearing a gone token failed");
                    }
                }
                Err(err) => {
                    warn!(connection = %connection, provider = outcome.provider, attempts = outcome.attempts, reason, error = %err, "push notification failed");
                }
            }
        }
    }
}

/// Whether `connection` has a live session here, on another instance per the routing cache, or
/// per the shared registry (an instance that announced it while this one was not listening).
async fn is_live_anywhere(m: &Mediator, connection: &ConnectionId) -> bool {
    if m.sessions().live(connection).is_some() || m.sessions().latest(connection).is_some() {
        return true;
    }
    if m.cluster().remote_holder(connection).is_some() {
        return true;
    }
    matches!(m.stores().registry.holder(connection).await, Ok(Some(_)))
}
