//! Which embedded engine to build the durable queue on: the queue workload of the mediator
//! (durable append, lease, remove by id, status, expiry) on SQLite (rusqlite, WAL) and on redb,
//! with the same data layout on both (message metadata apart from payloads, an id index), on
//! this machine's disk. The chosen engine's figures are in the crate docs.
//!
//! `cargo bench -p mediator-store-embedded --bench engines`
//!
//! Every operation is one transaction; "append" commits with an fsync (what `add` needs),
//! "append x16" puts 16 appends in one durable commit (what a group commit does under load),
//! the others commit without an fsync (their loss is a redelivery, not a lost message). Each
//! queue holds about 1,000 messages of 1 KiB while it is measured.

#![allow(missing_docs, clippy::unwrap_used, clippy::type_complexity)]

use std::{
    path::Path,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, Criterion};

const PAYLOAD: usize = 1024;
const PRELOAD: u64 = 1_000;

trait Engine {
    fn open(dir: &Path) -> Self;
    /// Appends `n` messages in one durable commit.
    fn append(&mut self, n: u64);
    /// Leases up to 10 waiting messages (reads their payloads), non-durable commit.
    fn lease(&mut self, now: u64) -> usize;
    /// Removes the message with this id.
    fn remove(&mut self, id: &str) -> bool;
    /// Count and bytes of the waiting messages.
    fn status(&mut self, now: u64) -> (u64, u64);
    /// Removes the 10 oldest messages (received before a cutoff).
    fn expire(&mut self) -> u64;
    /// An id of a queued message, oldest first.
    fn oldest_id(&mut self) -> String;
}

fn id_of(seq: u64) -> String {
    format!("{seq:08x}-0000-4000-8000-000000000000")
}

mod sqlite {
    use rusqlite::{params, Connection};

    use super::*;

    pub struct Sqlite {
        db: Connection,
        next: u64,
        received: u64,
    }

    impl Engine for Sqlite {
        fn open(dir: &Path) -> Self {
            let db = Connection::open(dir.join("bench.sqlite3")).unwrap();
            db.pragma_update(None, "journal_mode", "WAL").unwrap();
            db.pragma_update(None, "synchronous", "FULL").unwrap();
            db.execute_batch(
                "CREATE TABLE messages (seq INTEGER PRIMARY KEY, conn TEXT NOT NULL,
                     id TEXT NOT NULL UNIQUE, received_ms INTEGER NOT NULL,
                     leased_until_ms INTEGER NOT NULL, deliveries INTEGER NOT NULL,
                     len INTEGER NOT NULL, keys BLOB NOT NULL);
                 CREATE INDEX messages_by_conn ON messages (conn, seq);
                 CREATE TABLE payloads (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);",
            )
            .unwrap();
            Self {
                db,
                next: 0,
                received: 0,
            }
        }

        fn append(&mut self, n: u64) {
            self.db.pragma_update(None, "synchronous", "FULL").unwrap();
            let tx = self.db.transaction().unwrap();
            {
                let mut meta = tx
                    .prepare_cached(
                        "INSERT INTO messages VALUES (?1, 'conn', ?2, ?3, 0, 0, ?4, ?5)",
                    )
                    .unwrap();
                let mut body = tx
                    .prepare_cached("INSERT INTO payloads VALUES (?1, ?2)")
                    .unwrap();
                for _ in 0..n {
                    let seq = self.next;
                    self.next += 1;
                    self.received += 1;
                    meta.execute(params![
                        seq as i64,
                        id_of(seq),
                        self.received as i64,
                        PAYLOAD as i64,
                        [7u8; 32]
                    ])
                    .unwrap();
                    body.execute(params![seq as i64, [0x5au8; PAYLOAD]])
                        .unwrap();
                }
            }
            tx.commit().unwrap();
        }

