//! One recipient's socket in Live Mode: open each `delivery`, record which messages arrived,
//! acknowledge them with `messages-received`, and get back on a new socket if this one closes.
//!
//! On a new socket the client does what credo does: acknowledge what it still owes, turn live mode
//! on again, and fetch with `delivery-request` what waits in the queue (a closed socket gives its
//! unacknowledged messages back, and live mode does not push those again). Everything else the
//! mediator does (the pings it sends, the `status` it answers acknowledgements with) is read and
//! let go; reading is also what answers the pings (tungstenite replies while it reads).

use std::{sync::Arc, time::Duration};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::{
    sync::watch,
    time::{Instant, MissedTickBehavior},
};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::{
    client::{is_type, message, Recipient, Ws},
    error::shorten,
    forward::Plain,
    tracker::Tracker,
    Config, LoadError,
};

/// Most messages one `delivery-request` asks for (the mediator caps it at its `max_batch`).
const FETCH_LIMIT: usize = 100;

/// Tries to get a socket back before the recipient gives up for the rest of the run; the first
/// at once (a mediator that closed one session for a full buffer takes the next), then backing
/// off linearly.
const RECONNECT_ATTEMPTS: u32 = 10;
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// How long, once stopped, a receiver waits for the answer to its final `status-request`.
const FINAL_STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// What one receiver saw beyond the per-message records.
#[derive(Debug, Default, Clone)]
pub(crate) struct Outcome {
    /// Messages still waiting in the queue at the end (the mediator's `status.message_count`);
    /// `None` if it did not answer.
    pub still_queued: Option<u64>,
    /// New sockets opened after one closed.
    pub reconnects: u64,
    /// `messages-received` sent.
    pub acks_sent: u64,
    /// Messages fetched with `delivery-request` after a reconnect.
    pub fetched: u64,
}

/// The reading side of one recipient.
#[derive(Debug)]
pub(crate) struct Receiver {
    recipient: Arc<Recipient>,
    ws: Ws,
    tracker: Arc<Tracker>,
    config: Arc<Config>,
    stop: watch::Receiver<bool>,
    /// Queue ids delivered and not yet acknowledged.
    pending_acks: Vec<String>,
    /// Id of our `delivery-request` awaiting its answer, while fetching after a reconnect.
    fetching: Option<String>,
    /// Id of the final `status-request`, once stopping.
    final_status: Option<String>,
    outcome: Outcome,
}

/// What to do after a frame.
enum Next {
    Continue,
    /// The final `status` arrived: done.
    Done,
}

