//! Contract checks of [`MediationStore`]. Each takes a fresh, empty store.

use std::sync::Arc;

use didcomm_envelope::VerKey;

use super::random_key;
use crate::{
    ConnectionId, KeylistAction, KeylistResult, KeylistUpdate, MediationRecord, MediationState,
    MediationStore,
};

fn add(key: VerKey) -> KeylistUpdate {
    KeylistUpdate {
        key,
        action: KeylistAction::Add,
    }
}

fn remove(key: VerKey) -> KeylistUpdate {
    KeylistUpdate {
        key,
        action: KeylistAction::Remove,
    }
}

/// Applies `updates` and returns the results, checking that each outcome repeats its item.
async fn apply(
    store: &dyn MediationStore,
    conn: &ConnectionId,
    updates: &[KeylistUpdate],
) -> Vec<KeylistResult> {
    let outcomes = store
        .update_keylist(conn, updates)
        .await
        .expect("update_keylist failed");
    assert_eq!(
        outcomes.len(),
        updates.len(),
        "update_keylist: not one outcome per item"
    );
    for (outcome, update) in outcomes.iter().zip(updates) {
        assert_eq!(
            (outcome.key, outcome.action),
            (update.key, update.action),
            "update_keylist: outcomes not in the order of the items (key/action differ)"
        );
    }
    outcomes.into_iter().map(|o| o.result).collect()
}

async fn owner(store: &dyn MediationStore, key: &VerKey) -> Option<ConnectionId> {
    store
        .connection_for_key(key)
        .await
        .expect("connection_for_key failed")
}

async fn all_keys(store: &dyn MediationStore, conn: &ConnectionId) -> Vec<VerKey> {
    let page = store
        .keylist(conn, 0, usize::MAX)
        .await
        .expect("keylist failed");
    assert_eq!(
        page.keys.len(),
        page.total,
        "keylist: total differs from the number of keys"
    );
    page.keys
}

/// A saved record is read back; saving again replaces it (request, then grant); an unknown
/// connection has none.
pub async fn save_then_get(store: Arc<dyn MediationStore>) {
    let conn = ConnectionId::generate();
    let mut record = MediationRecord {
        connection_id: conn.clone(),
        state: MediationState::Requested,
        routing_keys: Vec::new(),
        endpoint: None,
        created_at_ms: 1_700_000_000_000,
        updated_at_ms: 1_700_000_000_000,
    };
    store.save(&record).await.expect("save failed");
    assert_eq!(
        store.get(&conn).await.expect("get failed"),
        Some(record.clone()),
        "get: record not read back as saved"
    );

    record.state = MediationState::Granted;
    record.routing_keys = vec![random_key(), random_key()];
    record.endpoint = Some("https://mediator.example/".to_owned());
    record.updated_at_ms += 1;
    store.save(&record).await.expect("second save failed");
    assert_eq!(
        store.get(&conn).await.expect("get failed"),
        Some(record),
        "save: did not replace the earlier record"
    );
    assert_eq!(
        store
            .get(&ConnectionId::generate())
            .await
            .expect("get failed"),
        None,
        "get: an unknown connection has a mediation record"
    );
}

/// Add gives `success` and routes the key to the connection; adding it again gives `no_change`.
pub async fn keylist_add_outcomes(store: Arc<dyn MediationStore>) {
    let conn = ConnectionId::generate();
    let (k1, k2) = (random_key(), random_key());
    assert_eq!(
        apply(&*store, &conn, &[add(k1), add(k2)]).await,
        [KeylistResult::Success, KeylistResult::Success],
        "keylist add: new keys not `success`"
    );
    assert_eq!(
        owner(&*store, &k1).await,
        Some(conn.clone()),
        "connection_for_key: added key does not route to the connection"
    );
    assert_eq!(
        owner(&*store, &k2).await,
        Some(conn.clone()),
        "connection_for_key: second added key does not route"
    );
    assert_eq!(
        apply(&*store, &conn, &[add(k1)]).await,
        [KeylistResult::NoChange],
        "keylist add: a key already this connection's is not `no_change`"
    );
    assert_eq!(
        all_keys(&*store, &conn).await,
        [k1, k2],
        "keylist: wrong keys after adds (or a key listed twice)"
    );
    assert_eq!(
        owner(&*store, &random_key()).await,
        None,
        "connection_for_key: an unknown key routes somewhere"
    );
}

