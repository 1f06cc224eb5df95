//! The mediator core: one inbound path for every transport (open the envelope, find the
//! connection, dispatch on `@type`), and one outbound path (return route, open WebSocket, the
//! client's own endpoint, or its pickup queue).

use std::{
    collections::HashMap,
    ops::Deref,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use didcomm_envelope::{pack, ContentEnc, Envelope, KeyPair, VerKey};
use didcomm_message::{DocUri, Message, MessageType, ProblemReport, ReturnRoute, WhoRetries};
use mediator_store::{ConnectionId, ConnectionRecord, ConnectionState, MessageId, Stores};
use serde::Deserialize;
use serde_json::value::RawValue;
use tracing::{info, warn, Instrument};

use crate::{
    config::{Config, ForwardingStrategy},
    error::InboundError,
    invitation::{Handshakes, Invitation},
    keyring::KeyRing,
    protocols,
    sessions::{SessionHandle, Sessions},
    stats::{QueueDepth, Stats},
};

/// The transport a message arrived on.
#[derive(Debug, Clone, Copy)]
pub enum Via<'a> {
    /// HTTP POST: at most one reply fits in the response.
    Http,
    /// A WebSocket session: any number of replies can be written to it.
    WebSocket(&'a SessionHandle),
}

/// Whom an inbound envelope was encrypted for.
#[derive(Debug, Clone)]
pub enum Target {
    /// The routing key of mediation grants: Forwards.
    Routing,
    /// The invitation key: handshake requests.
    Invitation,
    /// A connection's key: everything on an established (or establishing) connection.
    Connection(Arc<ConnectionRecord>),
}

/// One decrypted inbound message and what is known about it.
#[derive(Debug)]
pub struct Inbound<'a> {
    /// The message.
    pub msg: Message,
    /// The authcrypt sender, if any.
    pub sender: Option<VerKey>,
    /// Whom it was encrypted for.
    pub target: Target,
    /// The transport it came on.
    pub via: Via<'a>,
}

impl Inbound<'_> {
    /// The connection, for messages that need one.
    pub fn connection(&self) -> Result<&ConnectionRecord, InboundError> {
        match &self.target {
            Target::Connection(c) => Ok(c),
            _ => Err(InboundError::NoConnection(self.msg.ty.to_string())),
        }
    }

    /// A type in the same doc URI as the inbound message (peers get answers in their own style).
    pub fn reply_type(&self, protocol: &str, version: (u16, u16), name: &str) -> MessageType {
        MessageType::new(
            self.msg.ty.doc_uri().clone(),
            protocol,
            version.0,
            version.1,
            name,
        )
    }
}

/// A message to send, and to whom.
#[derive(Debug)]
pub struct Outgoing {
    /// The plaintext message.
    pub msg: Message,
    /// Recipient of the reply.
    pub to: Recipient,
}

/// Where a reply goes.
#[derive(Debug, Clone)]
pub struct Recipient {
    /// The connection, once there is one (outbound fallback: session, endpoint, queue).
    pub connection: Option<ConnectionId>,
    /// Keys to encrypt to.
    pub keys: Vec<VerKey>,
    /// Their mediator's routing keys (outer Forwards when sent to their endpoint).
    pub routing_keys: Vec<VerKey>,
    /// Their endpoint, if they have one.
    pub endpoint: Option<String>,
    /// Our key to authcrypt from.
    pub from: KeyPair,
    /// The handshake completed: replies that cannot be delivered wait in the connection's
    /// queue. Otherwise (a handshake reply) they are dropped after a few attempts.
    pub established: bool,
}

impl Recipient {
    /// The recipient of replies on an established connection.
    pub fn of(connection: &ConnectionRecord, from: KeyPair) -> Self {
        Self {
            connection: Some(connection.id.clone()),
            keys: connection.their_keys.clone(),
            routing_keys: connection.their_routing_keys.clone(),
            endpoint: connection.their_endpoint.clone(),
            from,
            established: connection.state == ConnectionState::Completed,
        }
    }
}

/// The mediator: cheap to clone, shared by every request task.
#[derive(Debug, Clone)]
pub struct Mediator(Arc<Inner>);

