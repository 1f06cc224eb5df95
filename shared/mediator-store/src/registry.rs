//! The live-session registry: which instance holds each connection's live session (Pickup 2.0
//! Live Mode), shared by the instances of a cluster so that a Forward taken by any of them can be
//! routed to the one holding the recipient's WebSocket.
//!
//! Records are leases: the holder refreshes them ([`LiveSessionRegistry::refresh`]) while it
//! lives, and the records of an instance that died expire with their lease. Closing is
//! compare-and-delete on the holder (instance *and* session), so a late close from an old
//! instance never removes a newer session held elsewhere; opening replaces any older holder (the
//! newest session of a connection wins). Nothing here wipes other instances' records: there is
//! no such operation. This module holds no routing logic: instances cache and act on it.

use async_trait::async_trait;

use crate::{error::Result, ids::ConnectionId};

/// Who holds a live session: an instance and its session id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LiveHolder {
    /// The instance's id (unique per process, no spaces).
    pub instance: String,
    /// The session's id on that instance.
    pub session: u64,
}

/// The cluster-wide live-session registry. Used as `Arc<dyn LiveSessionRegistry>`.
#[async_trait]
pub trait LiveSessionRegistry: Send + Sync + std::fmt::Debug {
    /// Records `holder` as holding the live session of `connection_id` for `lease_ms`, replacing
    /// any other holder; returns the holder it replaced (whose lease still ran), if any.
    async fn open(
        &self,
        connection_id: &ConnectionId,
        holder: &LiveHolder,
        lease_ms: u64,
    ) -> Result<Option<LiveHolder>>;

    /// Removes the record of `connection_id` only if `holder` (instance and session) holds it;
    /// returns whether it did.
    async fn close(&self, connection_id: &ConnectionId, holder: &LiveHolder) -> Result<bool>;

    /// Extends, to `lease_ms` from now, the lease of every live session `instance` holds; returns
    /// how many.
    async fn refresh(&self, instance: &str, lease_ms: u64) -> Result<usize>;

    /// The holder of `connection_id`'s live session, if its lease runs.
    async fn holder(&self, connection_id: &ConnectionId) -> Result<Option<LiveHolder>>;

    /// Every live session whose lease runs (what an instance reloads its routing cache from).
    async fn all(&self) -> Result<Vec<(ConnectionId, LiveHolder)>>;
}
