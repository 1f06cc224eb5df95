//! Protocol handlers: plain async functions over the mediator's stores. Each returns the
//! messages to send; the core packs and routes them.

pub mod basic;
pub mod handshake;
pub mod mediation;
pub mod pickup;
pub mod push;
pub mod routing;

use mediator_store::PushPlatform;
use tracing::{debug, info};

use crate::{
    error::InboundError,
    mediator::{Inbound, Mediator, Outgoing, Target},
};

/// The protocols this mediator speaks, for discover-features and the README.
pub const SUPPORTED: &[(&str, u16, u16)] = &[
    ("out-of-band", 1, 1),
    ("didexchange", 1, 1),
    ("connections", 1, 0),
    ("trust_ping", 1, 0),
    ("discover-features", 1, 0),
    ("discover-features", 2, 0),
    ("coordinate-mediation", 1, 0),
    ("routing", 1, 0),
    ("messagepickup", 1, 0),
    ("messagepickup", 2, 0),
    ("notification", 1, 0),
    ("push-notifications-fcm", 1, 0),
    ("push-notifications-apns", 1, 0),
];

/// Dispatches on (protocol, major version, name): minor versions are compatible (RFC 0003).
pub async fn dispatch(m: &Mediator, inbound: &Inbound<'_>) -> Result<Vec<Outgoing>, InboundError> {
    let ty = &inbound.msg.ty;
    debug!(r#type = %ty, "dispatch");
    m.refuse_replay(inbound).await?;
    match (ty.protocol(), ty.major(), ty.name()) {
        ("didexchange", 1, "request") => handshake::didexchange_request(m, inbound).await,
        ("connections", 1, "request") => handshake::connections_request(m, inbound).await,
        ("didexchange", 1, "complete") => handshake::didexchange_complete(m, inbound).await,
        ("out-of-band", 1, "handshake-reuse") => handshake::reuse(m, inbound).await,
        (_, _, _) if matches!(inbound.target, Target::Connection(_)) => {
            on_connection(m, inbound).await
        }
        _ => Err(InboundError::NoConnection(ty.to_string())),
    }
}

async fn on_connection(m: &Mediator, inbound: &Inbound<'_>) -> Result<Vec<Outgoing>, InboundError> {
    let conn = inbound.connection()?;
    // A Connections 1.0 client has no `complete`: its first authenticated message completes it.
    m.complete_connection(conn).await?;
    let ty = &inbound.msg.ty;
    match (ty.protocol(), ty.major(), ty.name()) {
        ("trust_ping", 1, "ping") => basic::trust_ping(m, inbound),
        ("trust_ping", 1, "ping_response") => Ok(Vec::new()),
        ("discover-features", 1, "query") => basic::discover_v1(m, inbound),
        ("discover-features", 2, "queries") => basic::discover_v2(m, inbound),
        ("coordinate-mediation", 1, "mediate-request") => mediation::request(m, inbound).await,
        ("coordinate-mediation", 1, "keylist-update") => {
            mediation::keylist_update(m, inbound).await
        }
        ("coordinate-mediation", 1, "keylist-query") => mediation::keylist_query(m, inbound).await,
        ("messagepickup", 2, "status-request") => pickup::status_request(m, inbound).await,
        ("messagepickup", 2, "delivery-request") => pickup::delivery_request(m, inbound).await,
        ("messagepickup", 2, "messages-received") => pickup::messages_received(m, inbound).await,
        ("messagepickup", 2, "live-delivery-change") => {
            pickup::live_delivery_change(m, inbound).await
        }
        ("messagepickup", 1, "batch-pickup") => pickup::batch_pickup(m, inbound).await,
        ("messagepickup", 1, "status-request") => pickup::status_request_v1(m, inbound).await,
        ("messagepickup", 1, "noop") => pickup::noop(m, inbound).await,
        ("push-notifications-fcm", 1, "set-device-info") => {
            push::set_device_info(m, inbound, PushPlatform::Fcm).await
        }
        ("push-notifications-fcm", 1, "get-device-info") => {
            push::get_device_info(m, inbound, PushPlatform::Fcm).await
        }
        ("push-notifications-apns", 1, "set-device-info") => {
            push::set_device_info(m, inbound, PushPlatform::Apns).await
        }
        ("push-notifications-apns", 1, "get-device-info") => {
            push::get_device_info(m, inbound, PushPlatform::Apns).await
        }
        (_, _, _) if ty.is_problem_report() => {
            info!(report = %serde_json::Value::Object(inbound.msg.body.clone()), "problem report received");
            Ok(Vec::new())
        }
        _ => basic::unsupported(m, inbound),
    }
}
