//! The cluster tests' shared parts: three instances of our mediator on one private Redis behind
//! a round-robin proxy ([`Cluster`]), a credo-ts recipient live on instance a
//! ([`live_recipient_with`]), a round of messages sent through b and c to it ([`live_round`]),
//! a kill -9 of the instance holding a live session ([`kill_9_of_the_live_holder`]), and the
//! small helpers of the live-mode tests (what a recipient received, with duplicates:
//! [`Received`]; waiting on a condition with a deadline: [`wait_until`], [`wait_queue`]).
//!
//! Used by tests/tests/cluster_interop.rs, credo_live.rs and credo06_cluster.rs. Every process
//! started here is killed when its handle is dropped, also when a test fails.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    time::Duration,
};

use anyhow::{anyhow, bail, ensure, Context, Result};
use didcomm_envelope::VerKey;
use mediator::testing::MediatorProcess;
use mediator::{
    sessions::{LiveSessionEvent, SessionId},
    stats::StatsSnapshot,
    Mediator,
};
use mediator_store::{ConnectionId, LiveSessionRegistry, MessageQueue};
use mediator_store_redis::{testing::RedisServer, RedisLiveSessionRegistry, RedisMessageQueue};
use serde_json::{json, Value};
use tokio::{
    net::TcpListener,
    sync::broadcast::{self, error::TryRecvError},
    time::Instant,
};

use crate::{
    acapy::key_bytes,
    credo::{
        credo_available_version, free_port, CredoAgent, CredoVersion, InitOptions, PickupStrategy,
    },
    our_mediator::TestMediator,
    proxy::RoundRobinProxy,
};

/// Shared by the three instances: same keys everywhere.
const SECRET: &str = "cluster-interop-test-master-secret-0123456789";

/// How long an instance may take to subscribe, a routing cache to learn a route, a queue to
/// reach a count.
pub const STATE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a round of deliveries may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(90);

/// Three instances on one Redis, and the proxy in front of b and c.
#[derive(Debug)]
pub struct Cluster {
    /// Instance a: holds the live sessions (the WebSocket endpoint), behind no HTTP proxy.
    pub a: TestMediator,
    /// Instance b, behind the HTTP proxy.
    pub b: TestMediator,
    /// Instance c, behind the HTTP proxy.
    pub c: TestMediator,
    /// The HTTP endpoint of the cluster: round-robin (per connection) to b and c.
    pub proxy: RoundRobinProxy,
    /// With `direct` forwarding: the WebSocket endpoint, a proxy in front of a and b (otherwise
    /// the WebSocket endpoint is a itself).
    pub ws_proxy: Option<RoundRobinProxy>,
    /// Last: dropped (killed) after the instances.
    _redis: RedisServer,
}

impl Cluster {
    /// Three instances with `queue-and-live` forwarding; the WebSocket endpoint is a.
    pub async fn start(name: &str) -> Result<Self> {
        Self::start_with(name, false).await
    }

    /// `direct`: the instances forward with the `direct` strategy (implicit pickup), and the
    /// WebSocket endpoint is a proxy in front of a and b, so that a client's socket can move.
    pub async fn start_with(name: &str, direct: bool) -> Result<Self> {
        let redis = tokio::task::spawn_blocking(RedisServer::start)
            .await
            .context("starting redis-server (join)")?
            .context("start a private redis-server (is redis-server installed?)")?;
        let mut listeners = Vec::new();
        for id in ["a", "b", "c"] {
            listeners.push(
                TcpListener::bind("127.0.0.1:0")
                    .await
                    .with_context(|| format!("bind a listener for instance {id}"))?,
            );
        }
        let addrs: Vec<_> = listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<std::io::Result<_>>()
            .context("listener addresses")?;
        let proxy = RoundRobinProxy::start(vec![addrs[1], addrs[2]])
            .await
            .context("start the proxy in front of b and c")?;
        let http = proxy.http_url();
        let ws_proxy = if direct {
            Some(
                RoundRobinProxy::start(vec![addrs[0], addrs[1]])
                    .await
                    .context("start the WebSocket proxy in front of a and b")?,
            )
        } else {
            None
        };
        let ws = match &ws_proxy {
            Some(p) => format!("ws://{}", p.addr()),
            None => format!("ws://{}", addrs[0]),
        };
        let forwarding = if direct { "direct" } else { "queue-and-live" };
        let prefix = format!("{name}-{}:", std::process::id());
        let mut instances = Vec::new();
        for (id, listener) in ["a", "b", "c"].into_iter().zip(listeners) {
            let env = [
                ("MEDIATOR_STORAGE__BACKEND", "redis"),
                ("MEDIATOR_STORAGE__REDIS__URL", redis.url()),
                ("MEDIATOR_STORAGE__REDIS__KEY_PREFIX", prefix.as_str()),
                ("MEDIATOR_MASTER_SECRET", SECRET),
                ("MEDIATOR_CLUSTER__INSTANCE_ID", id),
                ("MEDIATOR_PUBLIC_HTTP_ENDPOINT", http.as_str()),
                ("MEDIATOR_PUBLIC_WS_ENDPOINT", ws.as_str()),
                ("MEDIATOR_PICKUP__FORWARDING", forwarding),
            ];
            let instance = TestMediator::start_on(listener, &env)
                .await
                .with_context(|| format!("start instance {id} on Redis {}", redis.url()))?;
            instances.push(instance);
        }
        let mut instances = instances.into_iter();
        let (Some(a), Some(b), Some(c)) = (instances.next(), instances.next(), instances.next())
        else {
            bail!("three instances expected");
        };
        let cluster = Self {
            a,
            b,
            c,
            proxy,
            ws_proxy,
            _redis: redis,
        };
        for (id, m) in cluster.instances() {
            wait_until(
                &format!("instance {id} subscribed to the cluster bus"),
                STATE_TIMEOUT,
                || async move {
                    Ok((
                        m.cluster().is_subscribed(),
                        format!("subscribed: {}", m.cluster().is_subscribed()),
                    ))
                },
            )
            .await?;
            ensure!(
                m.cluster().instance_id() == id,
                "instance {id} calls itself {}",
                m.cluster().instance_id()
            );
        }
        let routing = cluster.routing_key();
        for (id, m) in cluster.instances() {
            ensure!(
                m.keys().routing_key().verkey() == &routing,
                "instance {id} has another routing key than a: the master secret is not shared"
            );
            ensure!(
                m.invitation(false).url() == cluster.a.invitation_url(),
                "instance {id} has another invitation than a"
            );
        }
        Ok(cluster)
    }

