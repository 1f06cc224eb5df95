//! Pickup 2.0 (Aries RFC 0685), mediator side: status, delivery, messages-received and
//! live-delivery-change; and Pickup 1.0 (RFC 0212: batch-pickup, status, noop) for older clients.
//!
//! Delivered messages stay queued until `messages-received` lists them. Pickup 1.0 has no
//! acknowledgement: a connection's next Pickup 1.0 request acknowledges the batch sent before it
//! (a client that vanished gets that batch again, never loses it).
//!
//! Live Mode: `live-delivery-change` true on a WebSocket makes that socket the connection's live
//! session ([`crate::sessions::Sessions::set_live`]); Forwards then go out on it at once (see
//! [`super::routing`]). Over HTTP it is refused with the RFC's problem report.

use didcomm_envelope::VerKey;
use didcomm_message::{Attachment, ProblemReport, WhoRetries};
use mediator_store::{MessageId, QueueStatus};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::basic::reply_recipient as recipient;
use crate::{
    error::InboundError,
    mediator::{Inbound, Mediator, Outgoing, Via},
    sessions::LiveSession,
};

const PROTOCOL: &str = "messagepickup";
const VERSION: (u16, u16) = (2, 0);
const VERSION_1: (u16, u16) = (1, 0);

/// Milliseconds since 1970 as an ISO 8601 UTC time with milliseconds, the form credo-ts writes
/// (`2026-11-22T09:32:48.721Z`): fixed width, so the texts also sort as the times do.
fn iso(ms: u64) -> Option<String> {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
}

fn parse_key(text: Option<&str>) -> Result<Option<VerKey>, InboundError> {
    text.map(|t| {
        VerKey::parse(t).map_err(|e| InboundError::BadField(format!("recipient_key: {e}")))
    })
    .transpose()
}

/// The `status` message for a connection (optionally one recipient key).
async fn status(
    m: &Mediator,
    inbound: &Inbound<'_>,
    recipient_key: Option<&str>,
    live: Option<bool>,
) -> Result<Outgoing, InboundError> {
    let conn = inbound.connection()?;
    let live = live.unwrap_or_else(|| m.sessions().live(&conn.id).is_some());
    let key = parse_key(recipient_key)?;
    let st: QueueStatus = m.stores().queue.status(&conn.id, key.as_ref()).await?;
    let now = mediator_store::unix_ms_now();
    let mut body = Map::new();
    if let Some(k) = recipient_key {
        body.insert("recipient_key".into(), Value::from(k));
    }
    body.insert("message_count".into(), json!(st.message_count));
    body.insert("total_bytes".into(), json!(st.total_bytes));
    body.insert("live_delivery".into(), json!(live));
    if let Some(oldest) = st.oldest_received_ms {
        body.insert(
            "longest_waited_seconds".into(),
            json!(now.saturating_sub(oldest) / 1000),
        );
        body.insert("oldest_received_time".into(), json!(iso(oldest)));
    }
    if let Some(newest) = st.newest_received_ms {
        body.insert("newest_received_time".into(), json!(iso(newest)));
    }
    let msg = inbound
        .msg
        .reply_to(inbound.reply_type(PROTOCOL, VERSION, "status"))
        .with_body(&Value::Object(body))?;
    Ok(Outgoing {
        msg,
        to: recipient(m, inbound)?,
    })
}

#[derive(Deserialize)]
struct StatusRequest {
    recipient_key: Option<String>,
}

/// `status-request` -> `status`.
pub async fn status_request(
    m: &Mediator,
    inbound: &Inbound<'_>,
) -> Result<Vec<Outgoing>, InboundError> {
    let req: StatusRequest = inbound.msg.decode()?;
    Ok(vec![
        status(m, inbound, req.recipient_key.as_deref(), None).await?,
    ])
}

#[derive(Deserialize)]
struct DeliveryRequest {
    limit: usize,
    recipient_key: Option<String>,
}

/// Hands out waiting messages (oldest first, at most `pickup.max_delivery_bytes` of them but
/// always one) and puts them in flight; counts redeliveries.
async fn lease(
    m: &Mediator,
    connection: &mediator_store::ConnectionId,
    limit: usize,
    key: Option<&VerKey>,
) -> Result<Vec<mediator_store::QueuedMessage>, InboundError> {
    let messages = m
        .stores()
        .queue
        .lease(
            connection,
            limit,
            key,
            m.config().pickup.redelivery_after_ms,
            Some(m.config().pickup.max_delivery_bytes),
        )
        .await?;
    m.stats()
        .redelivered(messages.iter().filter(|q| q.deliveries > 1).count());
    Ok(messages)
}

