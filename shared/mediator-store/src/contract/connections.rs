//! Contract checks of [`ConnectionStore`]. Each takes a fresh, empty store.

use std::{sync::Arc, time::Duration};

use didcomm_envelope::VerKey;

use super::random_key;
use crate::{
    unix_ms_now, ConnectionId, ConnectionRecord, ConnectionState, ConnectionStore, Entity,
    HandshakeProtocol, StoreError,
};

/// A complete record with random keys and ids (unfinished: `ResponseSent`, no endpoint). Other
/// crates' tests build theirs from it.
pub fn sample() -> ConnectionRecord {
    let id = ConnectionId::generate();
    ConnectionRecord {
        thread_id: format!("thread-{}", ConnectionId::generate()),
        invitation_id: Some(format!("invitation-{id}")),
        their_label: Some("Holder ü".to_owned()),
        their_did: format!("did:peer:1zQm{}", id.as_str().replace('-', "")),
        their_did_doc: Some(serde_json::json!({
            "@context": ["https://w3id.org/did/v1"],
            "service": [{"type": "did-communication", "serviceEndpoint": "didcomm:transport/queue"}],
            "n": 1.5,
        })),
        their_keys: vec![random_key(), random_key()],
        their_routing_keys: vec![random_key()],
        their_endpoint: None,
        my_did: format!("did:peer:1zQmMediator{}", id.as_str().replace('-', "")),
        my_verkey: random_key(),
        state: ConnectionState::ResponseSent,
        protocol: HandshakeProtocol::DidExchange { minor: 1 },
        created_at_ms: 1_700_000_000_000,
        updated_at_ms: 1_700_000_000_000,
        expires_at_ms: None,
        id,
    }
}

async fn insert(store: &dyn ConnectionStore, record: &ConnectionRecord) {
    store
        .insert(record)
        .await
        .expect("insert of a new record failed");
}

async fn get(store: &dyn ConnectionStore, id: &ConnectionId) -> Option<ConnectionRecord> {
    store.get(id).await.expect("get failed")
}

async fn by_my(store: &dyn ConnectionStore, key: &VerKey) -> Option<ConnectionId> {
    store
        .find_by_my_verkey(key)
        .await
        .expect("find_by_my_verkey failed")
        .map(|r| r.id)
}

async fn by_their(store: &dyn ConnectionStore, key: &VerKey) -> Vec<ConnectionId> {
    store
        .find_by_their_verkey(key)
        .await
        .expect("find_by_their_verkey failed")
        .into_iter()
        .map(|r| r.id)
        .collect()
}

async fn by_thread(store: &dyn ConnectionStore, thread: &str) -> Option<ConnectionId> {
    store
        .find_by_thread(thread)
        .await
        .expect("find_by_thread failed")
        .map(|r| r.id)
}

fn expect_conflict(result: Result<(), StoreError>, what: Entity, op: &str) {
    match result {
        Err(StoreError::Conflict { what: got }) => {
            assert_eq!(got, what, "{op}: Conflict names the wrong identity")
        }
        other => panic!("{op}: expected Conflict on {what}, got {other:?}"),
    }
}

/// A record inserted is read back whole (every field, the DID doc JSON included); an unknown id
/// finds nothing.
pub async fn insert_then_get(store: Arc<dyn ConnectionStore>) {
    let record = sample();
    insert(&*store, &record).await;
    assert_eq!(
        get(&*store, &record.id).await,
        Some(record.clone()),
        "get: record not read back as inserted"
    );

    let mut other = sample();
    other.protocol = HandshakeProtocol::Connections10;
    other.state = ConnectionState::Completed;
    other.their_endpoint = Some("https://agent.example/didcomm".to_owned());
    other.their_did_doc = None;
    other.their_label = None;
    other.invitation_id = None;
    other.their_routing_keys = Vec::new();
    insert(&*store, &other).await;
    assert_eq!(
        get(&*store, &other.id).await,
        Some(other),
        "get: record with optional fields empty not read back"
    );
    assert_eq!(
        get(&*store, &ConnectionId::generate()).await,
        None,
        "get: an unknown id found a record"
    );
}

