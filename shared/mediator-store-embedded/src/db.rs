//! The database of one data directory: its lock, its schema, the one writer thread that group
//! commits every write, and the pool of read connections.
//!
//! Writes are jobs sent to the writer thread, which owns the only writing connection. It takes
//! every job waiting (up to [`MAX_BATCH`]), runs each inside its own `SAVEPOINT` (a job that
//! fails, a conflict or a full queue, is rolled back alone and leaves the others in the batch
//! untouched), commits the batch once, and only then answers every job of it. A batch holding
//! a durable job (adds, connection, mediation, keylist and push-registration writes) commits
//! with `synchronous=FULL`: the WAL is fsynced before the commit returns, so one fsync carries
//! every job that waited for it. Others (leases, removals, expiry, the replay window,
//! notification claims) commit with `synchronous=NORMAL`: written to the WAL (they survive the
//! process being killed) but synced only with the next durable commit or checkpoint, so a power
//! loss can undo them (a removed message comes back and is redelivered; a lease is forgotten)
//! but never a later durable write without them: the WAL is replayed in order.
//!
//! Reads run on pooled read connections in `spawn_blocking`, each in one read transaction (a
//! snapshot: WAL readers never wait for the writer). This module knows nothing of the stores'
//! tables beyond creating them; it must not hold any lock across an `.await`.

