//! Contract checks of [`LiveSessionRegistry`]. Each takes a fresh, empty registry.

use std::{sync::Arc, time::Duration};

use crate::{ConnectionId, LiveHolder, LiveSessionRegistry};

fn holder(instance: &str, session: u64) -> LiveHolder {
    LiveHolder {
        instance: instance.to_owned(),
        session,
    }
}

/// A session opened is found, listed, and gone once closed by its holder.
pub async fn open_then_holder_all_and_close(registry: Arc<dyn LiveSessionRegistry>) {
    let (c1, c2) = (ConnectionId::generate(), ConnectionId::generate());
    let a = holder("instance-a", 1);
    assert_eq!(
        registry.open(&c1, &a, 60_000).await.expect("open failed"),
        None,
        "open: a first session replaced nobody"
    );
    registry
        .open(&c2, &holder("instance-b", 7), 60_000)
        .await
        .expect("open failed");
    assert_eq!(
        registry.holder(&c1).await.expect("holder failed"),
        Some(a.clone())
    );
    let mut all = registry.all().await.expect("all failed");
    all.sort_by(|x, y| x.1.instance.cmp(&y.1.instance));
    assert_eq!(
        all,
        vec![
            (c1.clone(), a.clone()),
            (c2.clone(), holder("instance-b", 7))
        ],
        "all: not every live session"
    );
    assert!(registry.close(&c1, &a).await.expect("close failed"));
    assert_eq!(registry.holder(&c1).await.expect("holder failed"), None);
    assert!(
        !registry.close(&c1, &a).await.expect("close failed"),
        "close: a second close removed something"
    );
    assert_eq!(
        registry
            .holder(&ConnectionId::generate())
            .await
            .expect("holder failed"),
        None
    );
}

/// A newer session (elsewhere) replaces the older one and says whom it replaced; the old
/// holder's late close removes nothing; only the exact (instance, session) closes it.
pub async fn late_close_from_an_old_instance_never_removes_a_newer_session(
    registry: Arc<dyn LiveSessionRegistry>,
) {
    let conn = ConnectionId::generate();
    let old = holder("instance-a", 1);
    let new = holder("instance-b", 1);
    registry
        .open(&conn, &old, 60_000)
        .await
        .expect("open failed");
    assert_eq!(
        registry
            .open(&conn, &new, 60_000)
            .await
            .expect("open failed"),
        Some(old.clone()),
        "open: the replaced holder is not reported"
    );
    assert!(
        !registry.close(&conn, &old).await.expect("close failed"),
        "close: the old instance's late close removed the newer session"
    );
    assert!(
        !registry
            .close(&conn, &holder("instance-b", 2))
            .await
            .expect("close failed"),
        "close: another session of the same instance removed it"
    );
    assert_eq!(
        registry.holder(&conn).await.expect("holder failed"),
        Some(new.clone())
    );
    assert!(registry.close(&conn, &new).await.expect("close failed"));
}

/// Leases run out unless refreshed; a refresh extends only the refreshing instance's sessions.
pub async fn leases_expire_unless_their_instance_refreshes_them(
    registry: Arc<dyn LiveSessionRegistry>,
) {
    let (kept, lapsed) = (ConnectionId::generate(), ConnectionId::generate());
    let a = holder("instance-a", 1);
    let b = holder("instance-b", 1);
    registry.open(&kept, &a, 300).await.expect("open failed");
    registry.open(&lapsed, &b, 300).await.expect("open failed");
    // Waiting on the clock (a lease is a time): refresh A's halfway, let B's run out.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        registry
            .refresh("instance-a", 60_000)
            .await
            .expect("refresh failed"),
        1,
        "refresh: count of the instance's sessions"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        registry.holder(&kept).await.expect("holder failed"),
        Some(a.clone())
    );
    assert_eq!(
        registry.holder(&lapsed).await.expect("holder failed"),
        None,
        "holder: an expired lease is still reported"
    );
    assert_eq!(
        registry.all().await.expect("all failed"),
        vec![(kept.clone(), a.clone())],
        "all: lists an expired session"
    );
    assert_eq!(
        registry
            .refresh("instance-b", 60_000)
            .await
            .expect("refresh failed"),
        0,
        "refresh: brought an expired session back"
    );
    assert_eq!(
        registry
            .open(&lapsed, &b, 60_000)
            .await
            .expect("open failed"),
        None,
        "open: an expired holder is reported as replaced"
    );
}
