//! The one listener: HTTP POST of envelopes and WebSocket upgrades on `/`, the invitation on
//! `/invitation` (JSON, URL, SVG QR code). Errors become HTTP statuses here and only here.
//!
//! The per-request limits are applied here: the body read timeout, the rate limits of messages
//! and upgrades ([`crate::ratelimit`]), the cap on WebSockets of the instance and their buffer
//! sizes. The connection-level ones are in [`crate::transport`].

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    extract::{
        ws::rejection::WebSocketUpgradeRejection,
        ws::{Message as WsMessage, WebSocket},
        ConnectInfo, Extension, Query, State, WebSocketUpgrade,
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
    error::{InboundError, Refusal},
    mediator::{Mediator, Via},
    ratelimit::{Class, RateLimiter},
    sessions::{Outbound, SessionHandle},
    stats::Limit,
};

/// Content types of DIDComm v1 envelopes (RFC 0025); JSON and none are accepted too, as some
/// agents send them.
const ACCEPTED_TYPES: [&str; 3] = [
    "application/didcomm-envelope-enc",
    "application/ssi-agent-wire",
    "application/json",
];
const ENVELOPE_TYPE: &str = "application/didcomm-envelope-enc";

/// Builds the router. Requests must carry the TCP peer as `ConnectInfo<SocketAddr>` (the
/// [`crate::transport`] loop puts it there).
pub fn router(mediator: Mediator, limiter: RateLimiter) -> Router {
    let edge = Edge {
        limiter,
        websockets: Arc::new(AtomicUsize::new(0)),
    };
    Router::new()
        .route("/", get(websocket).post(post_envelope))
        .route("/invitation", get(invitation))
        .route(crate::invitation::SHORT_PATH, get(short_invitation))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/invitation.svg", get(invitation_svg))
        .layer(Extension(edge))
        .with_state(mediator)
}

/// What the handlers share besides the mediator: the rate limiter and the count of open
/// WebSockets.
#[derive(Debug, Clone)]
struct Edge {
    limiter: RateLimiter,
    websockets: Arc<AtomicUsize>,
}

/// One place under `websocket.max_sessions`, held by a WebSocket from its upgrade to its close.
#[derive(Debug)]
struct SocketSlot(Arc<AtomicUsize>);

impl SocketSlot {
    /// A place, if fewer than `max` sockets are open (0: no cap).
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        let before = open.fetch_add(1, Ordering::AcqRel);
        let slot = Self(open.clone());
        (max == 0 || before < max).then_some(slot)
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl IntoResponse for InboundError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "error": self.code(), "message": self.public_message() });
        (status, Json(body)).into_response()
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        let mut response = (self.status(), Json(body)).into_response();
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
    }
}

/// Takes a token of `class` for `client`, or the refusal to answer with (counted as `limit`).
fn rate_limit(
    mediator: &Mediator,
    limiter: &RateLimiter,
    class: Class,
    client: IpAddr,
    limit: Limit,
) -> Result<(), Refusal> {
    limiter.check(class, client).map_err(|wait| {
        mediator.stats().refused(limit);
        debug!(%client, ?class, "over the rate limit");
        Refusal::RateLimited(wait.seconds())
    })
}

/// Reads a whole request body of at most `max` bytes within `timeout`.
async fn read_body(
    mediator: &Mediator,
    headers: &HeaderMap,
    body: Body,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, Refusal> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(Refusal::TooLarge(max));
    }
    let read = async {
        let mut stream = body.into_data_stream();
        let mut buf = Vec::with_capacity(declared.map_or(0, |n| n as usize));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(Refusal::BodyRead)?;
            if buf.len() + chunk.len() > max {
                return Err(Refusal::TooLarge(max));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(read) => read,
        Err(_) => {
            mediator.stats().refused(Limit::BodyTimeout);
            Err(Refusal::BodyTimeout(timeout.as_millis() as u64))
        }
    }
}