use std::{
    fs::{DirBuilder, File, OpenOptions, TryLockError},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{mpsc, Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use mediator_store::{BoxError, Result, StoreError};
use rusqlite::{Connection, OpenFlags, Transaction};
use tokio::sync::oneshot;

use crate::OpenError;

/// The database file in the data directory (with its `-wal` and `-shm` beside it).
pub const DATABASE_FILE: &str = "mediator.sqlite3";
/// The lock file in the data directory: an OS lock (`flock`) on it is held while the store is
/// open.
pub const LOCK_FILE: &str = "LOCK";

/// The schema version this crate reads and writes (`PRAGMA user_version`). Tables added later
/// (`devices`, `push_claims`) are made by `CREATE TABLE IF NOT EXISTS` at every open, so a
/// directory of an earlier build gets them without a new version, and an earlier build opening
/// this one's directory ignores them.
const SCHEMA_VERSION: i64 = 1;

/// Most jobs one commit carries: enough to absorb a burst, few enough that the first of them
/// does not wait long behind the rest.
const MAX_BATCH: usize = 512;

/// Read connections kept open for reuse (more may be open during a burst; those are closed).
const MAX_IDLE_READERS: usize = 8;

/// How long a connection waits for a lock held by another connection of ours (a checkpoint)
/// before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS connections (
    id TEXT PRIMARY KEY NOT NULL,
    my_verkey BLOB NOT NULL UNIQUE,
    thread_id TEXT NOT NULL UNIQUE,
    updated_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER,
    record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS connections_expiring ON connections (expires_at_ms, id)
    WHERE expires_at_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS connection_their_keys (
    key BLOB NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (key, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS connection_their_keys_by_id ON connection_their_keys (id);

CREATE TABLE IF NOT EXISTS mediation (
    connection_id TEXT PRIMARY KEY NOT NULL,
    record BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS keylist (
    seq INTEGER PRIMARY KEY,
    key BLOB NOT NULL UNIQUE,
    connection_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS keylist_by_connection ON keylist (connection_id, seq);

CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    connection_id TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    received_ms INTEGER NOT NULL,
    leased_until_ms INTEGER NOT NULL,
    deliveries INTEGER NOT NULL,
    len INTEGER NOT NULL,
    keys BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages (connection_id, seq);
CREATE TABLE IF NOT EXISTS payloads (
    seq INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS queues (
    connection_id TEXT PRIMARY KEY NOT NULL,
    messages INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    oldest_ms INTEGER NOT NULL,
    newest_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queues_by_oldest ON queues (oldest_ms);

CREATE TABLE IF NOT EXISTS seen (
    seq INTEGER PRIMARY KEY,
    connection_id TEXT NOT NULL,
    id TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    UNIQUE (connection_id, id)
);
CREATE INDEX IF NOT EXISTS seen_by_expiry ON seen (expires_ms);
CREATE INDEX IF NOT EXISTS seen_by_connection ON seen (connection_id, expires_ms, seq);

CREATE TABLE IF NOT EXISTS devices (
    connection_id TEXT PRIMARY KEY NOT NULL,
    platform TEXT NOT NULL,
    token TEXT NOT NULL,
    device_platform TEXT,
    updated_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS push_claims (
    connection_id TEXT PRIMARY KEY NOT NULL,
    until_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS push_claims_by_until ON push_claims (until_ms);
";

/// The writer thread is gone (it panicked, or the store is being dropped): nothing can be
/// written.
#[derive(Debug, thiserror::Error)]
#[error("the embedded store's writer thread is gone")]
pub struct WriterGone;

/// The commit of a batch failed: none of its jobs was stored.
#[derive(Debug, thiserror::Error)]
#[error("commit of a group of writes failed")]
pub struct CommitFailed(#[source] pub Arc<rusqlite::Error>);

/// A job's answer, sent once its batch is committed (or failed to commit: then with the error).
type Finish = Box<dyn FnOnce(Option<&Arc<rusqlite::Error>>) + Send>;

/// What a job's code gets: the writing connection, or why the batch could not start.
type JobInput<'a> = std::result::Result<&'a Connection, &'a Arc<rusqlite::Error>>;

/// Runs a job and says whether it succeeded (its savepoint is kept) and how to answer.
type Run = Box<dyn FnOnce(JobInput<'_>) -> (bool, Finish) + Send>;

struct Job {
    durable: bool,
    run: Run,
}

/// One open data directory. Shared (`Arc`) by the stores made from it; dropping the last one
/// stops the writer (after its last batch), closes the connections and only then unlocks the
/// directory.
pub(crate) struct Db {
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    // std Mutex: held only to push or pop a connection, never across an await or a query.
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    /// Held (locked) for as long as the database is open; declared after the connections so
    /// that it is dropped after them.
    lock: Option<File>,
    /// Dropped last: what must outlive everything else (a test's temporary directory).
    _keep: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // Readers first, so that the writer's connection is the last one: closing it
        // checkpoints the WAL into the database and removes it.
        if let Ok(mut readers) = self.readers.lock() {
            readers.clear();
        }
        // Closing the channel ends the writer's loop once it has answered what it holds; wait
        // for it, so that the directory is never unlocked while our writer may still commit.
        drop(self.jobs.take());
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!(path = %self.path.display(), "embedded store writer panicked");
            }
        }
        drop(self.lock.take());
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Db {
    /// Opens (creating it if need be, owner-only) the data directory `dir`, locks it, and opens
    /// the database in it. `keep` is dropped after everything else is closed.
    pub(crate) fn open(
        dir: &Path,
        keep: Option<Box<dyn std::any::Any + Send + Sync>>,
    ) -> std::result::Result<Arc<Self>, OpenError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(OpenError::Locked {
                    dir: dir.to_owned(),
                })
            }
            Err(TryLockError::Error(source)) => {
                return Err(OpenError::Io {
                    path: lock_path,
                    source,
                })
            }
        }
        let path = dir.join(DATABASE_FILE);
        // Made here, owner-only, before SQLite opens it: SQLite would make it 0644, and gives its
        // `-wal` and `-shm` files the mode of the database file.
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_error(&path))?;
        let writer = open_writer(&path).map_err(|source| OpenError::Database {
            path: path.clone(),
            source,
        })?;
        let (jobs, inbox) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mediator-store-writer".into())
            .spawn(move || write_loop(writer, inbox))
            .map_err(io_error(&path))?;
        Ok(Arc::new(Self {
            jobs: Some(jobs),
            writer: Some(thread),
            readers: Mutex::new(Vec::new()),
            path,
            lock: Some(lock),
            _keep: keep,
        }))
    }

    /// Runs `f` on the writer in the next group commit, in its own savepoint (rolled back if `f`
    /// fails), and returns its result once the group is committed; with `durable`, once it is
    /// fsynced.
    pub(crate) async fn write<T, F>(&self, durable: bool, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<Result<T>>();
        let run = Box::new(move |conn: JobInput<'_>| -> (bool, Finish) {
            let result = match conn {
                Ok(conn) => f(conn),
                Err(e) => Err(StoreError::backend(CommitFailed(e.clone()))),
            };
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |commit: Option<&Arc<rusqlite::Error>>| {
                let result = match (result, commit) {
                    (Ok(_), Some(e)) => Err(StoreError::backend(CommitFailed(e.clone()))),
                    (result, _) => result,
                };
                // The caller may have stopped waiting (its future was dropped): nothing to do.
                let _ = answer.send(result);
            });
            (ok, finish)
        });
        self.jobs
            .as_ref()
            .ok_or_else(|| StoreError::backend(WriterGone))?
            .send(Job { durable, run })
            .map_err(|_| StoreError::backend(WriterGone))?;
        answered
            .await
            .map_err(|_| StoreError::backend(WriterGone))?
    }

    /// Runs `f` in a read transaction (a consistent snapshot) on a pooled read connection, on a
    /// blocking thread.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let db = Arc::clone(self);
        tokio::task::spawn_blocking(move || db.read_now(f))
            .await
            .map_err(StoreError::backend)?
    }

    fn read_now<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let pooled = self.readers.lock().map_err(|_| poisoned())?.pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => open_reader(&self.path).map_err(sql)?,
        };
        let result = conn.transaction().map_err(sql).and_then(|tx| f(&tx));
        let mut readers = self.readers.lock().map_err(|_| poisoned())?;
        if readers.len() < MAX_IDLE_READERS {
            readers.push(conn);
        }
        result
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the embedded store's reader pool lock was poisoned by a panic")]
struct PoisonedPool;

fn poisoned() -> StoreError {
    StoreError::backend(PoisonedPool)
}

/// An SQLite failure as a [`StoreError`] (the error kept as the source).
pub(crate) fn sql(err: rusqlite::Error) -> StoreError {
    StoreError::backend(err)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn open_writer(path: &Path) -> std::result::Result<Connection, BoxError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&conn)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Box::new(UnknownSchema { version }));
    }
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Box::new(NoWal { mode }));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Bounds the WAL file left after a checkpoint (it is reused, not regrown, below this).
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))?;
    Ok(conn)
}

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&conn)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// The database was written by a newer version of this crate.
#[derive(Debug, thiserror::Error)]
#[error("database schema version {version} is newer than this build reads ({SCHEMA_VERSION})")]
pub struct UnknownSchema {
    version: i64,
}

