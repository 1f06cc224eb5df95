//! Typed, layered configuration: built-in defaults (`config.default.toml`), an optional file,
//! then `MEDIATOR_`-prefixed environment variables (last wins). Validated once at start-up and
//! shared as `Arc<Config>`.
//!
//! Loading never touches the process environment: the variables are passed in, so tests start
//! several differently configured instances in one process.

use std::{collections::HashMap, fmt, net::SocketAddr, path::Path};

use serde::Deserialize;
use thiserror::Error;

const DEFAULTS: &str = include_str!("../config.default.toml");
const ENV_PREFIX: &str = "MEDIATOR";

/// The variables that turn every per-address rate limit off: for test harnesses and load drivers
/// whose many simulated clients all come from one loopback address (where a per-address limit
/// would limit the whole test, not a client). Never for a deployment.
pub const RATE_LIMITS_OFF: [(&str, &str); 3] = [
    ("MEDIATOR_RATE_LIMIT__MESSAGES_PER_SECOND", "0"),
    ("MEDIATOR_RATE_LIMIT__UPGRADES_PER_SECOND", "0"),
    ("MEDIATOR_RATE_LIMIT__CONNECTIONS_PER_SECOND", "0"),
];

/// Why the configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A source could not be read or a value has the wrong type.
    #[error("configuration could not be loaded")]
    Load(#[from] config::ConfigError),
    /// A value is present but not acceptable.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The mediator's configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Address of the one listener.
    pub listen: SocketAddr,
    /// Name in invitations.
    pub label: String,
    /// Advertised HTTP endpoint.
    pub public_http_endpoint: String,
    /// Advertised WebSocket endpoint.
    pub public_ws_endpoint: String,
    /// Root of every private key of the mediator.
    pub master_secret: Secret,
    /// Where a single node keeps its data (the embedded store, and the generated master secret
    /// when none is configured); created owner-only.
    pub data_dir: std::path::PathBuf,
    /// Size limits.
    pub limits: Limits,
    /// Coordinate Mediation behaviour.
    pub mediation: MediationConfig,
    /// Outbound delivery to clients with their own endpoint.
    pub delivery: DeliveryConfig,
    /// Pickup and forwarding behaviour.
    pub pickup: PickupConfig,
    /// WebSocket sessions.
    pub websocket: WebSocketConfig,
    /// TCP connections: timeouts and caps of the listener.
    pub transport: TransportConfig,
    /// Per-client-address rate limits.
    pub rate_limit: RateLimitConfig,
    /// Per-connection queue limits.
    pub queue: QueueConfig,
    /// Handshakes (DID Exchange, Connections) from anyone on the internet.
    pub handshake: HandshakeConfig,
    /// Replayed messages.
    pub replay: ReplayConfig,
    /// Where connections, mediation records and queues are kept.
    pub storage: StorageConfig,
    /// This instance in a cluster.
    pub cluster: ClusterConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// Logs.
    pub log: LogConfig,
    /// OpenTelemetry export and the Prometheus scrape endpoint.
    pub telemetry: TelemetryConfig,
    /// The async runtime.
    pub runtime: RuntimeConfig,
    /// Push notifications to clients that are not connected.
    pub push: crate::push::PushSettings,
}

/// The async runtime (tokio).
#[derive(Debug, Clone, Deserialize)]
pub struct RuntimeConfig {
    /// Threads that run requests; 0 = one per CPU this process may use.
    pub worker_threads: usize,
}

/// How logs are written (to standard output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs.
#[derive(Debug, Clone, Deserialize)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// Which events are logged, in `tracing` filter syntax (`info`, `mediator=debug,info`); the
    /// `MEDIATOR_LOG` variable, when set, wins.
    pub filter: String,
}

/// The OTLP wire protocol: OTLP/HTTP (a collector's port 4318, paths `/v1/traces` and
/// `/v1/metrics`). OTLP/gRPC is not offered: the SDK exports from its own threads, where the gRPC
/// client finds no Tokio runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    /// Protobuf bodies.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// JSON bodies.
    #[serde(rename = "http/json")]
    HttpJson,
}

/// OTLP export of spans and metrics.
#[derive(Debug, Clone, Deserialize)]
pub struct OtlpConfig {
    /// The collector's base URL (`http://otel-collector:4318`); empty: no export (the default).
    pub endpoint: String,
    /// `http/protobuf` or `http/json`.
    pub protocol: OtlpProtocol,
    /// Interval of metric exports, ms.
    pub metrics_interval_ms: u64,
    /// Longest wait for spans to be batched before they are exported, ms.
    pub traces_delay_ms: u64,
    /// Timeout of one export, ms.
    pub timeout_ms: u64,
}

