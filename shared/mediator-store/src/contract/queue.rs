//! Contract checks of [`MessageQueue`]. Each takes a fresh, empty store.

use std::{collections::HashSet, future::Future, pin::Pin, sync::Arc};

use bytes::Bytes;
use didcomm_envelope::VerKey;

use super::random_key;
use crate::{
    unix_ms_now, ConnectionId, MessageId, MessageQueue, QueueCap, QueueLimits, QueueStatus,
    QueueTotals, QueuedMessage, StoreError,
};

async fn add(
    store: &dyn MessageQueue,
    conn: &ConnectionId,
    keys: &[VerKey],
    payload: &[u8],
) -> MessageId {
    store
        .add(conn, keys, Bytes::copy_from_slice(payload))
        .await
        .expect("add failed")
}

async fn take_all(store: &dyn MessageQueue, conn: &ConnectionId) -> Vec<QueuedMessage> {
    store
        .take(conn, usize::MAX, None)
        .await
        .expect("take failed")
}

async fn status(
    store: &dyn MessageQueue,
    conn: &ConnectionId,
    key: Option<&VerKey>,
) -> QueueStatus {
    store.status(conn, key).await.expect("status failed")
}

fn ids(messages: &[QueuedMessage]) -> Vec<MessageId> {
    messages.iter().map(|m| m.id.clone()).collect()
}

