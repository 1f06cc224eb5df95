//! Pickup 2.0 (Aries RFC 0685), mediator side: status, delivery, messages-received and
//! live-delivery-change. Delivered messages stay queued until `messages-received` lists them.

use didcomm_envelope::VerKey;
use didcomm_message::{Attachment, ProblemReport, WhoRetries};
use mediator_store::{MessageId, QueueStatus};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use super::basic::reply_recipient as recipient;
use crate::{
    error::InboundError,
    mediator::{Inbound, Mediator, Outgoing, Via},
};

const PROTOCOL: &str = "messagepickup";
const VERSION: (u16, u16) = (2, 0);
/// Largest batch one delivery carries, whatever `limit` asks.
const MAX_DELIVERY: usize = 100;

fn iso(ms: u64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
}

fn parse_key(text: Option<&str>) -> Result<Option<VerKey>, InboundError> {
    text.map(|t| {
        VerKey::parse(t).map_err(|e| InboundError::BadForward(format!("recipient_key: {e}")))
    })
    .transpose()
}

/// The `status` message for a connection (optionally one recipient key).
async fn status(
    m: &Mediator,
    inbound: &Inbound<'_>,
    recipient_key: Option<&str>,
    live: bool,
) -> Result<Outgoing, InboundError> {
    let conn = inbound.connection()?;
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
        status(m, inbound, req.recipient_key.as_deref(), false).await?,
    ])
}

#[derive(Deserialize)]
struct DeliveryRequest {
    limit: usize,
    recipient_key: Option<String>,
}

/// `delivery-request` -> `delivery` (oldest first, not removed), or `status` when empty.
pub async fn delivery_request(
    m: &Mediator,
    inbound: &Inbound<'_>,
) -> Result<Vec<Outgoing>, InboundError> {
    let req: DeliveryRequest = inbound.msg.decode()?;
    let conn = inbound.connection()?;
    let key = parse_key(req.recipient_key.as_deref())?;
    let messages = m
        .stores()
        .queue
        .take(&conn.id, req.limit.min(MAX_DELIVERY), key.as_ref())
        .await?;
    if messages.is_empty() {
        return Ok(vec![
            status(m, inbound, req.recipient_key.as_deref(), false).await?,
        ]);
    }
    let mut attachments = Vec::with_capacity(messages.len());
    for queued in &messages {
        let json: Value = serde_json::from_slice(&queued.payload)
            .map_err(|e| InboundError::Internal(format!("queued message is not JSON: {e}")))?;
        attachments.push(Attachment::json(queued.id.as_str(), json));
    }
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
    tracing::debug!(connection = %conn.id, listed = ids.len(), removed, "messages received");
    Ok(vec![status(m, inbound, None, false).await?])
}

#[derive(Deserialize)]
struct LiveDeliveryChange {
    live_delivery: bool,
}

/// `live-delivery-change` -> `status`; over HTTP (which cannot deliver live) the problem report
/// RFC 0685 prescribes, with `pthid` = the offending message's id.
pub async fn live_delivery_change(
    m: &Mediator,
    inbound: &Inbound<'_>,
) -> Result<Vec<Outgoing>, InboundError> {
    let req: LiveDeliveryChange = inbound.msg.decode()?;
    if req.live_delivery && matches!(inbound.via, Via::Http) {
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
    Ok(vec![status(m, inbound, None, req.live_delivery).await?])
}
