//! Durable embedded backends of every storage trait of `mediator-store`, for a mediator that
//! runs alone: [`EmbeddedStores::open`] opens a data directory and gives the six stores of
//! [`mediator_store::Stores`], which survive a restart (queued messages, connections, mediation
//! grants and keylists, the replay window, push registrations and notification claims).
//!
//! # The engine: SQLite
//!
//! One SQLite database (compiled in by `rusqlite`'s `bundled` feature) in WAL mode. It was
//! chosen over redb by `benches/engines.rs`, the queue workload with the same data layout on
//! both (`cargo bench -p mediator-store-embedded --bench engines`; 1 KiB messages, on the
//! shared 2-core development VM, criterion medians of the second of two runs; the first run,
//! with other builds on the machine, had SQLite's x16 append at 2.3 ms, so read them as
//! rough):
//!
//! | operation | SQLite (WAL) | redb 4.6 |
//! | --- | --- | --- |
//! | append, one durable commit | 243 µs | 420 µs |
//! | append x16, one durable commit | 386 µs | 776 µs |
//! | lease 10 (non-durable commit) | 26 µs | 23 µs |
//! | remove by id (non-durable commit) | 68 µs | 60 µs |
//! | expire the 10 oldest (non-durable commit) | 193 µs | 135 µs |
//! | status (a scan of the whole queue) | 51 ms | 14 ms |
//!
//! (`status` scans a queue that the appends before it grew, and criterion ran SQLite's faster
//! appends more often, so its queue was several times longer: both are O(queue length).)
//! SQLite is faster where it matters most, the durable append that every offline Forward waits
//! for, and as fast elsewhere within noise. It also has what the backend needs beyond speed:
//! `SAVEPOINT`s (each write of a group commit is rolled back alone when it fails, a full queue
//! or a conflict, while the others commit), UNIQUE indexes kept by the engine (the connection
//! store's three unique identities, the keylist's key), readers on their own connections that
//! never wait for the writer (WAL snapshots), and a file format and recovery with decades of
//! crash testing behind them. fjall (an LSM tree) was not measured: a queue deletes from its
//! head, and scans over a head full of tombstones are an LSM tree's known weak spot.
//!
//! The store itself (`cargo bench -p mediator-store-embedded --bench store`, same machine):
//! durable adds of 1 KiB messages, 1,100/s with 1 adder, 4,100/s with 16, 8,100/s with 64
//! (the group commit: one fsync per batch); 1,572 bytes of disk per queued 1 KiB message.
//! Opening is O(1) in the data (no scan, no index built in memory): with 1,000,000 queued
//! messages in 1,000 queues (1.57 GB, filled at 8,100 adds/s by 64 adders), open took 1.4 ms
//! and open plus a first `totals()` 1.7 ms (`-- million`).
//!
//! # Durability and the fsync policy
//!
//! Every write goes through one writer thread that group commits (see `db.rs`): whatever writes
//! wait when a commit starts go into it, each in its own savepoint, and each is answered only
//! when the commit has returned. Writes that must survive a power loss, namely
//! [`MessageQueue::add`](mediator_store::MessageQueue::add) and `add_leased` and every write of
//! connections, mediation records, keylists and push registrations, are committed with
//! `synchronous=FULL`: the WAL is fsynced before the commit returns, and concurrent adds share
//! that one fsync. Leases, releases, removals, expiry, the replay window and notification claims
//! are committed with `synchronous=NORMAL`: written to the WAL before they return (they survive
//! the process being killed), fsynced by the next durable commit or checkpoint. A power loss can
//! undo the last of those (a removed message is delivered again, a lease is forgotten, a
//! replayed id is accepted once, a notification goes out once more), never a durable write,
//! since the WAL is replayed in order.
//!
//! # One process per data directory
//!
//! [`EmbeddedStores::open`] takes an exclusive OS lock (`flock`) on the directory's `LOCK` file
//! and holds it until the last store made from it is dropped (after the writer's last commit):
//! a second open, from another process or from this one, fails with [`OpenError::Locked`].
//! The directory is made owner-only (0700), and the files in it 0600.
//!
//! # The live-session registry
//!
//! [`EmbeddedStores::registry`] is the in-memory registry of `mediator-store`: a live session is
//! a WebSocket of this process, which a restart ends, so a registry that survived the restart
//! would only name sessions that are gone. On one node nothing else reads it.
//!
//! This crate holds no protocol logic and opens no network connection; it must not be used by
//! more than one mediator instance (a cluster shares the Redis backends instead).

