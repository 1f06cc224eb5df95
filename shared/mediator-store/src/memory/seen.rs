//! [`SeenMessages`] in memory.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use async_trait::async_trait;

use super::lock;
use crate::{
    error::Result,
    ids::ConnectionId,
    seen::{stored_message_id, SeenMessages, MAX_WINDOW_MS},
    unix_ms_now,
};

/// Recently seen message ids in memory, at most `max_per_connection` per connection. Clones share
/// the same ids.
#[derive(Debug, Clone)]
pub struct MemorySeenMessages {
    // std Mutex: held only inside a synchronous block, never across an await (see module docs).
    state: Arc<Mutex<State>>,
    max_per_connection: usize,
}

/// Where an entry sits in the expiry orders: its expiry (unix ms), then a sequence number that
/// breaks ties by recording order.
type Slot = (u64, u64);

#[derive(Debug, Default)]
struct State {
    connections: HashMap<ConnectionId, Remembered>,
    /// Every entry of every connection by expiry, so that each call drops what expired
    /// everywhere: a connection that falls silent does not keep its ids.
    expiry: BTreeMap<Slot, (ConnectionId, String)>,
    next_seq: u64,
}

/// One connection's ids. Dropped when it empties, so a connection with nothing remembered holds
/// nothing.
#[derive(Debug, Default)]
struct Remembered {
    ids: HashMap<String, Slot>,
    /// The same entries by expiry: the cap forgets from the front.
    order: BTreeMap<Slot, String>,
}

impl MemorySeenMessages {
    /// An empty store that remembers at most `max_per_connection` ids per connection.
    pub fn new(max_per_connection: usize) -> Self {
        Self {
            state: Arc::default(),
            max_per_connection,
        }
    }
}

impl State {
    /// Drops every entry that has expired at `now`.
    fn prune(&mut self, now: u64) {
        while let Some(entry) = self.expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (slot, (connection, id)) = entry.remove_entry();
            self.forget(&connection, &id, slot);
        }
    }

    /// Removes one entry from its connection (not from `expiry`), dropping the connection when it
    /// empties.
    fn forget(&mut self, connection: &ConnectionId, id: &str, slot: Slot) {
        if let Some(remembered) = self.connections.get_mut(connection) {
            remembered.ids.remove(id);
            remembered.order.remove(&slot);
            if remembered.ids.is_empty() {
                self.connections.remove(connection);
            }
        }
    }
}

#[async_trait]
impl SeenMessages for MemorySeenMessages {
    async fn first_sighting(
        &self,
        connection_id: &ConnectionId,
        message_id: &str,
        window_ms: u64,
    ) -> Result<bool> {
        let id = stored_message_id(message_id);
        let now = unix_ms_now();
        let mut state = lock(&self.state, "seen messages")?;
        state.prune(now);
        if state
            .connections
            .get(connection_id)
            .is_some_and(|r| r.ids.contains_key(&id))
        {
            return Ok(false);
        }
        let slot = (
            now.saturating_add(window_ms.min(MAX_WINDOW_MS)),
            state.next_seq,
        );
        state.next_seq += 1;
        state
            .expiry
            .insert(slot, (connection_id.clone(), id.clone()));
        let remembered = state.connections.entry(connection_id.clone()).or_default();
        remembered.ids.insert(id.clone(), slot);
        remembered.order.insert(slot, id);
        let mut over = Vec::new();
        while remembered.ids.len() > self.max_per_connection {
            let Some((slot, id)) = remembered.order.pop_first() else {
                break;
            };
            remembered.ids.remove(&id);
            over.push(slot);
        }
        if remembered.ids.is_empty() {
            state.connections.remove(connection_id);
        }
        for slot in over {
            state.expiry.remove(&slot);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expired ids are dropped by any call, whichever connection it is for: a connection that
    /// falls silent leaves nothing behind.
    #[tokio::test]
    async fn a_connection_with_nothing_remembered_holds_nothing() {
        let store = MemorySeenMessages::new(10);
        let (quiet, busy) = (ConnectionId::generate(), ConnectionId::generate());
        for i in 0..3 {
            assert!(store
                .first_sighting(&quiet, &format!("m{i}"), 0)
                .await
                .expect("first_sighting failed"));
        }
        assert!(store
            .first_sighting(&busy, "m", 60_000)
            .await
            .expect("first_sighting failed"));
        let state = store.state.lock().expect("lock");
        assert!(
            !state.connections.contains_key(&quiet),
            "a connection whose ids all expired still holds an entry"
        );
        assert_eq!(state.expiry.len(), 1, "expired ids are still held");
    }

    /// Ids over the cap are forgotten from the memory as well as from the answers.
    #[tokio::test]
    async fn the_cap_bounds_what_is_held() {
        let store = MemorySeenMessages::new(2);
        let connection = ConnectionId::generate();
        for i in 0..50 {
            store
                .first_sighting(&connection, &format!("m{i}"), 60_000)
                .await
                .expect("first_sighting failed");
        }
        let state = store.state.lock().expect("lock");
        assert_eq!(state.expiry.len(), 2);
        assert_eq!(state.connections[&connection].ids.len(), 2);
        assert_eq!(state.connections[&connection].order.len(), 2);
    }
}