/// A message added is read back by `get` with all its fields; `get` under another connection or
/// with an unknown id finds nothing; ids are distinct.
pub async fn add_then_get(store: Arc<dyn MessageQueue>) {
    let (conn, other) = (ConnectionId::generate(), ConnectionId::generate());
    let keys = [random_key(), random_key()];
    let id = add(&*store, &conn, &keys, br#"{"protected":"x"}"#).await;
    let second = add(&*store, &conn, &keys[..1], b"{}").await;
    assert_ne!(id, second, "add: two messages got the same id");

    let got = store
        .get(&conn, &id)
        .await
        .expect("get failed")
        .expect("get: a message just added is not found");
    assert_eq!(got.id, id, "get: returned a message with another id");
    assert_eq!(
        got.connection_id, conn,
        "get: message has the wrong connection_id"
    );
    assert_eq!(
        got.recipient_keys, keys,
        "get: recipient_keys not kept as given"
    );
    assert_eq!(
        &got.payload[..],
        br#"{"protected":"x"}"#,
        "get: payload changed"
    );

    assert_eq!(
        store.get(&other, &id).await.expect("get failed"),
        None,
        "get: a message was found under another connection's id"
    );
    assert_eq!(
        store
            .get(&conn, &MessageId::generate())
            .await
            .expect("get failed"),
        None,
        "get: an unknown message id found something"
    );
}

/// Payloads come back exactly as added: JSON with whitespace and non-ASCII text, arbitrary
/// bytes (not valid UTF-8), and a large payload.
pub async fn payload_kept_byte_for_byte(store: Arc<dyn MessageQueue>) {
    let conn = ConnectionId::generate();
    let key = random_key();
    let json = "{ \"protected\" : \"eyJ\",\n\t\"ciphertext\":\"ü€𝄞\" }\r\n"
        .as_bytes()
        .to_vec();
    let binary: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let large: Vec<u8> = (0..512 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let payloads = [json, binary, large];
    let mut added = Vec::new();
    for payload in &payloads {
        added.push(add(&*store, &conn, &[key], payload).await);
    }
    for (id, payload) in added.iter().zip(&payloads) {
        let got = store
            .get(&conn, id)
            .await
            .expect("get failed")
            .expect("get: a payload message is missing");
        assert!(
            got.payload[..] == payload[..],
            "get: payload of {} bytes not returned byte for byte",
            payload.len()
        );
    }
    let taken = take_all(&*store, &conn).await;
    assert_eq!(
        taken.len(),
        payloads.len(),
        "take: wrong number of messages"
    );
    for (message, payload) in taken.iter().zip(&payloads) {
        assert!(
            message.payload[..] == payload[..],
            "take: payload of {} bytes not returned byte for byte",
            payload.len()
        );
    }
}

/// Messages come out in arrival order, also when many arrive in the same millisecond, and their
/// `received_at_ms` never decreases along the queue.
pub async fn fifo_order(store: Arc<dyn MessageQueue>) {
    let conn = ConnectionId::generate();
    let key = random_key();
    let mut added = Vec::new();
    for i in 0..200 {
        added.push(add(&*store, &conn, &[key], format!("{{\"n\":{i}}}").as_bytes()).await);
    }
    let taken = take_all(&*store, &conn).await;
    assert_eq!(
        ids(&taken),
        added,
        "take: messages not in arrival (FIFO) order"
    );
    assert!(
        taken
            .windows(2)
            .all(|w| w[0].received_at_ms <= w[1].received_at_ms),
        "received_at_ms decreases along the queue"
    );
}

/// `take` leaves the messages in the queue: a second take returns the same, status still counts
/// them, `get` still finds them.
pub async fn take_does_not_remove(store: Arc<dyn MessageQueue>) {
    let conn = ConnectionId::generate();
    let key = random_key();
    for i in 0..3 {
        add(&*store, &conn, &[key], format!("m{i}").as_bytes()).await;
    }
    let first = take_all(&*store, &conn).await;
    let second = take_all(&*store, &conn).await;
    assert_eq!(first.len(), 3, "take: wrong number of messages");
    assert_eq!(
        first, second,
        "take: a second take differs (take removed or changed messages)"
    );
    assert_eq!(
        status(&*store, &conn, None).await.message_count,
        3,
        "status: count changed after take (take removed messages)"
    );
    for message in &first {
        assert!(
            store
                .get(&conn, &message.id)
                .await
                .expect("get failed")
                .is_some(),
            "get: a taken message is gone (take removed it)"
        );
    }
}

/// `take` returns at most `limit` messages, the oldest ones; `0` gives none; a limit above the
/// count gives all; an empty or unknown queue gives none.
pub async fn take_limit(store: Arc<dyn MessageQueue>) {
    let conn = ConnectionId::generate();
    let key = random_key();
    let mut added = Vec::new();
    for i in 0..10 {
        added.push(add(&*store, &conn, &[key], format!("m{i}").as_bytes()).await);
    }
    let take = |limit| {
        let store = store.clone();
        let conn = conn.clone();
        async move { store.take(&conn, limit, None).await.expect("take failed") }
    };
    assert_eq!(
        ids(&take(3).await),
        added[..3],
        "take(limit 3): not the 3 oldest messages"
    );
    assert!(take(0).await.is_empty(), "take(limit 0): returned messages");
    assert_eq!(
        ids(&take(100).await),
        added,
        "take(limit 100) of 10: not all 10 in order"
    );
    assert_eq!(
        ids(&take(10).await),
        added,
        "take(limit 10) of 10: not all 10 in order"
    );
    assert!(
        store
            .take(&ConnectionId::generate(), 10, None)
            .await
            .expect("take failed")
            .is_empty(),
        "take: an unknown connection's queue returned messages"
    );
}

/// With a recipient key, `take` returns only messages that carry it (also among several keys),
/// oldest first, and the limit counts only those.
pub async fn take_filters_by_recipient_key(store: Arc<dyn MessageQueue>) {
    let conn = ConnectionId::generate();
    let (k1, k2, k3) = (random_key(), random_key(), random_key());
    let m1 = add(&*store, &conn, &[k1], b"1").await;
    let m2 = add(&*store, &conn, &[k2], b"2").await;
    let m3 = add(&*store, &conn, &[k2, k1], b"3").await;
    let m4 = add(&*store, &conn, &[k1], b"4").await;
    let _m5 = add(&*store, &conn, &[k3], b"5").await;

    let take = |limit, key: VerKey| {
        let store = store.clone();
        let conn = conn.clone();
        async move {
            ids(&store
                .take(&conn, limit, Some(&key))
                .await
                .expect("take failed"))
        }
    };
    assert_eq!(
        take(10, k1).await,
        [m1.clone(), m3.clone(), m4],
        "take(recipient_key): wrong messages or order for a key (one message carries two keys)"
    );
    assert_eq!(
        take(2, k1).await,
        [m1, m3.clone()],
        "take(recipient_key, limit 2): limit not applied to the matching messages"
    );
    assert_eq!(
        take(10, k2).await,
        [m2, m3],
        "take(recipient_key): wrong messages for the second key"
    );
    assert!(
        take(10, random_key()).await.is_empty(),
        "take(recipient_key): a key no message carries returned messages"
    );
}

/// `status` counts messages and payload bytes and gives the receive times of the oldest and
/// newest; it follows removals; an empty queue has zero counts and no times.
pub async fn status_figures(store: Arc<dyn MessageQueue>) {
    let conn = ConnectionId::generate();
    let key = random_key();
    assert_eq!(
        status(&*store, &conn, None).await,
        QueueStatus::default(),
        "status: an empty queue does not have zero counts and no times"
    );
    let a = add(&*store, &conn, &[key], &[b'a'; 10]).await;
    let b = add(&*store, &conn, &[key], &[b'b'; 20]).await;
    let c = add(&*store, &conn, &[key], &[b'c'; 30]).await;
    let taken = take_all(&*store, &conn).await;
    let times: Vec<u64> = taken.iter().map(|m| m.received_at_ms).collect();

    let full = status(&*store, &conn, None).await;
    assert_eq!(full.message_count, 3, "status: wrong message_count");
    assert_eq!(
        full.total_bytes, 60,
        "status: total_bytes is not the sum of payload lengths"
    );
    assert_eq!(
        full.oldest_received_ms,
        Some(times[0]),
        "status: oldest_received_ms is not the first message's"
    );
    assert_eq!(
        full.newest_received_ms,
        Some(times[2]),
        "status: newest_received_ms is not the last message's"
    );

    assert_eq!(
        store.remove(&conn, &[a]).await.expect("remove failed"),
        1,
        "remove: did not remove one"
    );
    let after = status(&*store, &conn, None).await;
    assert_eq!(
        after.message_count, 2,
        "status: count not updated by remove"
    );
    assert_eq!(
        after.total_bytes, 50,
        "status: total_bytes not updated by remove"
    );
    assert_eq!(
        after.oldest_received_ms,
        Some(times[1]),
        "status: oldest_received_ms not updated by remove"
    );
    assert_eq!(
        after.newest_received_ms,
        Some(times[2]),
        "status: newest_received_ms changed by removing the oldest"
    );

    store.remove(&conn, &[b, c]).await.expect("remove failed");
    assert_eq!(
        status(&*store, &conn, None).await,
        QueueStatus::default(),
        "status: a queue emptied by remove does not have zero counts and no times"
    );
}

/// With a recipient key, `status` covers only messages that carry it.
pub async fn status_filters_by_recipient_key(store: Arc<dyn MessageQueue>) {
    let conn = ConnectionId::generate();
    let (k1, k2) = (random_key(), random_key());
    add(&*store, &conn, &[k1], &[0; 5]).await;
    add(&*store, &conn, &[k2], &[0; 7]).await;
    add(&*store, &conn, &[k1, k2], &[0; 11]).await;
    add(&*store, &conn, &[k2], &[0; 13]).await;
    let taken = take_all(&*store, &conn).await;

    let s1 = status(&*store, &conn, Some(&k1)).await;
    assert_eq!(
        (s1.message_count, s1.total_bytes),
        (2, 16),
        "status(recipient_key): count/bytes not limited to messages carrying the key"
    );
    assert_eq!(
        s1.oldest_received_ms,
        Some(taken[0].received_at_ms),
        "status(recipient_key): wrong oldest"
    );
    assert_eq!(
        s1.newest_received_ms,
        Some(taken[2].received_at_ms),
        "status(recipient_key): wrong newest"
    );

    let s2 = status(&*store, &conn, Some(&k2)).await;
    assert_eq!(
        (s2.message_count, s2.total_bytes),
        (3, 31),
        "status(recipient_key): wrong figures for the second key"
    );
    assert_eq!(
        s2.oldest_received_ms,
        Some(taken[1].received_at_ms),
        "status(recipient_key): wrong oldest for the second key"
    );

    assert_eq!(
        status(&*store, &conn, Some(&random_key())).await,
        QueueStatus::default(),
        "status(recipient_key): a key no message carries has non-zero figures"
    );
}

/// `remove` removes exactly the listed ids of the connection and counts them: not twice for a
/// repeated id, not at all for unknown or already removed ids; the rest stay in order.
pub async fn remove_exact_ids(store: Arc<dyn MessageQueue>) {
    let conn = ConnectionId::generate();
    let key = random_key();
    let mut added = Vec::new();
    for i in 0..5 {
        added.push(add(&*store, &conn, &[key], format!("m{i}").as_bytes()).await);
    }
    let remove = |ids: Vec<MessageId>| {
        let store = store.clone();
        let conn = conn.clone();
        async move { store.remove(&conn, &ids).await.expect("remove failed") }
    };
    assert_eq!(
        remove(vec![added[1].clone(), added[3].clone()]).await,
        2,
        "remove: wrong count for two ids"
    );
    assert_eq!(
        ids(&take_all(&*store, &conn).await),
        [added[0].clone(), added[2].clone(), added[4].clone()],
        "remove: did not remove exactly the listed ids (or reordered the rest)"
    );
    assert_eq!(
        remove(vec![added[1].clone()]).await,
        0,
        "remove: an already removed id counted again"
    );
    assert_eq!(
        remove(vec![MessageId::generate()]).await,
        0,
        "remove: an unknown id counted"
    );
    assert_eq!(
        remove(vec!["not-a-uuid".into()]).await,
        0,
        "remove: an arbitrary text id counted"
    );
    assert_eq!(
        remove(Vec::new()).await,
        0,
        "remove: an empty list counted something"
    );
    assert_eq!(
        remove(vec![added[0].clone(), added[0].clone()]).await,
        1,
        "remove: an id listed twice counted twice"
    );
    assert_eq!(
        status(&*store, &conn, None).await.message_count,
        2,
        "remove: wrong count left after removals"
    );
}

/// `remove` under one connection with another connection's message ids removes nothing of the
/// other connection, also when mixed with the caller's own ids.
pub async fn remove_ignores_other_connections_ids(store: Arc<dyn MessageQueue>) {
    let (a, b) = (ConnectionId::generate(), ConnectionId::generate());
    let key = random_key();
    let a1 = add(&*store, &a, &[key], b"a1").await;
    let b1 = add(&*store, &b, &[key], b"b1").await;

    assert_eq!(
        store
            .remove(&a, std::slice::from_ref(&b1))
            .await
            .expect("remove failed"),
        0,
        "remove: another connection's id counted as removed"
    );
    assert!(
        store.get(&b, &b1).await.expect("get failed").is_some(),
        "remove: removed another connection's message"
    );
    assert_eq!(
        store
            .remove(&a, &[a1, b1.clone()])
            .await
            .expect("remove failed"),
        1,
        "remove: mixed own/other ids not counted as one"
    );
    assert!(
        store.get(&b, &b1).await.expect("get failed").is_some(),
        "remove: removed another connection's message listed with an own id"
    );
    assert_eq!(
        status(&*store, &b, None).await.message_count,
        1,
        "remove: other connection's count changed"
    );
    assert_eq!(
        status(&*store, &a, None).await.message_count,
        0,
        "remove: own message not removed"
    );
}

/// Two connections' queues do not see each other, even with the same recipient key.
pub async fn connections_isolated(store: Arc<dyn MessageQueue>) {
    let (a, b) = (ConnectionId::generate(), ConnectionId::generate());
    let key = random_key();
    let mut in_a = Vec::new();
    for i in 0..3 {
        in_a.push(add(&*store, &a, &[key], format!("a{i}").as_bytes()).await);
    }
    let mut in_b = Vec::new();
    for i in 0..2 {
        in_b.push(add(&*store, &b, &[key], format!("b{i}-longer").as_bytes()).await);
    }
    let taken_a = take_all(&*store, &a).await;
    assert_eq!(
        ids(&taken_a),
        in_a,
        "take: a connection's queue holds other messages than its own"
    );
    assert!(
        taken_a.iter().all(|m| m.connection_id == a),
        "take: a message carries another connection_id"
    );
    assert_eq!(
        ids(&take_all(&*store, &b).await),
        in_b,
        "take: second connection's queue is wrong"
    );
    assert_eq!(
        ids(&store.take(&a, 10, Some(&key)).await.expect("take failed")),
        in_a,
        "take(recipient_key): a key shared by two connections mixed their queues"
    );
    let sa = status(&*store, &a, None).await;
    let sb = status(&*store, &b, Some(&key)).await;
    assert_eq!(
        (sa.message_count, sa.total_bytes),
        (3, 6),
        "status: figures include another connection's messages"
    );
    assert_eq!(
        (sb.message_count, sb.total_bytes),
        (2, 18),
        "status(recipient_key): figures mix connections"
    );
    assert_eq!(
        store.get(&b, &in_a[0]).await.expect("get failed"),
        None,
        "get: found a message under the wrong connection"
    );
}

/// Many tasks adding at once: every message is stored exactly once, with distinct ids, and each
/// task's messages keep its order.
pub async fn concurrent_adds_all_present_once(store: Arc<dyn MessageQueue>) {
    const TASKS: usize = 32;
    const EACH: usize = 25;
    let conn = ConnectionId::generate();
    let key = random_key();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let store = store.clone();
        let conn = conn.clone();
        tasks.spawn(async move {
            let mut ids = Vec::with_capacity(EACH);
            for i in 0..EACH {
                let payload = Bytes::from(format!("{t}:{i}"));
                ids.push(
                    store
                        .add(&conn, &[key], payload)
                        .await
                        .expect("concurrent add failed"),
                );
            }
            ids
        });
    }
    let mut per_task = Vec::new();
    while let Some(done) = tasks.join_next().await {
        per_task.push(done.expect("an adding task panicked"));
    }
    let all: Vec<&MessageId> = per_task.iter().flatten().collect();
    let distinct: HashSet<&MessageId> = all.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        TASKS * EACH,
        "concurrent add: two messages got the same id"
    );

    let taken = take_all(&*store, &conn).await;
    assert_eq!(
        taken.len(),
        TASKS * EACH,
        "concurrent add: wrong number of messages stored"
    );
    let taken_ids: HashSet<&MessageId> = taken.iter().map(|m| &m.id).collect();
    assert_eq!(
        taken_ids, distinct,
        "concurrent add: stored ids differ from the ids add returned"
    );
    let position: std::collections::HashMap<&MessageId, usize> =
        taken.iter().enumerate().map(|(i, m)| (&m.id, i)).collect();
    for ids in &per_task {
        assert!(
            ids.windows(2).all(|w| position[&w[0]] < position[&w[1]]),
            "concurrent add: one task's messages are not in the order it added them"
        );
    }
    let s = status(&*store, &conn, None).await;
    let bytes: u64 = taken.iter().map(|m| m.payload.len() as u64).sum();
    assert_eq!(
        (s.message_count, s.total_bytes),
        (TASKS * EACH, bytes),
        "concurrent add: status figures wrong"
    );
}