/// The Prometheus scrape endpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct PrometheusConfig {
    /// Address of a second listener serving `GET /metrics` (Prometheus text format); empty: none
    /// (the default). Kept off the public listener so the metrics are not on the internet.
    pub listen: String,
}

impl PrometheusConfig {
    /// The scrape listener's address, if one is configured.
    pub fn address(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }
}

/// OpenTelemetry export and the Prometheus scrape endpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct TelemetryConfig {
    /// `service.name` of every span and metric.
    pub service_name: String,
    /// OTLP export.
    pub otlp: OtlpConfig,
    /// The Prometheus scrape endpoint.
    pub prometheus: PrometheusConfig,
    /// Interval at which this instance counts the messages and bytes waiting in every queue (the
    /// queue depth gauges), ms; 0: never. Each count reads every non-empty queue once.
    pub queue_sample_interval_ms: u64,
}

impl TelemetryConfig {
    /// Whether anything is exported over OTLP.
    pub fn otlp_enabled(&self) -> bool {
        !self.otlp.endpoint.is_empty()
    }
}

/// Graceful shutdown (SIGTERM/SIGINT).
#[derive(Debug, Clone, Deserialize)]
pub struct ShutdownConfig {
    /// Longest wait for WebSocket sessions to close before the instance stops serving HTTP, ms.
    pub grace_period_ms: u64,
}

/// This instance in a cluster.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterConfig {
    /// Unique id of this instance (one word); empty: a random one per process.
    pub instance_id: String,
    /// Lease of a live-session record in the registry, ms: refreshed every third of it while the
    /// instance lives; an instance that dies leaves records that expire with it.
    pub live_lease_ms: u64,
}

impl ClusterConfig {
    /// Gives the instance a random id if none is configured (once, before anything uses it).
    pub fn ensure_instance_id(&mut self) {
        self.instance_id = self.instance_id_or_random();
    }

    /// The configured instance id, or a random one if none is.
    pub fn instance_id_or_random(&self) -> String {
        if self.instance_id.is_empty() {
            uuid::Uuid::new_v4().simple().to_string()
        } else {
            self.instance_id.clone()
        }
    }
}

/// Which storage backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StorageBackend {
    /// On this node's disk, in `data_dir` (SQLite, every Forward fsynced before its 202): one
    /// instance, nothing lost on a restart. The default.
    Embedded,
    /// In this process: one instance only, lost on exit (for tests).
    Memory,
    /// Redis (or Redis Cluster): shared by every instance of a cluster.
    Redis,
}

/// Where connections, mediation records and queues are kept.
#[derive(Debug, Clone, Deserialize)]
pub struct StorageConfig {
    /// Which backend.
    pub backend: StorageBackend,
    /// The Redis backend's settings.
    pub redis: RedisConfig,
}

/// The Redis backend's settings.
#[derive(Clone, Deserialize)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` (or `rediss://`).
    pub url: String,
    /// Prefix of every key (several deployments can share one Redis).
    pub key_prefix: String,
    /// Most pooled connections per instance.
    pub pool_size: usize,
    /// Refuse to start when Redis may evict keys (`maxmemory-policy` other than `noeviction`):
    /// an evicted queue is lost messages.
    pub require_noeviction: bool,
    /// Add the Forwards that wait while an add is out in one call, and remove the
    /// acknowledgements that wait while a removal is out in one call (one node only; see
    /// `RedisMessageQueue::with_group_commit`).
    pub group_commit: bool,
    /// Talk to a Redis Cluster (the cluster client: commands routed by hash slot, sharded
    /// pub/sub) instead of one node.
    pub cluster: bool,
    /// Seed nodes of the cluster (`redis://host:port`, any subset of its nodes; the client
    /// learns the rest). Empty: `url` is the one seed.
    pub cluster_nodes: Vec<String>,
}

impl RedisConfig {
    /// The URLs to start from: the cluster seeds (or `url` when none is given) on a cluster,
    /// `url` alone otherwise.
    pub fn seeds(&self) -> Vec<String> {
        let nodes: Vec<String> = self
            .cluster_nodes
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        if self.cluster && !nodes.is_empty() {
            nodes
        } else {
            vec![self.url.clone()]
        }
    }
}