mod codec;
mod connections;
mod db;
mod devices;
mod mediation;
mod queue;
mod seen;
#[cfg(feature = "test-support")]
pub mod testing;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use mediator_store::{memory::MemoryLiveSessionRegistry, QueueLimits, Stores};

pub use connections::EmbeddedConnectionStore;
pub use db::{CommitFailed, NoWal, UnknownSchema, WriterGone, DATABASE_FILE, LOCK_FILE};
pub use devices::EmbeddedDeviceStore;
pub use mediation::EmbeddedMediationStore;
pub use queue::EmbeddedMessageQueue;
pub use seen::EmbeddedSeenMessages;

/// Why a data directory could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Another process, or another open store of this process, holds the directory.
    #[error("data directory {} is in use by another mediator process or store", dir.display())]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// The directory or one of its files could not be made or opened.
    #[error("could not create or open {}", path.display())]
    Io {
        /// What could not be made or opened.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The database file could not be opened or set up (not an SQLite database, damaged,
    /// written by a newer version: the source says which).
    #[error("could not open the database {}", path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// SQLite's error, [`UnknownSchema`] or [`NoWal`].
        #[source]
        source: mediator_store::BoxError,
    },
}

/// The stores of one open data directory. Clones share it; the directory stays locked until
/// the last store (or clone) is dropped.
#[derive(Debug, Clone)]
pub struct EmbeddedStores {
    /// Connection records.
    pub connections: EmbeddedConnectionStore,
    /// Mediation records and keylists.
    pub mediation: EmbeddedMediationStore,
    /// Pickup queues.
    pub queue: EmbeddedMessageQueue,
    /// Live sessions: in memory (see the crate docs).
    pub registry: MemoryLiveSessionRegistry,
    /// The replay window.
    pub seen: EmbeddedSeenMessages,
    /// Push registrations and notification claims.
    pub devices: EmbeddedDeviceStore,
}

impl EmbeddedStores {
    /// Opens the data directory `dir` (made, owner-only, if missing) with these queue limits
    /// and replay window cap (`seen_ids_per_connection`), locking it for this process.
    pub fn open(
        dir: &Path,
        limits: QueueLimits,
        seen_ids_per_connection: usize,
    ) -> Result<Self, OpenError> {
        Self::open_keeping(dir, limits, seen_ids_per_connection, None)
    }

    /// [`EmbeddedStores::open`], with `keep` dropped after the database is closed.
    pub(crate) fn open_keeping(
        dir: &Path,
        limits: QueueLimits,
        seen_ids_per_connection: usize,
        keep: Option<Box<dyn std::any::Any + Send + Sync>>,
    ) -> Result<Self, OpenError> {
        let db = db::Db::open(dir, keep)?;
        Ok(Self {
            connections: EmbeddedConnectionStore::new(Arc::clone(&db)),
            mediation: EmbeddedMediationStore::new(Arc::clone(&db)),
            queue: EmbeddedMessageQueue::new(Arc::clone(&db), limits),
            registry: MemoryLiveSessionRegistry::new(),
            seen: EmbeddedSeenMessages::new(Arc::clone(&db), seen_ids_per_connection),
            devices: EmbeddedDeviceStore::new(db),
        })
    }

    /// The stores as the mediator's handlers hold them.
    pub fn into_stores(self) -> Stores {
        Stores {
            connections: Arc::new(self.connections),
            mediation: Arc::new(self.mediation),
            queue: Arc::new(self.queue),
            registry: Arc::new(self.registry),
            seen: Arc::new(self.seen),
            devices: Arc::new(self.devices),
        }
    }
}

impl From<EmbeddedStores> for Stores {
    fn from(stores: EmbeddedStores) -> Self {
        stores.into_stores()
    }
}