/// Several clients confirming the same messages at once: each message is removed and counted
/// exactly once in total.
pub async fn concurrent_removes_count_each_message_once(store: Arc<dyn MessageQueue>) {
    let conn = ConnectionId::generate();
    let key = random_key();
    let mut added = Vec::new();
    for i in 0..100 {
        added.push(add(&*store, &conn, &[key], format!("m{i}").as_bytes()).await);
    }
    let added = Arc::new(added);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (store, conn, added) = (store.clone(), conn.clone(), added.clone());
        tasks.spawn(async move {
            store
                .remove(&conn, &added)
                .await
                .expect("concurrent remove failed")
        });
    }
    let mut removed = 0;
    while let Some(done) = tasks.join_next().await {
        removed += done.expect("a removing task panicked");
    }
    assert_eq!(
        removed, 100,
        "concurrent remove: total count is not the number of messages"
    );
    assert_eq!(
        status(&*store, &conn, None).await,
        QueueStatus::default(),
        "concurrent remove: queue not empty afterwards"
    );
}

/// `received_at_ms` is the time of arrival in unix milliseconds (within a minute of this
/// process's clock, allowing for a backend clock that is slightly off).
pub async fn received_time_is_unix_ms(store: Arc<dyn MessageQueue>) {
    let conn = ConnectionId::generate();
    let before = unix_ms_now();
    let id = add(&*store, &conn, &[random_key()], b"x").await;
    let after = unix_ms_now();
    let got = store
        .get(&conn, &id)
        .await
        .expect("get failed")
        .expect("get: message just added is missing");
    assert!(
        got.received_at_ms + 60_000 >= before && got.received_at_ms <= after + 60_000,
        "received_at_ms {} is not the arrival time in unix ms (local clock {before}..{after})",
        got.received_at_ms
    );
    let s = status(&*store, &conn, None).await;
    assert_eq!(
        s.oldest_received_ms,
        Some(got.received_at_ms),
        "status: oldest time differs from the message's"
    );
    assert_eq!(
        s.newest_received_ms,
        Some(got.received_at_ms),
        "status: newest time differs from the message's"
    );
}

