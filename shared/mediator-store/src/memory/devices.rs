//! [`DeviceStore`] in memory (one process: the instances of an in-process test share it).

use std::{
    collections::{BTreeMap, HashMap},
    ops::Bound,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;

use super::lock;
use crate::{
    devices::{DeviceInfo, DeviceStore, MAX_CLAIM_INTERVAL_MS},
    error::Result,
    ids::ConnectionId,
};

/// Claims held before the first pass that drops the lapsed ones.
const FIRST_PRUNE_AT: usize = 1024;

/// Push registrations and notification claims in memory. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct MemoryDeviceStore {
    // std Mutex: held only inside a synchronous block, never across an await.
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// Ordered by connection id, for `list`.
    devices: BTreeMap<ConnectionId, DeviceInfo>,
    /// Connection -> until when its last claim holds (the monotonic clock: a wall-clock step
    /// neither frees nor extends a claim).
    claims: HashMap<ConnectionId, Instant>,
    /// When `claims` reaches this size, the lapsed claims are dropped (and the mark doubled past
    /// what is left), so connections that stopped receiving messages hold nothing for long,
    /// at an amortised O(1) per claim.
    prune_at: usize,
}

impl MemoryDeviceStore {
    /// No registrations, no claims.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl DeviceStore for MemoryDeviceStore {
    async fn set(&self, connection_id: &ConnectionId, info: &DeviceInfo) -> Result<()> {
        lock(&self.state, "device")?
            .devices
            .insert(connection_id.clone(), info.clone());
        Ok(())
    }

    async fn get(&self, connection_id: &ConnectionId) -> Result<Option<DeviceInfo>> {
        Ok(lock(&self.state, "device")?
            .devices
            .get(connection_id)
            .cloned())
    }

    async fn clear(&self, connection_id: &ConnectionId) -> Result<bool> {
        Ok(lock(&self.state, "device")?
            .devices
            .remove(connection_id)
            .is_some())
    }

    async fn clear_if_token(&self, connection_id: &ConnectionId, token: &str) -> Result<bool> {
        let mut state = lock(&self.state, "device")?;
        if state
            .devices
            .get(connection_id)
            .is_some_and(|info| info.token == token)
        {
            state.devices.remove(connection_id);
            return Ok(true);
        }
        Ok(false)
    }

    async fn claim_notification(
        &self,
        connection_id: &ConnectionId,
        interval_ms: u64,
    ) -> Result<bool> {
        if interval_ms == 0 {
            return Ok(true);
        }
        let now = Instant::now();
        let interval = Duration::from_millis(interval_ms.min(MAX_CLAIM_INTERVAL_MS));
        let mut state = lock(&self.state, "device")?;
        if state
            .claims
            .get(connection_id)
            .is_some_and(|until| *until > now)
        {
            return Ok(false);
        }
        let until = now.checked_add(interval).unwrap_or(now);
        state.claims.insert(connection_id.clone(), until);
        if state.claims.len() >= state.prune_at.max(FIRST_PRUNE_AT) {
            state.claims.retain(|_, until| *until > now);
            state.prune_at = state.claims.len().saturating_mul(2);
        }
        Ok(true)
    }

    async fn list(
        &self,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<Vec<(ConnectionId, DeviceInfo)>> {
        let state = lock(&self.state, "device")?;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(state
            .devices
            .range((from, Bound::Unbounded))
            .take(limit)
            .map(|(id, info)| (id.clone(), info.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lapsed claims are dropped once enough claims are held: a connection that stopped
    /// receiving messages does not hold its claim forever.
    #[tokio::test]
    async fn lapsed_claims_are_dropped() {
        let store = MemoryDeviceStore::new();
        for _ in 0..FIRST_PRUNE_AT - 1 {
            assert!(store
                .claim_notification(&ConnectionId::generate(), 1)
                .await
                .expect("claim"));
        }
        assert_eq!(
            store.state.lock().expect("lock").claims.len(),
            FIRST_PRUNE_AT - 1
        );
        // Every claim so far lapses within 1 ms.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let kept = ConnectionId::generate();
        assert!(store
            .claim_notification(&kept, 60_000)
            .await
            .expect("claim"));
        let state = store.state.lock().expect("lock");
        assert_eq!(
            state.claims.keys().collect::<Vec<_>>(),
            vec![&kept],
            "lapsed claims are still held"
        );
        assert_eq!(state.prune_at, 2);
    }
}
