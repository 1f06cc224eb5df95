//! The senders: tasks that post Forwards to random instances on a shared schedule.
//!
//! Message numbers come from one counter, so the senders together send each planned message once.
//! With a rate, message `k` is due at `start + k / rate` (an open schedule over all senders: a
//! slow answer delays one sender, not the plan, until every sender is busy); without one each
//! sender posts its next message as soon as the previous one is answered.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use tokio::{task::JoinHandle, time::Instant};

use crate::{
    error::shorten,
    forward::Pool,
    tracker::{Tracker, TRANSPORT_ERROR},
    Config,
};

/// Starts `config.senders` sender tasks; each ends when the plan or the duration is used up.
pub(crate) fn spawn_all(
    config: Arc<Config>,
    http: reqwest::Client,
    pool: Arc<Pool>,
    tracker: Arc<Tracker>,
    start: Instant,
) -> Vec<JoinHandle<()>> {
    let next = Arc::new(AtomicU64::new(0));
    (0..config.senders)
        .map(|_| {
            let sender = Sender {
                config: config.clone(),
                http: http.clone(),
                pool: pool.clone(),
                tracker: tracker.clone(),
                next: next.clone(),
                start,
            };
            tokio::spawn(sender.run())
        })
        .collect()
}

struct Sender {
    config: Arc<Config>,
    http: reqwest::Client,
    pool: Arc<Pool>,
    tracker: Arc<Tracker>,
    next: Arc<AtomicU64>,
    start: Instant,
}

impl Sender {
    async fn run(self) {
        let planned = self.tracker.slots.len() as u64;
        let deadline = self.config.duration.map(|d| self.start + d);
        loop {
            let seq = self.next.fetch_add(1, Relaxed);
            if seq >= planned {
                // Only the pool (no --messages, no --rate) makes the plan end before the time.
                if self.config.messages.is_none() && self.config.rate == 0.0 {
                    self.tracker.pool_exhausted.store(1, Relaxed);
                }
                return;
            }
            if self.config.rate > 0.0 {
                let due = self.start + Duration::from_secs_f64(seq as f64 / self.config.rate);
                tokio::time::sleep_until(due).await;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return;
            }
            self.send(seq).await;
        }
    }

    /// Posts message `seq` to a random instance and records how it went.
    async fn send(&self, seq: u64) {
        let Some(slot) = self.tracker.slot(seq) else {
            return;
        };
        let body = match self.pool.get(seq) {
            Ok(body) => body,
            Err(err) => {
                self.tracker.error(format!("building a Forward: {err}"));
                return;
            }
        };
        let instance = fastrand::usize(..self.config.mediators.len());
        let counters = &self.tracker.instances[instance];
        slot.instance.store(instance as u32, Relaxed);
        slot.posted.store(self.tracker.now(), Relaxed);
        let res = self
            .http
            .post(&self.config.mediators[instance])
            .header("content-type", "application/didcomm-envelope-enc")
            .body(body)
            .send()
            .await;
        let now = self.tracker.now();
        self.tracker.sent.fetch_add(1, Relaxed);
        match res {
            // Ours answers 202; ACA-Py and credo-ts, driven for comparison, answer 200.
            Ok(res) if res.status().is_success() => {
                slot.accepted.store(now, Relaxed);
                slot.status.store(202, Relaxed);
                self.tracker.accepted.fetch_add(1, Relaxed);
                counters.accepted.fetch_add(1, Relaxed);
            }
            Ok(res) => {
                let status = res.status().as_u16();
                slot.status.store(u32::from(status), Relaxed);
                counters.refused.fetch_add(1, Relaxed);
                // The mediator's refusals are `{"error": code, "message": ...}`: count by code.
                let body = res.text().await.unwrap_or_default();
                let code = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| shorten(&body));
                self.tracker
                    .error(format!("Forward refused: HTTP {status} {code}"));
            }
            Err(err) => {
                slot.status.store(TRANSPORT_ERROR, Relaxed);
                counters.post_errors.fetch_add(1, Relaxed);
                let kind = if err.is_timeout() {
                    "timeout"
                } else if err.is_connect() {
                    "connect"
                } else {
                    "request"
                };
                self.tracker.error(format!(
                    "Forward POST failed ({kind}): {}",
                    error_chain(&err)
                ));
            }
        }
    }
}

/// An error and its causes on one line: reqwest's own message rarely says what happened.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