/// Inserting a second record with an existing id fails with Conflict on the id and changes
/// nothing: the first stays, the second's keys and thread find nothing.
pub async fn insert_conflicts_on_id(store: Arc<dyn ConnectionStore>) {
    let first = sample();
    insert(&*store, &first).await;
    let mut second = sample();
    second.id = first.id.clone();
    expect_conflict(
        store.insert(&second).await,
        Entity::Connection(first.id.clone()),
        "insert with an existing id",
    );
    assert_eq!(
        get(&*store, &first.id).await,
        Some(first.clone()),
        "insert conflict: existing record changed"
    );
    assert_eq!(
        by_my(&*store, &second.my_verkey).await,
        None,
        "insert conflict: the refused record's my_verkey was indexed"
    );
    assert_eq!(
        by_thread(&*store, &second.thread_id).await,
        None,
        "insert conflict: the refused record's thread was indexed"
    );
    assert!(
        by_their(&*store, &second.their_keys[0]).await.is_empty(),
        "insert conflict: the refused record's keys were indexed"
    );
}

/// Inserting a record whose `my_verkey` another record has fails with Conflict on that key and
/// stores nothing.
pub async fn insert_conflicts_on_my_verkey(store: Arc<dyn ConnectionStore>) {
    let first = sample();
    insert(&*store, &first).await;
    let mut second = sample();
    second.my_verkey = first.my_verkey;
    expect_conflict(
        store.insert(&second).await,
        Entity::ConnectionWithMyVerkey(first.my_verkey),
        "insert with another record's my_verkey",
    );
    assert_eq!(
        get(&*store, &second.id).await,
        None,
        "insert conflict on my_verkey: record was stored anyway"
    );
    assert_eq!(
        by_my(&*store, &first.my_verkey).await,
        Some(first.id),
        "insert conflict on my_verkey: index moved"
    );
}

/// Inserting a record whose `thread_id` another record has fails with Conflict on the thread and
/// stores nothing.
pub async fn insert_conflicts_on_thread(store: Arc<dyn ConnectionStore>) {
    let first = sample();
    insert(&*store, &first).await;
    let mut second = sample();
    second.thread_id = first.thread_id.clone();
    expect_conflict(
        store.insert(&second).await,
        Entity::ConnectionWithThread(first.thread_id.clone()),
        "insert with another record's thread_id",
    );
    assert_eq!(
        get(&*store, &second.id).await,
        None,
        "insert conflict on thread: record was stored anyway"
    );
    assert_eq!(
        by_thread(&*store, &first.thread_id).await,
        Some(first.id),
        "insert conflict on thread: index moved"
    );
}

/// `update` replaces the whole record.
pub async fn update_replaces_record(store: Arc<dyn ConnectionStore>) {
    let record = sample();
    insert(&*store, &record).await;
    let mut updated = record.clone();
    updated.state = ConnectionState::Completed;
    updated.their_endpoint = Some("wss://agent.example/ws".to_owned());
    updated.their_label = None;
    updated.their_did_doc = Some(serde_json::json!({"id": "did:example:changed"}));
    updated.updated_at_ms += 5;
    store
        .update(&updated)
        .await
        .expect("update of an existing record failed");
    assert_eq!(
        get(&*store, &record.id).await,
        Some(updated.clone()),
        "update: record not replaced"
    );
    assert_eq!(
        by_my(&*store, &record.my_verkey).await,
        Some(record.id.clone()),
        "update: unchanged my_verkey no longer finds the record"
    );
    assert_eq!(
        store
            .find_by_my_verkey(&record.my_verkey)
            .await
            .expect("find_by_my_verkey failed"),
        Some(updated),
        "find_by_my_verkey: returns the old version after update"
    );
}

/// Updating a record that does not exist fails with NotFound and stores nothing.
pub async fn update_of_missing_record_is_not_found(store: Arc<dyn ConnectionStore>) {
    let record = sample();
    match store.update(&record).await {
        Err(StoreError::NotFound { what }) => assert_eq!(
            what,
            Entity::Connection(record.id.clone()),
            "update of a missing record: NotFound names the wrong record"
        ),
        other => panic!("update of a missing record: expected NotFound, got {other:?}"),
    }
    assert_eq!(
        get(&*store, &record.id).await,
        None,
        "update of a missing record: stored it"
    );
    assert_eq!(
        by_my(&*store, &record.my_verkey).await,
        None,
        "update of a missing record: indexed its my_verkey"
    );
    assert_eq!(
        by_thread(&*store, &record.thread_id).await,
        None,
        "update of a missing record: indexed its thread"
    );
}

