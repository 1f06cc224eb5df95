//! Retrying transient failures: capped exponential backoff with jitter, `Retry-After` honoured.
//!
//! Only [`PushError::Retryable`] is retried. A provider's `Retry-After` is a floor for the next
//! wait; one longer than `max_delay_ms` ends the retries at once (the error, with its
//! `retry_after`, goes back to the caller, who may queue the notice for later) rather than hold
//! the caller that long.

use std::time::Duration;

use serde::Deserialize;

use crate::{Device, Notice, PushError, PushSender};

/// How [`send_with_retry`] retries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (0 counts as 1).
    pub max_attempts: u32,
    /// The wait before the first retry, in milliseconds; each later wait doubles it.
    pub base_delay_ms: u64,
    /// The longest wait between attempts, in milliseconds; also the longest `Retry-After` waited
    /// for.
    pub max_delay_ms: u64,
    /// Each wait is drawn from [half, all] of its backoff, so that devices failed by one outage
    /// are not all retried at the same instant.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay_ms: 500,
            max_delay_ms: 10_000,
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// No retries: one attempt.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The backoff before retry number `retry` (1 = the first retry), before jitter:
    /// `base * 2^(retry-1)`, at most `max_delay_ms`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u64 << retry.saturating_sub(1).min(32);
        Duration::from_millis(
            self.base_delay_ms
                .saturating_mul(factor)
                .min(self.max_delay_ms),
        )
    }

    fn wait(&self, retry: u32) -> Duration {
        let full = self.backoff(retry);
        if !self.jitter {
            return full;
        }
        let half = full / 2;
        half + (full - half).mul_f64(fastrand::f64())
    }
}

/// How a notification went, after retries.
#[derive(Debug)]
pub struct Outcome {
    /// The sender's [`provider`](PushSender::provider) name (`"none"` when there was no sender).
    pub provider: &'static str,
    /// Attempts made (0 when there was no sender).
    pub attempts: u32,
    /// The last attempt's result.
    pub result: Result<(), PushError>,
}

impl Outcome {
    /// A short static label for metrics: `"sent"`, or the error's
    /// [`reason`](PushError::reason).
    pub fn reason(&self) -> &'static str {
        match &self.result {
            Ok(()) => "sent",
            Err(e) => e.reason(),
        }
    }

    /// True when the notification was accepted by the provider.
    pub fn is_sent(&self) -> bool {
        self.result.is_ok()
    }

    /// True when the caller should forget the device token.
    pub fn is_token_gone(&self) -> bool {
        self.result.as_ref().is_err_and(PushError::is_token_gone)
    }
}

/// Sends, retrying [`PushError::Retryable`] failures as `policy` says.
pub async fn send_with_retry(
    sender: &dyn PushSender,
    device: &Device,
    notice: &Notice,
    policy: &RetryPolicy,
) -> Outcome {
    let max_attempts = policy.max_attempts.max(1);
    let max_delay = Duration::from_millis(policy.max_delay_ms);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = sender.send(device, notice).await;
        let wait = match &result {
            Err(e) if e.is_retryable() && attempts < max_attempts => {
                let backoff = policy.wait(attempts);
                match e.retry_after() {
                    Some(asked) if asked > max_delay => None,
                    Some(asked) => Some(asked.max(backoff)),
                    None => Some(backoff),
                }
            }
            _ => None,
        };
        let Some(wait) = wait else {
            return Outcome {
                provider: sender.provider(),
                attempts,
                result,
            };
        };
        if let Err(e) = &result {
            tracing::debug!(
                push.provider = sender.provider(),
                push.reason = e.reason(),
                push.attempt = attempts,
                push.wait_ms = wait.as_millis() as u64,
                "push failed, retrying"
            );
        }
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay_ms: 100,
            max_delay_ms: 1000,
            jitter: false,
        };
        let waits: Vec<u64> = (1..=6).map(|r| p.backoff(r).as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.backoff(u32::MAX), Duration::from_millis(1000));
        assert_eq!(p.wait(3), Duration::from_millis(400));
    }

    #[test]
    fn jitter_stays_within_half_and_all() {
        let p = RetryPolicy {
            base_delay_ms: 1000,
            ..RetryPolicy::default()
        };
        for _ in 0..1000 {
            let w = p.wait(1);
            assert!(
                w >= Duration::from_millis(500) && w <= Duration::from_millis(1000),
                "{w:?}"
            );
        }
    }
}