    /// a, b and c by name.
    pub fn instances(&self) -> [(&'static str, &Mediator); 3] {
        [
            ("a", &self.a.mediator),
            ("b", &self.b.mediator),
            ("c", &self.c.mediator),
        ]
    }

    /// The cluster's routing key (the same on every instance).
    pub fn routing_key(&self) -> VerKey {
        *self.a.mediator.keys().routing_key().verkey()
    }

    /// Each instance's counters, a, b, c.
    pub fn stats(&self) -> [StatsSnapshot; 3] {
        self.instances().map(|(_, m)| m.stats().snapshot())
    }

    /// The counters, for messages.
    pub fn describe_stats(&self) -> String {
        let [a, b, c] = self.stats();
        format!("a {a:?}; b {b:?}; c {c:?}")
    }

    /// Stops the instances, then Redis.
    pub async fn stop(self) {
        let Self {
            a,
            b,
            c,
            proxy,
            ws_proxy,
            _redis,
        } = self;
        drop(proxy);
        drop(ws_proxy);
        a.stop().await;
        b.stop().await;
        c.stop().await;
    }
}

/// A credo recipient, mediated by the cluster, live on a.
#[derive(Debug)]
pub struct Recipient {
    /// The credo agent.
    pub agent: CredoAgent,
    /// Its connection on the mediator (the same for every instance: shared store).
    pub conn: ConnectionId,
    /// Its live session on a (0 where the test does not know it).
    pub session: SessionId,
}

/// Starts a credo-ts 0.5.19 recipient (Pickup 2.0 Live Mode) against a's invitation and waits
/// until a holds its live session and b and c route it to a.
pub async fn live_recipient(cluster: &Cluster, label: &str) -> Result<Recipient> {
    let options = InitOptions::recipient(
        label,
        &cluster.a.invitation_url(),
        PickupStrategy::PickUpV2LiveMode,
    );
    live_recipient_with(cluster, CredoVersion::V0_5, options).await
}

/// [`live_recipient`] with this credo-ts version and these options (a live-mode recipient of
/// a's invitation: `options.mediator_invitation_url` should be `cluster.a.invitation_url()`).
pub async fn live_recipient_with(
    cluster: &Cluster,
    version: CredoVersion,
    options: InitOptions,
) -> Result<Recipient> {
    let label = options.label.clone();
    let label = label.as_str();
    let mut agent = CredoAgent::spawn_version(label, version).await?;
    let init = agent.init(options).await.with_context(|| {
        format!("{label} ({version}): init against the cluster (a's invitation)")
    })?;
    ensure!(
        init["pickupReady"] == true,
        "{label}: live mode not on after init: {init}"
    );
    let granted_endpoint = init["mediator"]["endpoint"].as_str().unwrap_or_default();
    ensure!(
        granted_endpoint.trim_end_matches('/') == cluster.proxy.http_url(),
        "{label}: the mediation grant names {granted_endpoint:?}, not the proxy {}: {init}",
        cluster.proxy.http_url()
    );
    let a = &cluster.a.mediator;
    wait_until(
        &format!("{label}: a holds one live session"),
        STATE_TIMEOUT,
        || async move {
            let live = a.sessions().live_connections();
            Ok((live.len() == 1, format!("{live:?}")))
        },
    )
    .await?;
    let (conn, session) = a.sessions().live_connections()[0].clone();
    for (id, m) in [("b", &cluster.b.mediator), ("c", &cluster.c.mediator)] {
        ensure!(
            m.sessions().live_connections().is_empty(),
            "instance {id} holds a live session, only a should: {:?}",
            m.sessions().live_connections()
        );
        routed_to_a(id, m, &conn, session).await?;
    }
    Ok(Recipient {
        agent,
        conn,
        session,
    })
}

/// Waits until `m`'s routing cache sends `conn` to session `session` on a.
pub async fn routed_to_a(
    id: &str,
    m: &Mediator,
    conn: &ConnectionId,
    session: SessionId,
) -> Result<()> {
    wait_until(
        &format!("instance {id} routes {conn} to a/{session}"),
        STATE_TIMEOUT,
        || async move {
            let route = m.cluster().routes().get(conn).cloned();
            Ok((
                route
                    .as_ref()
                    .is_some_and(|h| h.instance == "a" && h.session == session),
                format!("{route:?}"),
            ))
        },
    )
    .await
}

/// A new single-use invitation of the recipient; checks that it points at the proxy with our
/// routing key and that its key names the recipient's connection on the mediator.
pub async fn recipient_invitation(cluster: &Cluster, recipient: &mut Recipient) -> Result<String> {
    let label = recipient.agent.name().to_owned();
    let answer = recipient
        .agent
        .request(json!({"cmd": "createInvitation"}), Duration::from_secs(40))
        .await
        .with_context(|| format!("{label}: create an invitation routed through the cluster"))?;
    let url = answer["invitationUrl"]
        .as_str()
        .ok_or_else(|| anyhow!("{label}: createInvitation without invitationUrl: {answer}"))?
        .to_owned();
    let service = &answer["invitation"]["services"][0];
    let endpoint = service["serviceEndpoint"].as_str().unwrap_or_default();
    ensure!(
        endpoint.trim_end_matches('/') == cluster.proxy.http_url(),
        "{label}: the invitation's endpoint is {endpoint:?}, not the proxy {}: {answer}",
        cluster.proxy.http_url()
    );
    let routing = service["routingKeys"][0].as_str().unwrap_or_default();
    ensure!(
        key_bytes(routing).as_deref() == Some(&cluster.routing_key().as_bytes()[..]),
        "{label}: the invitation's routing key {routing:?} is not ours: {answer}"
    );
    // Registered by credo's keylist-update, on whichever instance took it: the store is shared,
    // so ask another one.
    let conn = invitation_connection(&cluster.c.mediator, &label, &answer).await?;
    ensure!(
        conn == recipient.conn,
        "{label}: the invitation's key is of connection {conn}, the live session of {}",
        recipient.conn
    );
    Ok(url)
}

/// The connection on the mediator whose keylist holds the recipient key of a mediated agent's
/// invitation (`answer`: the agent's answer to `createInvitation`, with the invitation's JSON),
/// which credo registered with keylist-update before answering.
pub async fn invitation_connection(
    m: &Mediator,
    label: &str,
    answer: &Value,
) -> Result<ConnectionId> {
    let recipient_key = answer["invitation"]["services"][0]["recipientKeys"][0]
        .as_str()
        .ok_or_else(|| anyhow!("{label}: invitation without a recipient key: {answer}"))?;
    let key = VerKey::from_did_key(recipient_key)
        .with_context(|| format!("{label}: the invitation's recipient key {recipient_key}"))?;
    m.stores()
        .mediation
        .connection_for_key(&key)
        .await
        .context("mediation store lookup")?
        .ok_or_else(|| {
            anyhow!("{label}: the invitation's key {recipient_key} is registered by no connection")
        })
}

/// Waits for the recipient's side of its connection with `sender_label` to complete (the
/// sender's `complete` is forwarded through the cluster).
pub async fn recipient_connected(recipient: &mut Recipient, sender_label: &str) -> Result<()> {
    agent_connected(&mut recipient.agent, sender_label).await
}

/// Waits for `agent`'s side of its connection with `sender_label` to complete.
pub async fn agent_connected(agent: &mut CredoAgent, sender_label: &str) -> Result<()> {
    let deadline = Instant::now() + STATE_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = agent
            .next_event("connectionState", left)
            .await
            .with_context(|| {
                format!(
                    "{}: its connection with {sender_label} completes",
                    agent.name()
                )
            })?;
        if event["state"] == "completed" && event["theirLabel"] == sender_label {
            return Ok(());
        }
    }
}

