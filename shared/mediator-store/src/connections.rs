//! Connection records: the DIDComm connections the mediator has with its clients.
//!
//! A record is written by the handshake handlers (DID Exchange 1.0/1.1, Connections 1.0, with the
//! mediator as responder) and read on every inbound message: an envelope is encrypted to the
//! mediator's per-connection key, so [`ConnectionStore::find_by_my_verkey`] is how the mediator
//! finds the connection (and derives that key's private half from its master secret; no private
//! key is ever stored here).
//!
//! The store keeps three unique identities per record (its id, `my_verkey`, `thread_id`) and one
//! shared index (`their_keys`), all keyed by [`VerKey`] values, never by the text form of a key, so
//! that a base58 verkey and its `did:key` are the same key. The store does not interpret states or
//! enforce protocol rules; handlers do that. It does not cascade: deleting a connection leaves its
//! mediation, keylist and queue to their own stores.

use async_trait::async_trait;
use didcomm_envelope::VerKey;
use serde::{Deserialize, Serialize};

use crate::{error::Result, ids::ConnectionId};

/// State of a connection, seen from the mediator, which is always the responder.
///
/// Serialised with the responder state names of RFC 0023 (DID Exchange); Connections 1.0 (RFC
/// 0160) maps onto them: `requested` = request received, `responded` = response sent, `complete`
/// = completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionState {
    /// The client's request was received and accepted; the response is not sent yet.
    RequestReceived,
    /// The response was sent; waiting for DID Exchange `complete` (or, for Connections 1.0, the
    /// client's first message, usually a trust ping).
    ResponseSent,
    /// The connection is usable.
    Completed,
    /// The handshake failed or was abandoned (problem report either way).
    Abandoned,
}

/// The handshake protocol that made the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum HandshakeProtocol {
    /// DID Exchange 1.x (RFC 0023); `minor` is the version the client used (0 or 1).
    DidExchange {
        /// Minor version: `didexchange/1.0` or `didexchange/1.1`.
        minor: u8,
    },
    /// Connections 1.0 (RFC 0160).
    #[serde(rename = "connections-1.0")]
    Connections10,
}

/// One connection between the mediator and a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    /// The record's id (UUID v4).
    pub id: ConnectionId,
    /// Where the handshake is.
    pub state: ConnectionState,
    /// Which handshake made it.
    pub protocol: HandshakeProtocol,
    /// Thread id of the handshake (the request's `@id`, or its `~thread.thid`). Unique across
    /// connections: the handler can look a repeated request up before making a second record.
    pub thread_id: String,
    /// The invitation the client answered (the request's `~thread.pthid`), if any.
    pub invitation_id: Option<String>,
    /// The client's `label`.
    pub their_label: Option<String>,
    /// The client's DID (did:peer, did:key, or an unqualified DID for Connections 1.0).
    pub their_did: String,
    /// The client's resolved DID document, as received or resolved.
    pub their_did_doc: Option<serde_json::Value>,
    /// Recipient keys of the client's DIDComm service: the keys the mediator encrypts to, and the
    /// authcrypt sender keys it accepts from the client. Indexed (shared index, see
    /// [`ConnectionStore::find_by_their_verkey`]).
    pub their_keys: Vec<VerKey>,
    /// Routing keys of the client's DIDComm service (its own mediator's keys). Not indexed: many
    /// connections share them.
    pub their_routing_keys: Vec<VerKey>,
    /// The client's own endpoint, or `None` when it has none (credo's
    /// `didcomm:transport/queue`): then replies go back on a return route or into the queue.
    pub their_endpoint: Option<String>,
    /// The mediator's DID in this connection.
    pub my_did: String,
    /// The mediator's key for this connection. Its private key is derived from the master secret
    /// and the connection id, never stored. Unique across connections.
    pub my_verkey: VerKey,
    /// When the record was made (unix milliseconds). Set by the caller.
    pub created_at_ms: u64,
    /// When the record last changed (unix milliseconds). Set by the caller.
    pub updated_at_ms: u64,
    /// When an unfinished connection stops existing (unix milliseconds), or `None` for a
    /// permanent one. A handshake that is never completed must not hold its keys and thread id
    /// for ever: the handler sets this on the records it makes, and an
    /// [update](ConnectionStore::update) with `None` makes the record permanent (the handshake
    /// completed). See [`ConnectionStore`] for what expiry means to each operation. Absent from
    /// the stored form when `None`, so records stored before this field existed still decode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

impl ConnectionRecord {
    /// Has this record expired at `now_ms` (unix milliseconds)?
    pub fn is_expired_at(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }
}

/// Connection records and their indexes. Used as `Arc<dyn ConnectionStore>`.
///
/// Every method is atomic: a concurrent reader sees a record and its indexes either before or
/// after a write, never half of it. Lookups take [`VerKey`] values, so the text form of a key in
/// a message does not matter.
///
/// # Expiry
///
/// A record whose [`expires_at_ms`](ConnectionRecord::expires_at_ms) is at or before now (unix
/// milliseconds by the store's clock: the process's for the memory backend, the Redis server's
/// for Redis, so instances whose clocks differ agree) no longer exists for any operation:
/// - `get`, `find_by_my_verkey`, `find_by_their_verkey` and `find_by_thread` do not return it;
/// - `insert` treats its id, `my_verkey` and `thread_id` as free: the expired record and all its
///   index entries are removed in the same atomic step as the insert that needs them;
/// - `update` of it is [`StoreError::NotFound`](crate::StoreError::NotFound) (and an update that
///   takes an expired record's `my_verkey` or `thread_id` removes that record, as insert does);
/// - `delete` of it returns `false` (and removes it).
///
/// An update that sets `expires_at_ms: None` makes the record permanent; one that sets another
/// time moves its expiry. Expired records that nothing touches are removed by
/// [`ConnectionStore::sweep_expired`]. A record stored with an expiry already past is stored, and
/// at once does not exist.
#[async_trait]
pub trait ConnectionStore: Send + Sync + std::fmt::Debug {
    /// Stores a new record.
    ///
    /// Fails with [`StoreError::Conflict`](crate::StoreError::Conflict) and writes nothing when
    /// the id, the `my_verkey` or the `thread_id` is already another record's.
    async fn insert(&self, record: &ConnectionRecord) -> Result<()>;