/// `delivery-request` -> `delivery` of waiting messages (oldest first; they stay queued, in
/// flight, until `messages-received`), or `status` when none waits. On a WebSocket, messages that
/// socket already carried are not sent again.
pub async fn delivery_request(
    m: &Mediator,
    inbound: &Inbound<'_>,
) -> Result<Vec<Outgoing>, InboundError> {
    let req: DeliveryRequest = inbound.msg.decode()?;
    let conn = inbound.connection()?;
    let key = parse_key(req.recipient_key.as_deref())?;
    let limit = req.limit.min(m.config().pickup.max_batch);
    let mut messages = lease(m, &conn.id, limit, key.as_ref()).await?;
    if let Via::WebSocket(session) = inbound.via {
        messages.retain(|q| session.claim(&conn.id, &q.id));
    }
    if messages.is_empty() {
        return Ok(vec![
            status(m, inbound, req.recipient_key.as_deref(), None).await?,
        ]);
    }
    let mut attachments = Vec::with_capacity(messages.len());
    for queued in &messages {
        let json: Value = serde_json::from_slice(&queued.payload)
            .map_err(|e| InboundError::Internal(format!("queued message is not JSON: {e}")))?;
        attachments.push(Attachment::json(queued.id.as_str(), json));
    }
    m.stats().delivered(
        crate::stats::DeliveryMode::Pickup,
        messages.iter().map(|q| q.received_at_ms),
    );
    let mut body = Map::new();
    if let Some(k) = &req.recipient_key {
        body.insert("recipient_key".into(), Value::from(k.as_str()));
    }
    body.insert(
        "~attach".into(),
        serde_json::to_value(&attachments).map_err(|e| InboundError::Internal(e.to_string()))?,
    );
    let msg = inbound
        .msg
        .reply_to(inbound.reply_type(PROTOCOL, VERSION, "delivery"))
        .with_body(&Value::Object(body))?;
    Ok(vec![Outgoing {
        msg,
        to: recipient(m, inbound)?,
    }])
}

#[derive(Deserialize)]
struct MessagesReceived {
    #[serde(default)]
    message_id_list: Vec<String>,
    #[serde(default)]
    message_tag_list: Vec<String>,
}

/// `messages-received` -> remove exactly those messages of this connection, answer `status`.
pub async fn messages_received(
    m: &Mediator,
    inbound: &Inbound<'_>,
) -> Result<Vec<Outgoing>, InboundError> {
    let req: MessagesReceived = inbound.msg.decode()?;
    let conn = inbound.connection()?;
    let ids: Vec<MessageId> = req
        .message_id_list
        .into_iter()
        .chain(req.message_tag_list)
        .map(MessageId::from)
        .collect();
    let removed = m.stores().queue.remove(&conn.id, &ids).await?;
    m.stats().acknowledged(removed);
    if let Some(live) = m.sessions().live(&conn.id) {
        live.session.release(&ids);
    }
    if let Via::WebSocket(session) = inbound.via {
        session.release(&ids);
    }
    tracing::debug!(connection = %conn.id, listed = ids.len(), removed, "messages received");
    // The status answer is a SHOULD (RFC 0685). A live client acknowledges as deliveries come;
    // on a WebSocket, a burst of acknowledgements gets one status per
    // `pickup.status_interval_ms` (each costs a queue read and a packed reply).
    if let Via::WebSocket(session) = inbound.via {
        if !session.status_due(m.config().pickup.status_interval_ms) {
            m.stats().status_skipped();
            return Ok(Vec::new());
        }
    }
    Ok(vec![status(m, inbound, None, None).await?])
}

#[derive(Deserialize)]
struct LiveDeliveryChange {
    live_delivery: bool,
}

/// `live-delivery-change` -> `status`. True on a WebSocket makes it the connection's live
/// session; false ends the connection's live session. True over HTTP (which cannot deliver live)
/// gets the problem report RFC 0685 prescribes, with `pthid` = the offending message's id.
pub async fn live_delivery_change(
    m: &Mediator,
    inbound: &Inbound<'_>,
) -> Result<Vec<Outgoing>, InboundError> {
    let req: LiveDeliveryChange = inbound.msg.decode()?;
    let conn = inbound.connection()?;
    match (req.live_delivery, inbound.via) {
        (true, Via::Http) => {
            let msg = ProblemReport::new("live-delivery-not-supported")
                .with_text("Connection does not support Live Delivery")
                .with_who_retries(WhoRetries::None)
                .builder()
                .child_of(&inbound.msg)
                .build();
            return Ok(vec![Outgoing {
                msg,
                to: recipient(m, inbound)?,
            }]);
        }
        (true, Via::WebSocket(session)) => {
            let to = recipient(m, inbound)?;
            m.sessions().set_live(
                &conn.id,
                LiveSession {
                    session: session.clone(),
                    their_keys: to.keys,
                    our_key: to.from,
                    doc_uri: inbound.msg.ty.doc_uri().clone(),
                },
            );
        }
        (false, _) => m.sessions().clear_live(&conn.id, None),
    }
    Ok(vec![
        status(m, inbound, None, Some(req.live_delivery)).await?,
    ])
}