/// An update that would take another record's `my_verkey` or `thread_id` fails with Conflict and
/// leaves both records and all their index entries as they were.
pub async fn conflicting_update_changes_nothing(store: Arc<dyn ConnectionStore>) {
    let a = sample();
    let b = sample();
    insert(&*store, &a).await;
    insert(&*store, &b).await;

    let mut a_takes_key = a.clone();
    a_takes_key.my_verkey = b.my_verkey;
    a_takes_key.their_keys = vec![random_key()];
    expect_conflict(
        store.update(&a_takes_key).await,
        Entity::ConnectionWithMyVerkey(b.my_verkey),
        "update to another record's my_verkey",
    );
    let mut a_takes_thread = a.clone();
    a_takes_thread.thread_id = b.thread_id.clone();
    expect_conflict(
        store.update(&a_takes_thread).await,
        Entity::ConnectionWithThread(b.thread_id.clone()),
        "update to another record's thread_id",
    );

    assert_eq!(
        get(&*store, &a.id).await,
        Some(a.clone()),
        "conflicting update: record changed"
    );
    assert_eq!(
        by_my(&*store, &a.my_verkey).await,
        Some(a.id.clone()),
        "conflicting update: own my_verkey index lost"
    );
    assert_eq!(
        by_my(&*store, &b.my_verkey).await,
        Some(b.id.clone()),
        "conflicting update: other's my_verkey index moved"
    );
    assert_eq!(
        by_thread(&*store, &a.thread_id).await,
        Some(a.id.clone()),
        "conflicting update: own thread index lost"
    );
    assert_eq!(
        by_thread(&*store, &b.thread_id).await,
        Some(b.id),
        "conflicting update: other's thread index moved"
    );
    assert_eq!(
        by_their(&*store, &a.their_keys[0]).await,
        [a.id],
        "conflicting update: their_keys index changed"
    );
    assert!(
        by_their(&*store, &a_takes_key.their_keys[0])
            .await
            .is_empty(),
        "conflicting update: the refused version's their_keys were indexed"
    );
}

/// `find_by_my_verkey` finds the record by its key; other keys (its own their_keys, unknown
/// keys) find nothing.
pub async fn find_by_my_verkey(store: Arc<dyn ConnectionStore>) {
    let a = sample();
    let b = sample();
    insert(&*store, &a).await;
    insert(&*store, &b).await;
    assert_eq!(
        by_my(&*store, &a.my_verkey).await,
        Some(a.id.clone()),
        "find_by_my_verkey: record not found"
    );
    assert_eq!(
        by_my(&*store, &b.my_verkey).await,
        Some(b.id),
        "find_by_my_verkey: second record not found"
    );
    assert_eq!(
        by_my(&*store, &a.their_keys[0]).await,
        None,
        "find_by_my_verkey: found a record by one of their_keys"
    );
    assert_eq!(
        by_my(&*store, &random_key()).await,
        None,
        "find_by_my_verkey: an unknown key found a record"
    );
}

/// `find_by_their_verkey` finds the record by each of its `their_keys`, not by its routing keys
/// or `my_verkey`, and an unknown key finds nothing.
pub async fn find_by_their_verkey(store: Arc<dyn ConnectionStore>) {
    let a = sample();
    insert(&*store, &a).await;
    insert(&*store, &sample()).await;
    for key in &a.their_keys {
        assert_eq!(
            by_their(&*store, key).await,
            std::slice::from_ref(&a.id),
            "find_by_their_verkey: not found by one of their_keys"
        );
    }
    assert!(
        by_their(&*store, &a.their_routing_keys[0]).await.is_empty(),
        "find_by_their_verkey: found by a routing key (routing keys are not the client's keys)"
    );
    assert!(
        by_their(&*store, &a.my_verkey).await.is_empty(),
        "find_by_their_verkey: found by my_verkey"
    );
    assert!(
        by_their(&*store, &random_key()).await.is_empty(),
        "find_by_their_verkey: an unknown key found records"
    );
}

