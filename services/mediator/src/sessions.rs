//! The WebSocket sessions this instance holds, by connection, and which of them are live.
//!
//! Two registrations, both dropped when the socket closes:
//! - a **return-route session**: the socket carried a message of the connection asking for
//!   `~transport.return_route` = `all`; replies and (with the `direct` strategy) raw messages for
//!   the connection may be written to it;
//! - the **live session** (Pickup 2.0 Live Mode): the socket that carried `live-delivery-change`
//!   with `live_delivery: true`. At most one per connection: a newer one replaces it.
//!
//! Opening and closing the session a connection's messages are routed to is announced on an
//! event stream ([`Sessions::subscribe`]), the pull request 1638 "live session opened / closed"
//! events that the cluster routing builds on. Which session that is depends on the forwarding
//! strategy ([`RouteTo`]): the live session, or (`direct`, implicit pickup) the newest
//! return-route session.
//!
//! Every session remembers the ids of the queued messages it has carried ([`SessionHandle::claim`]):
//! all delivery paths (live push, delivery-request, "deliver queued messages", direct push)
//! claim an id before writing it, so no message goes out twice on one session. This module does
//! no I/O: the server's writer task owns the socket.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use bytes::Bytes;
use didcomm_envelope::{KeyPair, VerKey};
use didcomm_message::DocUri;
use mediator_store::{ConnectionId, ConnectionRecord, MessageId};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, info};

/// Identifies one WebSocket session on this instance.
pub type SessionId = u64;

/// What the writer task of a session is asked to write.
#[derive(Debug)]
pub enum Outbound {
    /// A data frame.
    Data(Bytes),
    /// A data frame whose receipt must be confirmed: the writer follows it with a ping, and the
    /// peer's pong (which the peer's WebSocket stack sends only after reading every frame before
    /// the ping) fires `confirmed`. The only acknowledgement implicit delivery has.
    Confirmed(Bytes, oneshot::Sender<()>),
}

/// Why a frame could not be queued for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The session is gone.
    Closed,
    /// The session's outbound buffer is full: the client does not read fast enough. The session
    /// is closed; what it did not get stays queued for its next session.
    Full,
}

#[derive(Debug)]
struct SessionState {
    /// Ids of queued messages written (or being written) on this session, and whose they are.
    claimed: Mutex<HashMap<MessageId, ConnectionId>>,
    /// When the peer last sent anything (unix ms): data, ping or pong.
    last_seen_ms: AtomicU64,
    /// Confirmations waiting for the pong of the ping with this sequence number.
    confirmations: Mutex<VecDeque<(u64, oneshot::Sender<()>)>>,
    /// Set to true to close the session (mediator side).
    close: watch::Sender<bool>,
    /// When this session was last sent a `status` answering `messages-received` (unix ms).
    last_status_ms: AtomicU64,
    /// The completed connection this session carries messages of, by our key of it as the
    /// envelopes name it (`kid`).
    known: Mutex<Option<(Box<str>, Arc<ConnectionRecord>)>>,
}

