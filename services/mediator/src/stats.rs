//! What this instance counts: messages received, Forwards queued, deliveries (by mode, with their
//! queue-to-transport latency), redeliveries, acknowledgements. Redeliveries (a message handed out
//! after an earlier delivery that was never acknowledged: at-least-once) are how duplicates are
//! counted.
//!
//! Each count is kept twice: in a lock-free counter that [`Stats::snapshot`] reads (tests, the
//! load driver), and as an OpenTelemetry instrument of the meter the instance was built with
//! (exported over OTLP and on the Prometheus endpoint; see [`crate::telemetry`]). The gauges
//! (live sessions, queue depth, pub/sub reconnects, expired messages) are observed from the
//! mediator when the meter is read: see [`observe`].

use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::{
    metrics::{Counter, Histogram, Meter},
    KeyValue,
};

use crate::Mediator;

/// How a queued message reached its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// A Pickup 2.0 `delivery` pushed on a live session.
    Live,
    /// Asked for: Pickup 2.0 `delivery-request`, Pickup 1.0 `batch-pickup`.
    Pickup,
    /// The message itself on a return-route WebSocket (implicit pickup, `direct` forwarding).
    Direct,
    /// POSTed to the client's own endpoint.
    Push,
}

impl DeliveryMode {
    fn attribute(self) -> [KeyValue; 1] {
        [KeyValue::new(
            "mode",
            match self {
                Self::Live => "live",
                Self::Pickup => "pickup",
                Self::Direct => "direct",
                Self::Push => "push",
            },
        )]
    }
}

/// The transport a message came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP POST.
    Http,
    /// A WebSocket frame.
    WebSocket,
}

/// A limit that refused something (a request, a connection, a message, an outbound delivery).
/// Every configurable limit has one, counted in `mediator_limits_refused_total{limit}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Per client address: HTTP messages and WebSocket frames (`rate_limit.messages_*`).
    RateMessages,
    /// Per client address: WebSocket upgrades (`rate_limit.upgrades_*`).
    RateUpgrades,
    /// Per client address: new TCP connections (`rate_limit.connections_*`).
    RateConnections,
    /// Open TCP connections of this instance (`transport.max_connections`).
    Connections,
    /// A request whose headers (or, idle, whose next request) did not come in time.
    HeaderTimeout,
    /// A request body that did not come in time (`transport.body_timeout_ms`).
    BodyTimeout,
    /// WebSockets of this instance (`websocket.max_sessions`).
    WebSockets,
    /// WebSockets of one connection (`websocket.max_sessions_per_connection`).
    WebSocketsPerConnection,
    /// Recipients of one envelope (`limits.max_envelope_recipients`).
    EnvelopeRecipients,
    /// Keys of one connection's keylist (`mediation.max_keys_per_connection`).
    KeylistSize,
    /// Updates in one keylist-update (`mediation.max_keylist_update`).
    KeylistUpdate,
    /// Queries in one discover-features message (`limits.max_discover_queries`).
    DiscoverQueries,
    /// Handshake fields over their caps (label, thread id, DID and its document).
    HandshakeSize,
    /// A handshake request reusing another requester's thread id.
    HandshakeThread,
    /// A handshake request not authcrypted by a key of the DID it presents.
    HandshakeProof,
    /// A state-changing message whose `@id` was seen on its connection within the replay window.
    Replay,
    /// An endpoint in a loopback, private, link-local or unspecified range.
    PrivateEndpoint,
    /// The outbound backlog (bytes waiting for delivery, per endpoint or in all) is full.
    OutboundBacklog,
    /// Outbound delivery gave up (attempts or age): a handshake reply dropped, a message left
    /// in its queue for pickup.
    OutboundGaveUp,
}

