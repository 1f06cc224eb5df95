//! Coordinate Mediation 1.0 (Aries RFC 0211): mediation records and keylists.
//!
//! A keylist is the set of recipient keys a client has registered; every Forward names one of
//! them in `to`, and [`MediationStore::connection_for_key`] maps it to the connection whose queue
//! receives the message. A key routes to exactly one connection: registering a key that another
//! connection holds is refused per key ([`KeylistResult::ClientError`]), never silently moved.
//!
//! The store records and answers; it does not enforce the protocol (whether a connection may
//! update its keylist before a grant is the handler's decision) and does not cascade into the
//! connection or queue stores. Keys are [`VerKey`] values: base58 and `did:key` are one key.

use async_trait::async_trait;
use didcomm_envelope::VerKey;
use serde::{Deserialize, Serialize};

use crate::{error::Result, ids::ConnectionId};

/// State of a mediation (RFC 0211: `mediate-request`, then `mediate-grant` or `mediate-deny`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediationState {
    /// `mediate-request` received, not answered yet.
    Requested,
    /// `mediate-grant` sent.
    Granted,
    /// `mediate-deny` sent.
    Denied,
}

/// The mediation of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediationRecord {
    /// The connection that asked for mediation.
    pub connection_id: ConnectionId,
    /// Where the mediation is.
    pub state: MediationState,
    /// The `routing_keys` sent in the grant (the mediator's routing keys for this client).
    pub routing_keys: Vec<VerKey>,
    /// The `endpoint` sent in the grant; `None` until granted.
    pub endpoint: Option<String>,
    /// When the record was made (unix milliseconds). Set by the caller.
    pub created_at_ms: u64,
    /// When the record last changed (unix milliseconds). Set by the caller.
    pub updated_at_ms: u64,
}

/// What a `keylist-update` asks for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeylistAction {
    /// Register the key for this connection.
    Add,
    /// Unregister it.
    Remove,
}

/// One item of a `keylist-update`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeylistUpdate {
    /// The recipient key (`recipient_key` on the wire, base58 or did:key).
    pub key: VerKey,
    /// Add or remove.
    pub action: KeylistAction,
}

/// The `result` of one item in a `keylist-update-response` (RFC 0211 values, in their wire
/// spelling when serialised).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeylistResult {
    /// Added, or removed.
    Success,
    /// Add: already registered to this connection. Remove: not registered to this connection.
    NoChange,
    /// Add: the key is registered to another connection (a key routes to one connection only).
    ClientError,
    /// The backend failed on this item (never produced by the memory backend).
    ServerError,
}

/// The outcome of one [`KeylistUpdate`], in the order of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeylistUpdateOutcome {
    /// The key of the item.
    pub key: VerKey,
    /// The action of the item.
    pub action: KeylistAction,
    /// What happened.
    pub result: KeylistResult,
}

/// One page of a connection's keylist (for `keylist-query` and its `pagination`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeylistPage {
    /// The keys of the page, in registration order.
    pub keys: Vec<VerKey>,
    /// How many keys the whole keylist has.
    pub total: usize,
}

/// Mediation records and keylists. Used as `Arc<dyn MediationStore>`.
#[async_trait]
pub trait MediationStore: Send + Sync + std::fmt::Debug {
    /// Stores the mediation record of `record.connection_id`, replacing any earlier one.
    async fn save(&self, record: &MediationRecord) -> Result<()>;

    /// The mediation record of a connection.
    async fn get(&self, connection_id: &ConnectionId) -> Result<Option<MediationRecord>>;

    /// Deletes the mediation record of a connection and unregisters all its keys. Returns
    /// whether there was a record or a key.
    async fn delete(&self, connection_id: &ConnectionId) -> Result<bool>;

    /// Applies a `keylist-update` for a connection and returns one outcome per item, in order.
    ///
    /// Items apply one after another, as if alone: adding one key twice in a batch gives
    /// `success` then `no_change`. Add: `success`, `no_change` if the key is already this
    /// connection's, `client_error` if it is another connection's (which keeps it). Remove:
    /// `success`, or `no_change` if the key is not this connection's (another connection's
    /// registration is untouched). The batch is atomic: no other operation sees part of it.
    /// `server_error` marks an item a backend could not apply; the memory backend never fails one.
    async fn update_keylist(
        &self,
        connection_id: &ConnectionId,
        updates: &[KeylistUpdate],
    ) -> Result<Vec<KeylistUpdateOutcome>>;

    /// A page of a connection's keylist: up to `limit` keys from position `offset`, in
    /// registration order (the order of the adds; a key removed and added again moves to the
    /// end). `total` is the size of the whole keylist; an `offset` past the end gives no keys.
    async fn keylist(
        &self,
        connection_id: &ConnectionId,
        offset: usize,
        limit: usize,
    ) -> Result<KeylistPage>;

    /// The connection that registered `key`: where a Forward to `key` is queued. Hot path (every
    /// Forward): one index lookup, independent of keylist sizes.
    async fn connection_for_key(&self, key: &VerKey) -> Result<Option<ConnectionId>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(value: impl Serialize) -> String {
        serde_json::to_string(&value).expect("serialise")
    }

    #[test]
    fn wire_spelling_of_rfc_0211_values() {
        assert_eq!(json(KeylistResult::Success), "\"success\"");
        assert_eq!(json(KeylistResult::NoChange), "\"no_change\"");
        assert_eq!(json(KeylistResult::ClientError), "\"client_error\"");
        assert_eq!(json(KeylistResult::ServerError), "\"server_error\"");
        assert_eq!(json(KeylistAction::Add), "\"add\"");
        assert_eq!(json(KeylistAction::Remove), "\"remove\"");
        assert_eq!(json(MediationState::Granted), "\"granted\"");
    }
}