/// One WebSocket session: the write side (frames go to its writer task) and its delivery state.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    /// This session's id.
    pub id: SessionId,
    tx: mpsc::Sender<Outbound>,
    state: Arc<SessionState>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves consistent data (single inserts and
    // removes): keep going rather than poison every later request.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SessionHandle {
    /// Creates a handle and the receiver its writer task drains (`depth` frames at most wait).
    pub fn new(id: SessionId, depth: usize) -> (Self, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(depth);
        let (close, _) = watch::channel(false);
        let state = SessionState {
            claimed: Mutex::new(HashMap::new()),
            last_seen_ms: AtomicU64::new(mediator_store::unix_ms_now()),
            confirmations: Mutex::new(VecDeque::new()),
            close,
            last_status_ms: AtomicU64::new(0),
            known: Mutex::new(None),
        };
        (
            Self {
                id,
                tx,
                state: Arc::new(state),
            },
            rx,
        )
    }

    /// Queues a frame, waiting for room; false when the session is gone. For replies to the
    /// session's own requests (the reader waits, which paces the client).
    pub async fn send(&self, frame: Bytes) -> bool {
        self.tx.send(Outbound::Data(frame)).await.is_ok()
    }

    /// Queues any frame, waiting for room; false when the session is gone.
    pub async fn send_frame(&self, frame: Outbound) -> bool {
        self.tx.send(frame).await.is_ok()
    }

    /// Queues a frame without waiting. A full buffer closes the session (see [`SendError::Full`]).
    pub fn push(&self, frame: Outbound) -> Result<(), SendError> {
        match self.tx.try_send(frame) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed),
            Err(mpsc::error::TrySendError::Full(_)) => {
                info!(
                    session = self.id,
                    "session outbound buffer full: closing it"
                );
                self.close();
                Err(SendError::Full)
            }
        }
    }

    /// The completed connection whose key (ours) an envelope names as `kid`, if this session
    /// remembers it (no decoding of the kid, no store round trip).
    pub fn known_connection(&self, kid: &str) -> Option<Arc<ConnectionRecord>> {
        match &*lock(&self.state.known) {
            Some((known, conn)) if &**known == kid => Some(Arc::clone(conn)),
            _ => None,
        }
    }

    /// Remembers the completed connection `conn`, named `kid` in envelopes, for this session's
    /// later messages (one at a time: a socket carries one connection's messages, as a rule).
    pub fn remember_connection(&self, kid: &str, conn: Arc<ConnectionRecord>) {
        *lock(&self.state.known) = Some((kid.into(), conn));
    }

    /// Whether this session may be sent a `status` answering `messages-received` now: none was
    /// within `interval_ms` (0: always). Claims the slot when it may.
    pub fn status_due(&self, interval_ms: u64) -> bool {
        let now = mediator_store::unix_ms_now();
        let last = self.state.last_status_ms.load(Ordering::Relaxed);
        if interval_ms > 0 && now.saturating_sub(last) < interval_ms {
            return false;
        }
        self.state
            .last_status_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// True while the writer task still runs and nobody asked to close it.
    pub fn is_open(&self) -> bool {
        !self.tx.is_closed() && !*self.state.close.borrow()
    }

    /// Asks the session to close (the writer sends a close frame and the reader stops).
    pub fn close(&self) {
        self.state.close.send_replace(true);
    }

    /// Resolves when [`SessionHandle::close`] was called.
    pub fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.state.close.subscribe();
        async move {
            let _ = rx.wait_for(|closing| *closing).await;
        }
    }

    /// Claims `id` (a message of `connection`) for this session: true the first time, false if
    /// it was already written here.
    pub fn claim(&self, connection: &ConnectionId, id: &MessageId) -> bool {
        match lock(&self.state.claimed).entry(id.clone()) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(connection.clone());
                true
            }
        }
    }

    /// True when `id` was claimed on this session.
    pub fn has_claimed(&self, id: &MessageId) -> bool {
        lock(&self.state.claimed).contains_key(id)
    }

    /// The session ended: the messages it carried that nobody acknowledged, by connection (their
    /// leases are released so the next session gets them at once).
    pub fn take_claims(&self) -> HashMap<ConnectionId, Vec<MessageId>> {
        let claimed = std::mem::take(&mut *lock(&self.state.claimed));
        let mut by_connection: HashMap<ConnectionId, Vec<MessageId>> = HashMap::new();
        for (id, connection) in claimed {
            by_connection.entry(connection).or_default().push(id);
        }
        by_connection
    }

    /// Forgets claims of messages that left the queue (acknowledged), so the set stays small.
    pub fn release(&self, ids: &[MessageId]) {
        let mut claimed = lock(&self.state.claimed);
        for id in ids {
            claimed.remove(id);
        }
    }

    /// The peer sent something now.
    pub fn seen(&self) {
        self.state
            .last_seen_ms
            .store(mediator_store::unix_ms_now(), Ordering::Relaxed);
    }

    /// Milliseconds since the peer last sent anything.
    pub fn silent_for_ms(&self) -> u64 {
        mediator_store::unix_ms_now()
            .saturating_sub(self.state.last_seen_ms.load(Ordering::Relaxed))
    }

    /// Writer side: `confirmed` fires when the pong of ping number `seq` arrives.
    pub fn await_pong(&self, seq: u64, confirmed: oneshot::Sender<()>) {
        lock(&self.state.confirmations).push_back((seq, confirmed));
    }

    /// The session ended: pending confirmations will never come (their waiters see a drop).
    pub fn drop_confirmations(&self) {
        lock(&self.state.confirmations).clear();
    }

    /// Reader side: the pong of ping number `seq` arrived; fires every confirmation up to it.
    pub fn pong(&self, seq: u64) {
        let mut pending = lock(&self.state.confirmations);
        while pending.front().is_some_and(|(s, _)| *s <= seq) {
            if let Some((_, confirmed)) = pending.pop_front() {
                let _ = confirmed.send(());
            }
        }
    }
}