/// Pickup 1.0: the batch sent to this connection before is acknowledged by its next request.
async fn acknowledge_v1_batch(m: &Mediator, inbound: &Inbound<'_>) -> Result<(), InboundError> {
    let conn = inbound.connection()?;
    let previous = m
        .v1_unacknowledged
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&conn.id);
    if let Some(ids) = previous {
        let removed = m.stores().queue.remove(&conn.id, &ids).await?;
        m.stats().acknowledged(removed);
    }
    Ok(())
}

#[derive(Deserialize)]
struct BatchPickup {
    batch_size: usize,
}

/// Pickup 1.0 `batch-pickup` -> `batch` of up to `batch_size` messages, oldest first.
pub async fn batch_pickup(
    m: &Mediator,
    inbound: &Inbound<'_>,
) -> Result<Vec<Outgoing>, InboundError> {
    let req: BatchPickup = inbound.msg.decode()?;
    acknowledge_v1_batch(m, inbound).await?;
    let conn = inbound.connection()?;
    let limit = req.batch_size.min(m.config().pickup.max_batch);
    let mut messages = lease(m, &conn.id, limit, None).await?;
    if let Via::WebSocket(session) = inbound.via {
        messages.retain(|q| session.claim(&conn.id, &q.id));
    }
    let items: Vec<Value> = messages
        .iter()
        .map(|q| {
            let json: Value = serde_json::from_slice(&q.payload)
                .map_err(|e| InboundError::Internal(format!("queued message is not JSON: {e}")))?;
            // RFC 0212 names the id `@id`; credo-ts reads `id`: both are given.
            Ok(json!({"@id": q.id.as_str(), "id": q.id.as_str(), "message": json}))
        })
        .collect::<Result<_, InboundError>>()?;
    m.stats().delivered(
        crate::stats::DeliveryMode::Pickup,
        messages.iter().map(|q| q.received_at_ms),
    );
    m.v1_unacknowledged
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            conn.id.clone(),
            messages.into_iter().map(|q| q.id).collect(),
        );
    let msg = inbound
        .msg
        .reply_to(inbound.reply_type(PROTOCOL, VERSION_1, "batch"))
        .with_body(&json!({ "messages~attach": items }))?;
    Ok(vec![Outgoing {
        msg,
        to: recipient(m, inbound)?,
    }])
}

/// Pickup 1.0 `status-request` -> `status` (`message_count`, `duration_waited`, `total_size`).
pub async fn status_request_v1(
    m: &Mediator,
    inbound: &Inbound<'_>,
) -> Result<Vec<Outgoing>, InboundError> {
    acknowledge_v1_batch(m, inbound).await?;
    let conn = inbound.connection()?;
    let st = m.stores().queue.status(&conn.id, None).await?;
    let now = mediator_store::unix_ms_now();
    let mut body = Map::new();
    body.insert("message_count".into(), json!(st.message_count));
    body.insert("total_size".into(), json!(st.total_bytes));
    if let Some(oldest) = st.oldest_received_ms {
        body.insert(
            "duration_waited".into(),
            json!(now.saturating_sub(oldest) / 1000),
        );
    }
    if let Some(newest) = st.newest_received_ms {
        body.insert("last_added_time".into(), json!(iso(newest)));
    }
    let msg = inbound
        .msg
        .reply_to(inbound.reply_type(PROTOCOL, VERSION_1, "status"))
        .with_body(&Value::Object(body))?;
    Ok(vec![Outgoing {
        msg,
        to: recipient(m, inbound)?,
    }])
}

/// Pickup 1.0 `noop`: nothing to answer; on a WebSocket with return route `all` it asks for the
/// queued messages to come down the socket (implicit pickup).
pub async fn noop(m: &Mediator, inbound: &Inbound<'_>) -> Result<Vec<Outgoing>, InboundError> {
    acknowledge_v1_batch(m, inbound).await?;
    if let Via::WebSocket(session) = inbound.via {
        if inbound.msg.return_route() == didcomm_message::ReturnRoute::All {
            let conn = inbound.connection()?.id.clone();
            let (this, session) = (m.clone(), session.clone());
            tokio::spawn(async move { this.flush_implicit(&conn, &session).await });
        }
    }
    Ok(Vec::new())
}