/// The mediator's state.
#[derive(Debug)]
pub struct Inner {
    config: Arc<Config>,
    keys: KeyRing,
    invitation: Invitation,
    connections_invitation: Invitation,
    single_service_invitation: Invitation,
    stores: Stores,
    sessions: Sessions,
    endpoints: crate::endpoint::Endpoints,
    /// Source of WebSocket session ids.
    pub(crate) next_session_id: AtomicU64,
    /// False while draining: WebSocket upgrades are refused.
    accepting_websockets: AtomicBool,
    /// Set when shutdown begins.
    draining: AtomicBool,
    /// Pickup 1.0 has no acknowledgement: the ids of the last `batch` sent to each connection,
    /// removed when that connection asks again (its next request says it got the batch).
    pub(crate) v1_unacknowledged: Mutex<HashMap<ConnectionId, Vec<MessageId>>>,
    stats: Stats,
    queue_depth: QueueDepth,
    cluster: crate::cluster::Cluster,
    key_routes: crate::keyroutes::KeyRoutes,
    crypto: crate::crypto::PeerCrypto,
    /// When this instance was built (unix ms): what was handed out before went out on a socket
    /// of an earlier life of the process, or of another instance.
    started_ms: u64,
    /// Push notifications to clients that are not connected (`None`: no provider configured).
    notifier: Option<Arc<crate::push::Notifier>>,
}

/// A [`Mediator`] held weakly (the metric callbacks).
#[derive(Debug, Clone)]
pub(crate) struct WeakMediator(std::sync::Weak<Inner>);

impl WeakMediator {
    /// The mediator, while it lives.
    pub(crate) fn upgrade(&self) -> Option<Mediator> {
        self.0.upgrade().map(Mediator)
    }
}