async fn lease(
    store: &dyn MessageQueue,
    conn: &ConnectionId,
    limit: usize,
    key: Option<&VerKey>,
    lease_ms: u64,
) -> Vec<QueuedMessage> {
    store
        .lease(conn, limit, key, lease_ms, None)
        .await
        .expect("lease failed")
}

/// A leased message is not handed out again while in flight; status counts it apart; `take`
/// and `get` still see it; releasing it makes it waiting again, and the next lease counts a
/// second delivery; removing a leased message removes it.
pub async fn lease_hands_out_each_message_once_while_in_flight(store: Arc<dyn MessageQueue>) {
    let conn = ConnectionId::generate();
    let key = random_key();
    let mut added = Vec::new();
    for i in 0..3 {
        added.push(add(&*store, &conn, &[key], format!("m{i}").as_bytes()).await);
    }
    let first = lease(&*store, &conn, 2, None, 60_000).await;
    assert_eq!(ids(&first), added[..2], "lease(2): not the 2 oldest");
    assert!(
        first.iter().all(|m| m.deliveries == 1),
        "lease: a first delivery is not counted as 1"
    );
    let second = lease(&*store, &conn, 10, None, 60_000).await;
    assert_eq!(
        ids(&second),
        added[2..],
        "lease: handed out a message that is in flight"
    );
    assert!(
        lease(&*store, &conn, 10, None, 60_000).await.is_empty(),
        "lease: everything is in flight, yet something was handed out"
    );
    let s = status(&*store, &conn, None).await;
    assert_eq!(
        (s.message_count, s.in_flight, s.total_bytes),
        (0, 3, 0),
        "status: in-flight messages must be counted apart from waiting ones"
    );
    assert_eq!(
        take_all(&*store, &conn).await.len(),
        3,
        "take: in-flight messages must still be queued"
    );

    assert_eq!(
        store
            .release(&conn, &[added[0].clone(), MessageId::generate()])
            .await
            .expect("release failed"),
        1,
        "release: count of messages taken out of flight"
    );
    let s = status(&*store, &conn, None).await;
    assert_eq!(
        (s.message_count, s.in_flight),
        (1, 2),
        "status after release"
    );
    let again = lease(&*store, &conn, 10, None, 60_000).await;
    assert_eq!(ids(&again), added[..1], "lease after release");
    assert_eq!(again[0].deliveries, 2, "a redelivery must count 2");
    assert_eq!(
        store.remove(&conn, &added).await.expect("remove failed"),
        3,
        "remove: in-flight messages must be removable"
    );
    assert_eq!(status(&*store, &conn, None).await, QueueStatus::default());
}

/// `lease_ids` hands out, in queue order and once, only the listed messages that wait: not those
/// in flight, not unknown ids, not another connection's.
pub async fn lease_ids_hands_out_only_waiting_messages(store: Arc<dyn MessageQueue>) {
    let (conn, other) = (ConnectionId::generate(), ConnectionId::generate());
    let key = random_key();
    let mut added = Vec::new();
    for i in 0..4 {
        added.push(add(&*store, &conn, &[key], format!("m{i}").as_bytes()).await);
    }
    let foreign = add(&*store, &other, &[key], b"other").await;
    let flying = lease(&*store, &conn, 1, None, 60_000).await;
    assert_eq!(ids(&flying), added[..1]);
    let asked = [
        added[3].clone(),
        added[0].clone(),
        added[1].clone(),
        added[1].clone(),
        foreign.clone(),
        MessageId::generate(),
    ];
    let got = store
        .lease_ids(&conn, &asked, 60_000)
        .await
        .expect("lease_ids failed");
    assert_eq!(
        ids(&got),
        [added[1].clone(), added[3].clone()],
        "lease_ids: not exactly the waiting listed messages, in queue order"
    );
    assert!(got.iter().all(|m| m.deliveries == 1));
    assert!(
        store
            .lease_ids(&conn, &asked, 60_000)
            .await
            .expect("lease_ids failed")
            .is_empty(),
        "lease_ids: handed out messages already in flight"
    );
    let s = status(&*store, &conn, None).await;
    assert_eq!((s.message_count, s.in_flight), (1, 3));
    assert_eq!(
        ids(&lease(&*store, &other, 10, None, 60_000).await),
        [foreign],
        "lease_ids of another connection touched this one"
    );
}