/// What a recipient received of a round: every expected message once, and the duplicates
/// (pickup is at-least-once).
#[derive(Debug)]
pub struct Received<'a> {
    expected: &'a BTreeSet<String>,
    /// Acknowledged in an earlier round: receiving one is a failure.
    forbidden: Option<&'a BTreeSet<String>>,
    /// Each message received, once.
    pub unique: BTreeSet<String>,
    /// Each delivery of a message already received.
    pub duplicates: Vec<String>,
    /// The DIDComm message ids each content arrived under, one per delivery.
    pub ids: BTreeMap<String, Vec<String>>,
}

impl<'a> Received<'a> {
    /// Expecting `expected` (anything else is a failure).
    pub fn new(expected: &'a BTreeSet<String>) -> Self {
        Self {
            expected,
            forbidden: None,
            unique: BTreeSet::new(),
            duplicates: Vec::new(),
            ids: BTreeMap::new(),
        }
    }

    /// Expecting `expected`; receiving one of `forbidden` (acknowledged earlier) is a failure of
    /// its own.
    pub fn with_forbidden(expected: &'a BTreeSet<String>, forbidden: &'a BTreeSet<String>) -> Self {
        Self {
            forbidden: Some(forbidden),
            ..Self::new(expected)
        }
    }

    /// First deliveries and duplicates.
    pub fn deliveries(&self) -> usize {
        self.unique.len() + self.duplicates.len()
    }