/// Opened or closed, for [`LiveSessionEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveSessionChange {
    /// A live session started (live-delivery-change true on a WebSocket).
    Opened,
    /// A live session ended (socket closed, live mode turned off, or replaced by a newer one).
    Closed,
}

/// A live session opened or closed on this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSessionEvent {
    /// Opened or closed.
    pub change: LiveSessionChange,
    /// The connection whose live session it is.
    pub connection_id: ConnectionId,
    /// The session (unique on this instance).
    pub session_id: SessionId,
}

/// A connection's live session and what is needed to write deliveries to it without another
/// store lookup (the hot path of every Forward to a live client).
#[derive(Debug, Clone)]
pub struct LiveSession {
    /// The socket.
    pub session: SessionHandle,
    /// The client's keys (deliveries are encrypted to them).
    pub their_keys: Vec<VerKey>,
    /// Our key on this connection (deliveries are authcrypted from it).
    pub our_key: KeyPair,
    /// The doc URI the client used, for the `@type` of deliveries.
    pub doc_uri: DocUri,
}

/// Which session of a connection its messages are routed to (in the cluster too), and whose
/// opening and closing [`Sessions`] announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteTo {
    /// Its live session (Pickup 2.0 Live Mode): the `queue_and_live` strategy.
    #[default]
    Live,
    /// Its newest open return-route session: the `direct` strategy (implicit pickup).
    ReturnRoute,
}

#[derive(Debug, Default)]
struct Registry {
    return_route: HashMap<ConnectionId, Vec<SessionHandle>>,
    /// Shared, so the per-Forward lookup copies a pointer, not the keys.
    live: HashMap<ConnectionId, Arc<LiveSession>>,
}

/// Sessions by connection. Cheap to clone; clones share the registry.
///
/// A std Mutex: held only for map operations, never across an await.
#[derive(Debug, Clone)]
pub struct Sessions {
    inner: Arc<Mutex<Registry>>,
    events: broadcast::Sender<LiveSessionEvent>,
    /// Most return-route sessions of one connection (0: no cap).
    max_per_connection: usize,
    route_to: RouteTo,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::with_cap(0)
    }
}

/// What [`Sessions::register`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Registration {
    /// The session was not registered for the connection before.
    pub new: bool,
    /// The connection was at `websocket.max_sessions_per_connection`: its oldest session was
    /// asked to close to make room.
    pub evicted: Option<SessionId>,
}

impl Sessions {
    /// An empty registry holding at most `max_per_connection` return-route sessions per
    /// connection (0: no cap); over it, the oldest session of the connection is closed.
    pub fn with_cap(max_per_connection: usize) -> Self {
        Self::new(max_per_connection, RouteTo::Live)
    }

    /// Like [`Sessions::with_cap`], announcing the sessions `route_to` names.
    pub fn new(max_per_connection: usize, route_to: RouteTo) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            inner: Arc::default(),
            events,
            max_per_connection,
            route_to,
        }
    }
}

impl Sessions {
    /// Live-session opened/closed events from now on. A receiver that falls more than 1024 events
    /// behind gets `Lagged` and should resynchronise from [`Sessions::live_connections`].
    pub fn subscribe(&self) -> broadcast::Receiver<LiveSessionEvent> {
        self.events.subscribe()
    }

    fn announce(&self, change: LiveSessionChange, connection_id: ConnectionId, session_id: u64) {
        debug!(?change, connection = %connection_id, session = session_id, "live session");
        // No receiver is fine: nobody listens on a single instance.
        let _ = self.events.send(LiveSessionEvent {
            change,
            connection_id,
            session_id,
        });
    }