/// A lease runs out: the message is handed out again (at-least-once delivery).
pub async fn lease_expires(store: Arc<dyn MessageQueue>) {
    let conn = ConnectionId::generate();
    let id = add(&*store, &conn, &[random_key()], b"m").await;
    assert_eq!(
        ids(&lease(&*store, &conn, 1, None, 50).await),
        std::slice::from_ref(&id)
    );
    assert!(lease(&*store, &conn, 1, None, 50).await.is_empty());
    // Waiting on the clock past a 50 ms lease: what is checked is the expiry itself.
    tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    let again = lease(&*store, &conn, 1, None, 60_000).await;
    assert_eq!(
        ids(&again),
        [id],
        "an expired lease was not handed out again"
    );
    assert_eq!(again[0].deliveries, 2);
}

/// `add_leased` stores a message that is in flight at once (delivered while being queued).
pub async fn add_leased_is_in_flight_at_once(store: Arc<dyn MessageQueue>) {
    let conn = ConnectionId::generate();
    let key = random_key();
    let id = store
        .add_leased(&conn, &[key], Bytes::from_static(b"live"), 60_000)
        .await
        .expect("add_leased failed");
    let waiting = add(&*store, &conn, &[key], b"queued").await;
    let s = status(&*store, &conn, None).await;
    assert_eq!(
        (s.message_count, s.in_flight, s.total_bytes),
        (1, 1, 6),
        "status: add_leased message must be in flight"
    );
    let got = store
        .get(&conn, &id)
        .await
        .expect("get failed")
        .expect("add_leased: message missing");
    assert_eq!((&got.payload[..], got.deliveries), (&b"live"[..], 1));
    assert_eq!(
        ids(&lease(&*store, &conn, 10, None, 60_000).await),
        [waiting],
        "lease: handed out the add_leased message"
    );
    store
        .release(&conn, std::slice::from_ref(&id))
        .await
        .expect("release failed");
    let again = lease(&*store, &conn, 10, None, 60_000).await;
    assert_eq!(ids(&again), [id]);
    assert_eq!(again[0].deliveries, 2);
}

/// `unlease` gives back a message leased for a client it never reached: it waits again, and that
/// handout is not counted (the next lease is its first delivery); messages not in flight, or of
/// another connection, are left as they are.
pub async fn unlease_gives_back_without_counting_the_handout(store: Arc<dyn MessageQueue>) {
    let conn = ConnectionId::generate();
    let key = random_key();
    let id = store
        .add_leased(&conn, &[key], Bytes::from_static(b"live"), 60_000)
        .await
        .expect("add_leased failed");
    let waiting = add(&*store, &conn, &[key], b"queued").await;
    assert_eq!(
        store
            .unlease(&ConnectionId::generate(), std::slice::from_ref(&id))
            .await
            .expect("unlease failed"),
        0,
        "another connection's id"
    );
    assert_eq!(
        store
            .unlease(&conn, &[id.clone(), waiting.clone()])
            .await
            .expect("unlease failed"),
        1,
        "only the leased message was in flight"
    );
    let s = status(&*store, &conn, None).await;
    assert_eq!((s.message_count, s.in_flight), (2, 0));
    let again = lease(&*store, &conn, 10, None, 60_000).await;
    assert_eq!(ids(&again), [id, waiting]);
    assert_eq!(
        again.iter().map(|m| m.deliveries).collect::<Vec<_>>(),
        [1, 1],
        "an unleased handout was counted"
    );
}

/// `lease` with a recipient key hands out only that key's messages; leases and releases of
/// another connection's ids change nothing.
pub async fn lease_filters_and_stays_in_its_connection(store: Arc<dyn MessageQueue>) {
    let (a, b) = (ConnectionId::generate(), ConnectionId::generate());
    let (k1, k2) = (random_key(), random_key());
    let a1 = add(&*store, &a, &[k1], b"a1").await;
    let a2 = add(&*store, &a, &[k2], b"a2").await;
    let b1 = add(&*store, &b, &[k1], b"b1").await;
    assert_eq!(ids(&lease(&*store, &a, 10, Some(&k2), 60_000).await), [a2]);
    assert_eq!(
        store
            .release(&b, std::slice::from_ref(&a1))
            .await
            .expect("release failed"),
        0,
        "release: another connection's id matched"
    );
    assert_eq!(ids(&lease(&*store, &b, 10, None, 60_000).await), [b1]);
    assert_eq!(ids(&lease(&*store, &a, 10, None, 60_000).await), [a1]);
}

/// Many tasks leasing at once never get the same message; together they get every message.
pub async fn concurrent_leases_never_share_a_message(store: Arc<dyn MessageQueue>) {
    let conn = ConnectionId::generate();
    let key = random_key();
    let mut added = HashSet::new();
    for i in 0..100 {
        added.insert(add(&*store, &conn, &[key], format!("m{i}").as_bytes()).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (store, conn) = (store.clone(), conn.clone());
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store
                    .lease(&conn, 3, None, 60_000, None)
                    .await
                    .expect("concurrent lease failed");
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|m| m.id));
            }
        });
    }
    let mut seen = HashSet::new();
    while let Some(done) = tasks.join_next().await {
        for id in done.expect("a leasing task panicked") {
            assert!(
                seen.insert(id),
                "concurrent lease: one message handed out twice"
            );
        }
    }
    assert_eq!(
        seen, added,
        "concurrent lease: not every message was handed out"
    );
}

async fn lease_within(
    store: &dyn MessageQueue,
    conn: &ConnectionId,
    key: Option<&VerKey>,
    max_bytes: Option<u64>,
) -> Vec<QueuedMessage> {
    store
        .lease(conn, usize::MAX, key, 60_000, max_bytes)
        .await
        .expect("lease failed")
}

