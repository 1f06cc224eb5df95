//! [`ConnectionStore`] on the embedded database.
//!
//! The record is stored as JSON in `connections.record`, the source of truth; its unique
//! identities (`id`, `my_verkey`, `thread_id`) are columns with UNIQUE constraints, and
//! `their_keys` rows in `connection_their_keys`, all written in the same transaction as the
//! record. Expired records are invisible to reads (filtered by `expires_at_ms`) and removed by the
//! writes that need their identities, as the trait says. Writes are durable (fsync before they
//! return); `sweep_expired` is not (a swept record lost on power failure is expired anyway).

use std::sync::Arc;

use async_trait::async_trait;
use didcomm_envelope::VerKey;
use mediator_store::{
    unix_ms_now, ConnectionId, ConnectionRecord, ConnectionStore, Entity, Result, StoreError,
};
use rusqlite::{params, Connection, OptionalExtension};

use crate::{
    codec::{corrupt, decode_json, encode_json, int, int_usize},
    db::{sql, Db},
};

/// Connection records in one data directory. Clones share it.
#[derive(Debug, Clone)]
pub struct EmbeddedConnectionStore {
    db: Arc<Db>,
}

impl EmbeddedConnectionStore {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self { db }
    }
}

fn what(id: &str) -> String {
    format!("connection record {id}")
}

/// A stored record that decodes, but under another id than its row's.
#[derive(Debug, thiserror::Error)]
#[error("the record stored under id {row} has id {record}")]
struct MisfiledRecord {
    row: String,
    record: String,
}

fn decode(id: &str, bytes: &[u8]) -> Result<ConnectionRecord> {
    let record: ConnectionRecord = decode_json(bytes, || what(id))?;
    if record.id.as_str() != id {
        return Err(corrupt(
            what(id),
            MisfiledRecord {
                row: id.to_owned(),
                record: record.id.into_string(),
            },
        ));
    }
    Ok(record)
}

/// The live (unexpired at `now`) record whose column `column` is `value`.
fn find_one(
    conn: &Connection,
    column: &str,
    value: &dyn rusqlite::ToSql,
    now: u64,
) -> Result<Option<ConnectionRecord>> {
    let query = format!(
        "SELECT id, record FROM connections WHERE {column} = ?1 \
         AND (expires_at_ms IS NULL OR expires_at_ms > ?2)"
    );
    let row = conn
        .prepare_cached(&query)
        .map_err(sql)?
        .query_row(params![value, int(now)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .optional()
        .map_err(sql)?;
    row.map(|(id, bytes)| decode(&id, &bytes)).transpose()
}

/// Removes the record `id` and its key rows.
fn remove(conn: &Connection, id: &str) -> Result<bool> {
    conn.prepare_cached("DELETE FROM connection_their_keys WHERE id = ?1")
        .and_then(|mut s| s.execute([id]))
        .map_err(sql)?;
    let n = conn
        .prepare_cached("DELETE FROM connections WHERE id = ?1")
        .and_then(|mut s| s.execute([id]))
        .map_err(sql)?;
    Ok(n > 0)
}

/// Removes the record `id` if it has expired at `now`; returns whether it did.
fn purge_if_expired(conn: &Connection, id: &str, now: u64) -> Result<bool> {
    let expired = conn
        .prepare_cached(
            "SELECT 1 FROM connections WHERE id = ?1 AND expires_at_ms IS NOT NULL \
             AND expires_at_ms <= ?2",
        )
        .map_err(sql)?
        .exists(params![id, int(now)])
        .map_err(sql)?;
    if expired {
        remove(conn, id)?;
    }
    Ok(expired)
}

/// Frees the unique identities of `record` that expired records hold.
fn purge_expired_holders(conn: &Connection, record: &ConnectionRecord, now: u64) -> Result<()> {
    let holders: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM connections WHERE (my_verkey = ?1 OR thread_id = ?2) \
             AND expires_at_ms IS NOT NULL AND expires_at_ms <= ?3",
        )
        .map_err(sql)?
        .query_map(
            params![&record.my_verkey.as_bytes()[..], record.thread_id, int(now)],
            |r| r.get(0),
        )
        .and_then(|rows| rows.collect())
        .map_err(sql)?;
    for id in holders {
        remove(conn, &id)?;
    }
    Ok(())
}

/// The first unique identity of `record` another record holds.
fn taken_identity(conn: &Connection, record: &ConnectionRecord) -> Result<Option<Entity>> {
    let owner = |column: &str, value: &dyn rusqlite::ToSql| -> Result<bool> {
        let query = format!("SELECT id FROM connections WHERE {column} = ?1");
        let owner: Option<String> = conn
            .prepare_cached(&query)
            .map_err(sql)?
            .query_row([value], |r| r.get(0))
            .optional()
            .map_err(sql)?;
        Ok(owner.is_some_and(|o| o != record.id.as_str()))
    };
    if owner("my_verkey", &&record.my_verkey.as_bytes()[..])? {
        return Ok(Some(Entity::ConnectionWithMyVerkey(record.my_verkey)));
    }
    if owner("thread_id", &record.thread_id)? {
        return Ok(Some(Entity::ConnectionWithThread(record.thread_id.clone())));
    }
    Ok(None)
}

/// Writes `record` (a new row, or over its old one) with its key rows.
fn store(conn: &Connection, record: &ConnectionRecord) -> Result<()> {
    let id = record.id.as_str();
    remove(conn, id)?;
    conn.prepare_cached(
        "INSERT INTO connections (id, my_verkey, thread_id, updated_at_ms, expires_at_ms, record) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            &record.my_verkey.as_bytes()[..],
            record.thread_id,
            int(record.updated_at_ms),
            record.expires_at_ms.map(int),
            encode_json(record).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?,
        ])
    })
    .map_err(sql)?;
    let mut add_key = conn
        .prepare_cached("INSERT OR IGNORE INTO connection_their_keys (key, id) VALUES (?1, ?2)")
        .map_err(sql)?;
    for key in &record.their_keys {
        add_key
            .execute(params![&key.as_bytes()[..], id])
            .map_err(sql)?;
    }
    Ok(())
}

