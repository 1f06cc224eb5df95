//! [`MediationStore`] on the embedded database.
//!
//! Records are JSON in `mediation`; the keylist is one `keylist` row per key, `key` UNIQUE (a
//! key routes to one connection) and `seq` (the rowid, larger than every existing one when a
//! key is added) giving the registration order. Every write is durable (fsync before it
//! returns): a grant or a key lost on power failure would drop the client's Forwards.

use std::sync::Arc;

use async_trait::async_trait;
use didcomm_envelope::VerKey;
use mediator_store::{
    ConnectionId, KeylistAction, KeylistPage, KeylistResult, KeylistUpdate, KeylistUpdateOutcome,
    MediationRecord, MediationStore, Result,
};
use rusqlite::{params, Connection, OptionalExtension};

use crate::{
    codec::{decode_json, decode_key, encode_json, int_usize},
    db::{sql, Db},
};

/// Mediation records and keylists in one data directory. Clones share it.
#[derive(Debug, Clone)]
pub struct EmbeddedMediationStore {
    db: Arc<Db>,
}

impl EmbeddedMediationStore {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self { db }
    }
}

fn owner(conn: &Connection, key: &VerKey) -> Result<Option<String>> {
    conn.prepare_cached("SELECT connection_id FROM keylist WHERE key = ?1")
        .map_err(sql)?
        .query_row([&key.as_bytes()[..]], |r| r.get(0))
        .optional()
        .map_err(sql)
}

fn apply(conn: &Connection, connection_id: &str, update: KeylistUpdate) -> Result<KeylistResult> {
    let owner = owner(conn, &update.key)?;
    let key = &update.key.as_bytes()[..];
    Ok(match update.action {
        KeylistAction::Add => match owner {
            Some(owner) if owner == connection_id => KeylistResult::NoChange,
            Some(_) => KeylistResult::ClientError,
            None => {
                conn.prepare_cached("INSERT INTO keylist (key, connection_id) VALUES (?1, ?2)")
                    .and_then(|mut s| s.execute(params![key, connection_id]))
                    .map_err(sql)?;
                KeylistResult::Success
            }
        },
        KeylistAction::Remove => match owner {
            Some(owner) if owner == connection_id => {
                conn.prepare_cached("DELETE FROM keylist WHERE key = ?1")
                    .and_then(|mut s| s.execute([key]))
                    .map_err(sql)?;
                KeylistResult::Success
            }
            _ => KeylistResult::NoChange,
        },
    })
}

#[async_trait]
impl MediationStore for EmbeddedMediationStore {
    async fn save(&self, record: &MediationRecord) -> Result<()> {
        let id = record.connection_id.clone();
        let bytes = encode_json(record)?;
        self.db
            .write(true, move |conn| {
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO mediation (connection_id, record) VALUES (?1, ?2)",
                )
                .and_then(|mut s| s.execute(params![id.as_str(), bytes]))
                .map_err(sql)?;
                Ok(())
            })
            .await
    }

    async fn get(&self, connection_id: &ConnectionId) -> Result<Option<MediationRecord>> {
        let id = connection_id.clone();
        self.db
            .read(move |tx| {
                let bytes: Option<Vec<u8>> = tx
                    .prepare_cached("SELECT record FROM mediation WHERE connection_id = ?1")
                    .map_err(sql)?
                    .query_row([id.as_str()], |r| r.get(0))
                    .optional()
                    .map_err(sql)?;
                bytes
                    .map(|b| decode_json(&b, || format!("mediation record {id}")))
                    .transpose()
            })
            .await
    }

    async fn delete(&self, connection_id: &ConnectionId) -> Result<bool> {
        let id = connection_id.clone();
        self.db
            .write(true, move |conn| {
                let records = conn
                    .prepare_cached("DELETE FROM mediation WHERE connection_id = ?1")
                    .and_then(|mut s| s.execute([id.as_str()]))
                    .map_err(sql)?;
                let keys = conn
                    .prepare_cached("DELETE FROM keylist WHERE connection_id = ?1")
                    .and_then(|mut s| s.execute([id.as_str()]))
                    .map_err(sql)?;
                Ok(records + keys > 0)
            })
            .await
    }

    async fn update_keylist(
        &self,
        connection_id: &ConnectionId,
        updates: &[KeylistUpdate],
    ) -> Result<Vec<KeylistUpdateOutcome>> {
        let id = connection_id.clone();
        let updates = updates.to_vec();
        // One job: the batch is one savepoint, so no reader sees part of it.
        self.db
            .write(true, move |conn| {
                updates
                    .iter()
                    .map(|update| {
                        Ok(KeylistUpdateOutcome {
                            key: update.key,
                            action: update.action,
                            result: apply(conn, id.as_str(), *update)?,
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn keylist(
        &self,
        connection_id: &ConnectionId,
        offset: usize,
        limit: usize,
    ) -> Result<KeylistPage> {
        let id = connection_id.clone();
        self.db
            .read(move |tx| {
                let total: u64 = tx
                    .prepare_cached("SELECT count(*) FROM keylist WHERE connection_id = ?1")
                    .map_err(sql)?
                    .query_row([id.as_str()], |r| r.get(0))
                    .map_err(sql)?;
                let rows: Vec<Vec<u8>> = tx
                    .prepare_cached(
                        "SELECT key FROM keylist WHERE connection_id = ?1 ORDER BY seq \
                         LIMIT ?2 OFFSET ?3",
                    )
                    .map_err(sql)?
                    .query_map(
                        params![id.as_str(), int_usize(limit), int_usize(offset)],
                        |r| r.get(0),
                    )
                    .and_then(|rows| rows.collect())
                    .map_err(sql)?;
                let keys = rows
                    .iter()
                    .map(|k| decode_key(k, || format!("keylist of {id}")))
                    .collect::<Result<_>>()?;
                Ok(KeylistPage {
                    keys,
                    total: usize::try_from(total).unwrap_or(usize::MAX),
                })
            })
            .await
    }

    /// Hot path (every Forward): one lookup on the UNIQUE index of `keylist.key`.
    async fn connection_for_key(&self, key: &VerKey) -> Result<Option<ConnectionId>> {
        let key = *key;
        self.db
            .read(move |tx| Ok(owner(tx, &key)?.map(ConnectionId::from)))
            .await
    }
}
