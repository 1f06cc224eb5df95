//! Which connection registered a recipient key, remembered: the lookup every Forward starts with,
//! answered from memory after the first time instead of by a store round trip per Forward. The
//! key is remembered as the Forward's `to` text, so a remembered one is not even decoded again
//! (a base58 decode and a curve point decompression per Forward).
//!
//! A key changes owner only through a keylist `remove` (and a later `add` by another connection).
//! Every instance forgets a removed key: the instance that removed it at once, the others when
//! the removal is announced on the cluster's events channel ([`crate::cluster`]), and all of them
//! forget everything after a pub/sub outage (an announcement may have been missed). A lookup that
//! overlaps a removal is not remembered (the epoch check in [`KeyRoutes::resolve`]), so a stale
//! owner can only outlive a removal by the announcement's delay. Entries also expire after
//! `mediation.key_cache_secs` and the map holds at most `mediation.key_cache_max` keys. Unknown
//! keys are never remembered: a stranger's Forwards to random keys cost a lookup each, as before.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use didcomm_envelope::VerKey;
use mediator_store::{ConnectionId, ConnectionState, ConnectionStore, MediationStore};

#[derive(Debug)]
struct Entry {
    key: VerKey,
    connection: ConnectionId,
    at: Instant,
}

/// Why a key could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// `to` is not a key.
    #[error("`to`: {0}")]
    BadKey(#[from] didcomm_envelope::KeyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] mediator_store::StoreError),
}

/// The cache (one per instance, inside the mediator).
#[derive(Debug)]
pub struct KeyRoutes {
    /// `to` as written -> the key it names, its connection, and since when.
    map: Mutex<HashMap<Box<str>, Entry>>,
    /// A completed connection -> its own endpoint, if any (a completed record does not change),
    /// and since when: whether a queued Forward is also pushed, without a record read each time.
    endpoints: Mutex<HashMap<ConnectionId, (Option<String>, Instant)>>,
    /// Bumped by every forgetting: a lookup that saw another epoch does not remember its answer.
    epoch: AtomicU64,
    ttl: Duration,
    max: usize,
}