#[async_trait]
impl ConnectionStore for EmbeddedConnectionStore {
    async fn insert(&self, record: &ConnectionRecord) -> Result<()> {
        let record = record.clone();
        self.db
            .write(true, move |conn| {
                let now = unix_ms_now();
                let id = record.id.as_str();
                purge_if_expired(conn, id, now)?;
                purge_expired_holders(conn, &record, now)?;
                let exists = conn
                    .prepare_cached("SELECT 1 FROM connections WHERE id = ?1")
                    .map_err(sql)?
                    .exists([id])
                    .map_err(sql)?;
                if exists {
                    return Err(StoreError::Conflict {
                        what: Entity::Connection(record.id.clone()),
                    });
                }
                if let Some(what) = taken_identity(conn, &record)? {
                    return Err(StoreError::Conflict { what });
                }
                store(conn, &record)
            })
            .await
    }

    async fn update(&self, record: &ConnectionRecord) -> Result<()> {
        let record = record.clone();
        self.db
            .write(true, move |conn| {
                let now = unix_ms_now();
                let id = record.id.as_str();
                purge_if_expired(conn, id, now)?;
                let exists = conn
                    .prepare_cached("SELECT 1 FROM connections WHERE id = ?1")
                    .map_err(sql)?
                    .exists([id])
                    .map_err(sql)?;
                if !exists {
                    return Err(StoreError::NotFound {
                        what: Entity::Connection(record.id.clone()),
                    });
                }
                purge_expired_holders(conn, &record, now)?;
                if let Some(what) = taken_identity(conn, &record)? {
                    return Err(StoreError::Conflict { what });
                }
                store(conn, &record)
            })
            .await
    }

    async fn get(&self, id: &ConnectionId) -> Result<Option<ConnectionRecord>> {
        let id = id.clone();
        self.db
            .read(move |tx| find_one(tx, "id", &id.as_str(), unix_ms_now()))
            .await
    }

    /// Hot path (every inbound envelope): one lookup on the UNIQUE index of `my_verkey`.
    async fn find_by_my_verkey(&self, key: &VerKey) -> Result<Option<ConnectionRecord>> {
        let key = *key;
        self.db
            .read(move |tx| find_one(tx, "my_verkey", &&key.as_bytes()[..], unix_ms_now()))
            .await
    }

    async fn find_by_their_verkey(&self, key: &VerKey) -> Result<Vec<ConnectionRecord>> {
        let key = *key;
        self.db
            .read(move |tx| {
                let rows: Vec<(String, Vec<u8>)> = tx
                    .prepare_cached(
                        "SELECT c.id, c.record FROM connection_their_keys k \
                         JOIN connections c ON c.id = k.id WHERE k.key = ?1 \
                         AND (c.expires_at_ms IS NULL OR c.expires_at_ms > ?2) \
                         ORDER BY c.updated_at_ms DESC, c.id ASC",
                    )
                    .map_err(sql)?
                    .query_map(params![&key.as_bytes()[..], int(unix_ms_now())], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .and_then(|rows| rows.collect())
                    .map_err(sql)?;
                rows.iter().map(|(id, bytes)| decode(id, bytes)).collect()
            })
            .await
    }

    async fn find_by_thread(&self, thread_id: &str) -> Result<Option<ConnectionRecord>> {
        let thread_id = thread_id.to_owned();
        self.db
            .read(move |tx| find_one(tx, "thread_id", &thread_id, unix_ms_now()))
            .await
    }

    async fn delete(&self, id: &ConnectionId) -> Result<bool> {
        let id = id.clone();
        self.db
            .write(true, move |conn| {
                if purge_if_expired(conn, id.as_str(), unix_ms_now())? {
                    return Ok(false);
                }
                remove(conn, id.as_str())
            })
            .await
    }

    async fn sweep_expired(&self, max: usize) -> Result<u64> {
        self.db
            .write(false, move |conn| {
                let due: Vec<String> = conn
                    .prepare_cached(
                        "SELECT id FROM connections WHERE expires_at_ms IS NOT NULL \
                         AND expires_at_ms <= ?1 ORDER BY expires_at_ms, id LIMIT ?2",
                    )
                    .map_err(sql)?
                    .query_map(params![int(unix_ms_now()), int_usize(max)], |r| r.get(0))
                    .and_then(|rows| rows.collect())
                    .map_err(sql)?;
                let mut removed = 0;
                for id in due {
                    if remove(conn, &id)? {
                        removed += 1;
                    }
                }
                Ok(removed)
            })
            .await
    }

    async fn list_ids(
        &self,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<Vec<ConnectionId>> {
        let after = after.map(|a| a.as_str().to_owned());
        self.db
            .read(move |tx| {
                tx.prepare_cached(
                    "SELECT id FROM connections WHERE (expires_at_ms IS NULL OR expires_at_ms > ?1) \
                     AND (?2 IS NULL OR id > ?2) ORDER BY id LIMIT ?3",
                )
                .map_err(sql)?
                .query_map(params![int(unix_ms_now()), after, int_usize(limit)], |r| {
                    r.get::<_, String>(0).map(ConnectionId::from)
                })
                .and_then(|rows| rows.collect())
                .map_err(sql)
            })
            .await
    }
}
