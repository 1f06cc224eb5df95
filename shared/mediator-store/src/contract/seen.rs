//! Contract checks of [`SeenMessages`]. Each takes a fresh, empty store that remembers at most
//! [`CAP`] ids per connection.

use std::{sync::Arc, time::Duration};

use crate::{ConnectionId, SeenMessages};

/// The `max_per_connection` every check's store is made with.
pub const CAP: usize = 3;

const HOUR: u64 = 3_600_000;

async fn first(store: &Arc<dyn SeenMessages>, c: &ConnectionId, id: &str, window: u64) -> bool {
    store
        .first_sighting(c, id, window)
        .await
        .expect("first_sighting failed")
}

/// An id is new once per connection within the window; other ids stay new.
pub async fn a_repeat_within_the_window_is_not_new(store: Arc<dyn SeenMessages>) {
    let c = ConnectionId::generate();
    assert!(first(&store, &c, "m1", HOUR).await, "a first sighting");
    assert!(!first(&store, &c, "m1", HOUR).await, "a repeat was new");
    assert!(
        !first(&store, &c, "m1", HOUR).await,
        "a second repeat was new"
    );
    assert!(
        first(&store, &c, "m2", HOUR).await,
        "another id was not new"
    );
}

/// Connections never see each other's ids.
pub async fn connections_are_isolated(store: Arc<dyn SeenMessages>) {
    let (a, b) = (ConnectionId::generate(), ConnectionId::generate());
    assert!(first(&store, &a, "same", HOUR).await);
    assert!(
        first(&store, &b, "same", HOUR).await,
        "an id seen on another connection was not new"
    );
    assert!(!first(&store, &b, "same", HOUR).await);
}

/// After the window (from the first sighting) the id is new again; a window of 0 remembers
/// nothing.
pub async fn the_window_ends(store: Arc<dyn SeenMessages>) {
    let c = ConnectionId::generate();
    assert!(first(&store, &c, "m", 300).await);
    assert!(
        !first(&store, &c, "m", 300).await,
        "a repeat inside the window"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(
        first(&store, &c, "m", 300).await,
        "still remembered after its window"
    );
    assert!(first(&store, &c, "zero", 0).await);
    assert!(
        first(&store, &c, "zero", 0).await,
        "a window of 0 remembered the id"
    );
}

/// Over the cap the oldest ids are forgotten first (a replay of one is then new); the newest
/// are still known.
pub async fn the_cap_forgets_the_oldest(store: Arc<dyn SeenMessages>) {
    let c = ConnectionId::generate();
    for n in 0..=CAP {
        assert!(first(&store, &c, &format!("m{n}"), HOUR).await);
    }
    assert!(
        !first(&store, &c, &format!("m{CAP}"), HOUR).await,
        "the newest id was forgotten"
    );
    assert!(
        first(&store, &c, "m0", HOUR).await,
        "the oldest id was kept over the cap"
    );
}

/// Ids of any length are taken; long ones that differ only at the end stay distinct.
pub async fn long_ids_are_distinct(store: Arc<dyn SeenMessages>) {
    let c = ConnectionId::generate();
    let long = "x".repeat(100_000);
    let other = format!("{long}y");
    assert!(first(&store, &c, &long, HOUR).await);
    assert!(
        !first(&store, &c, &long, HOUR).await,
        "a long repeat was new"
    );
    assert!(
        first(&store, &c, &other, HOUR).await,
        "a different long id was taken for a repeat"
    );
}

/// Of concurrent sightings of one id, exactly one is new.
pub async fn concurrent_sightings_have_one_first(store: Arc<dyn SeenMessages>) {
    let c = ConnectionId::generate();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (store, c) = (store.clone(), c.clone());
            tokio::spawn(async move { first(&store, &c, "raced", HOUR).await })
        })
        .collect();
    let mut firsts = 0;
    for task in tasks {
        if task.await.expect("task panicked") {
            firsts += 1;
        }
    }
    assert_eq!(firsts, 1, "concurrent sightings of one id");
}
