//! The cluster: live-session routing across instances (the multi-instance design of credo-ts
//! pull request 1638).
//!
//! - Every live session this instance opens or closes (the [`Sessions`] events) is recorded in
//!   the shared [`LiveSessionRegistry`] under a lease this instance refreshes, and announced on
//!   the events channel. Closing is compare-and-delete on (instance, session).
//! - Every instance keeps a routing cache (connection -> holder) fed by those announcements, and
//!   reloads it from the registry after every (re)subscribe, so a lost announcement is repaired
//!   by the next reconnection (pub/sub is at most once).
//! - A Forward taken here for a connection whose live session another instance holds is queued
//!   first, in flight (so no pickup hands it out meanwhile), then a notice goes to that
//!   instance's own channel; the holder delivers it on the WebSocket. No holder listening (the
//!   notice reached nobody) or no session there any more: the message is given back to the
//!   queue.
//!
//! - Repair, because pub/sub is at most once and caches lag: a Forward whose notice reached
//!   nobody (the holder died or is resubscribing), or that found no route while a live session
//!   may just be opening elsewhere, is remembered for a while ([`Cluster::hold`]). When a live
//!   session of that connection is announced (or found in a reload), the remembered messages go
//!   to its holder. After every resubscribe an instance announces its live sessions again, so
//!   peers that held messages for it while it was deaf send them. Only messages that arrived
//!   while the client was live are pushed this way: messages queued before live mode stay for
//!   delivery-request (RFC 0685).
//!
//! On the memory backend there is no bus: the routing cache only ever holds this instance.
//! This module must not decide what a delivery contains (see [`crate::delivery`]).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use didcomm_envelope::VerKey;
use mediator_store::{ConnectionId, LiveHolder, LiveSessionRegistry, MessageId};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, info, warn};

pub use crate::bus::{BusError, RedisBus};
use crate::{
    mediator::Mediator,
    sessions::{LiveSessionChange, LiveSessionEvent},
};

/// What instances say to each other (JSON on the channels).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
pub enum Notice {
    /// `holder` now holds the live session of `connection` (events channel).
    Open {
        /// The connection.
        connection: ConnectionId,
        /// Instance id.
        instance: String,
        /// Session id on it.
        session: u64,
    },
    /// `holder` no longer holds it (events channel).
    Close {
        /// The connection.
        connection: ConnectionId,
        /// Instance id.
        instance: String,
        /// Session id on it.
        session: u64,
    },
    /// These recipient keys were removed from a keylist (events channel): forget their owner.
    KeysRemoved {
        /// The keys (base58).
        keys: Vec<VerKey>,
    },
    /// Deliver these queued messages of `connection` on its live session (an instance's own
    /// channel).
    Deliver {
        /// The connection.
        connection: ConnectionId,
        /// Queued message ids.
        ids: Vec<MessageId>,
        /// The sender of the notice queued them in flight for this delivery (a Forward): the
        /// holder delivers them as they are, or gives them back. Otherwise (a repair) they wait
        /// and the holder leases those still waiting.
        #[serde(default)]
        in_flight: bool,
        /// W3C trace context of the Forward, so one trace spans both instances.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        traceparent: Option<String>,
        /// The messages themselves, when small (a Forward's): the holder delivers them without
        /// reading them back from the queue. Ids not carried are read from the queue.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        messages: Vec<Carried>,
    },
}

/// A queued message carried in a [`Notice::Deliver`]: its id, when it was queued (unix ms) and
/// its JSON exactly as queued, as a string (a `RawValue` cannot be read inside an internally
/// tagged enum).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carried {
    /// Queued message id.
    pub id: MessageId,
    /// When it was queued (the delivery latency metric).
    pub received_ms: u64,
    /// The message (the JSON text the Forward's `msg` held).
    pub msg: String,
}

/// Largest message carried in a notice; larger ones are read from the queue by the holder.
pub const MAX_CARRIED_BYTES: usize = 64 * 1024;