async fn post_envelope(
    State(mediator): State<Mediator>,
    Extension(edge): Extension<Edge>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let client = edge.limiter.client(peer, &headers);
    if let Err(refusal) = rate_limit(
        &mediator,
        &edge.limiter,
        Class::Messages,
        client,
        Limit::RateMessages,
    ) {
        return refusal.into_response();
    }
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
    let body = match read_body(
        &mediator,
        &headers,
        body,
        mediator.config().limits.max_message_bytes,
        Duration::from_millis(mediator.config().transport.body_timeout_ms),
    )
    .await
    {
        Ok(body) => body,
        Err(refusal) => {
            debug!(error = %refusal, "HTTP body refused");
            return refusal.into_response();
        }
    };
    let span = crate::hot_span!(
        "inbound",
        transport = "http",
        bytes = body.len(),
        mediator.instance = %mediator.cluster().instance_id()
    );
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
    Extension(edge): Extension<Edge>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return (
            StatusCode::OK,
            "DIDComm mediator: POST envelopes here, or open a WebSocket. Invitation: /invitation\n",
        )
            .into_response();
    };
    if !mediator.accepts_websockets() {
        // Draining: clients retry, ideally on another replica.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "not accepting WebSocket sessions now\n",
        )
            .into_response();
    }
    let client = edge.limiter.client(peer, &headers);
    if let Err(refusal) = rate_limit(
        &mediator,
        &edge.limiter,
        Class::Upgrades,
        client,
        Limit::RateUpgrades,
    ) {
        return refusal.into_response();
    }
    let config = mediator.config();
    let Some(slot) = SocketSlot::take(&edge.websockets, config.websocket.max_sessions) else {
        mediator.stats().refused(Limit::WebSockets);
        return Refusal::Busy("this instance holds as many WebSockets as it may").into_response();
    };
    let limit = config.limits.max_message_bytes;
    // Small buffers: an idle socket costs little (tungstenite's defaults are 128 KiB each). The
    // write side may hold one whole message beyond its buffer before the writer waits.
    let ws = ws
        .max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(config.websocket.read_buffer_bytes)
        .write_buffer_size(config.websocket.write_buffer_bytes)
        .max_write_buffer_size(
            config.websocket.write_buffer_bytes + limit + MAX_WRITE_BUFFER_SLACK,
        );
    let limiter = edge.limiter.clone();
    ws.on_upgrade(move |socket| async move {
        let _slot = slot;
        serve_socket(mediator, socket, limiter, client).await;
    })
}

/// Room in a socket's write buffer beyond one whole message (frame headers, pings, a close).
const MAX_WRITE_BUFFER_SLACK: usize = 64 * 1024;