        fn lease(&mut self, now: u64) -> usize {
            self.db
                .pragma_update(None, "synchronous", "NORMAL")
                .unwrap();
            let tx = self.db.transaction().unwrap();
            let mut n = 0;
            {
                let mut pick = tx
                    .prepare_cached(
                        "SELECT seq, keys, len FROM messages WHERE conn = 'conn' \
                         AND leased_until_ms <= ?1 ORDER BY seq LIMIT 10",
                    )
                    .unwrap();
                let seqs: Vec<i64> = pick
                    .query_map([now as i64], |r| r.get(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                let mut set = tx
                    .prepare_cached(
                        "UPDATE messages SET leased_until_ms = ?2, deliveries = deliveries + 1 \
                         WHERE seq = ?1",
                    )
                    .unwrap();
                let mut body = tx
                    .prepare_cached("SELECT data FROM payloads WHERE seq = ?1")
                    .unwrap();
                for seq in seqs {
                    set.execute(params![seq, now as i64 + 1]).unwrap();
                    let data: Vec<u8> = body.query_row([seq], |r| r.get(0)).unwrap();
                    n += data.len().min(1);
                }
            }
            tx.commit().unwrap();
            n
        }

        fn remove(&mut self, id: &str) -> bool {
            self.db
                .pragma_update(None, "synchronous", "NORMAL")
                .unwrap();
            let tx = self.db.transaction().unwrap();
            let seq: Option<i64> = tx
                .query_row(
                    "SELECT seq FROM messages WHERE id = ?1 AND conn = 'conn'",
                    [id],
                    |r| r.get(0),
                )
                .ok();
            if let Some(seq) = seq {
                tx.execute("DELETE FROM messages WHERE seq = ?1", [seq])
                    .unwrap();
                tx.execute("DELETE FROM payloads WHERE seq = ?1", [seq])
                    .unwrap();
            }
            tx.commit().unwrap();
            seq.is_some()
        }

        fn status(&mut self, now: u64) -> (u64, u64) {
            self.db
                .query_row(
                    "SELECT count(*), coalesce(sum(len), 0) FROM messages \
                     WHERE conn = 'conn' AND leased_until_ms <= ?1",
                    [now as i64],
                    |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
                )
                .unwrap()
        }

        fn expire(&mut self) -> u64 {
            self.db
                .pragma_update(None, "synchronous", "NORMAL")
                .unwrap();
            let tx = self.db.transaction().unwrap();
            let cutoff: i64 = tx
                .query_row(
                    "SELECT received_ms FROM messages WHERE conn = 'conn' ORDER BY seq LIMIT 1 OFFSET 10",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            // The queue's head in order, read until the first message young enough (as the
            // backend does): a `received_ms < ?` filter would read the whole queue.
            let mut seqs: Vec<i64> = Vec::new();
            {
                let mut head = tx
                    .prepare_cached(
                        "SELECT seq, received_ms FROM messages WHERE conn = 'conn' ORDER BY seq",
                    )
                    .unwrap();
                let mut rows = head.query([]).unwrap();
                while let Some(row) = rows.next().unwrap() {
                    if row.get::<_, i64>(1).unwrap() >= cutoff {
                        break;
                    }
                    seqs.push(row.get(0).unwrap());
                }
            }
            for seq in &seqs {
                tx.execute("DELETE FROM messages WHERE seq = ?1", [seq])
                    .unwrap();
                tx.execute("DELETE FROM payloads WHERE seq = ?1", [seq])
                    .unwrap();
            }
            tx.commit().unwrap();
            seqs.len() as u64
        }

        fn oldest_id(&mut self) -> String {
            self.db
                .query_row(
                    "SELECT id FROM messages WHERE conn = 'conn' ORDER BY seq LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        }
    }
}

mod redb_engine {
    use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

    use super::*;

    /// (connection, seq) -> received_ms, leased_until_ms, deliveries, len, keys.
    const META: TableDefinition<'_, (&str, u64), (u64, u64, u32, u64, &[u8])> =
        TableDefinition::new("meta");
    const PAYLOADS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("payloads");
    const IDS: TableDefinition<'_, &str, (&str, u64)> = TableDefinition::new("ids");

    pub struct Redb {
        db: Database,
        next: u64,
        received: u64,
    }

    impl Redb {
        fn write(&self, durable: bool) -> redb::WriteTransaction {
            let mut tx = self.db.begin_write().unwrap();
            tx.set_durability(if durable {
                Durability::Immediate
            } else {
                Durability::None
            })
            .unwrap();
            tx
        }
    }

    impl Engine for Redb {
        fn open(dir: &Path) -> Self {
            let db = Database::create(dir.join("bench.redb")).unwrap();
            Self {
                db,
                next: 0,
                received: 0,
            }
        }

        fn append(&mut self, n: u64) {
            let tx = self.write(true);
            {
                let mut meta = tx.open_table(META).unwrap();
                let mut body = tx.open_table(PAYLOADS).unwrap();
                let mut ids = tx.open_table(IDS).unwrap();
                for _ in 0..n {
                    let seq = self.next;
                    self.next += 1;
                    self.received += 1;
                    meta.insert(
                        ("conn", seq),
                        (self.received, 0, 0, PAYLOAD as u64, &[7u8; 32][..]),
                    )
                    .unwrap();
                    body.insert(seq, &[0x5au8; PAYLOAD][..]).unwrap();
                    ids.insert(id_of(seq).as_str(), ("conn", seq)).unwrap();
                }
            }
            tx.commit().unwrap();
        }

        fn lease(&mut self, now: u64) -> usize {
            let tx = self.write(false);
            let mut n = 0;
            {
                let mut meta = tx.open_table(META).unwrap();
                let body = tx.open_table(PAYLOADS).unwrap();
                let mut picked = Vec::new();
                for row in meta.range(("conn", 0)..=("conn", u64::MAX)).unwrap() {
                    let (k, v) = row.unwrap();
                    let v = v.value();
                    if v.1 <= now {
                        picked.push((k.value().1, (v.0, v.1, v.2, v.3, v.4.to_vec())));
                        if picked.len() == 10 {
                            break;
                        }
                    }
                }
                for (seq, v) in picked {
                    meta.insert(("conn", seq), (v.0, now + 1, v.2 + 1, v.3, &v.4[..]))
                        .unwrap();
                    n += body.get(seq).unwrap().unwrap().value().len().min(1);
                }
            }
            tx.commit().unwrap();
            n
        }

        fn remove(&mut self, id: &str) -> bool {
            let tx = self.write(false);
            let found;
            {
                let mut ids = tx.open_table(IDS).unwrap();
                let seq = ids.remove(id).unwrap().map(|g| g.value().1);
                found = seq.is_some();
                if let Some(seq) = seq {
                    tx.open_table(META).unwrap().remove(("conn", seq)).unwrap();
                    tx.open_table(PAYLOADS).unwrap().remove(seq).unwrap();
                }
            }
            tx.commit().unwrap();
            found
        }

        fn status(&mut self, now: u64) -> (u64, u64) {
            let tx = self.db.begin_read().unwrap();
            let meta = tx.open_table(META).unwrap();
            let (mut count, mut bytes) = (0, 0);
            for row in meta.range(("conn", 0)..=("conn", u64::MAX)).unwrap() {
                let (_, v) = row.unwrap();
                let v = v.value();
                if v.1 <= now {
                    count += 1;
                    bytes += v.3;
                }
            }
            (count, bytes)
        }

        fn expire(&mut self) -> u64 {
            let tx = self.write(false);
            let n;
            {
                let mut meta = tx.open_table(META).unwrap();
                let oldest: Vec<u64> = meta
                    .range(("conn", 0)..=("conn", u64::MAX))
                    .unwrap()
                    .take(10)
                    .map(|r| r.unwrap().0.value().1)
                    .collect();
                let mut body = tx.open_table(PAYLOADS).unwrap();
                let mut ids = tx.open_table(IDS).unwrap();
                for seq in &oldest {
                    meta.remove(("conn", *seq)).unwrap();
                    body.remove(*seq).unwrap();
                    ids.remove(id_of(*seq).as_str()).unwrap();
                }
                n = oldest.len() as u64;
            }
            tx.commit().unwrap();
            n
        }

        fn oldest_id(&mut self) -> String {
            let tx = self.db.begin_read().unwrap();
            let meta = tx.open_table(META).unwrap();
            let (k, _) = meta.first().unwrap().unwrap();
            id_of(k.value().1)
        }
    }
}

fn workload<E: Engine>(c: &mut Criterion, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = E::open(dir.path());
    engine.append(PRELOAD);
    let mut group = c.benchmark_group(name);
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(4));
    group.bench_function("append (durable)", |b| b.iter(|| engine.append(1)));
    group.bench_function("append x16 (one durable commit)", |b| {
        b.iter(|| engine.append(16))
    });
    // Top the queue back up so every lease finds messages; leases expire at once (now + 1).
    let mut now = 1_000_000;
    group.bench_function("lease 10", |b| {
        b.iter(|| {
            now += 2;
            engine.lease(now)
        })
    });
    group.bench_function("status", |b| b.iter(|| engine.status(now + 2)));
    // Setup (a fresh message to remove, 10 to expire) is outside the timed part.
    group.bench_function("remove by id", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                engine.append(1);
                let id = engine.oldest_id();
                let start = Instant::now();
                assert!(engine.remove(&id));
                spent += start.elapsed();
            }
            spent
        })
    });
    group.bench_function("expire 10 oldest", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                engine.append(10);
                let start = Instant::now();
                assert_eq!(engine.expire(), 10);
                spent += start.elapsed();
            }
            spent
        })
    });
    group.finish();
}

fn engines(c: &mut Criterion) {
    workload::<sqlite::Sqlite>(c, "sqlite");
    workload::<redb_engine::Redb>(c, "redb");
}

criterion_group!(benches, engines);
criterion_main!(benches);
