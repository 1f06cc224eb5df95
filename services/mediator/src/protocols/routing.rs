//! Routing 1.0 Forward: persist first, answer after, then deliver by the forwarding strategy
//! (see [`ForwardingStrategy`]).
//!
//! The inner message is stored exactly as received (the raw JSON text of `msg`) in the queue of
//! the connection that registered `to`, and only then does the transport answer the sender. A
//! client with an endpoint of its own (ACA-Py) then gets it POSTed there, retried until it
//! succeeds; it leaves the queue only after that delivery.

use bytes::Bytes;
use serde_json::value::RawValue;
use tracing::{debug, warn};

use crate::{
    config::ForwardingStrategy,
    endpoint::Purpose,
    error::InboundError,
    mediator::{is_deliverable, Mediator},
    sessions::{LiveSession, SessionHandle},
};

/// Where a Forward goes at once, besides the queue.
enum OnSession {
    Live(std::sync::Arc<LiveSession>),
    Direct(SessionHandle),
    /// Another instance holds the live session: it gets a notice and delivers.
    Remote(mediator_store::LiveHolder),
}

/// Whether `connection` has, now, the session its Forwards go out on at once.
fn opened_meanwhile(m: &Mediator, connection: &mediator_store::ConnectionId) -> bool {
    match m.config().pickup.forwarding {
        ForwardingStrategy::QueueOnly => false,
        ForwardingStrategy::QueueAndLive => m.sessions().live(connection).is_some(),
        ForwardingStrategy::Direct => m.sessions().latest(connection).is_some(),
    }
}