    /// Takes the agent's next basic message (waiting until `deadline`).
    pub async fn take_one(&mut self, agent: &mut CredoAgent, deadline: Instant) -> Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        let (content, id) = agent.next_basic_message(left).await.with_context(|| {
            format!(
                "{}: waiting for a basic message ({})",
                agent.name(),
                self.summary()
            )
        })?;
        if self.forbidden.is_some_and(|f| f.contains(&content)) {
            bail!(
                "{}: `{content}` was delivered again after it had been acknowledged",
                agent.name()
            );
        }
        if !self.expected.contains(&content) {
            bail!(
                "{}: received `{content}`, which is not of this round",
                agent.name()
            );
        }
        self.ids.entry(content.clone()).or_default().push(id);
        if !self.unique.insert(content.clone()) {
            self.duplicates.push(content);
        }
        Ok(())
    }

    /// Deliveries of a DIDComm message (one id) received before: what the mediator delivered
    /// again. (A content received under two ids was sent twice: see [`Received::resent`].)
    pub fn redeliveries(&self) -> usize {
        self.ids
            .values()
            .map(|ids| ids.len() - ids.iter().collect::<BTreeSet<_>>().len())
            .sum()
    }

    /// The contents received under more than one DIDComm message id: sent twice by the sender
    /// (a send that failed after the mediator had taken it, sent again).
    pub fn resent(&self) -> Vec<&str> {
        self.ids
            .iter()
            .filter(|(_, ids)| ids.iter().collect::<BTreeSet<_>>().len() > 1)
            .map(|(content, _)| content.as_str())
            .collect()
    }

    /// Takes basic messages until every expected one has arrived.
    pub async fn until_all(&mut self, agent: &mut CredoAgent, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while !self.expected.is_subset(&self.unique) {
            if let Err(e) = self.take_one(agent, deadline).await {
                let missing: Vec<&String> = self.expected.difference(&self.unique).collect();
                return Err(e.context(format!(
                    "{}: {} of {} received within {limit:?}; missing {missing:?}",
                    agent.name(),
                    self.unique.len(),
                    self.expected.len()
                )));
            }
        }
        Ok(())
    }

    /// Takes basic messages until `total` deliveries (first ones and duplicates) have arrived:
    /// the recipient may still be working through deliveries the mediator made.
    pub async fn until_deliveries(
        &mut self,
        agent: &mut CredoAgent,
        total: usize,
        limit: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + limit;
        while self.deliveries() < total {
            if let Err(e) = self.take_one(agent, deadline).await {
                return Err(e.context(format!(
                    "{}: {} of the {total} deliveries the mediator made arrived within {limit:?}",
                    agent.name(),
                    self.deliveries()
                )));
            }
        }
        Ok(())
    }

    /// `u/n received, N duplicates…` with how the duplicates spread over the messages.
    pub fn summary(&self) -> String {
        let head = format!("{}/{} received", self.unique.len(), self.expected.len());
        if self.duplicates.is_empty() {
            return format!("{head}, 0 duplicates");
        }
        let mut extra: BTreeMap<&str, usize> = BTreeMap::new();
        for content in &self.duplicates {
            *extra.entry(content.as_str()).or_default() += 1;
        }
        let (most, times) = extra
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(c, n)| (*c, *n + 1))
            .unwrap_or_default();
        format!(
            "{head}, {} duplicates ({} deliveries for {} messages; {} delivered more than once, \
             `{most}` {times} times)",
            self.duplicates.len(),
            self.deliveries(),
            self.unique.len(),
            extra.len()
        )
    }
}

/// Polls `condition` every 50 ms until it holds or `limit` passes (waiting for a state, not a
/// fixed delay); the error says what was last seen.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut condition: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(bool, String)>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let (done, seen) = condition().await?;
        if done {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{what}: not within {limit:?} (last seen: {seen})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the mediator's queue of `conn` (shared by a cluster's instances) holds exactly
/// `count` messages, waiting or in flight (delivered, not acknowledged yet).
pub async fn wait_queue(
    m: &Mediator,
    conn: &ConnectionId,
    count: usize,
    limit: Duration,
) -> Result<()> {
    wait_until(
        &format!("the queue of connection {conn} holding {count} messages"),
        limit,
        || async move {
            let status = m
                .stores()
                .queue
                .status(conn, None)
                .await
                .with_context(|| format!("queue status of {conn}"))?;
            Ok((
                status.message_count + status.in_flight == count,
                format!(
                    "{} waiting + {} in flight",
                    status.message_count, status.in_flight
                ),
            ))
        },
    )
    .await
}

/// Live-session events received so far (without waiting).
pub fn pending_session_events(
    events: &mut broadcast::Receiver<LiveSessionEvent>,
) -> Vec<LiveSessionEvent> {
    let mut out = Vec::new();
    loop {
        match events.try_recv() {
            Ok(event) => out.push(event),
            Err(TryRecvError::Lagged(n)) => eprintln!("(live-session events: {n} lagged)"),
            Err(TryRecvError::Empty | TryRecvError::Closed) => return out,
        }
    }
}

/// The `liveSession` events the agent has emitted and nobody took yet (without waiting).
pub async fn drain_live_events(agent: &mut CredoAgent) -> Vec<Value> {
    let mut events = Vec::new();
    while let Ok(event) = agent.next_event("liveSession", Duration::ZERO).await {
        events.push(event);
    }
    events
}

/// `n` distinct message contents: `<prefix> 01`, `<prefix> 02`, …
pub fn contents(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix} {i:02}")).collect()
}