/// `find_by_thread` finds the record by its handshake thread; other threads find nothing.
pub async fn find_by_thread(store: Arc<dyn ConnectionStore>) {
    let a = sample();
    insert(&*store, &a).await;
    insert(&*store, &sample()).await;
    assert_eq!(
        by_thread(&*store, &a.thread_id).await,
        Some(a.id.clone()),
        "find_by_thread: record not found"
    );
    assert_eq!(
        by_thread(&*store, "no-such-thread").await,
        None,
        "find_by_thread: an unknown thread found a record"
    );
    let invitation = a.invitation_id.clone().unwrap_or_default();
    assert_eq!(
        by_thread(&*store, &invitation).await,
        None,
        "find_by_thread: found by the invitation id"
    );
}

/// An update that changes `my_verkey`, `their_keys` and `thread_id` moves the index entries: old
/// values find nothing (and are free for other records), kept and new values find the record.
pub async fn update_moves_index_entries(store: Arc<dyn ConnectionStore>) {
    let a = sample();
    insert(&*store, &a).await;
    let mut moved = a.clone();
    moved.my_verkey = random_key();
    moved.thread_id = format!("{}-moved", a.thread_id);
    let (kept, dropped, added) = (a.their_keys[0], a.their_keys[1], random_key());
    moved.their_keys = vec![kept, added];
    store.update(&moved).await.expect("update failed");

    assert_eq!(
        by_my(&*store, &a.my_verkey).await,
        None,
        "update: old my_verkey still finds the record"
    );
    assert_eq!(
        by_my(&*store, &moved.my_verkey).await,
        Some(a.id.clone()),
        "update: new my_verkey does not find the record"
    );
    assert_eq!(
        by_thread(&*store, &a.thread_id).await,
        None,
        "update: old thread_id still finds the record"
    );
    assert_eq!(
        by_thread(&*store, &moved.thread_id).await,
        Some(a.id.clone()),
        "update: new thread_id does not find the record"
    );
    assert!(
        by_their(&*store, &dropped).await.is_empty(),
        "update: a dropped their_key still finds the record"
    );
    assert_eq!(
        by_their(&*store, &kept).await,
        std::slice::from_ref(&a.id),
        "update: a kept their_key no longer finds the record"
    );
    assert_eq!(
        by_their(&*store, &added).await,
        std::slice::from_ref(&a.id),
        "update: a new their_key does not find the record"
    );

    let mut reuse = sample();
    reuse.my_verkey = a.my_verkey;
    reuse.thread_id = a.thread_id.clone();
    store
        .insert(&reuse)
        .await
        .expect("update: my_verkey/thread_id freed by an update are still taken (insert refused)");
    assert_eq!(
        by_my(&*store, &a.my_verkey).await,
        Some(reuse.id),
        "freed my_verkey does not find its new record"
    );
}

/// `delete` removes the record and every index entry, says whether it existed, and the id, key
/// and thread can be used again afterwards.
pub async fn delete_drops_index_entries(store: Arc<dyn ConnectionStore>) {
    let a = sample();
    let b = sample();
    insert(&*store, &a).await;
    insert(&*store, &b).await;
    assert!(
        store.delete(&a.id).await.expect("delete failed"),
        "delete: an existing record reported as absent"
    );
    assert_eq!(
        get(&*store, &a.id).await,
        None,
        "delete: record still there"
    );
    assert_eq!(
        by_my(&*store, &a.my_verkey).await,
        None,
        "delete: my_verkey still finds the record"
    );
    assert_eq!(
        by_thread(&*store, &a.thread_id).await,
        None,
        "delete: thread still finds the record"
    );
    for key in &a.their_keys {
        assert!(
            by_their(&*store, key).await.is_empty(),
            "delete: a their_key still finds the record"
        );
    }
    assert_eq!(
        get(&*store, &b.id).await,
        Some(b.clone()),
        "delete: another record was affected"
    );
    assert_eq!(
        by_my(&*store, &b.my_verkey).await,
        Some(b.id),
        "delete: another record's index was affected"
    );

    assert!(
        !store.delete(&a.id).await.expect("delete failed"),
        "delete: a deleted record reported as existing"
    );
    assert!(
        !store
            .delete(&ConnectionId::generate())
            .await
            .expect("delete failed"),
        "delete: an unknown id reported as existing"
    );
    assert!(
        store.update(&a).await.is_err_and(|e| e.is_not_found()),
        "update after delete: expected NotFound"
    );
    store
        .insert(&a)
        .await
        .expect("insert after delete: id, key or thread still taken");
    assert_eq!(
        by_my(&*store, &a.my_verkey).await,
        Some(a.id),
        "insert after delete: record not indexed again"
    );
}