/// The (id, deliveries) of every message of the queue, in order.
async fn deliveries(store: &dyn MessageQueue, conn: &ConnectionId) -> Vec<(MessageId, u32)> {
    take_all(store, conn)
        .await
        .into_iter()
        .map(|m| (m.id, m.deliveries))
        .collect()
}

/// A byte budget ends the batch at the first message that would pass it, even when a later,
/// smaller message would still fit (FIFO); a batch may use the budget exactly. What is not
/// handed out stays waiting, its `deliveries` unchanged, and the next lease hands it out.
pub async fn lease_byte_budget_stops_the_batch(store: Arc<dyn MessageQueue>) {
    let conn = ConnectionId::generate();
    let key = random_key();
    let mut added = Vec::new();
    for payload in [&b"aaaa"[..], b"bbbb", b"cccc", b"d"] {
        added.push(add(&*store, &conn, &[key], payload).await);
    }
    let first = lease_within(&*store, &conn, None, Some(9)).await;
    assert_eq!(
        ids(&first),
        added[..2],
        "lease(max_bytes 9) of 4+4+4+1 bytes: must hand out the first two (8 bytes) and stop at \
         the third, without skipping to the 1-byte fourth"
    );
    assert_eq!(
        (&first[0].payload[..], &first[1].payload[..]),
        (&b"aaaa"[..], &b"bbbb"[..]),
        "lease: payloads of a budgeted batch changed"
    );
    let s = status(&*store, &conn, None).await;
    assert_eq!(
        (s.message_count, s.in_flight, s.total_bytes),
        (2, 2, 5),
        "status: messages left out of a budgeted batch must still wait"
    );
    assert_eq!(
        deliveries(&*store, &conn).await,
        [
            (added[0].clone(), 1),
            (added[1].clone(), 1),
            (added[2].clone(), 0),
            (added[3].clone(), 0),
        ],
        "lease: messages left out of a budgeted batch must keep their deliveries"
    );
    let second = lease_within(&*store, &conn, None, Some(5)).await;
    assert_eq!(
        ids(&second),
        added[2..],
        "lease(max_bytes 5) of the waiting 4+1 bytes: a batch may use the budget exactly"
    );
    assert!(second.iter().all(|m| m.deliveries == 1));
}

/// The first eligible message is handed out even when alone it is larger than the budget; then
/// the batch ends (the small one behind it waits for the next lease). The first eligible one is
/// the first that carries the asked recipient key.
pub async fn lease_hands_out_an_over_budget_first_message_alone(store: Arc<dyn MessageQueue>) {
    let conn = ConnectionId::generate();
    let (key, other_key) = (random_key(), random_key());
    let foreign = add(&*store, &conn, &[other_key], &[b'x'; 64]).await;
    let big = add(&*store, &conn, &[key], &[b'b'; 100]).await;
    let small = add(&*store, &conn, &[key], b"s").await;
    let got = lease_within(&*store, &conn, Some(&key), Some(10)).await;
    assert_eq!(
        ids(&got),
        std::slice::from_ref(&big),
        "lease: a first message over the budget must be handed out, alone"
    );
    assert_eq!(
        got[0].payload.len(),
        100,
        "lease: payload of the big message"
    );
    assert_eq!(
        deliveries(&*store, &conn).await,
        [(foreign.clone(), 0), (big.clone(), 1), (small.clone(), 0)],
        "lease: only the big message may be in flight"
    );
    assert_eq!(
        ids(&lease_within(&*store, &conn, Some(&key), Some(0)).await),
        [small],
        "lease(max_bytes 0): the first eligible message must still be handed out"
    );
    assert_eq!(
        ids(&lease_within(&*store, &conn, None, Some(1)).await),
        [foreign],
        "lease: the over-budget first waiting message must be handed out"
    );
}

/// Without a byte budget only `limit` bounds the batch, however large the payloads.
pub async fn lease_without_byte_budget_counts_messages_only(store: Arc<dyn MessageQueue>) {
    let conn = ConnectionId::generate();
    let key = random_key();
    let mut added = Vec::new();
    for i in 0..4u8 {
        added.push(add(&*store, &conn, &[key], &[i; 10_000]).await);
    }
    let got = store
        .lease(&conn, 3, None, 60_000, None)
        .await
        .expect("lease failed");
    assert_eq!(
        ids(&got),
        added[..3],
        "lease(limit 3, max_bytes None): must hand out 3 messages whatever their size"
    );
    assert!(got.iter().all(|m| m.payload.len() == 10_000));
    assert_eq!(
        ids(&lease_within(&*store, &conn, None, None).await),
        added[3..]
    );
}

/// What a limit check is given: a maker of fresh, empty stores with the limits it asks for.
pub type QueueFuture = Pin<Box<dyn Future<Output = Arc<dyn MessageQueue>> + Send>>;

/// A maker of fresh, empty stores with given limits (see [`QueueFuture`]).
pub type MakeQueue<'a> = &'a (dyn Fn(QueueLimits) -> QueueFuture + Send + Sync);

fn limits() -> QueueLimits {
    QueueLimits::UNLIMITED
}

/// With a cap of 3 messages, a 4th is refused with `QueueFull` and nothing of it is stored; in
/// flight messages count; after an acknowledgement there is room again; other connections have
/// their own cap.
pub async fn cap_on_messages_refuses_and_stores_nothing(make: MakeQueue<'_>) {
    let store = make(QueueLimits {
        max_messages: Some(3),
        ..limits()
    })
    .await;
    let conn = ConnectionId::generate();
    let key = random_key();
    let first = store
        .add_leased(&conn, &[key], Bytes::from_static(b"m0"), 60_000)
        .await
        .expect("add_leased under the cap failed");
    for i in 1..3 {
        add(&*store, &conn, &[key], format!("m{i}").as_bytes()).await;
    }
    let err = store
        .add(&conn, &[key], Bytes::from_static(b"m3"))
        .await
        .expect_err("add over the message cap must fail");
    assert!(
        matches!(&err, StoreError::QueueFull { connection, cap: QueueCap::Messages(3) } if *connection == conn),
        "over the message cap: expected QueueFull(Messages(3)) for the connection, got {err:?}"
    );
    assert!(
        store
            .add_leased(&conn, &[key], Bytes::from_static(b"m3"), 60_000)
            .await
            .is_err_and(|e| e.is_queue_full()),
        "add_leased over the message cap must fail with QueueFull"
    );
    let held = take_all(&*store, &conn).await;
    assert_eq!(held.len(), 3, "a refused message was stored");
    assert!(
        held.iter().all(|m| &m.payload[..] != b"m3"),
        "a refused message was stored"
    );
    let s = status(&*store, &conn, None).await;
    assert_eq!((s.message_count, s.in_flight), (2, 1));
    add(&*store, &ConnectionId::generate(), &[key], b"other").await;
    store.remove(&conn, &[first]).await.expect("remove failed");
    add(&*store, &conn, &[key], b"m3").await;
}