/// Sends `contents` from a credo sender on `connection`, one after the other.
pub async fn credo_send_all(
    sender: &mut CredoAgent,
    connection: &str,
    contents: &[String],
) -> Result<()> {
    for (n, content) in contents.iter().enumerate() {
        sender
            .send_message(connection, content)
            .await
            .with_context(|| {
                format!(
                    "{}: send message {} of {}",
                    sender.name(),
                    n + 1,
                    contents.len()
                )
            })?;
    }
    Ok(())
}

/// What [`credo_send_retrying`] did.
#[derive(Debug, Clone, Default)]
pub struct SendTally {
    /// The contents whose send credo reported done (every one, once the sender returns).
    pub accepted: Vec<String>,
    /// Each failed send (content and credo's error), in order: the content was sent again.
    pub failures: Vec<(String, String)>,
}

/// How a test steers [`credo_send_retrying`] and follows it.
#[derive(Debug)]
pub struct SendControl {
    /// The sender sends content `i` (from 0) once this is above `i`: the test raises it (to keep
    /// the sender a few messages ahead of the recipient, say, then let it go).
    pub allowed: tokio::sync::watch::Receiver<usize>,
    /// What the sender did so far, updated after every send.
    pub progress: tokio::sync::watch::Sender<SendTally>,
}

/// Sends `contents` from a credo sender on `connection`, one after the other; a send that fails
/// (the mediator is down: credo's HTTP POST is refused or cut) is sent again once `ready_url`
/// (the mediator's `/readyz`) answers 2xx, until `limit` has passed. A content counts as accepted
/// when credo's send returned OK; one whose send failed may still have been taken by the
/// mediator before it died, so the recipient may get it twice (under two message ids). With
/// `control`, each send waits until the test allows it, and the progress is published.
pub async fn credo_send_retrying(
    sender: &mut CredoAgent,
    connection: &str,
    contents: &[String],
    ready_url: &str,
    limit: Duration,
    mut control: Option<SendControl>,
) -> Result<SendTally> {
    let deadline = Instant::now() + limit;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let mut tally = SendTally::default();
    for (n, content) in contents.iter().enumerate() {
        if let Some(control) = control.as_mut() {
            tokio::time::timeout_at(deadline, control.allowed.wait_for(|allowed| *allowed > n))
                .await
                .map_err(|_| {
                    anyhow!(
                        "{}: not allowed to send message {} within {limit:?}",
                        sender.name(),
                        n + 1
                    )
                })?
                .map_err(|_| anyhow!("the test stopped steering the sender"))?;
        }
        loop {
            let sent = sender.send_message(connection, content).await;
            let failed = match sent {
                Ok(()) => {
                    tally.accepted.push(content.clone());
                    None
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    tally.failures.push((content.clone(), error.clone()));
                    Some(error)
                }
            };
            if let Some(control) = control.as_ref() {
                control.progress.send_replace(tally.clone());
            }
            let Some(error) = failed else {
                break;
            };
            ensure!(
                Instant::now() < deadline,
                "{}: message {} of {} not sent within {limit:?} ({} failed sends); last error: \
                 {error}",
                sender.name(),
                n + 1,
                contents.len(),
                tally.failures.len()
            );
            let http = &http;
            wait_until(
                &format!("{ready_url} ready again (to send `{content}` again)"),
                deadline.saturating_duration_since(Instant::now()),
                || async move {
                    let status = http.get(ready_url).send().await.map(|r| r.status());
                    Ok((
                        status.as_ref().is_ok_and(|s| s.is_success()),
                        format!("{status:?}"),
                    ))
                },
            )
            .await?;
        }
    }
    Ok(tally)
}

/// What one round of messages did: what the recipient received and the increments of each
/// instance's counters (a, b, c).
#[derive(Debug)]
pub struct Round {
    /// [`Received::summary`] once every delivery made was taken.
    pub summary: String,
    /// Messages received twice or more.
    pub duplicates: usize,
    /// How long the senders took.
    pub sent_in: Duration,
    /// When the last new message arrived, after the first send.
    pub all_arrived: Duration,
    /// Forwards queued by a, b, c.
    pub queued: [u64; 3],
    /// Deliveries made by a, b, c (first ones and again).
    pub delivered: [u64; 3],
    /// Deliveries made again (all instances).
    pub redelivered: u64,
    /// Messages acknowledged (all instances).
    pub acknowledged: u64,
    /// The counters after the round.
    pub after: [StatsSnapshot; 3],
}

