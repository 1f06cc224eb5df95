//! Putting queued messages on WebSocket sessions: Live Mode deliveries, the "deliver queued
//! messages" function of credo-ts pull request 1638, and direct (implicit) delivery.
//!
//! Nothing here removes a message that its recipient has not acknowledged: a Pickup 2.0 delivery
//! leaves the queue on `messages-received`; a direct delivery (which has no protocol-level ack)
//! leaves it when the socket's pong confirms the frame was read. Every path claims a message on
//! the session before writing it ([`SessionHandle::claim`]), so one session never carries a
//! message twice.

use std::{io::Write, time::Duration};

use bytes::Bytes;
use didcomm_message::DocUri;
use mediator_store::{ConnectionId, MessageId, QueuedMessage};
use tokio::sync::oneshot;
use tracing::{debug, info, warn, Instrument};

use crate::{
    config::ForwardingStrategy,
    error::InboundError,
    mediator::Mediator,
    sessions::{LiveSession, Outbound, SessionHandle},
    stats::DeliveryMode,
};

/// One queued message to deliver: its id, its encrypted bytes (JSON) and when it was queued (unix
/// ms: the delivery latency metric).
pub type Item<'a> = (&'a MessageId, &'a [u8], u64);

/// Builds the plaintext of a Pickup 2.0 `delivery` around queued messages, without parsing them
/// (they are valid JSON: they were checked when queued).
// Hot path: one call per live delivery; one buffer, no intermediate JSON values.
pub(crate) fn delivery_plaintext(
    doc_uri: &DocUri,
    thid: Option<&str>,
    recipient_key: Option<&str>,
    items: &[Item<'_>],
) -> Vec<u8> {
    let payload: usize = items.iter().map(|(_, p, _)| p.len() + 80).sum();
    let mut out = Vec::with_capacity(payload + 200);
    out.extend_from_slice(b"{\"@type\":\"");
    out.extend_from_slice(doc_uri.as_str().as_bytes());
    out.extend_from_slice(b"messagepickup/2.0/delivery\",\"@id\":\"");
    out.extend_from_slice(
        uuid::Uuid::new_v4()
            .hyphenated()
            .encode_lower(&mut [0; 36])
            .as_bytes(),
    );
    out.push(b'"');
    if let Some(thid) = thid {
        out.extend_from_slice(b",\"~thread\":{\"thid\":");
        json_string(&mut out, thid);
        out.push(b'}');
    }
    if let Some(key) = recipient_key {
        out.extend_from_slice(b",\"recipient_key\":");
        json_string(&mut out, key);
    }
    out.extend_from_slice(b",\"~attach\":[");
    for (n, (id, payload, _)) in items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"@id\":");
        json_string(&mut out, id.as_str());
        out.extend_from_slice(b",\"data\":{\"json\":");
        out.extend_from_slice(payload);
        out.extend_from_slice(b"}}");
    }
    out.extend_from_slice(b"]}");
    out
}

fn json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a &str as JSON into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
    let _ = out.flush();
}

/// Splits messages (in order) into deliveries of at most `max_count` messages and `max_bytes`
/// payload bytes each; a message larger than `max_bytes` goes alone.
fn batches(
    messages: &[QueuedMessage],
    max_count: usize,
    max_bytes: u64,
) -> impl Iterator<Item = &[QueuedMessage]> {
    let mut rest = messages;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0u64;
        let mut n = 0;
        while n < rest.len() && n < max_count {
            let len = rest[n].payload.len() as u64;
            if n > 0 && bytes + len > max_bytes {
                break;
            }
            bytes += len;
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n.max(1));
        rest = tail;
        Some(chunk)
    })
}

