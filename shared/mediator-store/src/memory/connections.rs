//! [`ConnectionStore`] in memory.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use didcomm_envelope::VerKey;

use super::lock;
use crate::{
    connections::{ConnectionRecord, ConnectionStore},
    error::{Entity, Result, StoreError},
    ids::ConnectionId,
    unix_ms_now,
};

/// Connection records in memory. Clones share the same records.
#[derive(Debug, Clone, Default)]
pub struct MemoryConnectionStore {
    // std Mutex: held only inside a synchronous block, never across an await (see module docs).
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    records: HashMap<ConnectionId, ConnectionRecord>,
    by_my_verkey: HashMap<VerKey, ConnectionId>,
    by_their_verkey: HashMap<VerKey, BTreeSet<ConnectionId>>,
    by_thread: HashMap<String, ConnectionId>,
    /// The records that expire, by expiry then id: what the sweep removes first.
    expiring: BTreeSet<(u64, ConnectionId)>,
}

impl MemoryConnectionStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl State {
    /// The first unique identity of `record` that a record other than itself already has.
    fn taken_identity(&self, record: &ConnectionRecord) -> Option<Entity> {
        let other = |owner: Option<&ConnectionId>| owner.is_some_and(|o| *o != record.id);
        if other(self.by_my_verkey.get(&record.my_verkey)) {
            return Some(Entity::ConnectionWithMyVerkey(record.my_verkey));
        }
        if other(self.by_thread.get(&record.thread_id)) {
            return Some(Entity::ConnectionWithThread(record.thread_id.clone()));
        }
        None
    }

    /// The record with this id, unless it has expired.
    fn live(&self, id: &ConnectionId, now: u64) -> Option<&ConnectionRecord> {
        self.records.get(id).filter(|r| !r.is_expired_at(now))
    }

    /// Removes the record `id` with its index entries if it has expired; returns whether it did.
    fn purge_if_expired(&mut self, id: &ConnectionId, now: u64) -> bool {
        if !self.records.get(id).is_some_and(|r| r.is_expired_at(now)) {
            return false;
        }
        if let Some(old) = self.records.remove(id) {
            self.unindex(&old);
        }
        true
    }

    /// Frees the unique identities of `record` that expired records hold (insert and update treat
    /// them as free).
    fn purge_expired_holders(&mut self, record: &ConnectionRecord, now: u64) {
        let holders = [
            self.by_my_verkey.get(&record.my_verkey).cloned(),
            self.by_thread.get(&record.thread_id).cloned(),
        ];
        for holder in holders.into_iter().flatten() {
            self.purge_if_expired(&holder, now);
        }
    }

    fn index(&mut self, record: &ConnectionRecord) {
        if let Some(at) = record.expires_at_ms {
            self.expiring.insert((at, record.id.clone()));
        }
        self.by_my_verkey
            .insert(record.my_verkey, record.id.clone());
        self.by_thread
            .insert(record.thread_id.clone(), record.id.clone());
        for key in &record.their_keys {
            self.by_their_verkey
                .entry(*key)
                .or_default()
                .insert(record.id.clone());
        }
    }

    fn unindex(&mut self, record: &ConnectionRecord) {
        if let Some(at) = record.expires_at_ms {
            self.expiring.remove(&(at, record.id.clone()));
        }
        if self.by_my_verkey.get(&record.my_verkey) == Some(&record.id) {
            self.by_my_verkey.remove(&record.my_verkey);
        }
        if self.by_thread.get(&record.thread_id) == Some(&record.id) {
            self.by_thread.remove(&record.thread_id);
        }
        for key in &record.their_keys {
            if let Some(ids) = self.by_their_verkey.get_mut(key) {
                ids.remove(&record.id);
                if ids.is_empty() {
                    self.by_their_verkey.remove(key);
                }
            }
        }
    }

    fn by_index(&self, id: Option<&ConnectionId>, now: u64) -> Option<ConnectionRecord> {
        id.and_then(|id| self.live(id, now)).cloned()
    }
}