/// One round: `send` (every sender's messages, concurrently) while the recipient takes them, until
/// every expected message arrived and the queue drained (all acknowledged); then takes every
/// delivery the cluster made (the duplicates too, so none is missed, and none is mistaken for a
/// message of a later round).
pub async fn round(
    cluster: &Cluster,
    recipient: &mut Recipient,
    expected: &BTreeSet<String>,
    send: impl Future<Output = Result<()>>,
) -> Result<Round> {
    let before = cluster.stats();
    let started = Instant::now();
    let mut received = Received::new(expected);
    let (sent_in, ()) = tokio::try_join!(
        async {
            send.await.context("senders")?;
            Ok::<_, anyhow::Error>(started.elapsed())
        },
        async {
            received
                .until_all(&mut recipient.agent, DELIVERY_TIMEOUT)
                .await
                .context("the recipient receives every message")
        },
    )?;
    let all_arrived = started.elapsed();
    wait_queue(&cluster.a.mediator, &recipient.conn, 0, STATE_TIMEOUT)
        .await
        .context("every message acknowledged (queue drained)")?;
    let after = cluster.stats();
    let delta = |i: usize, f: fn(&StatsSnapshot) -> u64| f(&after[i]) - f(&before[i]);
    let queued = [0, 1, 2].map(|i| delta(i, |s| s.forwards_queued));
    let delivered = [0, 1, 2].map(|i| delta(i, |s| s.delivered));
    let redelivered: u64 = [0, 1, 2].map(|i| delta(i, |s| s.redelivered)).iter().sum();
    let acknowledged: u64 = [0, 1, 2].map(|i| delta(i, |s| s.acknowledged)).iter().sum();
    received
        .until_deliveries(
            &mut recipient.agent,
            delivered.iter().sum::<u64>() as usize,
            DELIVERY_TIMEOUT,
        )
        .await
        .context("the recipient processes every delivery the cluster made")?;
    Ok(Round {
        summary: received.summary(),
        duplicates: received.duplicates.len(),
        sent_in,
        all_arrived,
        queued,
        delivered,
        redelivered,
        acknowledged,
        after,
    })
}

/// One [`round`] to a recipient live on a; then checks where the Forwards were taken (b and c)
/// and delivered (a, on the live session), that the live session stayed, that the queue drained
/// and that the recipient processed every delivery made.
pub async fn live_round(
    cluster: &Cluster,
    recipient: &mut Recipient,
    expected: &BTreeSet<String>,
    send: impl Future<Output = Result<()>>,
) -> Result<String> {
    let a = &cluster.a.mediator;
    // Set live mode up (socketOpened, requested, live): not of the round.
    drain_live_events(&mut recipient.agent).await;
    let mut session_events = a.sessions().subscribe();
    let connections_before = cluster.proxy.connections_per_backend();
    let Round {
        summary,
        sent_in,
        all_arrived,
        queued,
        delivered,
        redelivered,
        acknowledged,
        after,
        ..
    } = round(cluster, recipient, expected, send).await?;
    let n = expected.len() as u64;
    let session_changes = pending_session_events(&mut session_events);
    // credo would report a socket closing or live mode turning on again.
    let credo_changes = drain_live_events(&mut recipient.agent).await;
    let proxied: Vec<usize> = cluster
        .proxy
        .connections_per_backend()
        .iter()
        .zip(&connections_before)
        .map(|(after, before)| after - before)
        .collect();
    let stats = cluster.describe_stats();
    let report = format!(
        "{}; sent in {sent_in:.1?}, all arrived {all_arrived:.1?} after the first send; Forwards queued a {} / b {} / \
         c {}; delivered by a {} / b {} / c {} ({redelivered} redelivered), acknowledged \
         {acknowledged}; new proxy connections to b, c this round {proxied:?}; stats {stats}",
        summary,
        queued[0],
        queued[1],
        queued[2],
        delivered[0],
        delivered[1],
        delivered[2],
    );
    eprintln!("round: {report}");

    ensure!(
        after[0].forwards_queued == 0,
        "instance a queued Forwards: it is behind no proxy and no sender knows it; {report}"
    );
    ensure!(
        queued[1] + queued[2] == n,
        "b and c queued {} + {} Forwards in this round, {n} messages were sent; {report}",
        queued[1],
        queued[2]
    );
    ensure!(
        queued[1] > 0 && queued[2] > 0,
        "the proxy spread the Forwards over only one of b and c (b {}, c {}); {report}",
        queued[1],
        queued[2]
    );
    ensure!(
        delivered[1] == 0 && delivered[2] == 0,
        "b or c delivered messages of the round (b {}, c {}): they hold no WebSocket of the \
         recipient, so these went out in answer to a delivery-request on HTTP, not live on a's \
         session; {report}",
        delivered[1],
        delivered[2]
    );
    ensure!(
        delivered[0] >= n && acknowledged >= n,
        "a delivered {} and the cluster had {acknowledged} acknowledged of {n}; {report}",
        delivered[0]
    );
    ensure!(
        session_changes.is_empty(),
        "the live session changed during the round (after a reconnection messages are fetched \
         with a delivery-request, not pushed live): {session_changes:?}; {report}"
    );
    ensure!(
        credo_changes.is_empty(),
        "the recipient's live session changed during the round: {credo_changes:?}; {report}"
    );
    ensure!(
        a.sessions().live_connections() == vec![(recipient.conn.clone(), recipient.session)],
        "after the round a's live sessions are {:?}, expected still {}/{}",
        a.sessions().live_connections(),
        recipient.conn,
        recipient.session
    );
    for (id, m) in [("b", &cluster.b.mediator), ("c", &cluster.c.mediator)] {
        routed_to_a(id, m, &recipient.conn, recipient.session).await?;
    }
    Ok(report)
}

/// The value of the unlabelled metric `name` at the Prometheus endpoint `addr` (host:port).
pub async fn scrape(addr: &str, name: &str) -> Result<f64> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .with_context(|| format!("scrape {addr}"))?
        .text()
        .await?;
    text.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .ok_or_else(|| anyhow!("{name} not at {addr}"))
}