/// This instance's view of the cluster. Cheap to share (`Arc` inside the mediator).
#[derive(Debug)]
pub struct Cluster {
    instance: String,
    registry: Arc<dyn LiveSessionRegistry>,
    bus: Option<RedisBus>,
    lease_ms: u64,
    /// connection -> the holder of its live session, as announced (this instance included).
    routes: Mutex<HashMap<ConnectionId, LiveHolder>>,
    subscribed: AtomicBool,
    resubscribes: AtomicU64,
    /// Messages whose live delivery could not be routed yet, by connection, with when to forget.
    pending: Mutex<HashMap<ConnectionId, Vec<(MessageId, tokio::time::Instant)>>>,
    /// How long a message whose notice reached nobody is remembered.
    unheard_grace: Duration,
    /// How long a message that found no route is remembered (a live session may be opening).
    unrouted_grace: Duration,
    /// Our live sessions whose registry record is written (connection -> session): until it is,
    /// a record naming another instance may be older than ours.
    recorded: Mutex<HashMap<ConnectionId, u64>>,
    /// Counts live-session announcements handled: a notice that failed while one arrived may
    /// have missed a holder that just became reachable again.
    announcements: AtomicU64,
    /// Set at shutdown: stop listening, so peers' notices reach nobody and are kept by them.
    stop: tokio::sync::watch::Sender<bool>,
    /// Peer notices being delivered now (shutdown waits for them).
    notices_in_progress: std::sync::atomic::AtomicUsize,
}

