//! The retry helper on a paused clock: waits are measured, not slept.

use std::time::Duration;

use push_notify::{
    send_with_retry, Device, Notice, Permanent, Platform, PushError, RetryPolicy, Transient,
};
use tokio::time::Instant;

use crate::common::Scripted;

fn device() -> Device {
    Device::new(Platform::Fcm, "token")
}

fn transient(retry_after: Option<Duration>) -> Result<(), PushError> {
    Err(PushError::Retryable {
        provider: "scripted",
        kind: Transient::ServerError,
        status: Some(503),
        retry_after,
        detail: String::new(),
        source: None,
    })
}

fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay_ms: 100,
        max_delay_ms: 1_000,
        jitter: false,
    }
}

#[tokio::test(start_paused = true)]
async fn backs_off_exponentially_then_succeeds() {
    let sender = Scripted::new("scripted", vec![transient(None), transient(None)]);
    let started = Instant::now();
    let outcome = send_with_retry(&sender, &device(), &Notice::default(), &policy(5)).await;
    assert_eq!(outcome.reason(), "sent");
    assert!(outcome.is_sent());
    assert_eq!(outcome.attempts, 3);
    assert_eq!(outcome.provider, "scripted");
    // 100 ms, then 200 ms.
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_attempts_with_the_last_error() {
    let sender = Scripted::new("scripted", (0..10).map(|_| transient(None)).collect());
    let outcome = send_with_retry(&sender, &device(), &Notice::default(), &policy(4)).await;
    assert_eq!(outcome.attempts, 4);
    assert_eq!(sender.calls(), 4);
    assert_eq!(outcome.reason(), "server_error");
}

#[tokio::test(start_paused = true)]
async fn waits_at_least_retry_after() {
    let sender = Scripted::new(
        "scripted",
        vec![transient(Some(Duration::from_millis(700)))],
    );
    let started = Instant::now();
    let outcome = send_with_retry(&sender, &device(), &Notice::default(), &policy(3)).await;
    assert_eq!(outcome.reason(), "sent");
    assert_eq!(started.elapsed(), Duration::from_millis(700));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_cap_ends_the_retries() {
    let sender = Scripted::new("scripted", vec![transient(Some(Duration::from_secs(3600)))]);
    let started = Instant::now();
    let outcome = send_with_retry(&sender, &device(), &Notice::default(), &policy(5)).await;
    assert_eq!(outcome.attempts, 1);
    assert_eq!(started.elapsed(), Duration::ZERO);
    let err = outcome.result.expect_err("handed back");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
}

#[tokio::test(start_paused = true)]
async fn permanent_failures_and_gone_tokens_are_not_retried() {
    let gone = Scripted::new(
        "scripted",
        vec![Err(PushError::TokenGone {
            provider: "scripted",
            detail: "Unregistered".into(),
        })],
    );
    let outcome = send_with_retry(&gone, &device(), &Notice::default(), &policy(5)).await;
    assert_eq!((outcome.attempts, outcome.reason()), (1, "token_gone"));
    assert!(outcome.is_token_gone());

    let refused = Scripted::new(
        "scripted",
        vec![Err(PushError::Failed {
            provider: "scripted",
            kind: Permanent::Auth,
            status: Some(403),
            detail: String::new(),
            source: None,
        })],
    );
    let outcome = send_with_retry(&refused, &device(), &Notice::default(), &policy(5)).await;
    assert_eq!((outcome.attempts, outcome.reason()), (1, "auth"));
}

#[tokio::test(start_paused = true)]
async fn zero_attempts_means_one() {
    let sender = Scripted::new("scripted", vec![transient(None)]);
    let outcome = send_with_retry(&sender, &device(), &Notice::default(), &policy(0)).await;
    assert_eq!(outcome.attempts, 1);
    assert_eq!(outcome.reason(), "server_error");
}

#[test]
fn the_policy_deserializes_with_defaults() {
    let policy: RetryPolicy =
        serde_json::from_value(serde_json::json!({"max_attempts": 5})).expect("policy");
    assert_eq!(
        policy,
        RetryPolicy {
            max_attempts: 5,
            ..RetryPolicy::default()
        }
    );
}