/// One WebSocket session: this task reads and handles inbound frames; a writer task owns the
/// sink, sends keepalive pings, and follows confirmed frames with a ping whose pong confirms them.
///
/// Data frames are rate limited per client address (`rate_limit.messages_*`): a frame over the
/// limit is not processed and is answered with a `rate_limited` JSON error frame; the socket
/// stays open (closing it would only make the client reconnect, which costs more).
async fn serve_socket(mediator: Mediator, socket: WebSocket, limiter: RateLimiter, client: IpAddr) {
    let id = mediator.next_session_id.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("websocket", session = id);
    async move {
        debug!("session opened");
        let ws_config = mediator.config().websocket.clone();
        let (handle, outbound) = SessionHandle::new(id, ws_config.outbound_buffer);
        let (sink, mut stream) = socket.split();
        let writer = tokio::spawn(
            write_session(sink, outbound, handle.clone(), ws_config).in_current_span(),
        );
        let closing = handle.closing();
        tokio::pin!(closing);
        loop {
            let frame = tokio::select! {
                frame = stream.next() => frame,
                () = &mut closing => break,
            };
            let Some(frame) = frame else { break };
            handle.seen();
            let bytes = match frame {
                Ok(WsMessage::Binary(b)) => b,
                Ok(WsMessage::Text(t)) => Bytes::from(t),
                Ok(WsMessage::Close(_)) => break,
                Ok(WsMessage::Pong(payload)) => {
                    if let Ok(seq) = <[u8; 8]>::try_from(&payload[..]) {
                        handle.pong(u64::from_be_bytes(seq));
                    }
                    continue;
                }
                Ok(WsMessage::Ping(_)) => continue, // answered by the library
                Err(err) => {
                    debug!(error = %err, "socket error");
                    break;
                }
            };
            if let Err(refusal) = rate_limit(
                &mediator,
                &limiter,
                Class::Messages,
                client,
                Limit::RateMessages,
            ) {
                let body = serde_json::json!({ "error": refusal.code(), "message": refusal.to_string() });
                if !handle.send(Bytes::from(body.to_string())).await {
                    break;
                }
                continue;
            }
            // Each frame is its own trace (a root span): the session's span lasts as long as the
            // socket, and a trace under it would never end.
            let frame_span = crate::hot_span!(
                parent: None,
                "inbound",
                transport = "ws",
                bytes = bytes.len(),
                session = id,
                mediator.instance = %mediator.cluster().instance_id()
            );
            // Boxed: the handling of one frame is a large future, and an idle socket's task
            // should not carry its space while it waits for the next frame (measured with
            // scripts/sockets: about 10 KiB per socket).
            let handled = Box::pin(
                mediator
                    .receive(&bytes, Via::WebSocket(&handle))
                    .instrument(frame_span),
            );
            match handled.await {
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
                        serde_json::json!({ "error": err.code(), "message": err.public_message() });
                    let _ = handle.send(Bytes::from(body.to_string())).await;
                }
            }
        }
        handle.close();
        handle.drop_confirmations();
        // What this socket carried and nobody acknowledged waits again for the next session
        // (before the close is announced: whoever reacts to it finds the messages waiting).
        for (connection, ids) in handle.take_claims() {
            if let Err(err) = Box::pin(mediator.stores().queue.release(&connection, &ids)).await {
                warn!(error = %err, connection = %connection, "could not release unacknowledged messages; they are delivered again when their lease ends");
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

/// The writer of one session (see [`serve_socket`]). Ends when the session closes, the socket
/// fails, or the peer stays silent past the keepalive deadline.
async fn write_session(
    mut sink: futures_util::stream::SplitSink<WebSocket, WsMessage>,
    mut outbound: tokio::sync::mpsc::Receiver<Outbound>,
    handle: SessionHandle,
    config: crate::config::WebSocketConfig,
) {
    let interval = Duration::from_millis(config.ping_interval_ms);
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let dead_after = config.ping_interval_ms + config.pong_timeout_ms;
    let closing = handle.closing();
    tokio::pin!(closing);
    let mut ping_seq = 0u64;
    // A peer that stopped reading fills its TCP window; a write that cannot finish in time means
    // the peer is as good as dead.
    let write_timeout = Duration::from_millis(config.pong_timeout_ms.max(1000));
    let ping = |seq: u64| WsMessage::Ping(Bytes::copy_from_slice(&seq.to_be_bytes()));
    loop {
        let result = tokio::select! {
            frame = outbound.recv() => match frame {
                Some(Outbound::Data(bytes)) => {
                    timed(write_timeout, sink.send(WsMessage::Binary(bytes))).await
                }
                Some(Outbound::Confirmed(bytes, confirmed)) => {
                    ping_seq += 1;
                    handle.await_pong(ping_seq, confirmed);
                    match timed(write_timeout, sink.send(WsMessage::Binary(bytes))).await {
                        Ok(()) => timed(write_timeout, sink.send(ping(ping_seq))).await,
                        Err(e) => Err(e),
                    }
                }
                None => break,
            },
            _ = keepalive.tick() => {
                if handle.silent_for_ms() > dead_after {
                    info!(silent_ms = handle.silent_for_ms(), "peer silent past the keepalive deadline: closing the session");
                    break;
                }
                ping_seq += 1;
                timed(write_timeout, sink.send(ping(ping_seq))).await
            }
            () = &mut closing => break,
        };
        if let Err(err) = result {
            debug!(error = %err, "socket write failed");
            break;
        }
    }
    handle.close();
    let _ = tokio::time::timeout(write_timeout, sink.close()).await;
}

async fn timed(
    limit: Duration,
    write: impl std::future::Future<Output = Result<(), axum::Error>>,
) -> Result<(), String> {
    match tokio::time::timeout(limit, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("write did not complete within {limit:?}")),
    }
}

/// Alive: the process serves HTTP.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: the stores answer reads and take writes, and the cluster subscription is live.
async fn readyz(State(mediator): State<Mediator>) -> Response {
    let probe = mediator_store::ConnectionId::from("readyz-probe");
    if mediator.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down\n",
        )
            .into_response();
    }
    // A read and a write: a Redis at maxmemory (noeviction) or a read-only replica answers PING
    // and reads, and refuses every write (each Forward would get 503). The write is a replay
    // window entry of the probe's own, gone after a second.
    let store = match mediator.stores().queue.status(&probe, None).await {
        Ok(_) => mediator
            .stores()
            .seen
            .first_sighting(&probe, &uuid::Uuid::new_v4().to_string(), 1000)
            .await
            .map(|_| ()),
        Err(err) => Err(err),
    };
    let subscribed = mediator.cluster().is_subscribed();
    match (store, subscribed) {
        (Ok(_), true) => (StatusCode::OK, "ready\n").into_response(),
        (Err(err), _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: storage: {err}\n"),
        )
            .into_response(),
        (Ok(_), false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: cluster subscription down\n",
        )
            .into_response(),
    }
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

/// The short invitation URL: the invitation JSON to a client that asks for JSON (credo-ts and
/// ACA-Py fetch a shortened invitation URL with `Accept: application/json`), otherwise (a
/// browser, a phone's camera app) a redirect to the full `?oob=` URL, which wallets open.
async fn short_invitation(
    State(mediator): State<Mediator>,
    Query(q): Query<InvitationQuery>,
    headers: HeaderMap,
) -> Response {
    let inv = q.pick(&mediator);
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"));
    if wants_json {
        Json(inv.json().clone()).into_response()
    } else {
        (
            StatusCode::FOUND,
            [(header::LOCATION, inv.url().to_owned())],
        )
            .into_response()
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
