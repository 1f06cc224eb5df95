//! [`LiveSessionRegistry`] in memory (one process: the instances of an in-process test share it).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;

use super::lock;
use crate::{
    error::Result,
    ids::ConnectionId,
    registry::{LiveHolder, LiveSessionRegistry},
    unix_ms_now,
};

/// Live sessions in memory. Clones share the records.
#[derive(Debug, Clone, Default)]
pub struct MemoryLiveSessionRegistry {
    // std Mutex: held only inside a synchronous block, never across an await.
    records: Arc<Mutex<HashMap<ConnectionId, (LiveHolder, u64)>>>,
}

impl MemoryLiveSessionRegistry {
    /// No live sessions.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl LiveSessionRegistry for MemoryLiveSessionRegistry {
    async fn open(
        &self,
        connection_id: &ConnectionId,
        holder: &LiveHolder,
        lease_ms: u64,
    ) -> Result<Option<LiveHolder>> {
        let now = unix_ms_now();
        let mut records = lock(&self.records, "live-session registry")?;
        let previous = records.insert(
            connection_id.clone(),
            (holder.clone(), now.saturating_add(lease_ms)),
        );
        Ok(previous
            .filter(|(h, until)| *until > now && h != holder)
            .map(|(h, _)| h))
    }

    async fn close(&self, connection_id: &ConnectionId, holder: &LiveHolder) -> Result<bool> {
        let mut records = lock(&self.records, "live-session registry")?;
        if records.get(connection_id).is_some_and(|(h, _)| h == holder) {
            records.remove(connection_id);
            return Ok(true);
        }
        Ok(false)
    }

    async fn refresh(&self, instance: &str, lease_ms: u64) -> Result<usize> {
        let now = unix_ms_now();
        let mut records = lock(&self.records, "live-session registry")?;
        let mut n = 0;
        for (holder, until) in records.values_mut() {
            if holder.instance == instance && *until > now {
                *until = now.saturating_add(lease_ms);
                n += 1;
            }
        }
        Ok(n)
    }

    async fn holder(&self, connection_id: &ConnectionId) -> Result<Option<LiveHolder>> {
        let now = unix_ms_now();
        let records = lock(&self.records, "live-session registry")?;
        Ok(records
            .get(connection_id)
            .filter(|(_, until)| *until > now)
            .map(|(h, _)| h.clone()))
    }

    async fn all(&self) -> Result<Vec<(ConnectionId, LiveHolder)>> {
        let now = unix_ms_now();
        let mut records = lock(&self.records, "live-session registry")?;
        records.retain(|_, (_, until)| *until > now);
        Ok(records
            .iter()
            .map(|(c, (h, _))| (c.clone(), h.clone()))
            .collect())
    }
}