/// Adding a key that another connection registered gives `client_error`; the key stays with
/// its owner and does not enter the second keylist.
pub async fn keylist_add_of_key_owned_by_other_connection_is_client_error(
    store: Arc<dyn MediationStore>,
) {
    let (a, b) = (ConnectionId::generate(), ConnectionId::generate());
    let key = random_key();
    apply(&*store, &a, &[add(key)]).await;
    let other = random_key();
    assert_eq!(
        apply(&*store, &b, &[add(key), add(other)]).await,
        [KeylistResult::ClientError, KeylistResult::Success],
        "keylist add: a key owned by another connection is not `client_error` (or spoilt the rest of the batch)"
    );
    assert_eq!(
        owner(&*store, &key).await,
        Some(a.clone()),
        "keylist add by another connection moved the key's route"
    );
    assert_eq!(
        all_keys(&*store, &a).await,
        [key],
        "keylist add by another connection changed the owner's keylist"
    );
    assert_eq!(
        all_keys(&*store, &b).await,
        [other],
        "keylist: refused key entered the second connection's keylist"
    );
}

/// Remove gives `success` and unroutes the key; removing it again, or a key never registered,
/// gives `no_change`; removing another connection's key gives `no_change` and leaves it with its
/// owner.
pub async fn keylist_remove_outcomes(store: Arc<dyn MediationStore>) {
    let (a, b) = (ConnectionId::generate(), ConnectionId::generate());
    let (k1, k2) = (random_key(), random_key());
    apply(&*store, &a, &[add(k1), add(k2)]).await;
    assert_eq!(
        apply(&*store, &a, &[remove(k1)]).await,
        [KeylistResult::Success],
        "keylist remove: a registered key is not `success`"
    );
    assert_eq!(
        owner(&*store, &k1).await,
        None,
        "connection_for_key: a removed key still routes"
    );
    assert_eq!(
        all_keys(&*store, &a).await,
        [k2],
        "keylist: removed key still listed"
    );
    assert_eq!(
        apply(&*store, &a, &[remove(k1)]).await,
        [KeylistResult::NoChange],
        "keylist remove: an already removed key is not `no_change`"
    );
    assert_eq!(
        apply(&*store, &a, &[remove(random_key())]).await,
        [KeylistResult::NoChange],
        "keylist remove: a never registered key is not `no_change`"
    );
    assert_eq!(
        apply(&*store, &b, &[remove(k2)]).await,
        [KeylistResult::NoChange],
        "keylist remove: another connection's key is not `no_change`"
    );
    assert_eq!(
        owner(&*store, &k2).await,
        Some(a.clone()),
        "keylist remove by another connection unrouted the owner's key"
    );
    assert_eq!(
        all_keys(&*store, &a).await,
        [k2],
        "keylist remove by another connection changed the owner's keylist"
    );
}

/// Items of one batch apply in order, each as if alone; an empty batch gives no outcomes.
pub async fn keylist_batch_applies_in_order(store: Arc<dyn MediationStore>) {
    let conn = ConnectionId::generate();
    let (k1, k2) = (random_key(), random_key());
    assert_eq!(
        apply(
            &*store,
            &conn,
            &[add(k1), add(k1), remove(k1), remove(k1), add(k2)]
        )
        .await,
        [
            KeylistResult::Success,
            KeylistResult::NoChange,
            KeylistResult::Success,
            KeylistResult::NoChange,
            KeylistResult::Success,
        ],
        "update_keylist: items of a batch not applied one after another"
    );
    assert_eq!(
        all_keys(&*store, &conn).await,
        [k2],
        "update_keylist: wrong keylist after a mixed batch"
    );
    assert_eq!(
        owner(&*store, &k1).await,
        None,
        "update_keylist: a key added then removed in one batch still routes"
    );
    assert!(
        apply(&*store, &conn, &[]).await.is_empty(),
        "update_keylist: an empty batch gave outcomes"
    );
}

