//! The one listener: HTTP POST of envelopes and WebSocket upgrades on `/`, the invitation on
//! `/invitation` (JSON, URL, SVG QR code). Errors become HTTP statuses here and only here.

use std::sync::atomic::Ordering;

use axum::{
    body::Bytes,
    extract::{
        ws::rejection::WebSocketUpgradeRejection,
        ws::{Message as WsMessage, WebSocket},
        DefaultBodyLimit, Query, State, WebSocketUpgrade,
    },
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tracing::{debug, info, warn, Instrument};

use crate::{
    error::InboundError,
    mediator::{Mediator, Via},
    sessions::SessionHandle,
};

/// Content types of DIDComm v1 envelopes (RFC 0025); JSON and none are accepted too, as some
/// agents send them.
const ACCEPTED_TYPES: [&str; 3] = [
    "application/didcomm-envelope-enc",
    "application/ssi-agent-wire",
    "application/json",
];
const ENVELOPE_TYPE: &str = "application/didcomm-envelope-enc";

/// Builds the router.
pub fn router(mediator: Mediator) -> Router {
    let limit = mediator.config().limits.max_message_bytes;
    Router::new()
        .route("/", get(websocket).post(post_envelope))
        .route("/invitation", get(invitation))
        .route("/invitation.svg", get(invitation_svg))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(mediator)
}

impl IntoResponse for InboundError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        (status, Json(body)).into_response()
    }
}

async fn post_envelope(
    State(mediator): State<Mediator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if let Some(ct) = &content_type {
        if !ACCEPTED_TYPES.contains(&ct.as_str()) {
            return InboundError::UnsupportedMediaType(ct.clone()).into_response();
        }
    }
    let span = tracing::info_span!("inbound", transport = "http", bytes = body.len());
    match mediator.receive(&body, Via::Http).instrument(span).await {
        Ok(mut replies) => {
            if replies.is_empty() {
                StatusCode::ACCEPTED.into_response()
            } else {
                // One reply fits in an HTTP response; any further ones were handed to outbound
                // delivery by `receive` (it knows the transport).
                let first = replies.swap_remove(0);
                ([(header::CONTENT_TYPE, ENVELOPE_TYPE)], first).into_response()
            }
        }
        Err(err) => {
            warn!(error = %err, code = err.code(), "inbound HTTP message refused");
            err.into_response()
        }
    }
}

async fn websocket(
    State(mediator): State<Mediator>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return (
            StatusCode::OK,
            "DIDComm mediator: POST envelopes here, or open a WebSocket. Invitation: /invitation\n",
        )
            .into_response();
    };
    let limit = mediator.config().limits.max_message_bytes;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| serve_socket(mediator, socket))
}

async fn serve_socket(mediator: Mediator, socket: WebSocket) {
    let id = mediator.next_session_id.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("websocket", session = id);
    async move {
        debug!("session opened");
        let (handle, mut outbound) = SessionHandle::new(id, 64);
        let (mut sink, mut stream) = socket.split();
        let writer = tokio::spawn(async move {
            while let Some(frame) = outbound.recv().await {
                if sink.send(WsMessage::Binary(frame)).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        while let Some(frame) = stream.next().await {
            let bytes = match frame {
                Ok(WsMessage::Binary(b)) => b,
                Ok(WsMessage::Text(t)) => Bytes::from(t),
                Ok(WsMessage::Close(_)) => break,
                Ok(_) => continue, // ping/pong are answered by the library
                Err(err) => {
                    debug!(error = %err, "socket error");
                    break;
                }
            };
            match mediator.receive(&bytes, Via::WebSocket(&handle)).await {
                Ok(replies) => {
                    for reply in replies {
                        if !handle.send(reply).await {
                            break;
                        }
                    }
                }
                Err(err) => {
                    warn!(error = %err, code = err.code(), "inbound WebSocket message refused");
                    let body =
                        serde_json::json!({ "error": err.code(), "message": err.to_string() });
                    let _ = handle.send(Bytes::from(body.to_string())).await;
                }
            }
        }
        mediator.sessions().unregister(id);
        drop(handle);
        let _ = writer.await;
        debug!("session closed");
    }
    .instrument(span)
    .await
}

#[derive(Deserialize)]
struct InvitationQuery {
    /// `connections` for a Connections-1.0-only invitation.
    handshake: Option<String>,
    /// `url` for the `?oob=` URL as text instead of the invitation JSON.
    format: Option<String>,
    /// `single` for an invitation with only the HTTP service (ACA-Py needs exactly one).
    services: Option<String>,
}

impl InvitationQuery {
    fn pick<'m>(&self, mediator: &'m Mediator) -> &'m crate::invitation::Invitation {
        if self.services.as_deref() == Some("single") {
            mediator.single_service_invitation()
        } else {
            mediator.invitation(self.handshake.as_deref() == Some("connections"))
        }
    }
}

async fn invitation(
    State(mediator): State<Mediator>,
    Query(q): Query<InvitationQuery>,
    headers: HeaderMap,
) -> Response {
    let inv = q.pick(&mediator);
    let wants_text = q.format.as_deref() == Some("url")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.starts_with("text/plain"));
    if wants_text {
        (StatusCode::OK, format!("{}\n", inv.url())).into_response()
    } else {
        // The invitation message itself, as RFC 0434 short-URL resolution expects.
        Json(inv.json().clone()).into_response()
    }
}

async fn invitation_svg(
    State(mediator): State<Mediator>,
    Query(q): Query<InvitationQuery>,
) -> Response {
    let inv = q.pick(&mediator);
    match inv.qr_svg() {
        Some(svg) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "invitation too long for a QR code",
        )
            .into_response(),
    }
}

/// Logs where the server listens.
pub(crate) fn log_listening(addr: std::net::SocketAddr) {
    info!(%addr, "listening (HTTP POST and WebSocket on /)");
}