/// SQLite refused WAL mode (a file system without shared memory, for one).
#[derive(Debug, thiserror::Error)]
#[error("database could not be put in WAL mode (journal mode {mode})")]
pub struct NoWal {
    mode: String,
}

/// The writer thread: one group commit per turn, until every sender is gone.
fn write_loop(conn: Connection, inbox: mpsc::Receiver<Job>) {
    let mut full_sync = true;
    while let Ok(first) = inbox.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match inbox.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&conn, batch, &mut full_sync);
    }
}

/// Hot path (every write): runs the jobs of one batch in one transaction and answers them.
fn commit_batch(conn: &Connection, batch: Vec<Job>, full_sync: &mut bool) {
    let durable = batch.iter().any(|job| job.durable);
    let begun = begin(conn, durable, full_sync);
    let mut finishers = Vec::with_capacity(batch.len());
    let mut broken: Option<Arc<rusqlite::Error>> = begun.err().map(Arc::new);
    for job in batch {
        if let Some(e) = &broken {
            finishers.push((job.run)(Err(e)).1);
            continue;
        }
        if let Err(e) = exec(conn, "SAVEPOINT job") {
            let e = Arc::new(e);
            finishers.push((job.run)(Err(&e)).1);
            broken = Some(e);
            continue;
        }
        let (ok, finish) = (job.run)(Ok(conn));
        finishers.push(finish);
        let end = if ok {
            exec(conn, "RELEASE job")
        } else {
            exec(conn, "ROLLBACK TO job").and_then(|()| exec(conn, "RELEASE job"))
        };
        if let Err(e) = end {
            broken = Some(Arc::new(e));
        }
    }
    let outcome = match broken {
        Some(e) => Err(e),
        None => exec(conn, "COMMIT").map_err(Arc::new),
    };
    if outcome.is_err() && !conn.is_autocommit() {
        if let Err(e) = exec(conn, "ROLLBACK") {
            tracing::error!(error = %e, "embedded store: rollback of a failed batch failed");
        }
    }
    let failure = outcome.err();
    for finish in finishers {
        finish(failure.as_ref());
    }
}

fn begin(conn: &Connection, durable: bool, full_sync: &mut bool) -> rusqlite::Result<()> {
    if durable != *full_sync {
        conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "NORMAL" })?;
        *full_sync = durable;
    }
    exec(conn, "BEGIN IMMEDIATE")
}

fn exec(conn: &Connection, statement: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(statement)?.execute([]).map(|_| ())
}