    /// Registers `session` as a return-route session of `connection_id`. At the cap of sessions
    /// per connection, the connection's oldest session is closed (and forgotten here) to make
    /// room: the newest socket is the one the client uses; an old one is usually leaked.
    pub fn register(&self, connection_id: &ConnectionId, session: &SessionHandle) -> Registration {
        let (registration, superseded) = {
            let mut map = lock(&self.inner);
            let list = map.return_route.entry(connection_id.clone()).or_default();
            list.retain(SessionHandle::is_open);
            if list.iter().any(|s| s.id == session.id) {
                return Registration::default();
            }
            let superseded = list.last().map(|s| s.id);
            let mut evicted = None;
            if self.max_per_connection > 0 && list.len() >= self.max_per_connection {
                let oldest = list.remove(0);
                info!(
                    connection = %connection_id,
                    session = oldest.id,
                    "too many WebSockets for one connection: closing its oldest"
                );
                oldest.close();
                evicted = Some(oldest.id);
            }
            list.push(session.clone());
            (Registration { new: true, evicted }, superseded)
        };
        if self.route_to == RouteTo::ReturnRoute {
            // The newest return-route session is the one routed to.
            if let Some(previous) = superseded {
                self.announce(LiveSessionChange::Closed, connection_id.clone(), previous);
            }
            self.announce(LiveSessionChange::Opened, connection_id.clone(), session.id);
        }
        registration
    }

    /// Makes `live` the live session of `connection_id`, replacing (and announcing the close of)
    /// any other.
    pub fn set_live(&self, connection_id: &ConnectionId, live: LiveSession) {
        let id = live.session.id;
        let previous = {
            let mut map = lock(&self.inner);
            map.live.insert(connection_id.clone(), Arc::new(live))
        };
        if self.route_to != RouteTo::Live {
            return;
        }
        match previous {
            Some(p) if p.session.id == id => return, // already live on this session
            Some(p) => self.announce(
                LiveSessionChange::Closed,
                connection_id.clone(),
                p.session.id,
            ),
            None => {}
        }
        self.announce(LiveSessionChange::Opened, connection_id.clone(), id);
    }

    /// Ends the live session of `connection_id` (only if it is `session`, when given).
    pub fn clear_live(&self, connection_id: &ConnectionId, session: Option<SessionId>) {
        let removed = {
            let mut map = lock(&self.inner);
            match map.live.get(connection_id) {
                Some(l) if session.is_none_or(|s| s == l.session.id) => {
                    map.live.remove(connection_id)
                }
                _ => None,
            }
        };
        if let Some(l) = removed.filter(|_| self.route_to == RouteTo::Live) {
            self.announce(
                LiveSessionChange::Closed,
                connection_id.clone(),
                l.session.id,
            );
        }
    }

    /// Forgets `session` everywhere (the socket closed); announces the routed sessions it ended
    /// (and, routing to return-route sessions, the one that is newest now).
    pub fn unregister(&self, session: SessionId) {
        let mut changes: Vec<(LiveSessionChange, ConnectionId, SessionId)> = Vec::new();
        {
            let mut map = lock(&self.inner);
            let by_return_route = self.route_to == RouteTo::ReturnRoute;
            map.return_route.retain(|connection, list| {
                let routed = list.last().map(|s| s.id);
                list.retain(|s| s.id != session && s.is_open());
                let now = list.last().map(|s| s.id);
                if by_return_route && routed != now {
                    if let Some(ended) = routed {
                        changes.push((LiveSessionChange::Closed, connection.clone(), ended));
                    }
                    if let Some(newest) = now {
                        changes.push((LiveSessionChange::Opened, connection.clone(), newest));
                    }
                }
                !list.is_empty()
            });
            let ended: Vec<ConnectionId> = map
                .live
                .iter()
                .filter(|(_, l)| l.session.id == session)
                .map(|(c, _)| c.clone())
                .collect();
            for c in ended {
                map.live.remove(&c);
                if !by_return_route {
                    changes.push((LiveSessionChange::Closed, c, session));
                }
            }
        }
        for (change, connection, id) in changes {
            self.announce(change, connection, id);
        }
    }

    /// The connections whose messages are routed to a session here, and those sessions (see
    /// [`RouteTo`]).
    pub fn routed_connections(&self) -> Vec<(ConnectionId, SessionId)> {
        match self.route_to {
            RouteTo::Live => self.live_connections(),
            RouteTo::ReturnRoute => {
                let map = lock(&self.inner);
                map.return_route
                    .iter()
                    .filter_map(|(c, list)| {
                        list.iter()
                            .rev()
                            .find(|s| s.is_open())
                            .map(|s| (c.clone(), s.id))
                    })
                    .collect()
            }
        }
    }

