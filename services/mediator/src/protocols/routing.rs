//! Routing 1.0 Forward: persist first, answer after, then deliver by the forwarding strategy
//! (see [`ForwardingStrategy`]).
//!
//! The inner message is stored exactly as received (the raw JSON text of `msg`) in the queue of
//! the connection that registered `to`, and only then does the transport answer the sender. A
//! client with an endpoint of its own (ACA-Py) then gets it POSTed there, retried until it
//! succeeds; it leaves the queue only after that delivery.

use bytes::Bytes;
use didcomm_envelope::VerKey;
use serde_json::value::RawValue;
use tracing::debug;

use crate::{
    config::ForwardingStrategy,
    error::InboundError,
    mediator::{is_deliverable, Mediator},
};

/// Handles one Forward: queue it, then deliver it as the forwarding strategy says.
// Hot path: one call per Forward: key lookup, one enqueue, then (live client) one pack and a
// channel send, or (client with an endpoint) a record lookup and a delivery spawn.
pub async fn forward(m: &Mediator, to: &str, msg: &RawValue) -> Result<(), InboundError> {
    let key = VerKey::parse(to).map_err(|e| InboundError::BadForward(format!("`to`: {e}")))?;
    let stores = m.stores();
    let connection = stores
        .mediation
        .connection_for_key(&key)
        .await?
        .ok_or_else(|| InboundError::UnknownForwardRecipient(to.to_owned()))?;
    let payload = Bytes::copy_from_slice(msg.get().as_bytes());
    let id = stores
        .queue
        .add(&connection, &[key], payload.clone())
        .await?;
    m.stats().forward_queued();
    debug!(connection = %connection, message = %id, bytes = payload.len(), "forward queued");

    let on_session = match m.config().pickup.forwarding {
        ForwardingStrategy::QueueOnly => false,
        ForwardingStrategy::QueueAndLive => match m.sessions().live(&connection) {
            Some(live) => m.deliver_live(&connection, &live, &[(&id, &payload[..])])? > 0,
            None => false,
        },
        ForwardingStrategy::Direct => match m.sessions().latest(&connection) {
            Some(session) => m
                .deliver_direct(&connection, &session, &id, payload.clone(), false)
                .await
                .is_some(),
            None => false,
        },
    };
    if on_session {
        return Ok(());
    }
    // Clients with their own endpoint do not pick up: push to them.
    if let Some(record) = stores.connections.get(&connection).await? {
        if let Some(endpoint) = record.their_endpoint.filter(|e| is_deliverable(e)) {
            m.spawn_delivery(endpoint, payload, Some((connection, id)));
        }
    }
    Ok(())
}