/// Two connections that share a client key are both found by it, most recently updated first;
/// deleting one leaves the other found.
pub async fn their_key_shared_by_two_connections(store: Arc<dyn ConnectionStore>) {
    let shared = random_key();
    let mut older = sample();
    older.their_keys = vec![shared];
    older.updated_at_ms = 1_000;
    let mut newer = sample();
    newer.their_keys = vec![random_key(), shared];
    newer.updated_at_ms = 2_000;
    insert(&*store, &newer).await;
    insert(&*store, &older).await;
    assert_eq!(
        by_their(&*store, &shared).await,
        [newer.id.clone(), older.id.clone()],
        "find_by_their_verkey: a shared key does not give both records, most recently updated first"
    );

    older.updated_at_ms = 3_000;
    store.update(&older).await.expect("update failed");
    assert_eq!(
        by_their(&*store, &shared).await,
        [older.id.clone(), newer.id.clone()],
        "find_by_their_verkey: order does not follow updated_at_ms after an update"
    );

    store.delete(&older.id).await.expect("delete failed");
    assert_eq!(
        by_their(&*store, &shared).await,
        [newer.id],
        "find_by_their_verkey: deleting one sharer dropped the other's index entry"
    );
}

/// A key given as base58 and the same key given as did:key are one key in every index and every
/// uniqueness check.
pub async fn base58_and_did_key_are_one_key(store: Arc<dyn ConnectionStore>) {
    let my = random_key();
    let theirs = random_key();
    let parse = |text: String| VerKey::parse(&text).expect("parse of a generated key failed");
    let mut record = sample();
    record.my_verkey = parse(my.to_base58());
    record.their_keys = vec![parse(theirs.to_did_key())];
    insert(&*store, &record).await;

    assert_eq!(
        by_my(&*store, &parse(my.to_did_key())).await,
        Some(record.id.clone()),
        "find_by_my_verkey: a key stored from base58 is not found by its did:key"
    );
    assert_eq!(
        by_their(&*store, &parse(theirs.to_base58())).await,
        [record.id.clone()],
        "find_by_their_verkey: a key stored from did:key is not found by its base58"
    );
    let mut clash = sample();
    clash.my_verkey = parse(my.to_did_key());
    assert!(
        store.insert(&clash).await.is_err_and(|e| e.is_conflict()),
        "insert: my_verkey as did:key not seen as the same key as the stored base58 one"
    );
}

/// A sample record that expires at `expires_at_ms`.
fn expiring(expires_at_ms: u64) -> ConnectionRecord {
    ConnectionRecord {
        expires_at_ms: Some(expires_at_ms),
        ..sample()
    }
}

/// Sleeps until the wall clock is past `at_ms` by a margin (the stores' clock is this host's:
/// the process's, or the local Redis server's).
async fn wait_past(at_ms: u64) {
    let target = at_ms + 100;
    let now = unix_ms_now();
    if target > now {
        tokio::time::sleep(Duration::from_millis(target - now)).await;
    }
}

/// What every lookup finds of `record`: by id, by `my_verkey`, by thread, by each of
/// `their_keys` (whether that lookup lists it).
async fn visibility(store: &dyn ConnectionStore, record: &ConnectionRecord) -> [bool; 4] {
    let mut their = true;
    for key in &record.their_keys {
        their &= by_their(store, key).await.contains(&record.id);
    }
    [
        get(store, &record.id).await.is_some(),
        by_my(store, &record.my_verkey).await.as_ref() == Some(&record.id),
        by_thread(store, &record.thread_id).await.as_ref() == Some(&record.id),
        their,
    ]
}

