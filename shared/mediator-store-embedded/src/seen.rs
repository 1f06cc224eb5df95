//! [`SeenMessages`] on the embedded database: one `seen` row per remembered id, UNIQUE on
//! `(connection_id, id)`, ordered by `(expires_ms, seq)` for the cap and for pruning.
//!
//! Every call is one write job (check and record in one step, so of concurrent calls with one
//! id exactly one is first). Not durable: the window survives the process being killed (it is
//! in the WAL), but a power loss can forget its last entries, which then count as first
//! sightings again (an fsync per inbound message would cost more than that risk is worth).

use std::sync::Arc;

use async_trait::async_trait;
use mediator_store::{
    seen::{stored_message_id, MAX_WINDOW_MS},
    unix_ms_now, ConnectionId, Result, SeenMessages,
};
use rusqlite::params;

use crate::{
    codec::{int, int_usize},
    db::{sql, Db},
};

/// Recently seen message ids in one data directory, at most `max_per_connection` per
/// connection. Clones share them.
#[derive(Debug, Clone)]
pub struct EmbeddedSeenMessages {
    db: Arc<Db>,
    max_per_connection: usize,
}

impl EmbeddedSeenMessages {
    pub(crate) fn new(db: Arc<Db>, max_per_connection: usize) -> Self {
        Self {
            db,
            max_per_connection,
        }
    }
}

#[async_trait]
impl SeenMessages for EmbeddedSeenMessages {
    /// Hot path (every inbound message): one write job, batched with the others.
    async fn first_sighting(
        &self,
        connection_id: &ConnectionId,
        message_id: &str,
        window_ms: u64,
    ) -> Result<bool> {
        let (cid, id, cap) = (
            connection_id.clone(),
            stored_message_id(message_id),
            int_usize(self.max_per_connection),
        );
        self.db
            .write(false, move |conn| {
                let now = unix_ms_now();
                // Whatever expired, for any connection: a connection that falls silent keeps
                // nothing.
                conn.prepare_cached("DELETE FROM seen WHERE expires_ms <= ?1")
                    .and_then(|mut s| s.execute([int(now)]))
                    .map_err(sql)?;
                let inserted = conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO seen (connection_id, id, expires_ms) \
                         VALUES (?1, ?2, ?3)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            cid.as_str(),
                            id,
                            int(now.saturating_add(window_ms.min(MAX_WINDOW_MS)))
                        ])
                    })
                    .map_err(sql)?;
                if inserted == 0 {
                    return Ok(false);
                }
                // Over the cap: forget those that expire soonest (ties: the oldest recorded).
                conn.prepare_cached(
                    "DELETE FROM seen WHERE seq IN (SELECT seq FROM seen WHERE connection_id = ?1 \
                     ORDER BY expires_ms DESC, seq DESC LIMIT -1 OFFSET ?2)",
                )
                .and_then(|mut s| s.execute(params![cid.as_str(), cap]))
                .map_err(sql)?;
                Ok(true)
            })
            .await
    }
}
