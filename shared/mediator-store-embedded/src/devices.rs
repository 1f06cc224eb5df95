//! [`DeviceStore`] on the embedded database: one `devices` row per connection with a
//! registration (its columns are `DeviceInfo`'s fields), one `push_claims` row per connection
//! whose notification claim holds, until `until_ms` (the wall clock, so a claim survives a
//! restart).
//!
//! Registrations are durable (fsync before they return): one lost on power failure would leave
//! the wallet unwoken until it registers again. Claims are not: a claim lost on power failure
//! lets one notification more go out, not worth an fsync per claim. Every write is one job on
//! the writer thread, which runs jobs one at a time, so `clear_if_token` (one `DELETE ... AND
//! token = ?`) and a claim (drop the lapsed claims, then `INSERT OR IGNORE`) are atomic.

use std::sync::Arc;

use async_trait::async_trait;
use mediator_store::{
    devices::MAX_CLAIM_INTERVAL_MS, unix_ms_now, ConnectionId, DeviceInfo, DeviceStore,
    PushPlatform, Result,
};
use rusqlite::{params, OptionalExtension, Row};

use crate::{
    codec::{corrupt, int, int_usize},
    db::{sql, Db},
};

/// Push registrations and notification claims in one data directory. Clones share them.
#[derive(Debug, Clone)]
pub struct EmbeddedDeviceStore {
    db: Arc<Db>,
}

impl EmbeddedDeviceStore {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self { db }
    }
}

/// The columns a [`DeviceInfo`] is read from, in [`read_info`]'s order.
const INFO_COLUMNS: &str = "platform, token, device_platform, updated_at_ms";

/// A stored row as read: the platform is checked by [`decode`], after the row is read.
type StoredInfo = (String, String, Option<String>, u64);

fn read_info(row: &Row<'_>, first: usize) -> rusqlite::Result<StoredInfo> {
    Ok((
        row.get(first)?,
        row.get(first + 1)?,
        row.get(first + 2)?,
        row.get(first + 3)?,
    ))
}

fn decode(connection_id: &str, stored: StoredInfo) -> Result<DeviceInfo> {
    let (platform, token, device_platform, updated_at_ms) = stored;
    let platform: PushPlatform = platform
        .parse()
        .map_err(|e| corrupt(format!("device info of connection {connection_id}"), e))?;
    Ok(DeviceInfo {
        platform,
        token,
        device_platform,
        updated_at_ms,
    })
}

#[async_trait]
impl DeviceStore for EmbeddedDeviceStore {
    async fn set(&self, connection_id: &ConnectionId, info: &DeviceInfo) -> Result<()> {
        let (id, info) = (connection_id.clone(), info.clone());
        self.db
            .write(true, move |conn| {
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO devices \
                     (connection_id, platform, token, device_platform, updated_at_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        id.as_str(),
                        info.platform.as_str(),
                        info.token,
                        info.device_platform,
                        int(info.updated_at_ms)
                    ])
                })
                .map_err(sql)?;
                Ok(())
            })
            .await
    }

    async fn get(&self, connection_id: &ConnectionId) -> Result<Option<DeviceInfo>> {
        let id = connection_id.clone();
        self.db
            .read(move |tx| {
                let stored = tx
                    .prepare_cached(&format!(
                        "SELECT {INFO_COLUMNS} FROM devices WHERE connection_id = ?1"
                    ))
                    .map_err(sql)?
                    .query_row([id.as_str()], |r| read_info(r, 0))
                    .optional()
                    .map_err(sql)?;
                stored.map(|stored| decode(id.as_str(), stored)).transpose()
            })
            .await
    }

    async fn clear(&self, connection_id: &ConnectionId) -> Result<bool> {
        let id = connection_id.clone();
        self.db
            .write(true, move |conn| {
                let n = conn
                    .prepare_cached("DELETE FROM devices WHERE connection_id = ?1")
                    .and_then(|mut s| s.execute([id.as_str()]))
                    .map_err(sql)?;
                Ok(n > 0)
            })
            .await
    }

    async fn clear_if_token(&self, connection_id: &ConnectionId, token: &str) -> Result<bool> {
        let (id, token) = (connection_id.clone(), token.to_owned());
        self.db
            .write(true, move |conn| {
                let n = conn
                    .prepare_cached("DELETE FROM devices WHERE connection_id = ?1 AND token = ?2")
                    .and_then(|mut s| s.execute(params![id.as_str(), token]))
                    .map_err(sql)?;
                Ok(n > 0)
            })
            .await
    }

    async fn claim_notification(
        &self,
        connection_id: &ConnectionId,
        interval_ms: u64,
    ) -> Result<bool> {
        if interval_ms == 0 {
            return Ok(true);
        }
        let id = connection_id.clone();
        let interval_ms = interval_ms.min(MAX_CLAIM_INTERVAL_MS);
        self.db
            .write(false, move |conn| {
                let now = unix_ms_now();
                // Every lapsed claim, of any connection (by the index on until_ms): a connection
                // that stops receiving messages keeps no row, and this one's lapsed claim is gone
                // before the insert below.
                conn.prepare_cached("DELETE FROM push_claims WHERE until_ms <= ?1")
                    .and_then(|mut s| s.execute([int(now)]))
                    .map_err(sql)?;
                let claimed = conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO push_claims (connection_id, until_ms) \
                         VALUES (?1, ?2)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![id.as_str(), int(now.saturating_add(interval_ms))])
                    })
                    .map_err(sql)?;
                Ok(claimed == 1)
            })
            .await
    }

    async fn list(
        &self,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<Vec<(ConnectionId, DeviceInfo)>> {
        let after = after.map(|a| a.as_str().to_owned());
        self.db
            .read(move |tx| {
                let rows: Vec<(String, StoredInfo)> = tx
                    .prepare_cached(&format!(
                        "SELECT connection_id, {INFO_COLUMNS} FROM devices \
                         WHERE (?1 IS NULL OR connection_id > ?1) ORDER BY connection_id LIMIT ?2"
                    ))
                    .map_err(sql)?
                    .query_map(params![after, int_usize(limit)], |r| {
                        Ok((r.get(0)?, read_info(r, 1)?))
                    })
                    .and_then(|rows| rows.collect())
                    .map_err(sql)?;
                rows.into_iter()
                    .map(|(id, stored)| {
                        let info = decode(&id, stored)?;
                        Ok((ConnectionId::from(id), info))
                    })
                    .collect()
            })
            .await
    }
}