/// A record with an expiry is found by every lookup until then; once its expiry has passed no
/// lookup finds it, its update is `NotFound` and its delete returns `false`. A permanent record
/// next to it stays.
pub async fn expiring_record_exists_until_its_expiry(store: Arc<dyn ConnectionStore>) {
    let at = unix_ms_now() + 400;
    let (a, b) = (expiring(at), expiring(at));
    let permanent = sample();
    for record in [&a, &b, &permanent] {
        insert(&*store, record).await;
    }
    assert_eq!(
        visibility(&*store, &a).await,
        [true; 4],
        "[get, find_by_my_verkey, find_by_thread, find_by_their_verkey]: a record that has not \
         expired yet must be found by each"
    );
    wait_past(at).await;
    for record in [&a, &b] {
        assert_eq!(
            visibility(&*store, record).await,
            [false; 4],
            "[get, find_by_my_verkey, find_by_thread, find_by_their_verkey]: an expired record \
             must be found by none"
        );
    }
    match store.update(&a).await {
        Err(StoreError::NotFound { what }) => assert_eq!(what, Entity::Connection(a.id.clone())),
        other => panic!("update of an expired record: expected NotFound, got {other:?}"),
    }
    assert!(
        !store.delete(&b.id).await.expect("delete failed"),
        "delete of an expired record must return false"
    );
    assert_eq!(
        visibility(&*store, &permanent).await,
        [true; 4],
        "a permanent record must outlive its expiring neighbours"
    );
}

/// Insert treats the id, `my_verkey` and `thread_id` of expired records as free: a new record
/// may take them, and then is what every lookup finds; the expired records are gone with all
/// their index entries (nothing is left for the sweep; their other keys find nothing).
pub async fn insert_takes_identities_of_expired_records(store: Arc<dyn ConnectionStore>) {
    let past = unix_ms_now() - 1_000;
    let same_id = expiring(past);
    let same_keys = expiring(past);
    insert(&*store, &same_id).await;
    insert(&*store, &same_keys).await;
    assert_eq!(visibility(&*store, &same_id).await, [false; 4]);

    let reuse_id = ConnectionRecord {
        id: same_id.id.clone(),
        ..sample()
    };
    store
        .insert(&reuse_id)
        .await
        .expect("insert: the id of an expired record must be free");
    let reuse_keys = ConnectionRecord {
        my_verkey: same_keys.my_verkey,
        thread_id: same_keys.thread_id.clone(),
        ..sample()
    };
    store
        .insert(&reuse_keys)
        .await
        .expect("insert: my_verkey and thread_id of an expired record must be free");
    for record in [&reuse_id, &reuse_keys] {
        assert_eq!(
            visibility(&*store, record).await,
            [true; 4],
            "the record that took an expired record's identities must be found by each lookup"
        );
    }
    assert_eq!(get(&*store, &same_id.id).await, Some(reuse_id));
    for key in same_id.their_keys.iter().chain(&same_keys.their_keys) {
        assert!(
            by_their(&*store, key).await.is_empty(),
            "find_by_their_verkey: a key of a replaced expired record still finds something"
        );
    }
    assert_eq!(
        store.sweep_expired(100).await.expect("sweep failed"),
        0,
        "the expired records must have been removed by the inserts that took their identities"
    );
}

/// Update of an expired record is `NotFound` and does not bring it back; an update may take the
/// `my_verkey` and thread of an expired record; an update can move a record's expiry into the
/// past (then it is gone).
pub async fn update_and_expired_records(store: Arc<dyn ConnectionStore>) {
    let past = unix_ms_now() - 1_000;
    let gone = expiring(past);
    insert(&*store, &gone).await;
    let revived = ConnectionRecord {
        expires_at_ms: None,
        ..gone.clone()
    };
    assert!(
        matches!(
            store.update(&revived).await,
            Err(StoreError::NotFound { .. })
        ),
        "update of an expired record must be NotFound, even one that clears the expiry"
    );
    assert_eq!(visibility(&*store, &gone).await, [false; 4]);

    let blocker = expiring(past);
    insert(&*store, &blocker).await;
    let live = sample();
    insert(&*store, &live).await;
    let moved = ConnectionRecord {
        my_verkey: blocker.my_verkey,
        thread_id: blocker.thread_id.clone(),
        ..live.clone()
    };
    store
        .update(&moved)
        .await
        .expect("update: my_verkey and thread_id of an expired record must be free");
    assert_eq!(visibility(&*store, &moved).await, [true; 4]);

    let ended = ConnectionRecord {
        expires_at_ms: Some(past),
        ..moved.clone()
    };
    store.update(&ended).await.expect("update failed");
    assert_eq!(
        visibility(&*store, &ended).await,
        [false; 4],
        "a record updated to an expiry in the past must be gone"
    );
}

