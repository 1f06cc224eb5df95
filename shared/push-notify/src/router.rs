//! The configured senders, and which of them a device's notice goes to.

use std::sync::Arc;

use serde::Deserialize;

use crate::{
    send_with_retry, ApnsConfig, ApnsSender, ConfigError, Device, FcmConfig, FcmSender, Notice,
    Outcome, Platform, PushError, PushSender, RetryPolicy, WebhookConfig, WebhookMode,
    WebhookSender,
};

/// Push configuration: each sender is on when its table is present.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PushConfig {
    /// FCM, for [`Platform::Fcm`] devices.
    #[serde(default)]
    pub fcm: Option<FcmConfig>,
    /// APNs, for [`Platform::Apns`] devices.
    #[serde(default)]
    pub apns: Option<ApnsConfig>,
    /// The operator's push service, for every device ([`WebhookConfig::mode`]: instead of FCM and
    /// APNs, or as well).
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Retries of transient failures.
    #[serde(default)]
    pub retry: RetryPolicy,
}

/// Picks the sender(s) for a device and sends, with retries. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Router {
    fcm: Option<Arc<dyn PushSender>>,
    apns: Option<Arc<dyn PushSender>>,
    webhook: Option<(Arc<dyn PushSender>, WebhookMode)>,
    retry: RetryPolicy,
}

impl Router {
    /// A router with no senders (see [`with_fcm`](Self::with_fcm) and its siblings).
    pub fn new(retry: RetryPolicy) -> Self {
        Self {
            fcm: None,
            apns: None,
            webhook: None,
            retry,
        }
    }

    /// Builds every configured sender (reading keys now, so that a bad key stops start-up).
    pub fn from_config(config: &PushConfig) -> Result<Self, ConfigError> {
        let mut router = Self::new(config.retry.clone());
        if let Some(fcm) = &config.fcm {
            router = router.with_fcm(Arc::new(FcmSender::new(fcm)?));
        }
        if let Some(apns) = &config.apns {
            router = router.with_apns(Arc::new(ApnsSender::new(apns)?));
        }
        if let Some(webhook) = &config.webhook {
            router = router.with_webhook(Arc::new(WebhookSender::new(webhook)?), webhook.mode);
        }
        Ok(router)
    }

    /// Sends [`Platform::Fcm`] devices' notices with `sender`.
    pub fn with_fcm(mut self, sender: Arc<dyn PushSender>) -> Self {
        self.fcm = Some(sender);
        self
    }

    /// Sends [`Platform::Apns`] devices' notices with `sender`.
    pub fn with_apns(mut self, sender: Arc<dyn PushSender>) -> Self {
        self.apns = Some(sender);
        self
    }

    /// Sends every device's notice with `sender` too (`Also`) or only (`Instead`).
    pub fn with_webhook(mut self, sender: Arc<dyn PushSender>, mode: WebhookMode) -> Self {
        self.webhook = Some((sender, mode));
        self
    }

    /// True when a device of `platform` can be notified: the caller need not register devices
    /// it cannot wake.
    pub fn supports(&self, platform: Platform) -> bool {
        self.webhook.is_some() || self.provider(platform).is_some()
    }

    /// True when any sender is configured.
    pub fn is_enabled(&self) -> bool {
        self.webhook.is_some() || self.fcm.is_some() || self.apns.is_some()
    }

    fn provider(&self, platform: Platform) -> Option<&Arc<dyn PushSender>> {
        match platform {
            Platform::Fcm => self.fcm.as_ref(),
            Platform::Apns => self.apns.as_ref(),
        }
    }

    /// Sends `notice` to `device` through its provider, the webhook, or both (at the same time),
    /// each with retries; one [`Outcome`] per sender used. With no sender for the device: one
    /// outcome, [`PushError::NoSender`].
    pub async fn notify(&self, device: &Device, notice: &Notice) -> Vec<Outcome> {
        let (provider, webhook) = match &self.webhook {
            Some((webhook, WebhookMode::Instead)) => (None, Some(webhook)),
            Some((webhook, WebhookMode::Also)) => (self.provider(device.platform), Some(webhook)),
            None => (self.provider(device.platform), None),
        };
        let send = |sender: Option<&Arc<dyn PushSender>>| {
            let sender = sender.cloned();
            async move {
                match sender {
                    Some(s) => Some(send_with_retry(s.as_ref(), device, notice, &self.retry).await),
                    None => None,
                }
            }
        };
        let (provider, webhook) = tokio::join!(send(provider), send(webhook));
        let outcomes: Vec<Outcome> = provider.into_iter().chain(webhook).collect();
        if outcomes.is_empty() {
            return vec![Outcome {
                provider: "none",
                attempts: 0,
                result: Err(PushError::NoSender(device.platform)),
            }];
        }
        outcomes
    }
}
