//! The WebSocket sessions this instance holds, by connection.
//!
//! A session is registered for a connection when a message of that connection arrives on the
//! socket asking for a return route (`~transport.return_route` = `all`): from then on, messages
//! for that connection may be written to it. Only this instance knows its sockets; the cluster
//! issue announces them to other instances.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Identifies one WebSocket session on this instance.
pub type SessionId = u64;

/// The write side of one WebSocket session: frames queued here are written by its writer task.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    /// This session's id.
    pub id: SessionId,
    tx: mpsc::Sender<Bytes>,
}

impl SessionHandle {
    /// Creates a handle and the receiver its writer task drains.
    pub fn new(id: SessionId, depth: usize) -> (Self, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(depth);
        (Self { id, tx }, rx)
    }

    /// Queues a frame; false when the session is gone.
    pub async fn send(&self, frame: Bytes) -> bool {
        self.tx.send(frame).await.is_ok()
    }

    /// True while the writer task still runs.
    pub fn is_open(&self) -> bool {
        !self.tx.is_closed()
    }
}

/// Sessions by connection id.
///
/// A std Mutex: held only for map operations, never across an await.
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Vec<SessionHandle>>>>,
}

impl Sessions {
    /// Registers `session` for `connection_id` (once).
    pub fn register(&self, connection_id: &str, session: &SessionHandle) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(connection_id.to_owned()).or_default();
        list.retain(SessionHandle::is_open);
        if !list.iter().any(|s| s.id == session.id) {
            list.push(session.clone());
        }
    }

    /// Removes `session` from every connection it served.
    pub fn unregister(&self, session: SessionId) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, list| {
            list.retain(|s| s.id != session && s.is_open());
            !list.is_empty()
        });
    }

    /// The most recent open session of a connection.
    pub fn latest(&self, connection_id: &str) -> Option<SessionHandle> {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.get(connection_id)
            .and_then(|list| list.iter().rev().find(|s| s.is_open()).cloned())
    }
}