/// Three mediator processes (the real binary) a, b, c on `ports`, on the Redis at `redis` under
/// `prefix`, advertising `public` (HTTP and WebSocket endpoints), with Prometheus metrics on
/// `metrics` (host:port each), the shipped take-over grace (10 s) and a redelivery timeout (10 s)
/// longer than credo takes to acknowledge a burst on this machine (what is delivered again is
/// then what a failure cost, not slow acknowledgements). Returns once all three are ready.
pub async fn start_processes(
    ports: &[u16],
    redis: &str,
    prefix: &str,
    public: (&str, &str),
    metrics: &[String],
) -> Result<Vec<MediatorProcess>> {
    let mut procs = Vec::new();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let env = [
            ("MEDIATOR_PUBLIC_HTTP_ENDPOINT", public.0),
            ("MEDIATOR_PUBLIC_WS_ENDPOINT", public.1),
            (
                "MEDIATOR_TELEMETRY__PROMETHEUS__LISTEN",
                metrics[i].as_str(),
            ),
            ("MEDIATOR_PICKUP__REDELIVERY_AFTER_MS", "10000"),
            // As shipped (the process tests' default is shorter).
            ("MEDIATOR_PICKUP__TAKEOVER_GRACE_MS", "10000"),
        ];
        procs.push(MediatorProcess::start_on(
            ports[i], name, redis, prefix, &env,
        ));
    }
    for p in &mut procs {
        let name = p.name.clone();
        p.try_ready()
            .await
            .map_err(|log| anyhow!("instance {name} did not start; its log:\n{log}"))?;
    }
    Ok(procs)
}

/// A kill -9 of the instance holding a credo-ts live session ([`kill_9_of_the_live_holder`]).
#[derive(Debug, Clone)]
pub struct KillScenario {
    /// Names the Redis key prefix (`<name>-<pid>:`).
    pub name: String,
    /// Messages sent (and a marker after them).
    pub messages: usize,
    /// The recipient's credo-ts.
    pub recipient_version: CredoVersion,
    /// The recipient's `init` (the scenario sets the mediator invitation and Pickup 2.0 Live
    /// Mode).
    pub recipient: InitOptions,
    /// The sender's credo-ts.
    pub sender_version: CredoVersion,
    /// The sender's `init` (the scenario sets an inbound port of its own and no mediator).
    pub sender: InitOptions,
}

impl KillScenario {
    /// `messages` from a sender `<labels>-sender` to a recipient `<labels>-recipient`, both of
    /// this credo-ts version with its default did:peer numalgo; Redis keys under `<name>-<pid>:`.
    pub fn new(name: &str, version: CredoVersion, labels: &str, messages: usize) -> Self {
        let options = |role: &str| InitOptions {
            label: format!("{labels}-{role}"),
            did_peer_numalgo: version.default_did_peer_numalgo(),
            ..InitOptions::default()
        };
        Self {
            name: name.to_owned(),
            messages,
            recipient_version: version,
            recipient: options("recipient"),
            sender_version: version,
            sender: options("sender"),
        }
    }
}

/// What [`kill_9_of_the_live_holder`] saw.
#[derive(Debug, Clone)]
pub struct KillReport {
    /// Messages received once before the kill.
    pub killed_at: usize,
    /// Messages the recipient received twice or more.
    pub duplicates: usize,
    /// What the survivors' `mediator_messages_redelivered_total` add up to.
    pub counted: f64,
    /// The recipient's summary.
    pub summary: String,
    /// How long the scenario took.
    pub elapsed: Duration,
}