/// With a cap of 10 bytes, a message that would pass it is refused and nothing is stored; one
/// that fits exactly is taken.
pub async fn cap_on_bytes_refuses_and_stores_nothing(make: MakeQueue<'_>) {
    let store = make(QueueLimits {
        max_bytes: Some(10),
        ..limits()
    })
    .await;
    let conn = ConnectionId::generate();
    let key = random_key();
    add(&*store, &conn, &[key], b"123456").await;
    let err = store
        .add(&conn, &[key], Bytes::from_static(b"12345"))
        .await
        .expect_err("add over the byte cap must fail");
    assert!(
        matches!(
            &err,
            StoreError::QueueFull {
                cap: QueueCap::Bytes(10),
                ..
            }
        ),
        "over the byte cap: expected QueueFull(Bytes(10)), got {err:?}"
    );
    let s = status(&*store, &conn, None).await;
    assert_eq!(
        (s.message_count, s.total_bytes),
        (1, 6),
        "a refused message changed the figures"
    );
    add(&*store, &conn, &[key], b"1234").await;
    assert!(
        store
            .add(
                &ConnectionId::generate(),
                &[key],
                Bytes::from(vec![0u8; 11])
            )
            .await
            .is_err_and(|e| e.is_queue_full()),
        "a message larger than the whole cap must be refused"
    );
}

/// Messages older than the TTL are seen by no operation, removed and counted, and a sweep removes
/// them from queues nobody touches.
pub async fn expired_messages_are_removed_and_counted(make: MakeQueue<'_>) {
    let store = make(QueueLimits {
        message_ttl_ms: Some(100),
        ..limits()
    })
    .await;
    let (conn, idle) = (ConnectionId::generate(), ConnectionId::generate());
    let key = random_key();
    let old = add(&*store, &conn, &[key], b"old-1").await;
    add(&*store, &conn, &[key], b"old-2").await;
    for i in 0..3 {
        add(&*store, &idle, &[key], format!("idle-{i}").as_bytes()).await;
    }
    assert_eq!(store.expired_count(), 0, "nothing has expired yet");
    // Waiting on the clock past a 100 ms age: what is checked is the expiry itself.
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    let fresh = add(&*store, &conn, &[key], b"new").await;
    assert_eq!(
        ids(&take_all(&*store, &conn).await),
        [fresh],
        "take: expired messages are still seen"
    );
    assert_eq!(
        store.get(&conn, &old).await.expect("get failed"),
        None,
        "get: an expired message is still found"
    );
    let s = status(&*store, &conn, None).await;
    assert_eq!(s.message_count, 1, "status: expired messages counted");
    assert_eq!(store.expired_count(), 2, "expired messages not counted");

    assert_eq!(
        store.sweep_expired(1000).await.expect("sweep failed"),
        3,
        "sweep: the idle queue's expired messages were not removed"
    );
    assert_eq!(store.expired_count(), 5);
    assert_eq!(status(&*store, &idle, None).await, QueueStatus::default());
    assert_eq!(
        store.sweep_expired(1000).await.expect("sweep failed"),
        0,
        "a second sweep found more"
    );
}

/// Messages past their age do not count against the caps: a queue full of them takes a new
/// message (and counts them expired), under the message cap and under the byte cap.
pub async fn expired_messages_hold_no_place_under_the_caps(make: MakeQueue<'_>) {
    let store = make(QueueLimits {
        max_messages: Some(2),
        max_bytes: Some(10),
        message_ttl_ms: Some(100),
    })
    .await;
    let (by_count, by_bytes) = (ConnectionId::generate(), ConnectionId::generate());
    let key = random_key();
    add(&*store, &by_count, &[key], b"a").await;
    add(&*store, &by_count, &[key], b"b").await;
    add(&*store, &by_bytes, &[key], b"0123456789").await;
    assert!(
        store
            .add(&by_count, &[key], Bytes::from_static(b"c"))
            .await
            .is_err_and(|e| e.is_queue_full()),
        "the message cap did not hold before the messages expired"
    );
    // Waiting on the clock past a 100 ms age: what is checked is the expiry itself.
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    let fresh = add(&*store, &by_count, &[key], b"c").await;
    let fits = add(&*store, &by_bytes, &[key], b"9876543210").await;
    assert_eq!(ids(&take_all(&*store, &by_count).await), [fresh]);
    assert_eq!(ids(&take_all(&*store, &by_bytes).await), [fits]);
    assert_eq!(store.expired_count(), 3, "expired messages not counted");
}

/// `totals` adds up every queue, in flight included, and follows adds and removes; an emptied
/// queue counts no more.
pub async fn totals_count_every_queue(store: Arc<dyn MessageQueue>) {
    let totals =
        |store: Arc<dyn MessageQueue>| async move { store.totals().await.expect("totals failed") };
    assert_eq!(
        totals(store.clone()).await,
        QueueTotals::default(),
        "totals: a fresh store holds something"
    );
    let (a, b) = (ConnectionId::generate(), ConnectionId::generate());
    let key = [random_key()];
    let first = add(&*store, &a, &key, b"12345").await;
    add(&*store, &a, &key, b"123").await;
    let leased = store
        .add_leased(&b, &key, Bytes::from_static(b"1234567"), 60_000)
        .await
        .expect("add_leased failed");
    assert_eq!(
        totals(store.clone()).await,
        QueueTotals {
            queues: 2,
            messages: 3,
            bytes: 15
        },
        "totals: two queues of 2 (8 bytes) and 1 in flight (7 bytes)"
    );
    store
        .remove(&b, std::slice::from_ref(&leased))
        .await
        .expect("remove failed");
    store
        .remove(&a, std::slice::from_ref(&first))
        .await
        .expect("remove failed");
    assert_eq!(
        totals(store.clone()).await,
        QueueTotals {
            queues: 1,
            messages: 1,
            bytes: 3
        },
        "totals: after removing 2 messages, one queue of 1 (3 bytes) is left"
    );
}