/// Pages follow registration order and add up to the whole keylist; `total` is always the whole
/// size; offsets past the end and a limit of 0 give no keys; a key removed and added again moves
/// to the end.
pub async fn keylist_paging(store: Arc<dyn MediationStore>) {
    let conn = ConnectionId::generate();
    let keys: Vec<VerKey> = (0..25).map(|_| random_key()).collect();
    let updates: Vec<KeylistUpdate> = keys.iter().copied().map(add).collect();
    apply(&*store, &conn, &updates[..12]).await;
    apply(&*store, &conn, &updates[12..]).await;

    let page = |offset, limit| {
        let store = store.clone();
        let conn = conn.clone();
        async move {
            store
                .keylist(&conn, offset, limit)
                .await
                .expect("keylist failed")
        }
    };
    let mut collected = Vec::new();
    for (offset, expected_len) in [(0, 10), (10, 10), (20, 5)] {
        let p = page(offset, 10).await;
        assert_eq!(
            p.total, 25,
            "keylist page at {offset}: total is not the whole keylist size"
        );
        assert_eq!(
            p.keys.len(),
            expected_len,
            "keylist page at {offset}: wrong number of keys"
        );
        collected.extend(p.keys);
    }
    assert_eq!(
        collected, keys,
        "keylist pages: not the keys in registration order"
    );
    let end = page(25, 10).await;
    assert!(
        end.keys.is_empty() && end.total == 25,
        "keylist: offset at the end gave keys or a wrong total"
    );
    let past = page(1000, 10).await;
    assert!(
        past.keys.is_empty() && past.total == 25,
        "keylist: offset past the end gave keys or a wrong total"
    );
    let none = page(0, 0).await;
    assert!(
        none.keys.is_empty() && none.total == 25,
        "keylist: limit 0 gave keys or a wrong total"
    );

    apply(&*store, &conn, &[remove(keys[3]), add(keys[3])]).await;
    let mut expected: Vec<VerKey> = keys.iter().copied().filter(|k| *k != keys[3]).collect();
    expected.push(keys[3]);
    assert_eq!(
        all_keys(&*store, &conn).await,
        expected,
        "keylist: a key removed and added again did not move to the end"
    );

    let empty = store
        .keylist(&ConnectionId::generate(), 0, 10)
        .await
        .expect("keylist failed");
    assert!(
        empty.keys.is_empty() && empty.total == 0,
        "keylist: a connection without keys has keys"
    );
}

/// Two connections' keylists are separate; each key routes to its own connection.
pub async fn keylists_isolated_between_connections(store: Arc<dyn MediationStore>) {
    let (a, b) = (ConnectionId::generate(), ConnectionId::generate());
    let (ka, kb1, kb2) = (random_key(), random_key(), random_key());
    apply(&*store, &a, &[add(ka)]).await;
    apply(&*store, &b, &[add(kb1), add(kb2)]).await;
    assert_eq!(
        all_keys(&*store, &a).await,
        [ka],
        "keylist: first connection's keylist mixed with another's"
    );
    assert_eq!(
        all_keys(&*store, &b).await,
        [kb1, kb2],
        "keylist: second connection's keylist mixed with another's"
    );
    assert_eq!(
        owner(&*store, &ka).await,
        Some(a),
        "connection_for_key: key routes to the wrong connection"
    );
    assert_eq!(
        owner(&*store, &kb2).await,
        Some(b),
        "connection_for_key: key routes to the wrong connection"
    );
}