impl Mediator {
    /// Sends `items` to a live session as one Pickup 2.0 `delivery` (not threaded: nobody asked
    /// for it), skipping those the session already carried. Returns how many went out. Nothing
    /// is removed: the client's `messages-received` does that.
    // Hot path: a Forward to a live client ends here.
    pub(crate) fn deliver_live(
        &self,
        connection: &ConnectionId,
        live: &LiveSession,
        items: &[Item<'_>],
    ) -> Result<usize, InboundError> {
        let fresh: Vec<Item<'_>> = items
            .iter()
            .filter(|(id, _, _)| live.session.claim(connection, id))
            .copied()
            .collect();
        if fresh.is_empty() {
            return Ok(0);
        }
        let plaintext = delivery_plaintext(&live.doc_uri, None, None, &fresh);
        let packed = self
            .crypto()
            .pack(&plaintext, &live.their_keys, &live.our_key)?;
        match live.session.push(Outbound::Data(Bytes::from(packed))) {
            // Closed meanwhile: its claims may already have been given back; give these back too.
            Ok(()) if !live.session.is_open() => Ok(0),
            Ok(()) => {
                self.stats()
                    .delivered(DeliveryMode::Live, fresh.iter().map(|(_, _, at)| *at));
                debug!(connection = %connection, session = live.session.id, messages = fresh.len(), "live delivery");
                Ok(fresh.len())
            }
            Err(err) => {
                debug!(connection = %connection, ?err, "live session gone; the messages stay queued");
                Ok(0)
            }
        }
    }

    /// Delivers a connection's queued messages to its live session on this instance (the pull
    /// request's "deliver queued messages" API): all of them, or only those of `only` still
    /// queued. Messages this session already carried are skipped; nothing is removed. Returns how
    /// many were sent (0 when the connection has no live session here).
    pub async fn deliver_queued(
        &self,
        connection: &ConnectionId,
        only: Option<&[MessageId]>,
    ) -> Result<usize, InboundError> {
        let Some(live) = self.sessions().live(connection) else {
            return Ok(0);
        };
        let queue = &self.stores().queue;
        let pickup = &self.config().pickup;
        let lease = pickup.redelivery_after_ms;
        let mut sent = 0;
        // Round by round, each at most one delivery's worth (count and bytes) in memory.
        loop {
            let messages: Vec<QueuedMessage> = match only {
                // Only those that wait: one in flight (delivered elsewhere) is not sent twice.
                Some(ids) => queue.lease_ids(connection, ids, lease).await?,
                None => {
                    let leased = queue
                        .lease(
                            connection,
                            pickup.max_batch,
                            None,
                            lease,
                            Some(pickup.max_delivery_bytes),
                        )
                        .await?;
                    self.stats()
                        .redelivered(leased.iter().filter(|q| q.deliveries > 1).count());
                    leased
                }
            };
            if messages.is_empty() {
                break;
            }
            for chunk in batches(&messages, pickup.max_batch, pickup.max_delivery_bytes) {
                let items: Vec<Item<'_>> = chunk
                    .iter()
                    .map(|m| (&m.id, &m.payload[..], m.received_at_ms))
                    .collect();
                let n = self.deliver_live(connection, &live, &items)?;
                if n == 0 && !live.session.is_open() {
                    // The session went away: what it did not take waits again.
                    let ids: Vec<MessageId> = messages.iter().map(|m| m.id.clone()).collect();
                    queue.release(connection, &ids).await?;
                    return Ok(sent);
                }
                sent += n;
            }
            if only.is_some() {
                break;
            }
        }
        Ok(sent)
    }

    /// A peer's notice: deliver `ids` of `connection` on its live session here. `in_flight`: the
    /// peer queued them in flight for this delivery (a Forward), so they go out as they are;
    /// otherwise (a repair) only those still waiting go, leased first. Without a live session here
    /// (it closed meanwhile) they wait in the queue, remembered for the next live session
    /// announced.
    pub async fn deliver_notice(
        &self,
        connection: &ConnectionId,
        ids: &[MessageId],
        in_flight: bool,
        traceparent: Option<&str>,
        carried: &[crate::cluster::Carried],
    ) {
        let span = crate::hot_span!("cluster.deliver", mediator.connection_id = %connection, mediator.instance = %self.cluster().instance_id());
        if let Some(parent) = traceparent {
            // One trace: the Forward on the instance that took it, the delivery here.
            crate::telemetry::continue_trace(&span, parent);
        }
        async {
            if self.config().pickup.forwarding == ForwardingStrategy::Direct {
                self.deliver_notice_direct(connection, ids, in_flight, carried)
                    .await;
                return;
            }
            let Some(live) = self.sessions().live(connection) else {
                if in_flight {
                    if let Err(err) = self.stores().queue.unlease(connection, ids).await {
                        warn!(error = %err, connection = %connection, "undeliverable notice: messages stay in flight until their lease ends");
                    }
                }
                for id in ids {
                    self.cluster().hold(connection, id, true);
                }
                return;
            };
            let delivered = if in_flight {
                self.deliver_handed_over(connection, &live, ids, carried).await
            } else {
                self.deliver_queued(connection, Some(ids)).await
            };
            if let Err(err) = delivered {
                warn!(error = %err, connection = %connection, "cluster delivery failed; the messages are delivered again when their lease ends");
            }
        }
        .instrument(span)
        .await
    }

    /// [`Mediator::deliver_notice`] with the `direct` strategy: each message goes by itself on
    /// the connection's newest return-route session here, and leaves the queue once the socket
    /// confirmed it. Without such a session (it closed meanwhile), they wait, remembered for the
    /// next session announced.
    async fn deliver_notice_direct(
        &self,
        connection: &ConnectionId,
        ids: &[MessageId],
        in_flight: bool,
        carried: &[crate::cluster::Carried],
    ) {
        let queue = &self.stores().queue;
        let Some(session) = self.sessions().latest(connection) else {
            if in_flight {
                if let Err(err) = queue.unlease(connection, ids).await {
                    warn!(error = %err, connection = %connection, "undeliverable notice: messages stay in flight until their lease ends");
                }
            }
            for id in ids {
                self.cluster().hold(connection, id, true);
            }
            return;
        };
        let messages: Vec<(MessageId, Bytes, u64)> = if in_flight {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(c) = carried.iter().find(|c| &c.id == id) {
                    out.push((id.clone(), Bytes::from(c.msg.clone()), c.received_ms));
                } else {
                    match queue.get(connection, id).await {
                        Ok(Some(m)) => out.push((m.id, m.payload, m.received_at_ms)),
                        Ok(None) => {} // acknowledged meanwhile
                        Err(err) => {
                            warn!(error = %err, connection = %connection, "cluster delivery failed; the message is delivered again when its lease ends");
                        }
                    }
                }
            }
            out
        } else {
            let lease = self.config().pickup.redelivery_after_ms;
            match queue.lease_ids(connection, ids, lease).await {
                Ok(leased) => leased
                    .into_iter()
                    .map(|m| (m.id, m.payload, m.received_at_ms))
                    .collect(),
                Err(err) => {
                    warn!(error = %err, connection = %connection, "cluster delivery failed; the messages wait in the queue");
                    return;
                }
            }
        };
        // Not sent (the session closed meanwhile): the session's end gives back what it claimed,
        // and the next session's implicit pickup sends it.
        for (id, payload, received_ms) in messages {
            let _ = self
                .deliver_direct(connection, &session, &id, payload, received_ms, false)
                .await;
        }
    }