impl fmt::Debug for RedisConfig {
    // The URL may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("pool_size", &self.pool_size)
            .field("require_noeviction", &self.require_noeviction)
            .field("group_commit", &self.group_commit)
            .field("cluster", &self.cluster)
            .field(
                "cluster_nodes",
                &self
                    .cluster_nodes
                    .iter()
                    .map(|n| redact_url(n))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// `redis://user:secret@host` -> `redis://user:<redacted>@host`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:<redacted>{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Per-connection queue limits (0 = no limit).
#[derive(Debug, Clone, Deserialize)]
pub struct QueueConfig {
    /// Most messages one connection's queue holds; a Forward over it is refused.
    pub max_messages: usize,
    /// Most bytes one connection's queue holds; a Forward over it is refused.
    pub max_bytes: u64,
    /// Age after which a queued message expires, seconds.
    pub message_ttl_secs: u64,
    /// Interval of the sweep that removes expired messages from idle queues, ms.
    pub sweep_interval_ms: u64,
}

impl QueueConfig {
    /// The limits as the stores take them.
    pub fn limits(&self) -> mediator_store::QueueLimits {
        let some = |n: u64| (n > 0).then_some(n);
        mediator_store::QueueLimits {
            max_messages: (self.max_messages > 0).then_some(self.max_messages),
            max_bytes: some(self.max_bytes),
            message_ttl_ms: some(self.message_ttl_secs.saturating_mul(1000)),
        }
    }
}

/// What happens to a Forward once it is queued (credo-ts pull request 1638's
/// `messageForwardingStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardingStrategy {
    /// Queue only: delivered when the client asks (Pickup) or when delivery of queued messages is
    /// triggered ([`crate::Mediator::deliver_queued`]).
    QueueOnly,
    /// Queue, then send a Pickup 2.0 `delivery` on the connection's live session, if it has one.
    QueueAndLive,
    /// Queue, then send the encrypted message itself on an open return-route session of the
    /// connection (implicit mode); removed once the socket confirmed it. A socket that opens
    /// with return route `all` is sent the connection's queued messages the same way.
    Direct,
}

/// Pickup and forwarding behaviour.
#[derive(Debug, Clone, Deserialize)]
pub struct PickupConfig {
    /// What happens to a Forward once it is queued.
    pub forwarding: ForwardingStrategy,
    /// Most messages one `delivery` (or Pickup 1.0 `batch`) carries, whatever the client asks.
    pub max_batch: usize,
    /// Most payload bytes one `delivery` (or Pickup 1.0 `batch`) carries; one message always fits.
    pub max_delivery_bytes: u64,
    /// A delivered message that is not acknowledged within this time is delivered again, ms.
    /// Until then it is in flight: not handed out again, not counted as waiting in `status`.
    pub redelivery_after_ms: u64,
    /// When a client's session moves here from another instance (which may have died), its
    /// in-flight messages are given back and sent on the new session only after this long, ms:
    /// time for the acknowledgements already on their way (over HTTP, or a new socket) to remove
    /// what the client did get, so that it is not sent twice. 0: at once.
    pub takeover_grace_ms: u64,
    /// On a WebSocket, at most one `status` answers `messages-received` per this interval, ms
    /// (0: every one is answered).
    pub status_interval_ms: u64,
}

/// WebSocket sessions.
#[derive(Debug, Clone, Deserialize)]
pub struct WebSocketConfig {
    /// Interval of keepalive pings, ms.
    pub ping_interval_ms: u64,
    /// A session whose peer sent nothing (not even a pong) for this long after a ping is dead
    /// and closed, ms.
    pub pong_timeout_ms: u64,
    /// Frames that may wait for a slow client before its session is closed.
    pub outbound_buffer: usize,
    /// How long a directly delivered message waits for the socket's confirmation (pong) before
    /// it is left in the queue for a later pickup, ms.
    pub confirm_timeout_ms: u64,
    /// Most WebSockets open on this instance; an upgrade over it gets 503 (0 = no cap).
    pub max_sessions: usize,
    /// Most WebSockets registered for one connection; a newer one closes the oldest (0 = no cap).
    pub max_sessions_per_connection: usize,
    /// Read buffer of one WebSocket, bytes (tungstenite allocates it per socket).
    pub read_buffer_bytes: usize,
    /// Write buffer of one WebSocket, bytes: frames are flushed once this much is buffered.
    pub write_buffer_bytes: usize,
}

/// TCP connections of the one listener.
#[derive(Debug, Clone, Deserialize)]
pub struct TransportConfig {
    /// Longest wait for a request head, ms: from the accept, and again after each response (an
    /// idle keep-alive connection is closed after this long).
    pub header_timeout_ms: u64,
    /// Longest wait for a whole POST body once its head arrived, ms.
    pub body_timeout_ms: u64,
    /// Most open TCP connections of this instance (WebSockets included); 0 = no cap.
    pub max_connections: usize,
    /// Connections over `max_connections` that are still accepted, for `/healthz` and `/readyz`
    /// only.
    pub health_reserve: usize,
}

/// Per-client-address token buckets (rate per second, burst = bucket size); a rate of 0 turns
/// that class off.
#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitConfig {
    /// HTTP POSTs of envelopes and WebSocket data frames, per second.
    pub messages_per_second: f64,
    /// Burst of messages.
    pub messages_burst: u32,
    /// WebSocket upgrades, per second.
    pub upgrades_per_second: f64,
    /// Burst of upgrades.
    pub upgrades_burst: u32,
    /// New TCP connections, per second.
    pub connections_per_second: f64,
    /// Burst of new connections.
    pub connections_burst: u32,
    /// Most client addresses tracked at once (memory bound of the tables).
    pub max_tracked_addresses: usize,
    /// Peers (CIDRs) whose `X-Forwarded-For` names the client (load balancers).
    pub trusted_proxies: Vec<String>,
}

