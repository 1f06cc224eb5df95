//! Connection handshakes, responder side (being written).

use crate::{
    error::InboundError,
    mediator::{Inbound, Mediator, Outgoing},
};

/// DID Exchange `request`.
pub async fn didexchange_request(
    _m: &Mediator,
    i: &Inbound<'_>,
) -> Result<Vec<Outgoing>, InboundError> {
    Err(InboundError::NoConnection(i.msg.ty.to_string()))
}
/// Connections 1.0 `request`.
pub async fn connections_request(
    _m: &Mediator,
    i: &Inbound<'_>,
) -> Result<Vec<Outgoing>, InboundError> {
    Err(InboundError::NoConnection(i.msg.ty.to_string()))
}
/// DID Exchange `complete`.
pub async fn didexchange_complete(
    m: &Mediator,
    i: &Inbound<'_>,
) -> Result<Vec<Outgoing>, InboundError> {
    m.complete_connection(i.connection()?).await?;
    Ok(Vec::new())
}
/// OOB `handshake-reuse`.
pub async fn reuse(_m: &Mediator, i: &Inbound<'_>) -> Result<Vec<Outgoing>, InboundError> {
    Err(InboundError::NoConnection(i.msg.ty.to_string()))
}
