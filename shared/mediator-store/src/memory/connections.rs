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

    fn index(&mut self, record: &ConnectionRecord) {
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

    fn by_index(&self, id: Option<&ConnectionId>) -> Option<ConnectionRecord> {
        id.and_then(|id| self.records.get(id)).cloned()
    }
}

#[async_trait]
impl ConnectionStore for MemoryConnectionStore {
    async fn insert(&self, record: &ConnectionRecord) -> Result<()> {
        let mut state = lock(&self.state, "connection")?;
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
        let mut state = lock(&self.state, "connection")?;
        let Some(old) = state.records.get(&record.id).cloned() else {
            return Err(StoreError::NotFound {
                what: Entity::Connection(record.id.clone()),
            });
        };
        if let Some(what) = state.taken_identity(record) {
            return Err(StoreError::Conflict { what });
        }
        state.unindex(&old);
        state.index(record);
        state.records.insert(record.id.clone(), record.clone());
        Ok(())
    }

    async fn get(&self, id: &ConnectionId) -> Result<Option<ConnectionRecord>> {
        let state = lock(&self.state, "connection")?;
        Ok(state.records.get(id).cloned())
    }

    async fn find_by_my_verkey(&self, key: &VerKey) -> Result<Option<ConnectionRecord>> {
        let state = lock(&self.state, "connection")?;
        Ok(state.by_index(state.by_my_verkey.get(key)))
    }

    async fn find_by_their_verkey(&self, key: &VerKey) -> Result<Vec<ConnectionRecord>> {
        let state = lock(&self.state, "connection")?;
        let mut found: Vec<ConnectionRecord> = state
            .by_their_verkey
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|id| state.records.get(id).cloned())
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
        let state = lock(&self.state, "connection")?;
        Ok(state.by_index(state.by_thread.get(thread_id)))
    }

    async fn delete(&self, id: &ConnectionId) -> Result<bool> {
        let mut state = lock(&self.state, "connection")?;
        let Some(old) = state.records.remove(id) else {
            return Ok(false);
        };
        state.unindex(&old);
        Ok(true)
    }
}