impl Limit {
    /// Every limit (each series exists from the start).
    pub const ALL: [Limit; 19] = [
        Limit::RateMessages,
        Limit::RateUpgrades,
        Limit::RateConnections,
        Limit::Connections,
        Limit::HeaderTimeout,
        Limit::BodyTimeout,
        Limit::WebSockets,
        Limit::WebSocketsPerConnection,
        Limit::EnvelopeRecipients,
        Limit::KeylistSize,
        Limit::KeylistUpdate,
        Limit::DiscoverQueries,
        Limit::HandshakeSize,
        Limit::HandshakeThread,
        Limit::HandshakeProof,
        Limit::Replay,
        Limit::PrivateEndpoint,
        Limit::OutboundBacklog,
        Limit::OutboundGaveUp,
    ];

    /// The `limit` attribute of the metric.
    pub fn name(self) -> &'static str {
        match self {
            Limit::RateMessages => "rate_messages",
            Limit::RateUpgrades => "rate_upgrades",
            Limit::RateConnections => "rate_connections",
            Limit::Connections => "connections",
            Limit::HeaderTimeout => "header_timeout",
            Limit::BodyTimeout => "body_timeout",
            Limit::WebSockets => "websockets",
            Limit::WebSocketsPerConnection => "websockets_per_connection",
            Limit::EnvelopeRecipients => "envelope_recipients",
            Limit::KeylistSize => "keylist_size",
            Limit::KeylistUpdate => "keylist_update",
            Limit::DiscoverQueries => "discover_queries",
            Limit::HandshakeSize => "handshake_size",
            Limit::HandshakeThread => "handshake_thread",
            Limit::HandshakeProof => "handshake_proof",
            Limit::Replay => "replay",
            Limit::PrivateEndpoint => "private_endpoint",
            Limit::OutboundBacklog => "outbound_backlog",
            Limit::OutboundGaveUp => "outbound_gave_up",
        }
    }
}

/// The counters, updated without locks, and their OpenTelemetry instruments.
#[derive(Debug)]
pub struct Stats {
    forwards_received: AtomicU64,
    forwards_queued: AtomicU64,
    delivered: AtomicU64,
    redelivered: AtomicU64,
    acknowledged: AtomicU64,
    refused: [AtomicU64; Limit::ALL.len()],
    instruments: Instruments,
}

#[derive(Debug)]
struct Instruments {
    inbound: Counter<u64>,
    forwards_received: Counter<u64>,
    forwards_queued: Counter<u64>,
    delivered: Counter<u64>,
    redelivered: Counter<u64>,
    acknowledged: Counter<u64>,
    status_skipped: Counter<u64>,
    refused: Counter<u64>,
    latency: Histogram<f64>,
}

/// A reading of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Forwards received (valid envelopes to the routing key), queued or not.
    pub forwards_received: u64,
    /// Forwards persisted in a queue.
    pub forwards_queued: u64,
    /// Queued messages put on a transport (each delivery of the same message counts).
    pub delivered: u64,
    /// Deliveries of messages that had been delivered before (at-least-once duplicates).
    pub redelivered: u64,
    /// Queued messages removed because their recipient acknowledged them.
    pub acknowledged: u64,
}

/// Latency buckets, seconds: a live delivery takes about a millisecond, a message that waited
/// for its recipient to come online can take days.
const LATENCY_BUCKETS: [f64; 19] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
    600.0, 3600.0, 86_400.0, 604_800.0,
];