impl Receiver {
    pub fn new(
        recipient: Arc<Recipient>,
        ws: Ws,
        tracker: Arc<Tracker>,
        config: Arc<Config>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            recipient,
            ws,
            tracker,
            config,
            stop,
            pending_acks: Vec::new(),
            fetching: None,
            final_status: None,
            outcome: Outcome::default(),
        }
    }

    /// Reads the socket until told to stop (and the final `status` is in, or its time is up).
    pub async fn run(mut self) -> Outcome {
        let mut tick = tokio::time::interval(self.config.ack_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut stop_by: Option<Instant> = None;
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        loop {
            tokio::select! {
                frame = self.ws.next() => match frame {
                    Some(Ok(WsMessage::Binary(b))) => {
                        if let Next::Done = self.handle(&b).await { break; }
                    }
                    Some(Ok(WsMessage::Text(t))) => {
                        if let Next::Done = self.handle(t.as_bytes()).await { break; }
                    }
                    Some(Ok(WsMessage::Close(frame))) => {
                        if stop_by.is_some() { break; }
                        self.tracker.error(format!(
                            "socket closed by the mediator: {}",
                            frame.map_or_else(|| "no reason".to_owned(), |f| format!("{} {}", f.code, f.reason))
                        ));
                        if !self.reconnect().await { break; }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(err)) => {
                        if stop_by.is_some() { break; }
                        self.tracker.error(format!("socket error: {err}"));
                        if !self.reconnect().await { break; }
                    }
                    None => {
                        if stop_by.is_some() { break; }
                        self.tracker.error("socket ended".to_owned());
                        if !self.reconnect().await { break; }
                    }
                },
                _ = tick.tick() => self.flush_acks().await,
                changed = self.stop.changed(), if stop_by.is_none() => {
                    if changed.is_err() || *self.stop.borrow() {
                        stop_by = Some(Instant::now() + FINAL_STATUS_TIMEOUT);
                        self.flush_acks().await;
                        let req = message("messagepickup/2.0/status-request", json!({}));
                        self.final_status = req["@id"].as_str().map(str::to_owned);
                        self.send(&req).await;
                    }
                }
                () = tokio::time::sleep_until(stop_by.unwrap_or(far)), if stop_by.is_some() => {
                    self.tracker.error("no answer to the final status-request".to_owned());
                    break;
                }
            }
        }
        let _ = self.ws.close(None).await;
        self.outcome
    }

    /// Handles one data frame.
    async fn handle(&mut self, frame: &[u8]) -> Next {
        match self.recipient.open(frame) {
            Ok(msg) => self.handle_message(&msg).await,
            Err(err) => {
                self.tracker
                    .error(format!("frame could not be opened: {}", chain(&err)));
                Next::Continue
            }
        }
    }

    /// Handles one message from the mediator.
    async fn handle_message(&mut self, msg: &Value) -> Next {
        let thid = msg["~thread"]["thid"].as_str();
        if is_type(msg, "messagepickup/2.0/delivery") {
            let answers_fetch = thid.is_some() && thid == self.fetching.as_deref();
            for attachment in msg["~attach"].as_array().map_or(&[][..], Vec::as_slice) {
                self.record(attachment);
            }
            if self.pending_acks.len() >= self.config.ack_batch {
                self.flush_acks().await;
            }
            if answers_fetch {
                // Acknowledge first so the next request does not get the same ones again.
                self.flush_acks().await;
                self.fetch().await;
            }
        } else if is_type(msg, "messagepickup/2.0/status") {
            if thid.is_some() && thid == self.fetching.as_deref() {
                // Nothing more waits.
                self.fetching = None;
            }
            if thid.is_some() && thid == self.final_status.as_deref() {
                self.outcome.still_queued = msg["message_count"].as_u64();
                return Next::Done;
            }
        } else if is_type(msg, "report-problem/1.0/problem-report") {
            self.tracker.error(format!(
                "problem-report: {}",
                msg["description"]["code"].as_str().unwrap_or("(no code)")
            ));
        } else {
            self.tracker.error(format!(
                "unexpected message {}",
                msg["@type"].as_str().unwrap_or("(no @type)")
            ));
        }
        Next::Continue
    }

    /// Records one attachment of a `delivery` (arrived: now that it is open) and owes its
    /// acknowledgement.
    fn record(&mut self, attachment: &Value) {
        let Some(id) = attachment["@id"].as_str() else {
            self.tracker
                .error("delivery attachment without @id".to_owned());
            return;
        };
        // Acknowledged whatever it holds: an unreadable message would otherwise come back again
        // and again.
        self.pending_acks.push(id.to_owned());
        let plain = serde_json::to_vec(&attachment["data"]["json"])
            .map_err(LoadError::from)
            .and_then(|inner| self.recipient.open_inner(&inner))
            .and_then(|plain| Ok(serde_json::from_slice::<Plain>(&plain)?));
        match plain {
            // Messages of other runs cannot reach our fresh keys: a sanity check.
            Ok(plain) if plain.run == self.tracker.run => {
                self.tracker.delivered(
                    plain.seq,
                    self.recipient.index,
                    self.recipient.instance,
                    self.tracker.now(),
                );
            }
            Ok(_) => {
                self.tracker
                    .foreign
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(err) => self.tracker.error(format!(
                "delivered message could not be opened: {}",
                chain(&err)
            )),
        }
    }

    /// Sends the owed acknowledgements, if any.
    async fn flush_acks(&mut self) {
        if self.pending_acks.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.pending_acks);
        let ack = message(
            "messagepickup/2.0/messages-received",
            json!({ "message_id_list": ids }),
        );
        if self.send(&ack).await {
            self.outcome.acks_sent += 1;
        } else {
            // Kept for the next socket: the mediator gave them back when this one failed.
            self.pending_acks = ids;
        }
    }

    /// Asks for what waits in the queue (after a reconnect).
    async fn fetch(&mut self) {
        let req = message(
            "messagepickup/2.0/delivery-request",
            json!({ "limit": FETCH_LIMIT }),
        );
        self.fetching = req["@id"].as_str().map(str::to_owned);
        self.outcome.fetched += 1;
        self.send(&req).await;
    }

    /// Sends `msg` on the socket; false (and counted) if it failed.
    async fn send(&mut self, msg: &Value) -> bool {
        let packed = match self.recipient.pack(msg) {
            Ok(p) => p,
            Err(err) => {
                self.tracker.error(format!("packing: {}", chain(&err)));
                return false;
            }
        };
        match self.ws.send(WsMessage::Binary(packed.into())).await {
            Ok(()) => true,
            Err(err) => {
                self.tracker.error(format!("socket write failed: {err}"));
                false
            }
        }
    }

    /// Opens a new socket, turns live mode on and fetches what waits. False when it gave up.
    async fn reconnect(&mut self) -> bool {
        for attempt in 1..=RECONNECT_ATTEMPTS {
            tokio::time::sleep(RECONNECT_BACKOFF * (attempt - 1)).await;
            match self.recipient.go_live().await {
                Ok((ws, early)) => {
                    self.ws = ws;
                    self.outcome.reconnects += 1;
                    for msg in &early {
                        // Only live deliveries come before the confirmation.
                        self.handle_message(msg).await;
                    }
                    self.flush_acks().await;
                    self.fetch().await;
                    return true;
                }
                Err(err) => self
                    .tracker
                    .error(format!("reconnect failed: {}", chain(&err))),
            }
        }
        false
    }
}

/// An error and its causes on one line, shortened.
fn chain(err: &LoadError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    shorten(&text)
}