impl Deref for Mediator {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The start-up could not complete.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Deriving the keys failed.
    #[error("key derivation failed")]
    Keys(#[from] crate::keyring::DeriveError),
    /// The HTTP client could not be built.
    #[error("HTTP client could not be built")]
    Http(#[from] reqwest::Error),
    /// A push-notification provider's configuration could not be used.
    #[error(transparent)]
    Push(#[from] crate::push::PushSetupError),
}

/// Peek at a plaintext: is it a Forward? Borrowed: the inner message is kept as the exact bytes
/// received, which are what gets queued.
#[derive(Deserialize)]
struct ForwardPeek<'a> {
    #[serde(rename = "@type", borrow)]
    ty: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    to: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    msg: Option<&'a RawValue>,
}

impl Mediator {
    /// Builds a single instance over `stores` (no peers to talk to).
    pub fn new(config: Arc<Config>, stores: Stores) -> Result<Self, SetupError> {
        Self::build(config, stores, None, None)
    }

    /// Builds the mediator over what [`crate::storage::open`] opened: with Redis, one instance of
    /// a cluster.
    pub fn from_backend(
        config: Arc<Config>,
        backend: crate::storage::Backend,
    ) -> Result<Self, SetupError> {
        Self::build(config, backend.stores, backend.bus, backend.master_secret)
    }

    fn build(
        config: Arc<Config>,
        stores: Stores,
        bus: Option<crate::cluster::RedisBus>,
        kept_secret: Option<crate::config::Secret>,
    ) -> Result<Self, SetupError> {
        let instance = config.cluster.instance_id_or_random();
        // The process's meter provider (the binary installs the exporters before this; without
        // them the instruments are no-ops).
        let meter = opentelemetry::global::meter("mediator");
        let backend = match config.storage.backend {
            crate::config::StorageBackend::Embedded => "embedded",
            crate::config::StorageBackend::Memory => "memory",
            crate::config::StorageBackend::Redis => "redis",
        };
        let stores = crate::observed::observe(stores, backend, &meter);
        let cluster = crate::cluster::Cluster::new(
            instance,
            stores.registry.clone(),
            bus,
            config.cluster.live_lease_ms,
        );
        // A configured secret always wins; else the one kept in the data directory, else random.
        let keys = KeyRing::new(kept_secret.as_ref().unwrap_or(&config.master_secret))?;
        let endpoints = [
            config.public_http_endpoint.as_str(),
            config.public_ws_endpoint.as_str(),
        ];
        let id = keys.stable_uuid("invitation")?;
        let invitation = Invitation::new(
            &id,
            &config.label,
            keys.invitation_key().verkey(),
            &endpoints,
            Handshakes::All,
        );
        let connections_invitation = Invitation::new(
            &keys.stable_uuid("invitation-connections")?,
            &config.label,
            keys.invitation_key().verkey(),
            &endpoints,
            Handshakes::ConnectionsOnly,
        );
        // ACA-Py refuses invitations with more than one service: this one has only HTTP.
        let single_service_invitation = Invitation::new(
            &keys.stable_uuid("invitation-single-service")?,
            &config.label,
            keys.invitation_key().verkey(),
            &endpoints[..1],
            Handshakes::All,
        );
        let endpoints = crate::endpoint::Endpoints::new(&config.delivery)?;
        let route_to = match config.pickup.forwarding {
            ForwardingStrategy::Direct => crate::sessions::RouteTo::ReturnRoute,
            _ => crate::sessions::RouteTo::Live,
        };
        let sessions = Sessions::new(config.websocket.max_sessions_per_connection, route_to);
        let key_routes = crate::keyroutes::KeyRoutes::new(
            config.mediation.key_cache_max,
            std::time::Duration::from_secs(config.mediation.key_cache_secs),
        );
        let crypto = crate::crypto::PeerCrypto::new(config.limits.peer_crypto_cache);
        let notifier = crate::push::Notifier::new(&config.push, &meter)?;
        let mediator = Self(Arc::new(Inner {
            started_ms: mediator_store::unix_ms_now(),
            config,
            keys,
            invitation,
            connections_invitation,
            single_service_invitation,
            stores,
            sessions,
            endpoints,
            next_session_id: AtomicU64::new(1),
            accepting_websockets: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            v1_unacknowledged: Mutex::default(),
            stats: Stats::new(&meter),
            queue_depth: QueueDepth::default(),
            cluster,
            key_routes,
            crypto,
            notifier,
        }));
        crate::stats::observe(&meter, &mediator);
        Ok(mediator)
    }

    /// A handle that does not keep the mediator alive.
    pub(crate) fn downgrade(&self) -> WeakMediator {
        WeakMediator(Arc::downgrade(&self.0))
    }

    /// The queue depth of the last sample.
    pub(crate) fn queue_depth(&self) -> &QueueDepth {
        &self.queue_depth
    }

    /// Which connection registered a recipient key, remembered (see [`crate::keyroutes`]).
    pub fn key_routes(&self) -> &crate::keyroutes::KeyRoutes {
        &self.key_routes
    }

    /// Per-peer cryptography, remembered (see [`crate::crypto`]).
    pub fn crypto(&self) -> &crate::crypto::PeerCrypto {
        &self.crypto
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The key ring.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The stores.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// Outbound delivery to clients' own endpoints.
    pub(crate) fn endpoints(&self) -> &crate::endpoint::Endpoints {
        &self.endpoints
    }

    /// The WebSocket sessions of this instance.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Delivery counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// This instance's view of the cluster (routing of live deliveries across instances).
    pub fn cluster(&self) -> &crate::cluster::Cluster {
        &self.cluster
    }

    /// Whether WebSocket upgrades are accepted (false while draining).
    pub fn accepts_websockets(&self) -> bool {
        self.accepting_websockets.load(Ordering::Relaxed)
    }

    /// True once shutdown began: readiness is off.
    pub fn is_draining(&self) -> bool {
        !self.accepts_websockets() && self.draining.load(Ordering::Relaxed)
    }

    /// Graceful shutdown, before the HTTP server stops: readiness off, new WebSockets refused,
    /// every WebSocket closed with a close frame (clients reconnect elsewhere), this instance's
    /// live sessions removed from the registry and announced closed, then a wait (at most
    /// `shutdown.grace_period_ms`) for the sockets to finish; in-flight HTTP requests are then
    /// finished by the server.
    pub async fn drain(&self) {
        info!("shutting down: draining WebSocket sessions");
        self.draining.store(true, Ordering::Relaxed);
        self.set_websocket_admission(false);
        let grace = Duration::from_millis(self.config.shutdown.grace_period_ms);
        // Deaf first: peers keep what they would send us from now on; what we already took goes
        // out on the sockets before they close (and what they do not acknowledge is given back).
        self.cluster.stop_listening(grace / 2).await;
        let live = self.sessions.live_connections();
        let closing = self.sessions.close_all();
        for (connection, session) in &live {
            let holder = mediator_store::LiveHolder {
                instance: self.cluster.instance_id().to_owned(),
                session: *session,
            };
            if let Err(err) = self.stores.registry.close(connection, &holder).await {
                warn!(error = %err, connection = %connection, "live session not removed from the registry; its lease will expire");
            }
        }
        let deadline = tokio::time::Instant::now() + grace;
        while !self.sessions.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        info!(
            sessions = closing,
            live = live.len(),
            left = self.sessions.len(),
            "WebSocket sessions drained"
        );
    }

    /// Accept WebSocket upgrades (true) or refuse them with 503 (false: draining, so clients
    /// reconnect elsewhere). Open sessions are not touched; close them with
    /// [`Sessions::close_connection`].
    pub fn set_websocket_admission(&self, accept: bool) {
        self.accepting_websockets.store(accept, Ordering::Relaxed);
    }

    /// The invitation (`connections_only`: the Connections 1.0 variant).
    pub fn invitation(&self, connections_only: bool) -> &Invitation {
        if connections_only {
            &self.connections_invitation
        } else {
            &self.invitation
        }
    }

    /// Push notifications (`None`: no provider configured).
    pub fn notifier(&self) -> Option<&Arc<crate::push::Notifier>> {
        self.0.notifier.as_ref()
    }

    /// When this instance was built (unix ms).
    pub fn started_ms(&self) -> u64 {
        self.0.started_ms
    }

    /// The invitation with the HTTP service only (ACA-Py accepts exactly one service).
    pub fn single_service_invitation(&self) -> &Invitation {
        &self.single_service_invitation
    }

    /// True when `id` is one of our invitations' ids.
    pub fn is_our_invitation(&self, id: &str) -> bool {
        [
            &self.invitation,
            &self.connections_invitation,
            &self.single_service_invitation,
        ]
        .iter()
        .any(|i| i.id() == id)
    }

    /// Handles one inbound envelope; returns the packed replies for the transport to carry.
    // Hot path: every inbound message (each Forward) goes through here.
    pub async fn receive(&self, body: &[u8], via: Via<'_>) -> Result<Vec<Bytes>, InboundError> {
        self.stats.inbound(match via {
            Via::Http => crate::stats::Transport::Http,
            Via::WebSocket(_) => crate::stats::Transport::WebSocket,
        });
        let envelope = Envelope::parse(body)?;
        let (key, target) = self.recipient_key(&envelope, via).await?;
        let unpacked = self.crypto.open(envelope, &key)?;

        if let Target::Routing = target {
            // Hot path: Forwards are anoncrypted to the routing key; skip the generic model.
            if let Ok(peek) = serde_json::from_slice::<ForwardPeek<'_>>(&unpacked.message) {
                if is_forward(&peek.ty) {
                    let to = peek
                        .to
                        .ok_or_else(|| InboundError::BadForward("no `to`".into()))?;
                    let msg = peek
                        .msg
                        .ok_or_else(|| InboundError::BadForward("no `msg`".into()))?;
                    protocols::routing::forward(self, &to, msg).await?;
                    return Ok(Vec::new());
                }
            }
        }

        let msg = Message::from_slice(&unpacked.message)?;
        if let Target::Connection(conn) = &target {
            if !unpacked
                .sender
                .is_some_and(|s| conn.their_keys.contains(&s))
            {
                return Err(InboundError::NotFromConnection {
                    connection: conn.id.to_string(),
                });
            }
        }
        let span = crate::hot_span!(
            "message",
            didcomm.r#type = %msg.ty,
            didcomm.id = %msg.id,
            mediator.connection_id = tracing::field::Empty,
        );
        if let Target::Connection(conn) = &target {
            span.record("mediator.connection_id", tracing::field::display(&conn.id));
            if let (Via::WebSocket(session), ReturnRoute::All) = (via, msg.return_route()) {
                let registered = self.sessions.register(&conn.id, session);
                if registered.evicted.is_some() {
                    self.stats
                        .refused(crate::stats::Limit::WebSocketsPerConnection);
                }
                if registered.new && self.config.pickup.forwarding == ForwardingStrategy::Direct {
                    // Implicit pickup: the socket gets what was queued before it opened.
                    let (this, conn_id, session) = (self.clone(), conn.id.clone(), session.clone());
                    tokio::spawn(async move { this.flush_implicit(&conn_id, &session).await });
                }
            }
        }
        let inbound = Inbound {
            msg,
            sender: unpacked.sender,
            target,
            via,
        };
        // Instrumented, not entered: a span entered across an await would wrap whatever else
        // the thread polls meanwhile.
        async {
            let outgoing = match protocols::dispatch(self, &inbound).await {
                Ok(out) => out,
                Err(err) => match self.problem_report_for(&inbound, &err) {
                    Some(report) => vec![report],
                    None => return Err(err),
                },
            };
            self.route_replies(&inbound, outgoing).await
        }
        .instrument(span)
        .await
    }

    /// Finds the key an envelope is for among ours: the routing key, the invitation key, or a
    /// connection key (derived from the master secret for the connection that owns it).
    async fn recipient_key(
        &self,
        envelope: &Envelope,
        via: Via<'_>,
    ) -> Result<(KeyPair, Target), InboundError> {
        let max = self.config.limits.max_envelope_recipients;
        if envelope.recipients().len() > max {
            // Each recipient may cost a store lookup.
            return Err(self.refuse(
                crate::stats::Limit::EnvelopeRecipients,
                format!("an envelope may list at most {max} recipients"),
            ));
        }
        let routing = self.keys.routing_key();
        let invitation = self.keys.invitation_key();
        for r in envelope.recipients() {
            if r.kid == routing.verkey_base58() {
                return Ok((routing.clone(), Target::Routing));
            }
            if r.kid == invitation.verkey_base58() {
                return Ok((invitation.clone(), Target::Invitation));
            }
        }
        for r in envelope.recipients() {
            // A WebSocket remembers the completed connection it carries (one store round trip
            // per session instead of per message; a completed record does not change).
            let known = match via {
                Via::WebSocket(session) => session.known_connection(&r.kid),
                Via::Http => None,
            };
            let conn = match known {
                Some(conn) => Some(conn),
                None => {
                    let Ok(vk) = VerKey::parse(&r.kid) else {
                        continue;
                    };
                    let found = self
                        .stores
                        .connections
                        .find_by_my_verkey(&vk)
                        .await?
                        .map(Arc::new);
                    if let (Via::WebSocket(session), Some(conn)) = (via, &found) {
                        if conn.state == ConnectionState::Completed {
                            session.remember_connection(&r.kid, Arc::clone(conn));
                        }
                    }
                    found
                }
            };
            if let Some(conn) = conn {
                let key = self
                    .keys
                    .connection_key(conn.id.as_str())
                    .map_err(|e| InboundError::Internal(e.to_string()))?;
                return Ok((key, Target::Connection(conn)));
            }
        }
        Err(InboundError::UnknownRecipient(
            envelope
                .recipients()
                .iter()
                .map(|r| r.kid.clone())
                .collect(),
        ))
    }

    /// An error that the peer should hear about as a problem report, when we can encrypt to it.
    fn problem_report_for(&self, inbound: &Inbound<'_>, err: &InboundError) -> Option<Outgoing> {
        let Target::Connection(conn) = &inbound.target else {
            return None;
        };
        let (code, who) = match err {
            InboundError::Store(_) | InboundError::Internal(_) => return None,
            InboundError::Message(_) | InboundError::BadForward(_) | InboundError::BadField(_) => {
                ("message-parse-failure", WhoRetries::You)
            }
            _ => ("request-not-accepted", WhoRetries::None),
        };
        let from = self.keys.connection_key(conn.id.as_str()).ok()?;
        let report = ProblemReport::new(code)
            .with_text(err.to_string())
            .with_who_retries(who)
            .builder()
            .in_thread_of(&inbound.msg)
            .build();
        Some(Outgoing {
            msg: report,
            to: Recipient::of(conn, from),
        })
    }

    /// Packs replies and sends each on the return route when the inbound message asked for one
    /// (one per HTTP response, any number on a WebSocket), else through [`Mediator::send`].
    async fn route_replies(
        &self,
        inbound: &Inbound<'_>,
        outgoing: Vec<Outgoing>,
    ) -> Result<Vec<Bytes>, InboundError> {
        let route = inbound.msg.return_route();
        let thid = inbound.msg.thread_id().to_owned();
        let mut replies = Vec::new();
        for out in outgoing {
            let returnable = match route {
                ReturnRoute::All => true,
                ReturnRoute::Thread => out.msg.thread_id() == thid,
                ReturnRoute::None => false,
            };
            let fits = matches!(inbound.via, Via::WebSocket(_)) || replies.is_empty();
            if returnable && fits {
                replies.push(self.pack_direct(&out)?);
            } else {
                self.send(out).await?;
            }
        }
        Ok(replies)
    }

    /// Packs a message straight for its recipient (no routing wrappers: return routes and our own
    /// WebSocket sessions reach the recipient itself).
    pub fn pack_direct(&self, out: &Outgoing) -> Result<Bytes, InboundError> {
        let plaintext =
            serde_json::to_vec(&out.msg).map_err(|e| InboundError::Internal(e.to_string()))?;
        let packed = self.crypto.pack(&plaintext, &out.to.keys, &out.to.from)?;
        Ok(Bytes::from(packed))
    }

    /// Sends a message with no return route: on an open WebSocket session of its connection,
    /// else to the recipient's own endpoint (wrapped in Forwards for its routing keys), else into
    /// the connection's pickup queue.
    pub async fn send(&self, out: Outgoing) -> Result<(), InboundError> {
        let direct = self.pack_direct(&out)?;
        if let Some(conn) = &out.to.connection {
            if let Some(session) = self.sessions.latest(conn) {
                if session.send(direct.clone()).await {
                    return Ok(());
                }
            }
        }
        match out.to.endpoint.as_deref().filter(|e| is_deliverable(e)) {
            Some(endpoint) => {
                let wrapped = wrap_in_forwards(direct.clone(), &out.to.keys, &out.to.routing_keys)?;
                let purpose = match (&out.to.connection, out.to.established) {
                    (Some(connection), true) => crate::endpoint::Purpose::Reply {
                        connection: connection.clone(),
                        keys: out.to.keys.clone(),
                        direct,
                    },
                    _ => crate::endpoint::Purpose::Handshake,
                };
                self.deliver_to_endpoint(endpoint, wrapped, purpose);
                Ok(())
            }
            None => match &out.to.connection {
                Some(conn) => {
                    self.stores.queue.add(conn, &out.to.keys, direct).await?;
                    Ok(())
                }
                None => {
                    warn!("reply has no route: no return route, session, endpoint or connection");
                    Ok(())
                }
            },
        }
    }

    /// Marks a connection completed (DID Exchange `complete`, or the first authenticated message
    /// of a Connections 1.0 client).
    pub async fn complete_connection(&self, conn: &ConnectionRecord) -> Result<(), InboundError> {
        if conn.state != ConnectionState::Completed {
            let mut updated = conn.clone();
            updated.state = ConnectionState::Completed;
            updated.expires_at_ms = None;
            updated.updated_at_ms = mediator_store::unix_ms_now();
            self.stores.connections.update(&updated).await?;
            info!(connection = %conn.id, label = ?conn.their_label, "connection completed");
        }
        Ok(())
    }
}

fn is_forward(ty: &str) -> bool {
    ty.parse::<MessageType>()
        .is_ok_and(|t| t.is("routing", 1, "forward"))
}

/// Endpoints we can POST to (not `didcomm:transport/queue`, not WebSocket-only ones).
pub(crate) fn is_deliverable(endpoint: &str) -> bool {
    endpoint.starts_with("http://") || endpoint.starts_with("https://")
}

/// Wraps a packed message in one Forward per routing key (innermost first), each anoncrypted to
/// that routing key, as RFC 0094 describes.
fn wrap_in_forwards(
    packed: Bytes,
    recipient_keys: &[VerKey],
    routing_keys: &[VerKey],
) -> Result<Bytes, InboundError> {
    let mut current = packed;
    let mut to = recipient_keys
        .first()
        .map(VerKey::to_base58)
        .unwrap_or_default();
    for routing_key in routing_keys {
        let inner: &RawValue =
            serde_json::from_slice(&current).map_err(|e| InboundError::Internal(e.to_string()))?;
        let forward = serde_json::json!({
            "@type": MessageType::new(DocUri::DidcommOrg, "routing", 1, 0, "forward").to_string(),
            "@id": uuid::Uuid::new_v4().to_string(),
            "to": to,
            "msg": inner,
        });
        let plaintext =
            serde_json::to_vec(&forward).map_err(|e| InboundError::Internal(e.to_string()))?;
        current = Bytes::from(pack(&plaintext, &[*routing_key], None, ContentEnc::C20P)?);
        to = routing_key.to_base58();
    }
    Ok(current)
}