/// `delete` removes the record and unregisters every key of the connection, which another
/// connection can then add; other connections are untouched; deleting nothing says so.
pub async fn delete_releases_keys(store: Arc<dyn MediationStore>) {
    let (a, b) = (ConnectionId::generate(), ConnectionId::generate());
    let (k1, k2, kb) = (random_key(), random_key(), random_key());
    store
        .save(&MediationRecord {
            connection_id: a.clone(),
            state: MediationState::Granted,
            routing_keys: Vec::new(),
            endpoint: Some("https://mediator.example/".to_owned()),
            created_at_ms: 1,
            updated_at_ms: 1,
        })
        .await
        .expect("save failed");
    apply(&*store, &a, &[add(k1), add(k2)]).await;
    apply(&*store, &b, &[add(kb)]).await;

    assert!(
        store.delete(&a).await.expect("delete failed"),
        "delete: an existing mediation reported as absent"
    );
    assert_eq!(
        store.get(&a).await.expect("get failed"),
        None,
        "delete: record still there"
    );
    assert_eq!(
        owner(&*store, &k1).await,
        None,
        "delete: a key of the deleted mediation still routes"
    );
    assert!(
        all_keys(&*store, &a).await.is_empty(),
        "delete: keylist still has keys"
    );
    assert_eq!(
        owner(&*store, &kb).await,
        Some(b.clone()),
        "delete: another connection's key was unrouted"
    );
    assert_eq!(
        apply(&*store, &b, &[add(k2)]).await,
        [KeylistResult::Success],
        "delete: a released key cannot be added by another connection"
    );
    assert!(
        !store.delete(&a).await.expect("delete failed"),
        "delete: a deleted mediation reported as existing"
    );
}

/// A key given as base58 and the same key given as did:key are one key in keylists and routing.
pub async fn base58_and_did_key_are_one_key(store: Arc<dyn MediationStore>) {
    let conn = ConnectionId::generate();
    let key = random_key();
    let parse = |text: String| VerKey::parse(&text).expect("parse of a generated key failed");
    let (as_base58, as_did_key) = (parse(key.to_base58()), parse(key.to_did_key()));
    apply(&*store, &conn, &[add(as_did_key)]).await;
    assert_eq!(
        owner(&*store, &as_base58).await,
        Some(conn.clone()),
        "connection_for_key: key added as did:key not found by base58"
    );
    assert_eq!(
        apply(&*store, &conn, &[add(as_base58)]).await,
        [KeylistResult::NoChange],
        "keylist add: the base58 form of a key added as did:key is not `no_change`"
    );
    assert_eq!(
        all_keys(&*store, &conn).await.len(),
        1,
        "keylist: one key in two forms listed twice"
    );
    assert_eq!(
        apply(&*store, &conn, &[remove(as_base58)]).await,
        [KeylistResult::Success],
        "keylist remove: base58 form did not remove a key added as did:key"
    );
    assert_eq!(
        owner(&*store, &as_did_key).await,
        None,
        "connection_for_key: key still routes after removal by its other form"
    );
}

/// Many connections adding the same key at once: exactly one gets `success` and the key routes to
/// it; all others get `client_error`.
pub async fn concurrent_adds_of_one_key_have_one_winner(store: Arc<dyn MediationStore>) {
    let key = random_key();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let store = store.clone();
        tasks.spawn(async move {
            let conn = ConnectionId::generate();
            let outcomes = store
                .update_keylist(&conn, &[add(key)])
                .await
                .expect("concurrent update_keylist failed");
            (conn, outcomes.first().map(|o| o.result))
        });
    }
    let mut winners = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (conn, result) = done.expect("an updating task panicked");
        match result {
            Some(KeylistResult::Success) => winners.push(conn),
            Some(KeylistResult::ClientError) => {}
            other => panic!("concurrent keylist add: unexpected outcome {other:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "concurrent keylist add: not exactly one connection won the key"
    );
    assert_eq!(
        owner(&*store, &key).await,
        winners.pop(),
        "concurrent keylist add: key routes to a loser"
    );
}