#[async_trait]
impl ConnectionStore for MemoryConnectionStore {
    async fn insert(&self, record: &ConnectionRecord) -> Result<()> {
        let now = unix_ms_now();
        let mut state = lock(&self.state, "connection")?;
        state.purge_if_expired(&record.id, now);
        state.purge_expired_holders(record, now);
        if state.records.contains_key(&record.id) {
            return Err(StoreError::Conflict {
                what: Entity::Connection(record.id.clone()),
            });
        }
        if let Some(what) = state.taken_identity(record) {
            return Err(StoreError::Conflict { what });
        }
        state.index(record);
        state.records.insert(record.id.clone(), record.clone());
        Ok(())
    }

    async fn update(&self, record: &ConnectionRecord) -> Result<()> {
        let now = unix_ms_now();
        let mut state = lock(&self.state, "connection")?;
        state.purge_if_expired(&record.id, now);
        let Some(old) = state.records.get(&record.id).cloned() else {
            return Err(StoreError::NotFound {
                what: Entity::Connection(record.id.clone()),
            });
        };
        state.purge_expired_holders(record, now);
        if let Some(what) = state.taken_identity(record) {
            return Err(StoreError::Conflict { what });
        }
        state.unindex(&old);
        state.index(record);
        state.records.insert(record.id.clone(), record.clone());
        Ok(())
    }

    async fn get(&self, id: &ConnectionId) -> Result<Option<ConnectionRecord>> {
        let now = unix_ms_now();
        let state = lock(&self.state, "connection")?;
        Ok(state.live(id, now).cloned())
    }

    async fn find_by_my_verkey(&self, key: &VerKey) -> Result<Option<ConnectionRecord>> {
        let now = unix_ms_now();
        let state = lock(&self.state, "connection")?;
        Ok(state.by_index(state.by_my_verkey.get(key), now))
    }

    async fn find_by_their_verkey(&self, key: &VerKey) -> Result<Vec<ConnectionRecord>> {
        let now = unix_ms_now();
        let state = lock(&self.state, "connection")?;
        let mut found: Vec<ConnectionRecord> = state
            .by_their_verkey
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|id| state.live(id, now).cloned())
            .collect();
        drop(state);
        found.sort_by(|a, b| {
            b.updated_at_ms
                .cmp(&a.updated_at_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(found)
    }

    async fn find_by_thread(&self, thread_id: &str) -> Result<Option<ConnectionRecord>> {
        let now = unix_ms_now();
        let state = lock(&self.state, "connection")?;
        Ok(state.by_index(state.by_thread.get(thread_id), now))
    }

    async fn delete(&self, id: &ConnectionId) -> Result<bool> {
        let now = unix_ms_now();
        let mut state = lock(&self.state, "connection")?;
        if state.purge_if_expired(id, now) {
            return Ok(false);
        }
        let Some(old) = state.records.remove(id) else {
            return Ok(false);
        };
        state.unindex(&old);
        Ok(true)
    }

    async fn sweep_expired(&self, max: usize) -> Result<u64> {
        let now = unix_ms_now();
        let mut state = lock(&self.state, "connection")?;
        let due: Vec<ConnectionId> = state
            .expiring
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(max)
            .map(|(_, id)| id.clone())
            .collect();
        let mut removed = 0;
        for id in due {
            if state.purge_if_expired(&id, now) {
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn list_ids(
        &self,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<Vec<ConnectionId>> {
        let now = unix_ms_now();
        let state = lock(&self.state, "connection")?;
        let mut ids: Vec<&ConnectionId> = state
            .records
            .values()
            .filter(|r| !r.is_expired_at(now))
            .map(|r| &r.id)
            .filter(|id| after.is_none_or(|after| id.as_str() > after.as_str()))
            .collect();
        ids.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(ids.into_iter().take(limit).cloned().collect())
    }
}