/// Most remembered messages: past it, the oldest are forgotten (they wait in the queue).
const MAX_PENDING: usize = 100_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cluster {
    /// This instance's part of a cluster (`bus` `None`: a single instance).
    pub fn new(
        instance: String,
        registry: Arc<dyn LiveSessionRegistry>,
        bus: Option<RedisBus>,
        lease_ms: u64,
    ) -> Self {
        Self {
            instance,
            registry,
            bus,
            lease_ms,
            routes: Mutex::default(),
            subscribed: AtomicBool::new(false),
            resubscribes: AtomicU64::new(0),
            pending: Mutex::default(),
            unheard_grace: Duration::from_millis(lease_ms.saturating_mul(2)),
            unrouted_grace: Duration::from_secs(3),
            recorded: Mutex::default(),
            announcements: AtomicU64::new(0),
            stop: tokio::sync::watch::channel(false).0,
            notices_in_progress: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Shutdown: unsubscribes for good (a notice sent to this instance from now on reaches
    /// nobody, so its sender keeps the message for the client's next live session) and waits, up
    /// to `limit`, for the notices already taken to be delivered.
    pub async fn stop_listening(&self, limit: Duration) {
        self.stop.send_replace(true);
        self.subscribed.store(false, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + limit;
        while self.notices_in_progress.load(Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The announcement counter, read before a notice is sent (see [`Cluster::hold_and_recheck`]).
    pub fn epoch(&self) -> u64 {
        self.announcements.load(Ordering::SeqCst)
    }

    fn is_recorded(&self, connection: &ConnectionId, session: u64) -> bool {
        lock(&self.recorded).get(connection) == Some(&session)
    }

    /// Whether this instance has peers (a bus).
    pub fn is_clustered(&self) -> bool {
        self.bus.is_some()
    }

    /// Remembers a queued message of `connection` that should have gone live but could not be
    /// routed: `heard_by_nobody` (a notice reached no instance) or no route was known.
    pub fn hold(&self, connection: &ConnectionId, id: &MessageId, heard_by_nobody: bool) {
        if self.bus.is_none() {
            return;
        }
        let grace = if heard_by_nobody {
            self.unheard_grace
        } else {
            self.unrouted_grace
        };
        let until = tokio::time::Instant::now() + grace;
        let mut pending = lock(&self.pending);
        if pending.len() >= MAX_PENDING {
            prune(&mut pending);
            if pending.len() >= MAX_PENDING {
                return;
            }
        }
        pending
            .entry(connection.clone())
            .or_default()
            .push((id.clone(), until));
    }

    /// [`Cluster::hold`], then, if a live session of `connection` other than `tried` became known
    /// meanwhile (its announcement may have been handled just before the hold), sends the held
    /// messages to it at once.
    pub fn hold_and_recheck(
        &self,
        mediator: &Mediator,
        connection: &ConnectionId,
        id: &MessageId,
        tried: Option<&LiveHolder>,
        epoch: u64,
    ) {
        self.hold(connection, id, tried.is_some());
        // A holder that changed, or any announcement since the notice (the same holder may have
        // come back from a pub/sub outage and announced itself before this hold): send now.
        let announced = self.epoch() != epoch;
        let now = lock(&self.routes).get(connection).cloned();
        if let Some(holder) = now.filter(|h| announced || Some(h) != tried) {
            let (m, c) = (mediator.clone(), connection.clone());
            tokio::spawn(async move { flush_pending(&m, &c, &holder).await });
        }
    }

    /// The remembered messages of `connection` (forgotten here once taken).
    fn take_pending(&self, connection: &ConnectionId) -> Vec<MessageId> {
        let now = tokio::time::Instant::now();
        lock(&self.pending)
            .remove(connection)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, until)| *until > now)
            .map(|(id, _)| id)
            .collect()
    }

    fn pending_connections(&self) -> Vec<ConnectionId> {
        lock(&self.pending).keys().cloned().collect()
    }

    /// This instance's id.
    pub fn instance_id(&self) -> &str {
        &self.instance
    }

    /// Whether the pub/sub subscription is live (always true without a bus: nothing to hear).
    pub fn is_subscribed(&self) -> bool {
        self.bus.is_none() || self.subscribed.load(Ordering::Relaxed)
    }

    /// How many times the subscription was (re)established after the first.
    pub fn resubscribes(&self) -> u64 {
        self.resubscribes.load(Ordering::Relaxed)
    }

    /// The other instance holding `connection`'s live session, per the routing cache.
    // Hot path: one map lookup per Forward to a client without a live session here.
    pub fn remote_holder(&self, connection: &ConnectionId) -> Option<LiveHolder> {
        lock(&self.routes)
            .get(connection)
            .filter(|h| h.instance != self.instance)
            .cloned()
    }

    /// The routing cache (for tests and diagnostics).
    pub fn routes(&self) -> HashMap<ConnectionId, LiveHolder> {
        lock(&self.routes).clone()
    }

    /// How many sessions held by other instances this instance routes to (its own are not
    /// routes: they are in [`crate::sessions::Sessions`]).
    pub fn route_count(&self) -> usize {
        lock(&self.routes)
            .values()
            .filter(|h| h.instance != self.instance)
            .count()
    }

    /// Sends `holder` the notice to deliver `ids` of `connection`; returns how many instances
    /// heard it (0: nobody listens on that instance's channel any more).
    // Hot path: one PUBLISH per Forward to a live client held elsewhere.
    pub async fn notify(
        &self,
        holder: &LiveHolder,
        connection: &ConnectionId,
        ids: &[MessageId],
        in_flight: bool,
        traceparent: Option<String>,
        messages: Vec<Carried>,
    ) -> Result<usize, BusError> {
        let Some(bus) = &self.bus else {
            return Ok(0);
        };
        let notice = Notice::Deliver {
            connection: connection.clone(),
            ids: ids.to_vec(),
            in_flight,
            traceparent,
            messages,
        };
        bus.publish(&bus.instance_channel(&holder.instance), &notice)
            .await
    }

    /// Where [`Cluster::notify`] would publish a notice for `holder`, and how it encodes a
    /// Forward's notice: for a queue that publishes it with the add, in the same round trip
    /// ([`mediator_store::MessageQueue::add_leased_announced`]). `None` without a bus.
    pub fn deliver_channel(&self, holder: &LiveHolder) -> Option<String> {
        self.bus
            .as_ref()
            .map(|bus| bus.instance_channel(&holder.instance))
    }

    /// The bytes of the notice to deliver one Forward's message `id` of `connection`, in flight,
    /// as [`Cluster::notify`] publishes them; `carried`: the message itself, when small.
    pub fn forward_notice(
        connection: &ConnectionId,
        id: &MessageId,
        carried: Option<Carried>,
        traceparent: Option<String>,
    ) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&Notice::Deliver {
            connection: connection.clone(),
            ids: vec![id.clone()],
            in_flight: true,
            traceparent,
            messages: carried.into_iter().collect(),
        })
    }

    /// Tells every other instance that `keys` left a keylist (they forget their owner). A lost
    /// announcement is repaired by the forgetting after every resubscribe, and bounded by
    /// `mediation.key_cache_secs`.
    pub async fn announce_keys_removed(&self, keys: &[VerKey]) {
        let Some(bus) = &self.bus else {
            return;
        };
        let notice = Notice::KeysRemoved {
            keys: keys.to_vec(),
        };
        if let Err(err) = bus.publish(&bus.events_channel(), &notice).await {
            warn!(error = %err, "keylist removal not announced; peers forget it when they resubscribe or after mediation.key_cache_secs");
        }
    }

    fn apply(&self, notice: &Notice) {
        match notice {
            Notice::Open {
                connection,
                instance,
                session,
            } => {
                lock(&self.routes).insert(
                    connection.clone(),
                    LiveHolder {
                        instance: instance.clone(),
                        session: *session,
                    },
                );
                self.announcements.fetch_add(1, Ordering::SeqCst);
            }
            Notice::Close {
                connection,
                instance,
                session,
            } => {
                let mut routes = lock(&self.routes);
                if routes
                    .get(connection)
                    .is_some_and(|h| &h.instance == instance && h.session == *session)
                {
                    routes.remove(connection);
                }
            }
            Notice::Deliver { .. } | Notice::KeysRemoved { .. } => {}
        }
    }

    async fn reload(&self) {
        match self.registry.all().await {
            Ok(all) => {
                let mut routes = lock(&self.routes);
                routes.clear();
                routes.extend(all);
                debug!(
                    live = routes.len(),
                    "routing cache reloaded from the registry"
                );
            }
            Err(err) => warn!(error = %err, "routing cache not reloaded: registry unavailable"),
        }
    }

    /// Runs the cluster work of `mediator` until the returned handles are aborted: records and
    /// announces this instance's live sessions, refreshes their leases, and (with a bus) listens
    /// to the other instances.
    pub fn start(mediator: &Mediator) -> Vec<tokio::task::JoinHandle<()>> {
        // Subscribed here, not in the task: no live-session event between now and the task's
        // first poll is missed.
        let events = mediator.sessions().subscribe();
        let mut tasks = vec![
            tokio::spawn(record_sessions(mediator.clone(), events)),
            tokio::spawn(refresh_leases(mediator.clone())),
        ];
        if mediator.cluster().bus.is_some() {
            tasks.push(tokio::spawn(listen(mediator.clone())));
        }
        tasks
    }
}

fn prune(pending: &mut HashMap<ConnectionId, Vec<(MessageId, tokio::time::Instant)>>) {
    let now = tokio::time::Instant::now();
    pending.retain(|_, ids| {
        ids.retain(|(_, until)| *until > now);
        !ids.is_empty()
    });
}

/// The client's live session moved here from another instance (which may have died with
/// messages on its socket that the client never acknowledged), `pickup.takeover_grace_ms` ago:
/// everything still queued for the connection is delivered on the new session, the in-flight
/// messages first given back. This is
/// the one place queued messages go out in live mode: they were live deliveries before (or raced
/// the move), and a client in live mode does not ask again.
async fn take_over(mediator: &Mediator, connection: &ConnectionId) {
    let queue = &mediator.stores().queue;
    let held = match queue.take(connection, usize::MAX, None).await {
        Ok(held) => held,
        Err(err) => {
            warn!(error = %err, connection = %connection, "take-over: queue unavailable");
            return;
        }
    };
    if held.is_empty() {
        return;
    }
    let ids: Vec<MessageId> = held.into_iter().map(|m| m.id).collect();
    if let Err(err) = queue.release(connection, &ids).await {
        warn!(error = %err, connection = %connection, "take-over: in-flight messages not given back");
    }
    if mediator.config().pickup.forwarding == crate::config::ForwardingStrategy::Direct {
        // Implicit pickup: the socket routed to gets them, as at its opening.
        if let Some(session) = mediator.sessions().latest(connection) {
            mediator.flush_implicit(connection, &session).await;
        }
        return;
    }
    match mediator.deliver_queued(connection, None).await {
        Ok(n) => {
            info!(connection = %connection, messages = n, "take-over: queued messages delivered on the new live session")
        }
        Err(err) => {
            warn!(error = %err, connection = %connection, "take-over delivery failed; the messages wait in the queue")
        }
    }
}

/// Another instance announced a live session of `connection`, which is live here too: ours stops
/// being live if the registry names the other (the socket stays open; what it carried and nobody
/// acknowledged stays in flight on it); if the registry names ours, ours is announced again so
/// the peers' caches follow it.
async fn resolve_takeover(mediator: &Mediator, connection: &ConnectionId) {
    let cluster = mediator.cluster();
    let Some(local) = mediator.sessions().routed_session(connection) else {
        return;
    };
    if !cluster.is_recorded(connection, local) {
        // Ours is not recorded yet: when it is, it replaces the other record and is announced.
        return;
    }
    match cluster.registry.holder(connection).await {
        Ok(Some(h)) if h.instance == cluster.instance && h.session == local => {
            let notice = Notice::Open {
                connection: connection.clone(),
                instance: h.instance,
                session: h.session,
            };
            cluster.apply(&notice);
            if let Some(bus) = &cluster.bus {
                let _ = bus.publish(&bus.events_channel(), &notice).await;
            }
        }
        Ok(Some(h)) => {
            info!(connection = %connection, to = %h.instance, "live session taken over by another instance");
            mediator.sessions().unroute(connection, local);
        }
        Ok(None) => {}
        Err(err) => {
            warn!(error = %err, connection = %connection, "take-over not resolved: registry unavailable")
        }
    }
}

/// Sends the messages remembered for `connection` to `holder` (this instance or a peer).
async fn flush_pending(mediator: &Mediator, connection: &ConnectionId, holder: &LiveHolder) {
    let cluster = mediator.cluster();
    let ids = cluster.take_pending(connection);
    if ids.is_empty() {
        return;
    }
    debug!(connection = %connection, holder = %holder.instance, messages = ids.len(), "repair: remembered messages sent to the live session");
    if holder.instance == cluster.instance {
        mediator
            .deliver_notice(connection, &ids, false, None, &[])
            .await;
        return;
    }
    let heard = match cluster
        .notify(holder, connection, &ids, false, None, Vec::new())
        .await
    {
        Ok(heard) => heard > 0,
        Err(err) => {
            warn!(error = %err, "repair notice failed");
            false
        }
    };
    if !heard {
        // The holder is deaf too (resubscribing): keep them for its re-announcement.
        for id in &ids {
            cluster.hold(connection, id, true);
        }
    }
}

/// Local live-session events -> registry and announcements.
async fn record_sessions(
    mediator: Mediator,
    mut events: tokio::sync::broadcast::Receiver<LiveSessionEvent>,
) {
    loop {
        match events.recv().await {
            Ok(event) => on_local_event(&mediator, event).await,
            Err(RecvError::Lagged(n)) => {
                warn!(
                    missed = n,
                    "live-session events lagged: re-recording every live session"
                );
                for (connection, session) in mediator.sessions().routed_connections() {
                    on_local_event(
                        &mediator,
                        LiveSessionEvent {
                            change: LiveSessionChange::Opened,
                            connection_id: connection,
                            session_id: session,
                        },
                    )
                    .await;
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

async fn on_local_event(mediator: &Mediator, event: LiveSessionEvent) {
    let cluster = mediator.cluster();
    let holder = LiveHolder {
        instance: cluster.instance.clone(),
        session: event.session_id,
    };
    let connection = event.connection_id;
    let notice = match event.change {
        LiveSessionChange::Opened => {
            let opened = cluster
                .registry
                .open(&connection, &holder, cluster.lease_ms)
                .await;
            if opened.is_ok() {
                lock(&cluster.recorded).insert(connection.clone(), holder.session);
            }
            match opened {
                Ok(Some(previous)) if previous.instance != cluster.instance => {
                    info!(connection = %connection, previous = %previous.instance, "live session taken over from another instance");
                    // After a grace for acknowledgements on their way; not holding up the other
                    // session events meanwhile.
                    let (m, c) = (mediator.clone(), connection.clone());
                    let grace = Duration::from_millis(m.config().pickup.takeover_grace_ms);
                    tokio::spawn(async move {
                        tokio::time::sleep(grace).await;
                        take_over(&m, &c).await;
                    });
                }
                Ok(Some(_)) | Ok(None) => {}
                Err(err) => {
                    warn!(error = %err, connection = %connection, "live session not recorded in the registry; other instances route to it once it is")
                }
            }
            Notice::Open {
                connection,
                instance: holder.instance,
                session: holder.session,
            }
        }
        LiveSessionChange::Closed => {
            {
                let mut recorded = lock(&cluster.recorded);
                if recorded.get(&connection) == Some(&holder.session) {
                    recorded.remove(&connection);
                }
            }
            if let Err(err) = cluster.registry.close(&connection, &holder).await {
                warn!(error = %err, connection = %connection, "live session close not recorded; its lease will expire");
            }
            Notice::Close {
                connection,
                instance: holder.instance,
                session: holder.session,
            }
        }
    };
    cluster.apply(&notice);
    if let Some(bus) = &cluster.bus {
        if let Err(err) = bus.publish(&bus.events_channel(), &notice).await {
            warn!(error = %err, "live-session announcement not published; peers repair their caches on resubscribe");
        }
    }
    if let Notice::Open {
        connection,
        instance,
        session,
    } = notice
    {
        let holder = LiveHolder { instance, session };
        flush_pending(mediator, &connection, &holder).await;
    }
}

/// Keeps this instance's registry leases running.
async fn refresh_leases(mediator: Mediator) {
    let cluster = mediator.cluster();
    let every = Duration::from_millis((cluster.lease_ms / 3).max(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(err) = cluster
            .registry
            .refresh(&cluster.instance, cluster.lease_ms)
            .await
        {
            warn!(error = %err, "live-session leases not refreshed");
        }
        prune(&mut lock(&cluster.pending));
        // A live session whose record could not be written (Redis was down) is recorded now.
        for (connection, session) in mediator.sessions().routed_connections() {
            if !cluster.is_recorded(&connection, session) {
                on_local_event(
                    &mediator,
                    LiveSessionEvent {
                        change: LiveSessionChange::Opened,
                        connection_id: connection,
                        session_id: session,
                    },
                )
                .await;
            }
        }
    }
}

/// Subscribes to the events channel and this instance's channel, reloading the routing cache
/// after every (re)subscribe; reconnects with backoff when the subscription drops.
async fn listen(mediator: Mediator) {
    let cluster = mediator.cluster();
    let Some(bus) = cluster.bus.clone() else {
        return;
    };
    let (events, mine) = (
        bus.events_channel(),
        bus.instance_channel(&cluster.instance),
    );
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    let mut stop = cluster.stop.subscribe();
    loop {
        if *stop.borrow() {
            return;
        }
        let subscribed = bus.subscribe(&[&events, &mine]).await;
        let mut subscription = match subscribed {
            Ok(p) => p,
            Err(err) => {
                warn!(error = %err, retry_ms = backoff.as_millis() as u64, "pub/sub subscription failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        if !first {
            cluster.resubscribes.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        // Subscribed first, then reloaded: an announcement made in between is heard, not lost.
        cluster.reload().await;
        // Keylist removals announced while deaf were missed: forget every remembered key.
        mediator.key_routes().clear();
        cluster.subscribed.store(true, Ordering::Relaxed);
        info!(instance = %cluster.instance, "subscribed to the cluster channels");
        // Repair what was missed while deaf, by the registry (the authority, just reloaded into
        // the routes): our live sessions it still names are announced again (peers may hold
        // messages for them); one it names elsewhere was taken over meanwhile; one it lost (our
        // lease ran out while we could not refresh) is recorded again.
        for (connection, session) in mediator.sessions().routed_connections() {
            let recorded = lock(&cluster.routes).get(&connection).cloned();
            if !cluster.is_recorded(&connection, session) {
                continue; // its record is being written now, and announced after
            }
            match recorded {
                Some(h) if h.instance != cluster.instance => {
                    info!(connection = %connection, to = %h.instance, "live session taken over while unsubscribed");
                    mediator.sessions().unroute(&connection, session);
                }
                recorded => {
                    let holder = LiveHolder {
                        instance: cluster.instance.clone(),
                        session,
                    };
                    if recorded.is_none() {
                        if let Err(err) = cluster
                            .registry
                            .open(&connection, &holder, cluster.lease_ms)
                            .await
                        {
                            warn!(error = %err, "live session not recorded again");
                        }
                        cluster.apply(&Notice::Open {
                            connection: connection.clone(),
                            instance: holder.instance.clone(),
                            session,
                        });
                    }
                    let notice = Notice::Open {
                        connection,
                        instance: holder.instance,
                        session,
                    };
                    if let Err(err) = bus.publish(&events, &notice).await {
                        warn!(error = %err, "live session not re-announced");
                    }
                }
            }
        }
        for connection in cluster.pending_connections() {
            let holder = lock(&cluster.routes).get(&connection).cloned();
            if let Some(holder) = holder {
                flush_pending(&mediator, &connection, &holder).await;
            }
        }
        loop {
            let msg = tokio::select! {
                msg = subscription.next() => msg,
                _ = stop.wait_for(|stopped| *stopped) => {
                    info!("stopped listening to the cluster channels");
                    return;
                }
            };
            let Some(msg) = msg else { break };
            let payload: &[u8] = msg.get_payload_bytes();
            match serde_json::from_slice::<Notice>(payload) {
                Ok(Notice::Deliver {
                    connection,
                    ids,
                    in_flight,
                    traceparent,
                    messages,
                }) => {
                    let m = mediator.clone();
                    cluster.notices_in_progress.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        m.deliver_notice(
                            &connection,
                            &ids,
                            in_flight,
                            traceparent.as_deref(),
                            &messages,
                        )
                        .await;
                        m.cluster()
                            .notices_in_progress
                            .fetch_sub(1, Ordering::SeqCst);
                    });
                }
                Ok(Notice::KeysRemoved { keys }) => mediator.key_routes().forget(&keys),
                Ok(notice) => {
                    cluster.apply(&notice);
                    if let Notice::Open {
                        connection,
                        instance,
                        session,
                    } = &notice
                    {
                        let holder = LiveHolder {
                            instance: instance.clone(),
                            session: *session,
                        };
                        let (m, c) = (mediator.clone(), connection.clone());
                        tokio::spawn(async move { flush_pending(&m, &c, &holder).await });
                        // Another instance announces a live session of a connection live here:
                        // the registry says which is newer (announcements can cross, and a peer
                        // back from a pub/sub outage may announce a session already replaced).
                        if *instance != cluster.instance
                            && mediator.sessions().routed_session(connection).is_some()
                        {
                            let (m, c) = (mediator.clone(), connection.clone());
                            tokio::spawn(async move { resolve_takeover(&m, &c).await });
                        }
                    }
                }
                Err(err) => warn!(error = %err, "unreadable cluster notice ignored"),
            }
        }
        cluster.subscribed.store(false, Ordering::Relaxed);
        warn!("pub/sub subscription lost: reconnecting");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn notices_are_small_tagged_json() {
        let n = Notice::Deliver {
            connection: ConnectionId::from("c"),
            ids: vec![MessageId::from("m1")],
            in_flight: true,
            traceparent: None,
            messages: Vec::new(),
        };
        let text = serde_json::to_string(&n).unwrap();
        assert_eq!(
            text,
            r#"{"t":"deliver","connection":"c","ids":["m1"],"in_flight":true}"#
        );
        assert_eq!(serde_json::from_str::<Notice>(&text).unwrap(), n);
        // A carried message travels as its JSON text, and is read back.
        let carried = Notice::Deliver {
            connection: ConnectionId::from("c"),
            ids: vec![MessageId::from("m1")],
            in_flight: true,
            traceparent: None,
            messages: vec![Carried {
                id: MessageId::from("m1"),
                received_ms: 7,
                msg: r#"{"a":[1]}"#.into(),
            }],
        };
        let text = serde_json::to_string(&carried).unwrap();
        assert!(
            text.ends_with(r#""messages":[{"id":"m1","received_ms":7,"msg":"{\"a\":[1]}"}]}"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Notice>(&text).unwrap(), carried);
        let open: Notice =
            serde_json::from_str(r#"{"t":"open","connection":"c","instance":"i","session":3}"#)
                .unwrap();
        assert!(matches!(open, Notice::Open { session: 3, .. }));
    }

    #[test]
    fn routes_count_only_other_instances_sessions() {
        let cluster = Cluster::new(
            "me".into(),
            Arc::new(mediator_store::memory::MemoryLiveSessionRegistry::new()),
            None,
            1000,
        );
        for (connection, instance) in [("c1", "me"), ("c2", "a"), ("c3", "b")] {
            cluster.apply(&Notice::Open {
                connection: ConnectionId::from(connection),
                instance: instance.into(),
                session: 1,
            });
        }
        assert_eq!(
            cluster.route_count(),
            2,
            "this instance's own session is no route"
        );
    }

    #[test]
    fn a_close_removes_only_the_route_it_names() {
        let cluster = Cluster::new(
            "me".into(),
            Arc::new(mediator_store::memory::MemoryLiveSessionRegistry::new()),
            None,
            1000,
        );
        let c = ConnectionId::from("c");
        cluster.apply(&Notice::Open {
            connection: c.clone(),
            instance: "a".into(),
            session: 1,
        });
        cluster.apply(&Notice::Open {
            connection: c.clone(),
            instance: "b".into(),
            session: 1,
        });
        cluster.apply(&Notice::Close {
            connection: c.clone(),
            instance: "a".into(),
            session: 1,
        });
        assert_eq!(cluster.remote_holder(&c).unwrap().instance, "b");
        cluster.apply(&Notice::Close {
            connection: c.clone(),
            instance: "b".into(),
            session: 1,
        });
        assert!(cluster.remote_holder(&c).is_none());
    }
}