impl Stats {
    /// Counters whose instruments are made by `meter`.
    pub fn new(meter: &Meter) -> Self {
        let counter = |name: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_description(description)
                .build()
        };
        let stats = Self {
            forwards_received: AtomicU64::new(0),
            forwards_queued: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            redelivered: AtomicU64::new(0),
            acknowledged: AtomicU64::new(0),
            refused: std::array::from_fn(|_| AtomicU64::new(0)),
            instruments: Instruments {
                inbound: counter(
                    "mediator.inbound.messages",
                    "Envelopes received, by transport",
                ),
                forwards_received: counter(
                    "mediator.forwards.received",
                    "Forwards received (valid envelopes to the routing key)",
                ),
                forwards_queued: counter(
                    "mediator.forwards.queued",
                    "Forwards durably queued (the sender was acknowledged after this)",
                ),
                delivered: counter(
                    "mediator.messages.delivered",
                    "Queued messages put on a transport, by mode (every delivery counts)",
                ),
                redelivered: counter(
                    "mediator.messages.redelivered",
                    "Messages written again to a client that had been written them before and did not acknowledge them in time (at-least-once duplicates)",
                ),
                acknowledged: counter(
                    "mediator.messages.acknowledged",
                    "Queued messages removed because their recipient acknowledged them",
                ),
                status_skipped: counter(
                    "mediator.status.skipped",
                    "messages-received on a WebSocket not answered by a status (one per pickup.status_interval_ms)",
                ),
                refused: counter(
                    "mediator.limits.refused",
                    "Requests, connections, messages and deliveries refused by a limit, by limit",
                ),
                latency: meter
                    .f64_histogram("mediator.delivery.latency")
                    .with_unit("s")
                    .with_description("Time from a message's queueing to its delivery, by mode")
                    .with_boundaries(LATENCY_BUCKETS.to_vec())
                    .build(),
            },
        };
        // Every series exists from the start (0, not "no data", on a dashboard).
        let i = &stats.instruments;
        for transport in ["http", "ws"] {
            i.inbound.add(0, &[KeyValue::new("transport", transport)]);
        }
        for mode in [
            DeliveryMode::Live,
            DeliveryMode::Pickup,
            DeliveryMode::Direct,
            DeliveryMode::Push,
        ] {
            i.delivered.add(0, &mode.attribute());
        }
        for limit in Limit::ALL {
            i.refused.add(0, &[KeyValue::new("limit", limit.name())]);
        }
        for counter in [
            &i.forwards_received,
            &i.forwards_queued,
            &i.redelivered,
            &i.acknowledged,
            &i.status_skipped,
        ] {
            counter.add(0, &[]);
        }
        stats
    }

    pub(crate) fn inbound(&self, transport: Transport) {
        let name = match transport {
            Transport::Http => "http",
            Transport::WebSocket => "ws",
        };
        self.instruments
            .inbound
            .add(1, &[KeyValue::new("transport", name)]);
    }

    pub(crate) fn forward_received(&self) {
        self.forwards_received.fetch_add(1, Ordering::Relaxed);
        self.instruments.forwards_received.add(1, &[]);
    }

    pub(crate) fn forward_queued(&self) {
        self.forwards_queued.fetch_add(1, Ordering::Relaxed);
        self.instruments.forwards_queued.add(1, &[]);
    }

    /// Messages delivered by `mode`, each with the time it was queued (unix ms; the store's
    /// clock, or this instance's for a Forward delivered as it arrives).
    pub(crate) fn delivered(
        &self,
        mode: DeliveryMode,
        queued_at_ms: impl IntoIterator<Item = u64>,
    ) {
        let attribute = mode.attribute();
        let now = mediator_store::unix_ms_now();
        let mut n = 0u64;
        for at in queued_at_ms {
            n += 1;
            // A clock behind the store's reads as 0, not as a negative latency.
            let seconds = now.saturating_sub(at) as f64 / 1000.0;
            self.instruments.latency.record(seconds, &attribute);
        }
        if n > 0 {
            self.delivered.fetch_add(n, Ordering::Relaxed);
            self.instruments.delivered.add(n, &attribute);
        }
    }

    pub(crate) fn redelivered(&self, n: usize) {
        if n > 0 {
            self.redelivered.fetch_add(n as u64, Ordering::Relaxed);
            self.instruments.redelivered.add(n as u64, &[]);
        }
    }

    pub(crate) fn acknowledged(&self, n: usize) {
        if n > 0 {
            self.acknowledged.fetch_add(n as u64, Ordering::Relaxed);
            self.instruments.acknowledged.add(n as u64, &[]);
        }
    }

    /// A `messages-received` went without a `status` (see `pickup.status_interval_ms`).
    pub(crate) fn status_skipped(&self) {
        self.instruments.status_skipped.add(1, &[]);
    }

    /// Something was refused by `limit`.
    pub fn refused(&self, limit: Limit) {
        if let Some(i) = Limit::ALL.iter().position(|l| *l == limit) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
        self.instruments
            .refused
            .add(1, &[KeyValue::new("limit", limit.name())]);
    }

    /// How many times `limit` refused something.
    pub fn refusals(&self, limit: Limit) -> u64 {
        Limit::ALL
            .iter()
            .position(|l| *l == limit)
            .map_or(0, |i| self.refused[i].load(Ordering::Relaxed))
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            forwards_received: self.forwards_received.load(Ordering::Relaxed),
            forwards_queued: self.forwards_queued.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            redelivered: self.redelivered.load(Ordering::Relaxed),
            acknowledged: self.acknowledged.load(Ordering::Relaxed),
        }
    }
}

