//! What one load test does: which instances, how many recipients and senders, how fast, how long.
//!
//! A plain struct the binary fills from its command line and tests fill directly; checked once by
//! [`Config::validate`] at the start of [`crate::run`].

use std::time::Duration;

use crate::LoadError;

/// One load test.
#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP base URLs of the instances (`http://127.0.0.1:3001`); the WebSocket of each is the
    /// same URL with `ws://`. Recipients are spread over them round-robin; each Forward goes to a
    /// random one.
    pub mediators: Vec<String>,
    /// Real DIDComm clients, each with its own connection, recipient key and live socket.
    pub recipients: usize,
    /// Tasks posting Forwards, each with one request in flight at a time.
    pub senders: usize,
    /// Forwards per second over all senders; 0 = as fast as the senders go.
    pub rate: f64,
    /// Stop sending after this long (`None`: only `messages` stops it).
    pub duration: Option<Duration>,
    /// Stop sending after this many Forwards (`None`: only `duration` or the pool stops it).
    pub messages: Option<u64>,
    /// How long to wait, once sending ended, for accepted messages to arrive before the rest
    /// count as lost.
    pub drain_timeout: Duration,
    /// Build every Forward before the timed phase (so the driver's packing does not compete with
    /// the mediator for CPU); otherwise each sender packs its Forward just before posting it.
    pub prebuild: bool,
    /// How many messages to plan for when neither `messages` nor `rate` × `duration` fixes the
    /// count: sending stops early if they run out.
    pub pool: u64,
    /// Filler added to each inner plaintext, bytes (the envelopes grow by about 4/3 of this).
    pub payload_bytes: usize,
    /// Acknowledge (`messages-received`) once this many deliveries are pending...
    pub ack_batch: usize,
    /// ...or once this much time passed since the last acknowledgement, whichever comes first.
    pub ack_interval: Duration,
    /// Show a progress bar (on stderr).
    pub progress: bool,
    /// Timeout of each HTTP request (handshake messages and Forwards).
    pub request_timeout: Duration,
    /// Recipients go live and every Forward is tracked to its delivery (the default); false:
    /// queue only, nothing delivered (the recipients stay offline), only acceptance is measured.
    pub live: bool,
    /// The out-of-band invitation to connect with, instead of the instance's `GET /invitation`
    /// (another mediator: ACA-Py, credo-ts).
    pub invitation: Option<serde_json::Value>,
}

impl Config {
    /// The defaults of the command line for these instances: 20 recipients, 4 senders, as fast
    /// as possible for 10 s, prebuilt.
    pub fn new(mediators: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            mediators: mediators
                .into_iter()
                .map(|m| m.into().trim_end_matches('/').to_owned())
                .collect(),
            recipients: 20,
            senders: 4,
            rate: 0.0,
            duration: Some(Duration::from_secs(10)),
            messages: None,
            drain_timeout: Duration::from_secs(10),
            prebuild: true,
            pool: 20_000,
            payload_bytes: 256,
            ack_batch: 10,
            ack_interval: Duration::from_millis(20),
            progress: false,
            request_timeout: Duration::from_secs(10),
            live: true,
            invitation: None,
        }
    }

    /// Checks what cannot work before anything is sent.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |why: &str| Err(LoadError::Config(why.to_owned()));
        if self.mediators.is_empty() {
            return bad("at least one mediator URL is needed");
        }
        if let Some(m) = self
            .mediators
            .iter()
            .find(|m| !m.starts_with("http://") && !m.starts_with("https://"))
        {
            return Err(LoadError::Config(format!(
                "mediator URL {m:?} is not http:// or https://"
            )));
        }
        if self.recipients == 0 || self.senders == 0 {
            return bad("recipients and senders must be at least 1");
        }
        if !self.rate.is_finite() || self.rate < 0.0 {
            return bad("rate must be a number >= 0");
        }
        if self.duration.is_none() && self.messages.is_none() {
            return bad("give a duration or a number of messages");
        }
        if self.planned_messages() == 0 {
            return bad("nothing to send (0 messages planned)");
        }
        if self.ack_batch == 0 {
            return bad("ack batch must be at least 1");
        }
        Ok(())
    }

    /// How many messages the run may send (and so builds and tracks): `messages`, else
    /// `rate` × `duration`, else `pool`; the smallest of what is given.
    pub fn planned_messages(&self) -> u64 {
        let by_rate = match (self.rate > 0.0, self.duration) {
            // Rounded up: the schedule sends message k at k / rate, k = 0, 1, ...
            (true, Some(d)) => Some((self.rate * d.as_secs_f64()).ceil() as u64),
            _ => None,
        };
        match (self.messages, by_rate) {
            (Some(m), Some(r)) => m.min(r),
            (Some(m), None) => m,
            (None, Some(r)) => r,
            (None, None) => self.pool,
        }
    }

    /// The WebSocket URL of the instance at `base` (`ws://`; `wss://` for `https://`, which
    /// needs a TLS build of tokio-tungstenite: the workspace's has none, so it is for loopback
    /// and plain-HTTP test clusters).
    pub fn ws_url(base: &str) -> String {
        if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            base.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_messages_takes_the_smallest_limit() {
        let mut c = Config::new(["http://127.0.0.1:1/"]);
        assert_eq!(c.mediators, ["http://127.0.0.1:1"]);
        c.duration = Some(Duration::from_secs(10));
        assert_eq!(
            c.planned_messages(),
            c.pool,
            "as fast as possible: the pool"
        );
        c.rate = 100.0;
        assert_eq!(c.planned_messages(), 1000);
        c.messages = Some(300);
        assert_eq!(c.planned_messages(), 300);
        c.duration = None;
        c.rate = 0.0;
        assert_eq!(c.planned_messages(), 300);
        assert!(c.validate().is_ok());
        c.messages = None;
        assert!(c.validate().is_err());
    }

    #[test]
    fn websocket_url_mirrors_the_scheme() {
        assert_eq!(Config::ws_url("http://h:1"), "ws://h:1");
        assert_eq!(Config::ws_url("https://h"), "wss://h");
    }
}