/// Handles one Forward: queue it, then deliver it as the forwarding strategy says.
// Hot path: one call per Forward: key lookup, one enqueue, then (live client) one pack and a
// channel send, or (client with an endpoint) a record lookup and a delivery spawn.
pub async fn forward(m: &Mediator, to: &str, msg: &RawValue) -> Result<(), InboundError> {
    m.stats().forward_received();
    // This instance's clock at arrival: the delivery latency of a Forward delivered as it comes.
    let received_ms = mediator_store::unix_ms_now();
    let stores = m.stores();
    let (key, connection) = m
        .key_routes()
        .resolve(&*stores.mediation, to)
        .await
        .map_err(|e| match e {
            crate::keyroutes::ResolveError::BadKey(e) => {
                InboundError::BadForward(format!("`to`: {e}"))
            }
            crate::keyroutes::ResolveError::Store(e) => InboundError::Store(e),
        })?;
    let connection =
        connection.ok_or_else(|| InboundError::UnknownForwardRecipient(to.to_owned()))?;
    let payload = Bytes::copy_from_slice(msg.get().as_bytes());
    let session = match m.config().pickup.forwarding {
        ForwardingStrategy::QueueOnly => None,
        ForwardingStrategy::QueueAndLive => match m.sessions().live(&connection) {
            Some(live) => Some(OnSession::Live(live)),
            None => m
                .cluster()
                .remote_holder(&connection)
                .map(OnSession::Remote),
        },
        ForwardingStrategy::Direct => match m.sessions().latest(&connection) {
            Some(session) => Some(OnSession::Direct(session)),
            None => m
                .cluster()
                .remote_holder(&connection)
                .map(OnSession::Remote),
        },
    };
    // Going out on a session (here or on the holder's instance) at once: queued in flight, so no
    // pickup hands it out too. To a session on another instance, the notice goes with the add
    // when the queue can publish it (Redis on one node): one round trip for both.
    let lease = m.config().pickup.redelivery_after_ms;
    let epoch = m.cluster().epoch();
    let traceparent = crate::telemetry::current_traceparent();
    let carries = payload.len() <= crate::cluster::MAX_CARRIED_BYTES;
    let (id, heard_with_add) = match &session {
        Some(OnSession::Remote(holder)) => match m.cluster().deliver_channel(holder) {
            Some(channel) => {
                let notice = |id: &mediator_store::MessageId| {
                    // Small ones carried: the holder need not read them back from the queue.
                    let carried = carries.then(|| crate::cluster::Carried {
                        id: id.clone(),
                        received_ms,
                        msg: msg.get().to_owned(),
                    });
                    // A notice of these types always encodes; an empty one would be dropped by
                    // the holder as unreadable and the message redelivered after its lease.
                    crate::cluster::Cluster::forward_notice(
                        &connection,
                        id,
                        carried,
                        traceparent.clone(),
                    )
                    .unwrap_or_default()
                };
                stores
                    .queue
                    .add_leased_announced(
                        &connection,
                        &[key],
                        payload.clone(),
                        lease,
                        mediator_store::Announcement {
                            channel: &channel,
                            notice: &notice,
                        },
                    )
                    .await?
            }
            None => (
                stores
                    .queue
                    .add_leased(&connection, &[key], payload.clone(), lease)
                    .await?,
                None,
            ),
        },
        Some(_) => (
            stores
                .queue
                .add_leased(&connection, &[key], payload.clone(), lease)
                .await?,
            None,
        ),
        None => (
            stores
                .queue
                .add(&connection, &[key], payload.clone())
                .await?,
            None,
        ),
    };
    m.stats().forward_queued();
    debug!(connection = %connection, message = %id, bytes = payload.len(), "forward queued");
    if session.is_none() {
        if let Some(notifier) = m.notifier() {
            // Not connected here: maybe wake it (a task of its own; the 202 does not wait).
            notifier.queued(m, &connection);
        }
    }
    if session.is_none() && m.config().pickup.forwarding != ForwardingStrategy::QueueOnly {
        if m.cluster().is_clustered() {
            // No route known: a session may be opening elsewhere right now.
            m.cluster()
                .hold_and_recheck(m, &connection, &id, None, epoch);
        } else if opened_meanwhile(m, &connection) {
            // A session went live here between the look-up above and the add: nothing told it
            // of this message (its `status` may have counted the queue before the add), so it
            // goes now, if nothing took it meanwhile. Rare: no cost otherwise but a map lookup.
            m.deliver_notice(&connection, std::slice::from_ref(&id), false, None, &[])
                .await;
        }
    }

    if let Some(session) = session {
        let sent = match session {
            OnSession::Live(live) => {
                m.deliver_live(&connection, &live, &[(&id, &payload[..], received_ms)])? > 0
            }
            OnSession::Direct(s) => m
                .deliver_direct(&connection, &s, &id, payload.clone(), received_ms, false)
                .await
                .is_some(),
            OnSession::Remote(holder) => {
                let heard = match heard_with_add {
                    Some(heard) => heard > 0,
                    None => match m
                        .cluster()
                        .notify(
                            &holder,
                            &connection,
                            std::slice::from_ref(&id),
                            true,
                            traceparent,
                            if carries {
                                vec![crate::cluster::Carried {
                                    id: id.clone(),
                                    received_ms,
                                    msg: msg.get().to_owned(),
                                }]
                            } else {
                                Vec::new()
                            },
                        )
                        .await
                    {
                        Ok(heard) => heard > 0,
                        Err(err) => {
                            warn!(error = %err, holder = %holder.instance, "notice to the live session's instance failed; the message waits in the queue");
                            false
                        }
                    },
                };
                if !heard {
                    // Its holder is gone or deaf: given back below, and delivered when a live
                    // session is announced (or at once if one became known meanwhile).
                    stores
                        .queue
                        .unlease(&connection, std::slice::from_ref(&id))
                        .await?;
                    m.cluster()
                        .hold_and_recheck(m, &connection, &id, Some(&holder), epoch);
                    return Ok(());
                }
                heard
            }
        };
        if sent {
            return Ok(());
        }
        // The session went away meanwhile (or its instance did not hear): the message waits.
        stores
            .queue
            .unlease(&connection, std::slice::from_ref(&id))
            .await?;
    }
    // Clients with their own endpoint do not pick up: push to them, once their handshake
    // completed (a stranger's unfinished handshake buys no outbound requests).
    let endpoint = m
        .key_routes()
        .completed_endpoint(&*stores.connections, &connection)
        .await?;
    if let Some(endpoint) = endpoint.as_deref().filter(|e| is_deliverable(e)) {
        m.deliver_to_endpoint(endpoint, payload, Purpose::Queued(connection, id));
    }
    Ok(())
}