/// The queue depth of the last sample (see [`crate::telemetry`]'s queue sampler).
#[derive(Debug, Default)]
pub struct QueueDepth {
    messages: AtomicU64,
    bytes: AtomicU64,
}

impl QueueDepth {
    pub(crate) fn set(&self, totals: mediator_store::QueueTotals) {
        self.messages.store(totals.messages, Ordering::Relaxed);
        self.bytes.store(totals.bytes, Ordering::Relaxed);
    }
}

/// Registers the gauges read from the mediator itself on `meter`. They hold the mediator weakly:
/// once it is gone they report nothing.
pub(crate) fn observe(meter: &Meter, mediator: &Mediator) {
    let weak = mediator.downgrade();
    let live = weak.clone();
    meter
        .u64_observable_gauge("mediator.live_sessions")
        .with_description("Live-mode sessions (Pickup 2.0) held by this instance")
        .with_callback(move |gauge| {
            if let Some(m) = live.upgrade() {
                gauge.observe(m.sessions().live_count() as u64, &[]);
            }
        })
        .build();
    let sockets = weak.clone();
    meter
        .u64_observable_gauge("mediator.websocket.sessions")
        .with_description("WebSocket sessions with a return route held by this instance")
        .with_callback(move |gauge| {
            if let Some(m) = sockets.upgrade() {
                gauge.observe(m.sessions().len() as u64, &[]);
            }
        })
        .build();
    let routes = weak.clone();
    meter
        .u64_observable_gauge("mediator.cluster.routes")
        .with_description("Sessions held by other instances that this instance routes Forwards to (its own not counted)")
        .with_callback(move |gauge| {
            if let Some(m) = routes.upgrade() {
                gauge.observe(m.cluster().route_count() as u64, &[]);
            }
        })
        .build();
    let reconnects = weak.clone();
    meter
        .u64_observable_counter("mediator.pubsub.reconnects")
        .with_description("Times the cluster pub/sub subscription was re-established")
        .with_callback(move |counter| {
            if let Some(m) = reconnects.upgrade() {
                counter.observe(m.cluster().resubscribes(), &[]);
            }
        })
        .build();
    let expired = weak.clone();
    meter
        .u64_observable_counter("mediator.messages.expired")
        .with_description("Queued messages this instance removed because they outlived the TTL")
        .with_callback(move |counter| {
            if let Some(m) = expired.upgrade() {
                counter.observe(m.stores().queue.expired_count(), &[]);
            }
        })
        .build();
    let messages = weak.clone();
    meter
        .u64_observable_gauge("mediator.queue.messages")
        .with_description("Messages held in all queues of the cluster (last sample)")
        .with_callback(move |gauge| {
            if let Some(m) = messages.upgrade() {
                let depth = m.queue_depth();
                gauge.observe(depth.messages.load(Ordering::Relaxed), &[]);
            }
        })
        .build();
    let bytes = weak;
    meter
        .u64_observable_gauge("mediator.queue.bytes")
        .with_description("Payload bytes held in all queues of the cluster (last sample)")
        .with_callback(move |gauge| {
            if let Some(m) = bytes.upgrade() {
                let depth = m.queue_depth();
                gauge.observe(depth.bytes.load(Ordering::Relaxed), &[]);
            }
        })
        .build();
}