/// kill -9 of the instance holding a credo-ts live session, mid-stream. Three mediator
/// processes on a private Redis (append-only file), behind two proxies: HTTP to b and c, the
/// WebSocket endpoint to a, b and c in turn (an instance that refuses is skipped). The recipient's
/// socket is on a; a dies after a third of the messages arrived; credo reconnects through the proxy
/// to b or c. Nothing accepted is lost, at most 5% come twice, and the survivors' duplicate
/// counter says exactly how many came twice (each a failure). A marker message sent once the
/// queue is empty (all acknowledged) closes the count: it comes after every earlier delivery on
/// the socket.
pub async fn kill_9_of_the_live_holder(scenario: KillScenario) -> Result<KillReport> {
    let n = scenario.messages;
    credo_available_version(scenario.recipient_version).map_err(|e| anyhow!(e))?;
    credo_available_version(scenario.sender_version).map_err(|e| anyhow!(e))?;
    let started = Instant::now();
    let redis = tokio::task::spawn_blocking(|| {
        RedisServer::start_with_args(["--appendonly", "yes", "--appendfsync", "always"])
    })
    .await?
    .context("start a private redis-server")?;
    let ports = [free_port()?, free_port()?, free_port()?];
    let addrs: Vec<std::net::SocketAddr> = ports
        .iter()
        .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    let http = RoundRobinProxy::start(vec![addrs[1], addrs[2]]).await?;
    let ws = RoundRobinProxy::start(addrs.clone()).await?;
    let (http_url, ws_url) = (http.http_url(), format!("ws://{}", ws.addr()));
    let prefix = format!("{}-{}:", scenario.name, std::process::id());
    let metrics: Vec<String> = (0..3)
        .map(|_| free_port().map(|p| format!("127.0.0.1:{p}")))
        .collect::<Result<_>>()?;
    let mut procs =
        start_processes(&ports, redis.url(), &prefix, (&http_url, &ws_url), &metrics).await?;
    let invitation = reqwest::get(format!("{}/invitation?format=url", procs[0].base))
        .await?
        .text()
        .await?
        .trim()
        .to_owned();

    let label = scenario.recipient.label.clone();
    let label = label.as_str();
    let mut agent = CredoAgent::spawn_version(label, scenario.recipient_version).await?;
    let init = agent
        .init(InitOptions {
            mediator_invitation_url: Some(invitation),
            pickup_strategy: PickupStrategy::PickUpV2LiveMode,
            ..scenario.recipient.clone()
        })
        .await
        .with_context(|| format!("{label}: init against the cluster"))?;
    ensure!(
        init["pickupReady"] == true,
        "{label}: live mode not on: {init}"
    );
    let registry = RedisLiveSessionRegistry::new(redis.pool()?, &prefix);
    let registry = &registry;
    wait_until(
        "a holds the recipient's live session",
        STATE_TIMEOUT,
        || async move {
            let all = registry.all().await?;
            Ok((
                all.len() == 1 && all[0].1.instance == "a",
                format!("{all:?}"),
            ))
        },
    )
    .await?;
    let conn = registry.all().await?[0].0.clone();
    let mut recipient = Recipient {
        agent,
        conn: conn.clone(),
        session: 0,
    };
    let sender_label = scenario.sender.label.clone();
    let sender_label = sender_label.as_str();
    let mut sender = CredoAgent::spawn_version(sender_label, scenario.sender_version).await?;
    sender
        .init(InitOptions {
            mediator_invitation_url: None,
            pickup_strategy: PickupStrategy::None,
            inbound_port: Some(free_port()?),
            ..scenario.sender.clone()
        })
        .await
        .with_context(|| format!("{sender_label}: init (no mediator)"))?;
    let url = recipient
        .agent
        .create_invitation()
        .await
        .context("the recipient's invitation")?;
    let connection = sender
        .receive_invitation(&url)
        .await
        .context("the sender connects to the recipient through the cluster")?;
    recipient_connected(&mut recipient, sender_label).await?;
    let queue = RedisMessageQueue::new(
        redis.pool()?,
        &prefix,
        mediator_store::QueueLimits::UNLIMITED,
    );
    let queue = &queue;
    let conn = &conn;
    let queue_empty = || async move {
        let st = queue.status(conn, None).await?;
        Ok((
            st.message_count + st.in_flight == 0,
            format!("{} waiting, {} in flight", st.message_count, st.in_flight),
        ))
    };
    wait_until(
        "the handshake forwards acknowledged",
        STATE_TIMEOUT,
        queue_empty,
    )
    .await?;

    let sent = contents("kill-9 message", n);
    let marker = "kill-9 marker".to_owned();
    let mut expected: BTreeSet<String> = sent.iter().cloned().collect();
    expected.insert(marker.clone());
    let sending = tokio::spawn(async move {
        credo_send_all(&mut sender, &connection, &sent)
            .await
            .map(|()| (sender, connection))
    });
    let mut received = Received::new(&expected);
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while received.unique.len() < n / 3 {
        received.take_one(&mut recipient.agent, deadline).await?;
    }
    procs[0].kill9();
    let killed_at = received.unique.len();
    let (mut sender, connection) = sending.await?.context("the sender sends every message")?;
    while received.unique.len() < n {
        received
            .take_one(&mut recipient.agent, deadline)
            .await
            .with_context(|| format!("after the kill: {}", received.summary()))?;
    }
    wait_until("every message acknowledged", STATE_TIMEOUT, queue_empty).await?;
    sender
        .send_message(&connection, &marker)
        .await
        .context("the marker")?;
    while !received.unique.contains(&marker) {
        received.take_one(&mut recipient.agent, deadline).await?;
    }
    let counted = scrape(&metrics[1], "mediator_messages_redelivered_total").await?
        + scrape(&metrics[2], "mediator_messages_redelivered_total").await?;
    let duplicates = received.duplicates.len();
    let ok = duplicates * 100 <= n * 5 && counted == duplicates as f64;
    if !ok {
        // What the survivors did about the move, for the failure's reader.
        for p in &procs[1..] {
            let log = std::fs::read_to_string(&p.log).unwrap_or_default();
            for line in log
                .lines()
                .filter(|l| l.contains("take") || l.contains("again") || l.contains("WARN"))
            {
                eprintln!("[{}] {line}", p.name);
            }
        }
    }
    eprintln!(
        "kill -9 of the holder ({} recipient, {} sender): {} ({killed_at} before the kill); \
         duplicates counted by b and c: {counted}; total {:.1?}",
        scenario.recipient_version,
        scenario.sender_version,
        received.summary(),
        started.elapsed()
    );
    ensure!(
        duplicates * 100 <= n * 5,
        "{duplicates} of {n} came twice (more than 5%): {}",
        received.summary()
    );
    ensure!(
        counted == duplicates as f64,
        "the duplicate counter says {counted}, the recipient saw {duplicates} twice"
    );
    let report = KillReport {
        killed_at,
        duplicates,
        counted,
        summary: received.summary(),
        elapsed: started.elapsed(),
    };
    sender.shutdown().await?;
    recipient.agent.shutdown().await?;
    Ok(report)
}