    /// Delivers messages another instance queued in flight for this live session.
    // Hot path: the holder's half of a Forward taken by another instance.
    async fn deliver_handed_over(
        &self,
        connection: &ConnectionId,
        live: &LiveSession,
        ids: &[MessageId],
        carried: &[crate::cluster::Carried],
    ) -> Result<usize, InboundError> {
        let mut items: Vec<Item<'_>> = Vec::with_capacity(ids.len());
        let mut read = Vec::new();
        for id in ids {
            if let Some(c) = carried.iter().find(|c| &c.id == id) {
                items.push((&c.id, c.msg.as_bytes(), c.received_ms));
            } else if let Some(m) = self.stores().queue.get(connection, id).await? {
                read.push(m);
            }
        }
        items.extend(
            read.iter()
                .map(|m| (&m.id, &m.payload[..], m.received_at_ms)),
        );
        let sent = self.deliver_live(connection, live, &items)?;
        if sent == 0 && !live.session.is_open() {
            self.stores().queue.unlease(connection, ids).await?;
        }
        Ok(sent)
    }

    /// At-least-once in Live Mode: messages of `connection` that were handed out before and are
    /// waiting again go to its live session here: a delivery nobody acknowledged within the
    /// redelivery period (on this session too: its acknowledgement may have failed), a notice an
    /// instance took but never delivered. Messages never handed out (queued before live mode) are
    /// left for delivery-request.
    pub async fn redeliver_given_back(
        &self,
        connection: &ConnectionId,
    ) -> Result<usize, InboundError> {
        let Some(live) = self.sessions().live(connection) else {
            return Ok(0);
        };
        let batch = self.config().pickup.max_batch;
        let queue = &self.stores().queue;
        let ids: Vec<MessageId> = queue
            .take(connection, batch, None)
            .await?
            .into_iter()
            .filter(|m| m.deliveries > 0)
            .map(|m| m.id)
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let lease = self.config().pickup.redelivery_after_ms;
        // Only those whose lease ended: nobody acknowledged them in time.
        let messages = queue.lease_ids(connection, &ids, lease).await?;
        if messages.is_empty() {
            return Ok(0);
        }
        // They go again all the same. The duplicates counted here: those this session carried,
        // and those handed out before this process started (a socket of its earlier life: a
        // restarted single node has no take-over to count them). What another instance of a
        // cluster carried is counted by the take-over (after its grace for acknowledgements).
        let again: Vec<MessageId> = messages.iter().map(|m| m.id.clone()).collect();
        let started_ms = self.started_ms();
        let handed_before = messages
            .iter()
            .filter(|m| {
                live.session.has_claimed(&m.id)
                    || (m.deliveries > 1 && m.received_at_ms < started_ms)
            })
            .count();
        live.session.release(&again);
        let mut sent = 0;
        for chunk in batches(&messages, batch, self.config().pickup.max_delivery_bytes) {
            let items: Vec<Item<'_>> = chunk
                .iter()
                .map(|m| (&m.id, &m.payload[..], m.received_at_ms))
                .collect();
            sent += self.deliver_live(connection, &live, &items)?;
        }
        self.stats().redelivered(handed_before.min(sent));
        if sent > 0 {
            debug!(connection = %connection, messages = sent, "unacknowledged messages delivered again");
        }
        Ok(sent)
    }

