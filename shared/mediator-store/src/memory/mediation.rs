//! [`MediationStore`] in memory.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use didcomm_envelope::VerKey;

use super::lock;
use crate::{
    error::Result,
    ids::ConnectionId,
    mediation::{
        KeylistAction, KeylistPage, KeylistResult, KeylistUpdate, KeylistUpdateOutcome,
        MediationRecord, MediationStore,
    },
};

/// Mediation records and keylists in memory. Clones share the same state.
#[derive(Debug, Clone, Default)]
pub struct MemoryMediationStore {
    // std Mutex: held only inside a synchronous block, never across an await (see module docs).
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    records: HashMap<ConnectionId, MediationRecord>,
    /// The routing index of the Forward hot path: key -> the one connection that registered it.
    owner: HashMap<VerKey, ConnectionId>,
    keylists: HashMap<ConnectionId, Keylist>,
    /// Registration sequence, shared by all keylists: it only has to grow within each of them.
    next_seq: u64,
}

/// One connection's keys in registration order, with the position of each for O(log n) removal.
#[derive(Debug, Default)]
struct Keylist {
    by_seq: BTreeMap<u64, VerKey>,
    seq_of: HashMap<VerKey, u64>,
}

impl MemoryMediationStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl State {
    fn apply(&mut self, connection_id: &ConnectionId, update: KeylistUpdate) -> KeylistResult {
        let owner = self.owner.get(&update.key);
        match update.action {
            KeylistAction::Add => match owner {
                Some(owner) if owner == connection_id => KeylistResult::NoChange,
                Some(_) => KeylistResult::ClientError,
                None => {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    self.owner.insert(update.key, connection_id.clone());
                    let list = self.keylists.entry(connection_id.clone()).or_default();
                    list.by_seq.insert(seq, update.key);
                    list.seq_of.insert(update.key, seq);
                    KeylistResult::Success
                }
            },
            KeylistAction::Remove => match owner {
                Some(owner) if owner == connection_id => {
                    self.owner.remove(&update.key);
                    if let Some(list) = self.keylists.get_mut(connection_id) {
                        if let Some(seq) = list.seq_of.remove(&update.key) {
                            list.by_seq.remove(&seq);
                        }
                        if list.seq_of.is_empty() {
                            self.keylists.remove(connection_id);
                        }
                    }
                    KeylistResult::Success
                }
                _ => KeylistResult::NoChange,
            },
        }
    }
}

#[async_trait]
impl MediationStore for MemoryMediationStore {
    async fn save(&self, record: &MediationRecord) -> Result<()> {
        let mut state = lock(&self.state, "mediation")?;
        state
            .records
            .insert(record.connection_id.clone(), record.clone());
        Ok(())
    }

    async fn get(&self, connection_id: &ConnectionId) -> Result<Option<MediationRecord>> {
        let state = lock(&self.state, "mediation")?;
        Ok(state.records.get(connection_id).cloned())
    }

    async fn delete(&self, connection_id: &ConnectionId) -> Result<bool> {
        let mut state = lock(&self.state, "mediation")?;
        let had_record = state.records.remove(connection_id).is_some();
        let keys = state.keylists.remove(connection_id);
        let had_keys = keys.is_some();
        for key in keys.into_iter().flat_map(|list| list.seq_of.into_keys()) {
            state.owner.remove(&key);
        }
        Ok(had_record || had_keys)
    }

    async fn update_keylist(
        &self,
        connection_id: &ConnectionId,
        updates: &[KeylistUpdate],
    ) -> Result<Vec<KeylistUpdateOutcome>> {
        // One lock for the whole batch: that is what makes it atomic.
        let mut state = lock(&self.state, "mediation")?;
        Ok(updates
            .iter()
            .map(|update| KeylistUpdateOutcome {
                key: update.key,
                action: update.action,
                result: state.apply(connection_id, *update),
            })
            .collect())
    }

    async fn keylist(
        &self,
        connection_id: &ConnectionId,
        offset: usize,
        limit: usize,
    ) -> Result<KeylistPage> {
        let state = lock(&self.state, "mediation")?;
        Ok(match state.keylists.get(connection_id) {
            None => KeylistPage {
                keys: Vec::new(),
                total: 0,
            },
            Some(list) => KeylistPage {
                keys: list
                    .by_seq
                    .values()
                    .skip(offset)
                    .take(limit)
                    .copied()
                    .collect(),
                total: list.by_seq.len(),
            },
        })
    }

    async fn connection_for_key(&self, key: &VerKey) -> Result<Option<ConnectionId>> {
        let state = lock(&self.state, "mediation")?;
        Ok(state.owner.get(key).cloned())
    }
}