impl RateLimitConfig {
    /// The trusted proxy ranges (validated at load).
    pub fn trusted_proxy_nets(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|n| parse_net(n).ok())
            .collect()
    }
}

/// A CIDR (`10.0.0.0/8`) or a single address (`10.0.0.1`).
fn parse_net(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("rate_limit.trusted_proxies: not a CIDR or address: {text:?}"))
}

/// Size limits.
#[derive(Debug, Clone, Deserialize)]
pub struct Limits {
    /// Largest accepted envelope, bytes.
    pub max_message_bytes: usize,
    /// Most recipients an inbound envelope may list (each may cost a store lookup).
    pub max_envelope_recipients: usize,
    /// Most queries one discover-features message may carry.
    pub max_discover_queries: usize,
    /// Peers whose per-peer crypto (precomputed boxes, sealed senders) an instance remembers.
    pub peer_crypto_cache: usize,
}

/// Coordinate Mediation behaviour.
#[derive(Debug, Clone, Deserialize)]
pub struct MediationConfig {
    /// Grant (true) or deny (false) mediation requests.
    pub grant: bool,
    /// Most keys one connection's keylist holds.
    pub max_keys_per_connection: usize,
    /// Most updates one keylist-update may carry.
    pub max_keylist_update: usize,
    /// Most recipient keys whose connection an instance remembers (the Forward's lookup); 0
    /// remembers none (every Forward asks the store).
    pub key_cache_max: usize,
    /// How long a remembered key is trusted without asking the store again, seconds (removals
    /// are forgotten at once on every instance; this bounds what a missed announcement costs).
    pub key_cache_secs: u64,
}

/// Handshakes from anyone: caps on what an anonymous requester makes us store, and how long an
/// unfinished connection is kept.
#[derive(Debug, Clone, Deserialize)]
pub struct HandshakeConfig {
    /// Longest `label`, bytes.
    pub max_label_bytes: usize,
    /// Longest thread id (`@id` or `~thread.thid` of the request), bytes.
    pub max_thread_id_bytes: usize,
    /// Longest DID, bytes (a did:peer:2 or did:peer:4 carries its document in the DID).
    pub max_did_bytes: usize,
    /// Largest attached or inline DID document, bytes.
    pub max_did_doc_bytes: usize,
    /// A connection whose handshake does not complete within this time is removed, seconds.
    pub pending_ttl_secs: u64,
}

/// Replay protection: a state-changing message whose `@id` was already seen on its connection
/// within the window is refused.
#[derive(Debug, Clone, Deserialize)]
pub struct ReplayConfig {
    /// The window, seconds; 0 turns the check off.
    pub window_secs: u64,
    /// Most message ids remembered per connection (the oldest are forgotten first).
    pub max_ids_per_connection: usize,
}

/// Outbound delivery settings.
#[derive(Debug, Clone, Deserialize)]
pub struct DeliveryConfig {
    /// First retry delay, ms (doubles per attempt).
    pub retry_initial_ms: u64,
    /// Largest retry delay, ms.
    pub retry_max_ms: u64,
    /// Timeout of one HTTP attempt, ms.
    pub http_timeout_ms: u64,
    /// Most attempts for a message to a client's endpoint; then it waits in its queue.
    pub max_attempts: u32,
    /// Most attempts for a handshake reply (the requester has no connection yet); then it is
    /// dropped and counted.
    pub max_handshake_attempts: u32,
    /// Oldest a delivery may get before it is given up like after its last attempt, ms.
    pub max_age_ms: u64,
    /// Allow endpoints in loopback, private, link-local and unspecified ranges (tests, a
    /// private network). Off: such endpoints are refused, by address and after name resolution.
    pub allow_private_endpoints: bool,
    /// Most payload bytes waiting for outbound delivery on this instance, in all.
    pub max_backlog_bytes: u64,
    /// Most payload bytes waiting for outbound delivery to one endpoint (scheme, host, port).
    pub max_backlog_bytes_per_endpoint: u64,
    /// Most deliveries waiting on this instance, in all.
    pub max_backlog_messages: usize,
}