    /// The session here that `connection_id`'s messages are routed to, if any.
    pub fn routed_session(&self, connection_id: &ConnectionId) -> Option<SessionId> {
        match self.route_to {
            RouteTo::Live => self.live(connection_id).map(|l| l.session.id),
            RouteTo::ReturnRoute => self.latest(connection_id).map(|s| s.id),
        }
    }

    /// Another instance's session of `connection_id` replaced `session` here as the one routed
    /// to: a live session stops being live (its socket stays open); a return-route session
    /// stays as it is (the client chose the other socket, and may come back to this one).
    pub fn unroute(&self, connection_id: &ConnectionId, session: SessionId) {
        if self.route_to == RouteTo::Live {
            self.clear_live(connection_id, Some(session));
        }
    }

    /// The live session of a connection, if it is open.
    pub fn live(&self, connection_id: &ConnectionId) -> Option<Arc<LiveSession>> {
        let map = lock(&self.inner);
        map.live
            .get(connection_id)
            .filter(|l| l.session.is_open())
            .cloned()
    }

    /// The connections with a live session here, and the session ids.
    pub fn live_connections(&self) -> Vec<(ConnectionId, SessionId)> {
        let map = lock(&self.inner);
        map.live
            .iter()
            .map(|(c, l)| (c.clone(), l.session.id))
            .collect()
    }

    /// The most recent open return-route session of a connection.
    pub fn latest(&self, connection_id: &ConnectionId) -> Option<SessionHandle> {
        let map = lock(&self.inner);
        map.return_route
            .get(connection_id)
            .and_then(|list| list.iter().rev().find(|s| s.is_open()).cloned())
    }

    /// Closes every session (shutdown); they unregister as they end. Returns how many.
    pub fn close_all(&self) -> usize {
        let map = lock(&self.inner);
        let mut ids = HashSet::new();
        for s in map.return_route.values().flatten() {
            s.close();
            ids.insert(s.id);
        }
        for l in map.live.values() {
            l.session.close();
            ids.insert(l.session.id);
        }
        ids.len()
    }

    /// How many live sessions are held here.
    pub fn live_count(&self) -> usize {
        lock(&self.inner).live.len()
    }

    /// How many sessions are registered (return-route or live).
    pub fn len(&self) -> usize {
        let map = lock(&self.inner);
        let mut ids = HashSet::new();
        for s in map.return_route.values().flatten() {
            ids.insert(s.id);
        }
        for l in map.live.values() {
            ids.insert(l.session.id);
        }
        ids.len()
    }

    /// True when no session is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes every session of a connection (return-route and live); they unregister as they end.
    /// Returns how many were asked to close.
    pub fn close_connection(&self, connection_id: &ConnectionId) -> usize {
        let map = lock(&self.inner);
        let mut ids = HashSet::new();
        for s in map.return_route.get(connection_id).into_iter().flatten() {
            s.close();
            ids.insert(s.id);
        }
        if let Some(l) = map.live.get(connection_id) {
            l.session.close();
            ids.insert(l.session.id);
        }
        ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_cap_per_connection_the_oldest_session_is_closed() {
        let sessions = Sessions::with_cap(2);
        let conn = ConnectionId::from("c1");
        let other = ConnectionId::from("c2");
        let (a, _ra) = SessionHandle::new(1, 4);
        let (b, _rb) = SessionHandle::new(2, 4);
        let (c, _rc) = SessionHandle::new(3, 4);
        assert_eq!(
            sessions.register(&conn, &a),
            Registration {
                new: true,
                evicted: None
            }
        );
        assert!(!sessions.register(&conn, &a).new, "already registered");
        assert!(sessions.register(&conn, &b).evicted.is_none());
        // Another connection has its own count.
        assert!(sessions.register(&other, &c).evicted.is_none());
        let (d, _rd) = SessionHandle::new(4, 4);
        assert_eq!(sessions.register(&conn, &d).evicted, Some(1));
        assert!(!a.is_open(), "the oldest was asked to close");
        assert!(b.is_open() && d.is_open());
        assert_eq!(sessions.latest(&conn).map(|s| s.id), Some(4));
        assert_eq!(sessions.len(), 3);
    }
}