impl KeyRoutes {
    /// A cache of at most `max` keys, each kept `ttl`; `max` 0 remembers nothing.
    pub fn new(max: usize, ttl: Duration) -> Self {
        Self {
            map: Mutex::default(),
            endpoints: Mutex::default(),
            epoch: AtomicU64::new(0),
            ttl,
            max,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Entry>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key `to` names (base58 or did:key) and the connection that registered it (`None`
    /// when none did): remembered, or decoded and asked of `store` (and remembered).
    // Hot path: one call per Forward; a map lookup when remembered.
    pub async fn resolve(
        &self,
        store: &dyn MediationStore,
        to: &str,
    ) -> Result<(VerKey, Option<ConnectionId>), ResolveError> {
        let now = Instant::now();
        if let Some(entry) = self.map().get(to) {
            if now.duration_since(entry.at) < self.ttl {
                return Ok((entry.key, Some(entry.connection.clone())));
            }
        }
        let key = VerKey::parse(to)?;
        let epoch = self.epoch.load(Ordering::Acquire);
        let found = store.connection_for_key(&key).await?;
        if let Some(connection) = &found {
            let mut map = self.map();
            // A removal while the store answered: the answer may be the old owner.
            if self.epoch.load(Ordering::Acquire) == epoch {
                let entry = Entry {
                    key,
                    connection: connection.clone(),
                    at: now,
                };
                self.remember(&mut map, to.into(), entry, |e| e.at, now);
            }
        }
        Ok((key, found))
    }

    /// The endpoint of `connection` once its handshake completed (`None`: it has none, it is not
    /// completed, or it is gone): remembered for completed connections, read otherwise.
    // Hot path: every Forward that is not delivered live.
    pub async fn completed_endpoint(
        &self,
        store: &dyn ConnectionStore,
        connection: &ConnectionId,
    ) -> Result<Option<String>, mediator_store::StoreError> {
        let now = Instant::now();
        if let Some((endpoint, at)) = self
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(connection)
        {
            if now.duration_since(*at) < self.ttl {
                return Ok(endpoint.clone());
            }
        }
        let Some(record) = store.get(connection).await? else {
            return Ok(None);
        };
        if record.state != ConnectionState::Completed {
            return Ok(None);
        }
        let mut endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let value = (record.their_endpoint.clone(), now);
        self.remember(&mut endpoints, connection.clone(), value, |v| v.1, now);
        Ok(record.their_endpoint)
    }

    /// Inserts into one of the maps within `max` entries: when full, the expired go first, and
    /// if none had, everything (a map that fills with live entries starts over).
    fn remember<K: std::hash::Hash + Eq, V>(
        &self,
        map: &mut HashMap<K, V>,
        key: K,
        value: V,
        at: impl Fn(&V) -> Instant,
        now: Instant,
    ) {
        if self.max == 0 {
            return;
        }
        if map.len() >= self.max {
            map.retain(|_, v| now.duration_since(at(v)) < self.ttl);
            if map.len() >= self.max {
                map.clear();
            }
        }
        map.insert(key, value);
    }

    /// Forgets `keys` (removed from a keylist, here or on another instance).
    pub fn forget(&self, keys: &[VerKey]) {
        let mut map = self.map();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        map.retain(|_, e| !keys.contains(&e.key));
    }

    /// Forgets everything (announcements may have been missed).
    pub fn clear(&self) {
        let mut map = self.map();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        map.clear();
        self.endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use didcomm_envelope::KeyPair;
    use mediator_store::{memory::MemoryMediationStore, KeylistAction, KeylistUpdate};

    async fn resolve(
        routes: &KeyRoutes,
        store: &MemoryMediationStore,
        key: &VerKey,
    ) -> Option<ConnectionId> {
        routes.resolve(store, &key.to_base58()).await.unwrap().1
    }

    async fn setup() -> (MemoryMediationStore, VerKey, ConnectionId) {
        let store = MemoryMediationStore::new();
        let key = *KeyPair::generate().unwrap().verkey();
        let conn = ConnectionId::generate();
        let add = KeylistUpdate {
            key,
            action: KeylistAction::Add,
        };
        store.update_keylist(&conn, &[add]).await.unwrap();
        (store, key, conn)
    }

    async fn remove(store: &MemoryMediationStore, conn: &ConnectionId, key: VerKey) {
        let update = KeylistUpdate {
            key,
            action: KeylistAction::Remove,
        };
        store.update_keylist(conn, &[update]).await.unwrap();
    }

    #[tokio::test]
    async fn remembers_until_forgotten() {
        let (store, key, conn) = setup().await;
        let routes = KeyRoutes::new(10, Duration::from_secs(60));
        assert_eq!(resolve(&routes, &store, &key).await, Some(conn.clone()));
        remove(&store, &conn, key).await;
        // Remembered: the store is not asked.
        assert_eq!(resolve(&routes, &store, &key).await, Some(conn.clone()));
        routes.forget(&[key]);
        assert_eq!(resolve(&routes, &store, &key).await, None);
        // Unknown keys are not remembered.
        assert!(routes.is_empty());
        // The did:key form is the same key (remembered apart from its base58 form).
        let (store, key, conn) = setup().await;
        let (named, found) = routes.resolve(&store, &key.to_did_key()).await.unwrap();
        assert_eq!((named, found), (key, Some(conn)));
        routes.forget(&[key]);
        assert!(routes.is_empty());
        assert!(routes.resolve(&store, "not a key").await.is_err());
    }

    #[tokio::test]
    async fn entries_expire_and_the_size_is_bounded() {
        let (store, key, conn) = setup().await;
        let routes = KeyRoutes::new(10, Duration::ZERO);
        assert_eq!(resolve(&routes, &store, &key).await, Some(conn.clone()));
        remove(&store, &conn, key).await;
        assert_eq!(resolve(&routes, &store, &key).await, None);

        let routes = KeyRoutes::new(3, Duration::from_secs(60));
        for _ in 0..10 {
            let (store, key, _) = setup().await;
            resolve(&routes, &store, &key).await;
            assert!(routes.len() <= 3);
        }
        let off = KeyRoutes::new(0, Duration::from_secs(60));
        let (store, key, _) = setup().await;
        resolve(&off, &store, &key).await;
        assert!(off.is_empty());
    }

    fn record(state: ConnectionState, endpoint: Option<&str>) -> mediator_store::ConnectionRecord {
        mediator_store::ConnectionRecord {
            state,
            their_endpoint: endpoint.map(str::to_owned),
            ..mediator_store::contract::connections::sample()
        }
    }

    #[tokio::test]
    async fn a_completed_connections_endpoint_is_remembered_an_unfinished_ones_is_not() {
        let store = mediator_store::memory::MemoryConnectionStore::new();
        let routes = KeyRoutes::new(10, Duration::from_secs(60));
        // Unfinished: no endpoint yet (no pushes to strangers), asked again each time.
        let mut pending = record(ConnectionState::ResponseSent, Some("https://a.example"));
        store.insert(&pending).await.unwrap();
        let endpoint = routes
            .completed_endpoint(&store, &pending.id)
            .await
            .unwrap();
        assert_eq!(endpoint, None);
        pending.state = ConnectionState::Completed;
        store.update(&pending).await.unwrap();
        let endpoint = routes
            .completed_endpoint(&store, &pending.id)
            .await
            .unwrap();
        assert_eq!(endpoint.as_deref(), Some("https://a.example"));
        // Completed: remembered (the store is not asked again).
        store.delete(&pending.id).await.unwrap();
        let endpoint = routes
            .completed_endpoint(&store, &pending.id)
            .await
            .unwrap();
        assert_eq!(endpoint.as_deref(), Some("https://a.example"));
        routes.clear();
        assert_eq!(
            routes
                .completed_endpoint(&store, &pending.id)
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn clear_forgets_everything() {
        let (store, key, conn) = setup().await;
        let routes = KeyRoutes::new(10, Duration::from_secs(60));
        resolve(&routes, &store, &key).await;
        remove(&store, &conn, key).await;
        routes.clear();
        assert_eq!(resolve(&routes, &store, &key).await, None);
    }
}