fn copied(
    conn: &ConnectionId,
    id: MessageId,
    keys: &[VerKey],
    payload: &[u8],
    received_at_ms: u64,
    deliveries: u32,
) -> QueuedMessage {
    QueuedMessage {
        id,
        connection_id: conn.clone(),
        recipient_keys: keys.to_vec(),
        payload: Bytes::copy_from_slice(payload),
        received_at_ms,
        deliveries,
    }
}

/// `restore` keeps every field of the messages given (ids, keys, payload, received time,
/// deliveries) and their order, after the messages already queued; none is in flight; an id
/// already queued, or given twice, is a conflict that stores nothing.
pub async fn restore_keeps_messages_as_given(store: Arc<dyn MessageQueue>) {
    let (conn, other) = (ConnectionId::generate(), ConnectionId::generate());
    let (k1, k2) = (random_key(), random_key());
    let before = add(&*store, &conn, &[k1], b"already here").await;
    let now = unix_ms_now();
    let given = vec![
        copied(
            &other,
            MessageId::generate(),
            &[k1, k2],
            b"\x00first\xff",
            now - 5_000,
            2,
        ),
        copied(
            &other,
            MessageId::generate(),
            &[k2],
            b"second",
            now - 5_000,
            0,
        ),
        copied(&other, MessageId::generate(), &[], b"", now - 1_000, 1),
    ];
    store.restore(&conn, &given).await.expect("restore failed");

    let held = take_all(&*store, &conn).await;
    assert_eq!(held.len(), 4, "restore: not every message is queued");
    assert_eq!(
        held[0].id, before,
        "restore: the message already queued must stay first"
    );
    for (got, want) in held[1..].iter().zip(&given) {
        let want = QueuedMessage {
            connection_id: conn.clone(),
            ..want.clone()
        };
        assert_eq!(
            got, &want,
            "restore: a message was not kept as given (or out of order)"
        );
    }
    assert_eq!(
        take_all(&*store, &other).await,
        vec![],
        "restore: the messages' own connection_id must be ignored"
    );
    let figures = status(&*store, &conn, None).await;
    assert_eq!(
        (figures.message_count, figures.in_flight),
        (4, 0),
        "restore: restored messages must wait, not be in flight"
    );
    let leased = store
        .lease(&conn, 10, None, 60_000, None)
        .await
        .expect("lease failed");
    assert_eq!(
        ids(&leased),
        ids(&held),
        "restore: lease must hand out every restored message in order"
    );
    assert_eq!(
        leased[1].deliveries, 3,
        "restore: deliveries must count on from the value kept"
    );

    let fresh = copied(&conn, MessageId::generate(), &[k1], b"new", now, 0);
    for batch in [
        vec![fresh.clone(), given[1].clone()],
        vec![fresh.clone(), fresh.clone()],
    ] {
        let err = store
            .restore(&conn, &batch)
            .await
            .expect_err("restore of an id already queued, or given twice, must fail");
        assert!(
            matches!(&err, StoreError::Conflict { .. }),
            "restore: expected Conflict, got {err:?}"
        );
        assert_eq!(
            store.get(&conn, &fresh.id).await.expect("get failed"),
            None,
            "restore: a refused batch must store nothing"
        );
    }
    assert_eq!(
        take_all(&*store, &conn).await.len(),
        4,
        "restore: a refused batch changed the queue"
    );
}

/// `restore` does not apply the caps (a copy drops nothing), and an add after it does.
pub async fn restore_is_not_capped(make: MakeQueue<'_>) {
    let store = make(QueueLimits {
        max_messages: Some(2),
        max_bytes: Some(10),
        ..limits()
    })
    .await;
    let conn = ConnectionId::generate();
    let key = random_key();
    let now = unix_ms_now();
    let given: Vec<QueuedMessage> = (0..4)
        .map(|i| {
            copied(
                &conn,
                MessageId::generate(),
                &[key],
                b"0123456789",
                now + i,
                0,
            )
        })
        .collect();
    store
        .restore(&conn, &given)
        .await
        .expect("restore over the caps failed");
    assert_eq!(
        ids(&take_all(&*store, &conn).await),
        ids(&given),
        "restore: a message was dropped"
    );
    assert!(
        store
            .add(&conn, &[key], Bytes::from_static(b"x"))
            .await
            .is_err_and(|e| e.is_queue_full()),
        "add after a restore over the caps must still be refused"
    );
}

/// `list_queues` lists every connection whose queue holds messages once, in ascending order of
/// the id's text, page after page; a queue whose messages were all removed may be listed or not.
/// (Other queues the store may hold are ignored: only this check's connections are compared.)
pub async fn list_queues_pages_every_queue_in_order(store: Arc<dyn MessageQueue>) {
    let key = random_key();
    let mut mine: Vec<ConnectionId> = (0..7).map(|_| ConnectionId::generate()).collect();
    for conn in &mine {
        add(&*store, conn, &[key], b"m").await;
    }
    let emptied = ConnectionId::generate();
    let id = add(&*store, &emptied, &[key], b"gone").await;
    assert_eq!(
        store.remove(&emptied, &[id]).await.expect("remove failed"),
        1
    );
    let never = ConnectionId::generate();
    mine.sort();

    let mut listed = Vec::new();
    let mut after: Option<ConnectionId> = None;
    loop {
        let page = store
            .list_queues(after.as_ref(), 3)
            .await
            .expect("list_queues failed");
        assert!(page.len() <= 3, "list_queues: a page longer than its limit");
        for id in &page {
            if let Some(after) = &after {
                assert!(
                    id.as_str() > after.as_str(),
                    "list_queues: {id} listed in a page after {after}, out of order or repeated"
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
        !listed.contains(&never),
        "list_queues: a connection that never had a message was listed"
    );
    let listed_mine: Vec<ConnectionId> =
        listed.into_iter().filter(|id| mine.contains(id)).collect();
    assert_eq!(
        listed_mine, mine,
        "list_queues: the pages do not list every queue once, in order"
    );
    assert_eq!(
        store
            .list_queues(None, 0)
            .await
            .expect("list_queues failed"),
        Vec::<ConnectionId>::new(),
        "list_queues: a page of limit 0 must be empty"
    );
}