/// An update with `expires_at_ms: None` (the handshake completed) makes the record permanent:
/// it is still there after its former expiry, and the sweep leaves it.
pub async fn update_without_expiry_makes_record_permanent(store: Arc<dyn ConnectionStore>) {
    let at = unix_ms_now() + 400;
    let record = expiring(at);
    insert(&*store, &record).await;
    let completed = ConnectionRecord {
        state: ConnectionState::Completed,
        expires_at_ms: None,
        ..record.clone()
    };
    store
        .update(&completed)
        .await
        .expect("update of a record that has not expired failed");
    wait_past(at).await;
    assert_eq!(
        store.sweep_expired(100).await.expect("sweep failed"),
        0,
        "sweep removed a record made permanent"
    );
    assert_eq!(
        visibility(&*store, &completed).await,
        [true; 4],
        "a record updated with expires_at_ms None must not expire"
    );
    assert_eq!(get(&*store, &record.id).await, Some(completed));
}

/// The sweep removes expired records only, at most `max` a call, with their index entries (their
/// `my_verkey` and thread are free afterwards, their keys find nothing); records that expire
/// later and permanent ones stay.
pub async fn sweep_removes_expired_records_up_to_max(store: Arc<dyn ConnectionStore>) {
    let now = unix_ms_now();
    let expired: Vec<ConnectionRecord> = (1..=3).map(|i| expiring(now - i * 1_000)).collect();
    let later = expiring(now + 3_600_000);
    let permanent = sample();
    for record in expired.iter().chain([&later, &permanent]) {
        insert(&*store, record).await;
    }
    assert_eq!(store.sweep_expired(2).await.expect("sweep failed"), 2);
    assert_eq!(store.sweep_expired(10).await.expect("sweep failed"), 1);
    assert_eq!(store.sweep_expired(10).await.expect("sweep failed"), 0);
    for record in [&later, &permanent] {
        assert_eq!(
            visibility(&*store, record).await,
            [true; 4],
            "sweep removed a record that has not expired"
        );
    }
    for record in &expired {
        for key in &record.their_keys {
            assert!(by_their(&*store, key).await.is_empty());
        }
        let successor = ConnectionRecord {
            id: record.id.clone(),
            my_verkey: record.my_verkey,
            thread_id: record.thread_id.clone(),
            ..sample()
        };
        store
            .insert(&successor)
            .await
            .expect("insert: identities of a swept record must be free");
    }
}

/// Every existing record is listed once by `list_ids`, pages in ascending order of the id's text,
/// each page after the id given; an expired record is not listed. (Other records the store may
/// hold are ignored: only this check's ids are compared.)
pub async fn list_ids_pages_every_record_in_order(store: Arc<dyn ConnectionStore>) {
    let mut mine = Vec::new();
    for _ in 0..7 {
        let record = sample();
        insert(&*store, &record).await;
        mine.push(record.id);
    }
    let expired = ConnectionRecord {
        expires_at_ms: Some(unix_ms_now() - 1),
        ..sample()
    };
    insert(&*store, &expired).await;
    mine.sort();

    let mut listed = Vec::new();
    let mut after: Option<ConnectionId> = None;
    loop {
        let page = store
            .list_ids(after.as_ref(), 3)
            .await
            .expect("list_ids failed");
        assert!(page.len() <= 3, "list_ids: a page longer than its limit");
        for id in &page {
            if let Some(after) = &after {
                assert!(
                    id.as_str() > after.as_str(),
                    "list_ids: {id} listed in a page after {after}, out of order or repeated"
                );
            }
            after = Some(id.clone());
        }
        let last = page.len() < 3;
        listed.extend(page);
        if last {
            break;
        }
    }
    assert!(
        !listed.contains(&expired.id),
        "list_ids: an expired record was listed"
    );
    let listed_mine: Vec<ConnectionId> =
        listed.into_iter().filter(|id| mine.contains(id)).collect();
    assert_eq!(
        listed_mine, mine,
        "list_ids: the pages do not list every record once, in order"
    );
    assert_eq!(
        store.list_ids(None, 0).await.expect("list_ids failed"),
        Vec::<ConnectionId>::new(),
        "list_ids: a page of limit 0 must be empty"
    );
}