    /// Writes one queued message itself (no pickup wrapper) on `session`, and removes it from the
    /// queue once the socket confirmed it (pong). With `wait`, waits for room in the session's
    /// buffer (paced flushes); without, a full buffer closes the session. Returns a receiver that
    /// says whether it was confirmed and removed, or `None` when it was not sent (already carried
    /// by this session, or the session is gone).
    pub(crate) async fn deliver_direct(
        &self,
        connection: &ConnectionId,
        session: &SessionHandle,
        id: &MessageId,
        payload: Bytes,
        queued_at_ms: u64,
        wait: bool,
    ) -> Option<oneshot::Receiver<bool>> {
        if !session.claim(connection, id) {
            return None;
        }
        let (confirm_tx, confirm_rx) = oneshot::channel();
        let frame = Outbound::Confirmed(payload, confirm_tx);
        let queued = if wait {
            session.send_frame(frame).await
        } else {
            session.push(frame).is_ok()
        };
        if !queued || !session.is_open() {
            return None;
        }
        self.stats().delivered(DeliveryMode::Direct, [queued_at_ms]);
        let (done_tx, done_rx) = oneshot::channel();
        let this = self.clone();
        let (connection, id, session) = (connection.clone(), id.clone(), session.clone());
        let limit = Duration::from_millis(self.config().websocket.confirm_timeout_ms);
        tokio::spawn(async move {
            let removed = match tokio::time::timeout(limit, confirm_rx).await {
                Ok(Ok(())) => match this
                    .stores()
                    .queue
                    .remove(&connection, std::slice::from_ref(&id))
                    .await
                {
                    Ok(_) => {
                        this.stats().acknowledged(1);
                        session.release(std::slice::from_ref(&id));
                        true
                    }
                    Err(err) => {
                        warn!(error = %err, message = %id, "confirmed direct delivery could not be removed from the queue; it may be delivered again");
                        false
                    }
                },
                _ => {
                    debug!(message = %id, "direct delivery not confirmed; it stays queued");
                    false
                }
            };
            let _ = done_tx.send(removed);
        });
        Some(done_rx)
    }