/// A secret string: `Debug` never shows it.
#[derive(Clone, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// True when no secret was configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<unset>"
        } else {
            "<redacted>"
        })
    }
}

impl Config {
    /// Loads defaults, then `file` if given, then the `MEDIATOR_…` entries of `env` (pass
    /// `std::env::vars()` in the binary, a map in tests).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = env
            .into_iter()
            // MEDIATOR_CONFIG names the file, MEDIATOR_LOG is the log filter (read by the
            // binary): neither is a setting (MEDIATOR_LOG would shadow the `log` table).
            .filter(|(k, _)| {
                k.starts_with(ENV_PREFIX) && k != "MEDIATOR_CONFIG" && k != "MEDIATOR_LOG"
            })
            .collect();
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        let built = builder
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    // The one list: `MEDIATOR_STORAGE__REDIS__CLUSTER_NODES=redis://a:7000,redis://b:7000`
                    // (only this key, so a comma in any other value stays text).
                    .list_separator(",")
                    .with_list_parse_key("storage.redis.cluster_nodes")
                    // `MEDIATOR_RATE_LIMIT__TRUSTED_PROXIES=10.0.0.0/8,192.168.0.0/16`
                    .with_list_parse_key("rate_limit.trusted_proxies")
                    .source(Some(env.into_iter().collect())),
            )
            .build()?;
        let config: Config = built.try_deserialize()?;
        config.validate()?;
        Ok(config)
    }

    /// The built-in defaults alone (what tests start from).
    pub fn defaults() -> Result<Self, ConfigError> {
        Self::load(None, std::iter::empty())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.master_secret.is_empty() && self.master_secret.expose().len() < 32 {
            return Err(ConfigError::Invalid(
                "master_secret must be at least 32 characters".into(),
            ));
        }
        for (name, url, schemes) in [
            (
                "public_http_endpoint",
                &self.public_http_endpoint,
                ["http://", "https://"],
            ),
            (
                "public_ws_endpoint",
                &self.public_ws_endpoint,
                ["ws://", "wss://"],
            ),
        ] {
            if !schemes.iter().any(|s| url.starts_with(s)) {
                return Err(ConfigError::Invalid(format!(
                    "{name} must start with {} (got {url:?})",
                    schemes.join(" or ")
                )));
            }
        }
        if self.storage.backend == StorageBackend::Redis {
            let redis = &self.storage.redis;
            let is_redis_url = |u: &str| u.starts_with("redis://") || u.starts_with("rediss://");
            if !is_redis_url(&redis.url) {
                return Err(ConfigError::Invalid(
                    "storage.redis.url must start with redis:// or rediss://".into(),
                ));
            }
            if !redis.cluster_nodes.is_empty() && !redis.cluster {
                // Seeds without cluster mode would be ignored silently: say so instead.
                return Err(ConfigError::Invalid(
                    "storage.redis.cluster_nodes is set but storage.redis.cluster is false".into(),
                ));
            }
            if let Some(bad) = redis.seeds().iter().find(|u| !is_redis_url(u)) {
                return Err(ConfigError::Invalid(format!(
                    "storage.redis.cluster_nodes must be redis:// or rediss:// URLs (got {:?})",
                    redact_url(bad)
                )));
            }
        }
        if self
            .cluster
            .instance_id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError::Invalid(
                "cluster.instance_id must be one word".into(),
            ));
        }
        if self.cluster.live_lease_ms < 300 {
            return Err(ConfigError::Invalid(
                "cluster.live_lease_ms must be at least 300".into(),
            ));
        }
        if self.queue.sweep_interval_ms == 0 {
            return Err(ConfigError::Invalid(
                "queue.sweep_interval_ms must be positive".into(),
            ));
        }
        if self.pickup.max_batch == 0 {
            return Err(ConfigError::Invalid(
                "pickup.max_batch must be at least 1".into(),
            ));
        }
        if self.websocket.ping_interval_ms == 0 || self.websocket.outbound_buffer == 0 {
            return Err(ConfigError::Invalid(
                "websocket.ping_interval_ms and websocket.outbound_buffer must be positive".into(),
            ));
        }
        let telemetry = &self.telemetry;
        if telemetry.otlp_enabled()
            && !(telemetry.otlp.endpoint.starts_with("http://")
                || telemetry.otlp.endpoint.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(format!(
                "telemetry.otlp.endpoint must start with http:// or https:// (got {:?})",
                telemetry.otlp.endpoint
            )));
        }
        if telemetry.otlp.metrics_interval_ms == 0 || telemetry.otlp.timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "telemetry.otlp.metrics_interval_ms and timeout_ms must be positive".into(),
            ));
        }
        if !telemetry.prometheus.listen.is_empty() && telemetry.prometheus.address().is_none() {
            return Err(ConfigError::Invalid(format!(
                "telemetry.prometheus.listen must be an address like 0.0.0.0:9464 (got {:?})",
                telemetry.prometheus.listen
            )));
        }
        if telemetry.service_name.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "telemetry.service_name must not be empty".into(),
            ));
        }
        for (name, value) in [
            (
                "limits.max_envelope_recipients",
                self.limits.max_envelope_recipients,
            ),
            (
                "limits.max_discover_queries",
                self.limits.max_discover_queries,
            ),
            ("limits.peer_crypto_cache", self.limits.peer_crypto_cache),
            (
                "mediation.max_keys_per_connection",
                self.mediation.max_keys_per_connection,
            ),
            (
                "mediation.max_keylist_update",
                self.mediation.max_keylist_update,
            ),
            ("handshake.max_label_bytes", self.handshake.max_label_bytes),
            (
                "handshake.max_thread_id_bytes",
                self.handshake.max_thread_id_bytes,
            ),
            ("handshake.max_did_bytes", self.handshake.max_did_bytes),
            (
                "handshake.max_did_doc_bytes",
                self.handshake.max_did_doc_bytes,
            ),
            (
                "replay.max_ids_per_connection",
                self.replay.max_ids_per_connection,
            ),
            (
                "delivery.max_backlog_messages",
                self.delivery.max_backlog_messages,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
            }
        }
        if self.delivery.max_attempts == 0
            || self.delivery.max_handshake_attempts == 0
            || self.delivery.max_age_ms == 0
            || self.delivery.max_backlog_bytes == 0
            || self.delivery.max_backlog_bytes_per_endpoint == 0
            || self.pickup.max_delivery_bytes == 0
            || self.handshake.pending_ttl_secs == 0
        {
            return Err(ConfigError::Invalid(
                "delivery.max_attempts, max_handshake_attempts, max_age_ms, max_backlog_bytes, \
                 max_backlog_bytes_per_endpoint, pickup.max_delivery_bytes and \
                 handshake.pending_ttl_secs must be positive"
                    .into(),
            ));
        }
        if let Some(err) = self
            .rate_limit
            .trusted_proxies
            .iter()
            .find_map(|n| parse_net(n).err())
        {
            return Err(ConfigError::Invalid(err));
        }
        let rl = &self.rate_limit;
        for (name, rate, burst) in [
            ("messages", rl.messages_per_second, rl.messages_burst),
            ("upgrades", rl.upgrades_per_second, rl.upgrades_burst),
            (
                "connections",
                rl.connections_per_second,
                rl.connections_burst,
            ),
        ] {
            if !(rate >= 0.0 && rate.is_finite()) || (rate > 0.0 && burst == 0) {
                return Err(ConfigError::Invalid(format!(
                    "rate_limit.{name}_per_second must be 0 or more, and {name}_burst at least 1 when it is not 0"
                )));
            }
        }
        if rl.max_tracked_addresses == 0 {
            return Err(ConfigError::Invalid(
                "rate_limit.max_tracked_addresses must be at least 1".into(),
            ));
        }
        if self.transport.header_timeout_ms == 0 || self.transport.body_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "transport.header_timeout_ms and transport.body_timeout_ms must be positive".into(),
            ));
        }
        if self.websocket.read_buffer_bytes < 512 || self.websocket.write_buffer_bytes < 512 {
            return Err(ConfigError::Invalid(
                "websocket.read_buffer_bytes and websocket.write_buffer_bytes must be at least 512"
                    .into(),
            ));
        }
        if self.limits.max_message_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "limits.max_message_bytes must be at least 1024".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load() {
        let c = Config::defaults().unwrap();
        assert_eq!(c.limits.max_message_bytes, 1024 * 1024);
        assert!(c.mediation.grant);
        assert!(c.master_secret.is_empty());
        assert_eq!(c.pickup.forwarding, ForwardingStrategy::QueueAndLive);
        let limits = c.queue.limits();
        assert_eq!(limits.message_ttl_ms, Some(7 * 24 * 3600 * 1000));
        assert!(limits.max_messages.is_some() && limits.max_bytes.is_some());
        let unlimited = Config::load(
            None,
            env(&[
                ("MEDIATOR_QUEUE__MAX_MESSAGES", "0"),
                ("MEDIATOR_QUEUE__MAX_BYTES", "0"),
                ("MEDIATOR_QUEUE__MESSAGE_TTL_SECS", "0"),
            ]),
        )
        .unwrap();
        assert_eq!(
            unlimited.queue.limits(),
            mediator_store::QueueLimits::UNLIMITED
        );
    }

    #[test]
    fn telemetry_is_off_by_default_and_set_by_variables() {
        let c = Config::defaults().unwrap();
        assert!(!c.telemetry.otlp_enabled());
        assert_eq!(c.telemetry.prometheus.address(), None);
        assert_eq!(c.log.format, LogFormat::Text);
        let c = Config::load(
            None,
            env(&[
                // The log filter variable of the binary is not a setting.
                ("MEDIATOR_LOG", "debug"),
                ("MEDIATOR_LOG__FORMAT", "json"),
                (
                    "MEDIATOR_TELEMETRY__OTLP__ENDPOINT",
                    "http://collector:4318",
                ),
                ("MEDIATOR_TELEMETRY__OTLP__PROTOCOL", "http/json"),
                ("MEDIATOR_TELEMETRY__PROMETHEUS__LISTEN", "0.0.0.0:9464"),
            ]),
        )
        .unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.log.filter, "info");
        assert!(c.telemetry.otlp_enabled());
        assert_eq!(c.telemetry.otlp.protocol, OtlpProtocol::HttpJson);
        assert_eq!(
            c.telemetry.prometheus.address(),
            Some("0.0.0.0:9464".parse().unwrap())
        );
        for (key, bad) in [
            ("MEDIATOR_TELEMETRY__OTLP__ENDPOINT", "collector:4318"),
            ("MEDIATOR_TELEMETRY__OTLP__PROTOCOL", "grpc"),
            ("MEDIATOR_TELEMETRY__PROMETHEUS__LISTEN", "everywhere"),
        ] {
            assert!(
                Config::load(None, env(&[(key, bad)])).is_err(),
                "{key}={bad} accepted"
            );
        }
    }

    #[test]
    fn forwarding_strategy_is_chosen_by_name() {
        for (name, want) in [
            ("queue-only", ForwardingStrategy::QueueOnly),
            ("queue-and-live", ForwardingStrategy::QueueAndLive),
            ("direct", ForwardingStrategy::Direct),
        ] {
            let c = Config::load(None, env(&[("MEDIATOR_PICKUP__FORWARDING", name)])).unwrap();
            assert_eq!(c.pickup.forwarding, want);
        }
        assert!(Config::load(None, env(&[("MEDIATOR_PICKUP__FORWARDING", "live")])).is_err());
    }

    #[test]
    fn file_then_env_last_wins() {
        let dir = std::env::temp_dir().join(format!("mediator-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("m.toml");
        std::fs::write(
            &file,
            "label = \"from file\"\n[limits]\nmax_message_bytes = 4096\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            env(&[
                ("MEDIATOR_LIMITS__MAX_MESSAGE_BYTES", "8192"),
                ("MEDIATOR_MEDIATION__GRANT", "false"),
                ("OTHER_LABEL", "ignored"),
            ]),
        )
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.label, "from file");
        assert_eq!(c.limits.max_message_bytes, 8192);
        assert!(!c.mediation.grant);
    }

    #[test]
    fn invalid_values_are_refused_with_reason() {
        let err = Config::load(None, env(&[("MEDIATOR_MASTER_SECRET", "short")])).unwrap_err();
        assert!(err.to_string().contains("invalid") || matches!(err, ConfigError::Invalid(_)));
        let err =
            Config::load(None, env(&[("MEDIATOR_PUBLIC_WS_ENDPOINT", "http://x")])).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(m) if m.contains("public_ws_endpoint")));
        assert!(Config::load(None, env(&[("MEDIATOR_LISTEN", "nonsense")])).is_err());
    }

    #[test]
    fn redis_backend_by_config_and_its_password_is_redacted() {
        let c = Config::load(
            None,
            env(&[
                ("MEDIATOR_STORAGE__BACKEND", "redis"),
                (
                    "MEDIATOR_STORAGE__REDIS__URL",
                    "redis://app:hunter2@10.0.0.5:6379/0",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(c.storage.backend, StorageBackend::Redis);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(
            dbg.contains("redis://app:<redacted>@10.0.0.5:6379/0"),
            "{dbg}"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert!(Config::load(
            None,
            env(&[
                ("MEDIATOR_STORAGE__BACKEND", "redis"),
                ("MEDIATOR_STORAGE__REDIS__URL", "http://x"),
            ]),
        )
        .is_err());
    }

    #[test]
    fn redis_cluster_seeds_come_from_the_list_or_the_url() {
        let base = [
            ("MEDIATOR_STORAGE__BACKEND", "redis"),
            ("MEDIATOR_STORAGE__REDIS__URL", "redis://10.0.0.1:7000"),
        ];
        let c = Config::load(None, env(&base)).unwrap();
        assert!(!c.storage.redis.cluster, "cluster mode is off by default");
        assert!(c.storage.redis.cluster_nodes.is_empty());
        assert_eq!(c.storage.redis.seeds(), ["redis://10.0.0.1:7000"]);

        let mut on = base.to_vec();
        on.push(("MEDIATOR_STORAGE__REDIS__CLUSTER", "true"));
        let c = Config::load(None, env(&on)).unwrap();
        assert_eq!(
            c.storage.redis.seeds(),
            ["redis://10.0.0.1:7000"],
            "url is the one seed"
        );

        on.push((
            "MEDIATOR_STORAGE__REDIS__CLUSTER_NODES",
            "redis://a:7000, redis://u:pw@b:7001",
        ));
        on.push(("MEDIATOR_LABEL", "Mediator, Inc."));
        let c = Config::load(None, env(&on)).unwrap();
        assert_eq!(
            c.storage.redis.seeds(),
            ["redis://a:7000", "redis://u:pw@b:7001"]
        );
        assert_eq!(
            c.label, "Mediator, Inc.",
            "only the seed list is split on commas"
        );
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("pw@"), "{dbg}");

        let mut off = base.to_vec();
        off.push(("MEDIATOR_STORAGE__REDIS__CLUSTER_NODES", "redis://a:7000"));
        let err = Config::load(None, env(&off)).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(m) if m.contains("cluster is false")));
        let mut bad = base.to_vec();
        bad.push(("MEDIATOR_STORAGE__REDIS__CLUSTER", "true"));
        bad.push(("MEDIATOR_STORAGE__REDIS__CLUSTER_NODES", "a:7000"));
        let err = Config::load(None, env(&bad)).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(m) if m.contains("cluster_nodes")));
    }

    #[test]
    fn limits_have_defaults_and_trusted_proxies_are_a_list() {
        let c = Config::defaults().unwrap();
        assert_eq!(c.rate_limit.messages_per_second, 100.0);
        assert_eq!(c.rate_limit.messages_burst, 50);
        assert!(c.rate_limit.trusted_proxies.is_empty());
        assert_eq!(c.websocket.max_sessions, 10_000);
        assert_eq!(c.websocket.max_sessions_per_connection, 100);
        assert!(c.transport.header_timeout_ms > 0 && c.transport.max_connections > 0);
        let c = Config::load(
            None,
            env(&[
                (
                    "MEDIATOR_RATE_LIMIT__TRUSTED_PROXIES",
                    "10.0.0.0/8, 192.0.2.1,2001:db8::/32",
                ),
                ("MEDIATOR_RATE_LIMIT__MESSAGES_PER_SECOND", "2.5"),
            ]),
        )
        .unwrap();
        assert_eq!(c.rate_limit.trusted_proxy_nets().len(), 3);
        assert_eq!(c.rate_limit.messages_per_second, 2.5);
        let off = Config::load(None, env(&RATE_LIMITS_OFF)).unwrap();
        assert_eq!(off.rate_limit.connections_per_second, 0.0);
        for (key, bad) in [
            ("MEDIATOR_RATE_LIMIT__TRUSTED_PROXIES", "10.0.0.0/33"),
            ("MEDIATOR_RATE_LIMIT__TRUSTED_PROXIES", "lb.internal"),
            ("MEDIATOR_RATE_LIMIT__MESSAGES_BURST", "0"),
            ("MEDIATOR_RATE_LIMIT__UPGRADES_PER_SECOND", "-1"),
            ("MEDIATOR_TRANSPORT__HEADER_TIMEOUT_MS", "0"),
            ("MEDIATOR_WEBSOCKET__READ_BUFFER_BYTES", "16"),
        ] {
            assert!(
                Config::load(None, env(&[(key, bad)])).is_err(),
                "{key}={bad} accepted"
            );
        }
    }

    #[test]
    fn secret_is_redacted() {
        let c = Config::load(
            None,
            env(&[(
                "MEDIATOR_MASTER_SECRET",
                "0123456789abcdef0123456789abcdef-secret",
            )]),
        )
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("0123456789abcdef"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
    }
}