    /// Replaces the record with the same id, moving its index entries: keys and thread id that
    /// the new version no longer has stop finding it.
    ///
    /// Fails with [`StoreError::NotFound`](crate::StoreError::NotFound) when there is no such
    /// record, and with [`StoreError::Conflict`](crate::StoreError::Conflict) when the new
    /// `my_verkey` or `thread_id` is another record's; either way nothing changes.
    async fn update(&self, record: &ConnectionRecord) -> Result<()>;

    /// The record with this id.
    async fn get(&self, id: &ConnectionId) -> Result<Option<ConnectionRecord>>;

    /// The connection whose `my_verkey` is `key`: how an inbound envelope (encrypted to that key)
    /// finds its connection. Hot path: one index lookup.
    async fn find_by_my_verkey(&self, key: &VerKey) -> Result<Option<ConnectionRecord>>;

    /// The connections that list `key` in `their_keys` (an authcrypt sender key identifies its
    /// connection), most recently updated first (ties by id).
    ///
    /// Several connections can share a key: an agent that reuses its DID (a public DID in DID
    /// Exchange, or a reconnecting client) may hold more than one connection with the mediator,
    /// and refusing the second handshake would break it. Usually there is one.
    async fn find_by_their_verkey(&self, key: &VerKey) -> Result<Vec<ConnectionRecord>>;

    /// The connection whose handshake thread is `thread_id`.
    async fn find_by_thread(&self, thread_id: &str) -> Result<Option<ConnectionRecord>>;

    /// Deletes the record and its index entries. Returns whether it existed (an expired record
    /// did not: it is removed, and `false` returned).
    async fn delete(&self, id: &ConnectionId) -> Result<bool>;

    /// Removes up to `max` expired records (see [Expiry](ConnectionStore#expiry)), each with all
    /// its index entries, soonest expired first, and returns how many it removed. For a
    /// background task: expired records are already invisible to every other operation, this
    /// only gives their memory back. Never removes a record that has not expired.
    async fn sweep_expired(&self, max: usize) -> Result<u64>;

    /// Up to `limit` ids of records that exist (not expired), in ascending order of their text
    /// (byte order), starting after `after` (`None`: from the first). A page shorter than `limit`
    /// is the last. For offline and background use only (`mediator copy` walks every record with
    /// it): a backend may read its whole record set to answer, never a request path. Records
    /// written or deleted while the pages are read may or may not be listed.
    async fn list_ids(
        &self,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<Vec<ConnectionId>>;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn states_use_rfc_0023_responder_names() {
        let names: Vec<serde_json::Value> = [
            ConnectionState::RequestReceived,
            ConnectionState::ResponseSent,
            ConnectionState::Completed,
            ConnectionState::Abandoned,
        ]
        .iter()
        .map(|s| serde_json::to_value(s).expect("serialise"))
        .collect();
        assert_eq!(
            names,
            [
                json!("request-received"),
                json!("response-sent"),
                json!("completed"),
                json!("abandoned")
            ]
        );
    }

    #[test]
    fn expiry_is_optional_in_the_stored_form() {
        let stored = json!({
            "id": "c-1",
            "state": "completed",
            "protocol": {"name": "connections-1.0"},
            "thread_id": "t-1",
            "invitation_id": null,
            "their_label": null,
            "their_did": "did:example:1",
            "their_did_doc": null,
            "their_keys": [],
            "their_routing_keys": [],
            "their_endpoint": null,
            "my_did": "did:example:m",
            "my_verkey": "8HH5gYEeNc3z7PYXmd54d4x6qAfCNrqQqEB3nS7Zfu7K",
            "created_at_ms": 1,
            "updated_at_ms": 2,
        });
        let mut record: ConnectionRecord =
            serde_json::from_value(stored.clone()).expect("a record stored without expiry decodes");
        assert_eq!(record.expires_at_ms, None);
        assert_eq!(
            serde_json::to_value(&record).expect("serialise"),
            stored,
            "a permanent record must be stored without the field"
        );
        record.expires_at_ms = Some(5);
        let value = serde_json::to_value(&record).expect("serialise");
        assert_eq!(value["expires_at_ms"], json!(5));
        assert!(record.is_expired_at(5) && !record.is_expired_at(4));
    }

    #[test]
    fn handshake_protocol_round_trips() {
        for (protocol, expected) in [
            (
                HandshakeProtocol::DidExchange { minor: 1 },
                json!({"name": "did-exchange", "minor": 1}),
            ),
            (
                HandshakeProtocol::Connections10,
                json!({"name": "connections-1.0"}),
            ),
        ] {
            let value = serde_json::to_value(protocol).expect("serialise");
            assert_eq!(value, expected);
            let back: HandshakeProtocol = serde_json::from_value(value).expect("deserialise");
            assert_eq!(back, protocol);
        }
    }
}