    /// Implicit pickup: sends the connection's waiting messages, oldest first, on a session that
    /// just opened with return route `all`, each removed once confirmed. Stops when none waits,
    /// or when a message goes unconfirmed (the session is failing).
    pub(crate) async fn flush_implicit(&self, connection: &ConnectionId, session: &SessionHandle) {
        let batch = self.config().pickup.max_batch;
        let mut total = 0usize;
        let lease = self.config().pickup.redelivery_after_ms;
        loop {
            let messages = match self
                .stores()
                .queue
                .lease(
                    connection,
                    batch,
                    None,
                    lease,
                    Some(self.config().pickup.max_delivery_bytes),
                )
                .await
            {
                Ok(m) => m,
                Err(err) => {
                    warn!(error = %err, connection = %connection, "implicit pickup: queue unavailable");
                    return;
                }
            };
            if messages.is_empty() {
                break;
            }
            self.stats()
                .redelivered(messages.iter().filter(|q| q.deliveries > 1).count());
            let mut pending = Vec::new();
            for m in messages {
                if let Some(done) = self
                    .deliver_direct(
                        connection,
                        session,
                        &m.id,
                        m.payload,
                        m.received_at_ms,
                        true,
                    )
                    .await
                {
                    pending.push(done);
                } else if !session.is_open() {
                    return;
                }
            }
            for done in pending {
                if !matches!(done.await, Ok(true)) {
                    info!(connection = %connection, "implicit pickup: a message was not confirmed; the rest waits for the next session");
                    return;
                }
                total += 1;
            }
        }
        if total > 0 {
            info!(connection = %connection, messages = total, "implicit pickup: queued messages delivered on the socket");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::Value;

    use super::*;

    #[test]
    fn delivery_plaintext_is_the_json_a_client_expects() {
        let (a, b) = (MessageId::from("a\"1"), MessageId::from("b"));
        let items: Vec<Item<'_>> = vec![(&a, br#"{"protected":"x"}"#, 0), (&b, b"{}", 0)];
        let text = delivery_plaintext(&DocUri::DidcommOrg, Some("t\\h"), Some("key"), &items);
        let v: Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(v["@type"], "https://didcomm.org/messagepickup/2.0/delivery");
        assert_eq!(v["@id"].as_str().unwrap().len(), 36);
        assert_eq!(v["~thread"]["thid"], "t\\h");
        assert_eq!(v["recipient_key"], "key");
        assert_eq!(v["~attach"][0]["@id"], "a\"1");
        assert_eq!(v["~attach"][0]["data"]["json"]["protected"], "x");
        assert_eq!(v["~attach"][1]["@id"], "b");
        let live = delivery_plaintext(&DocUri::DidSov, None, None, &items[1..]);
        let v: Value = serde_json::from_slice(&live).unwrap();
        assert!(v.get("~thread").is_none());
        assert_eq!(
            v["@type"],
            "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/messagepickup/2.0/delivery"
        );
    }
}
