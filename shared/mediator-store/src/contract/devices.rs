//! Contract checks of [`DeviceStore`]. Each takes a fresh, empty store.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::Barrier;

use crate::{ConnectionId, DeviceInfo, DeviceStore, PushPlatform};

/// A registration of `platform` with a random token (FCM ones with a `device_platform`).
pub fn sample(platform: PushPlatform) -> DeviceInfo {
    DeviceInfo {
        platform,
        token: format!("token-{}", uuid::Uuid::new_v4()),
        device_platform: (platform == PushPlatform::Fcm).then(|| "android".to_owned()),
        updated_at_ms: crate::unix_ms_now(),
    }
}

async fn set(store: &Arc<dyn DeviceStore>, c: &ConnectionId, info: &DeviceInfo) {
    store.set(c, info).await.expect("set failed");
}

async fn get(store: &Arc<dyn DeviceStore>, c: &ConnectionId) -> Option<DeviceInfo> {
    store.get(c).await.expect("get failed")
}

async fn claim(store: &Arc<dyn DeviceStore>, c: &ConnectionId, interval_ms: u64) -> bool {
    store
        .claim_notification(c, interval_ms)
        .await
        .expect("claim_notification failed")
}

/// What is set is what is read, every field; nothing is there before.
pub async fn set_then_get(store: Arc<dyn DeviceStore>) {
    let c = ConnectionId::generate();
    assert_eq!(get(&store, &c).await, None, "get: a device before any set");
    for platform in [PushPlatform::Fcm, PushPlatform::Apns] {
        let c = ConnectionId::generate();
        let info = sample(platform);
        set(&store, &c, &info).await;
        assert_eq!(get(&store, &c).await, Some(info), "get: not what was set");
    }
}

/// Tokens and device platforms come back byte for byte, whatever characters they hold, and
/// `clear_if_token` matches such a token exactly.
pub async fn tokens_are_kept_as_sent(store: Arc<dyn DeviceStore>) {
    let c = ConnectionId::generate();
    let odd = "a\"b\\c/d\u{0}e\n{}[] é 日本 🎉 <>&'".to_owned();
    let info = DeviceInfo {
        platform: PushPlatform::Fcm,
        token: format!("{odd}{}", "x".repeat(4096)),
        device_platform: Some(odd.clone()),
        updated_at_ms: u64::from(u32::MAX) * 1000,
    };
    set(&store, &c, &info).await;
    assert_eq!(get(&store, &c).await, Some(info.clone()), "get: changed");
    assert!(
        !store
            .clear_if_token(&c, &info.token[..info.token.len() - 1])
            .await
            .expect("clear_if_token failed"),
        "clear_if_token: a prefix of the token matched it"
    );
    assert!(
        store
            .clear_if_token(&c, &info.token)
            .await
            .expect("clear_if_token failed"),
        "clear_if_token: the exact token did not match"
    );
    assert_eq!(get(&store, &c).await, None);
}

/// A newer registration replaces the older, also one of the other platform (whose absent
/// `device_platform` must not keep the old one).
pub async fn a_newer_set_replaces_the_older_of_either_platform(store: Arc<dyn DeviceStore>) {
    let c = ConnectionId::generate();
    set(&store, &c, &sample(PushPlatform::Fcm)).await;
    let newer = sample(PushPlatform::Fcm);
    set(&store, &c, &newer).await;
    assert_eq!(get(&store, &c).await, Some(newer), "set: did not replace");
    let apns = sample(PushPlatform::Apns);
    set(&store, &c, &apns).await;
    assert_eq!(
        get(&store, &c).await,
        Some(apns),
        "set: an APNs registration did not replace the FCM one"
    );
    let fcm = sample(PushPlatform::Fcm);
    set(&store, &c, &fcm).await;
    assert_eq!(
        get(&store, &c).await,
        Some(fcm),
        "set: an FCM registration did not replace the APNs one"
    );
}

/// `clear` says whether there was a registration, and removes it.
pub async fn clear_says_whether_there_was_one(store: Arc<dyn DeviceStore>) {
    let c = ConnectionId::generate();
    assert!(
        !store.clear(&c).await.expect("clear failed"),
        "clear: reported a registration that never was"
    );
    set(&store, &c, &sample(PushPlatform::Apns)).await;
    assert!(store.clear(&c).await.expect("clear failed"), "clear: false");
    assert_eq!(get(&store, &c).await, None, "clear: still there");
    assert!(
        !store.clear(&c).await.expect("clear failed"),
        "clear: a second clear reported a registration"
    );
    let again = sample(PushPlatform::Fcm);
    set(&store, &c, &again).await;
    assert_eq!(get(&store, &c).await, Some(again), "set after a clear");
}

/// The provider reporting an old token gone never removes a registration made since.
pub async fn clear_if_token_leaves_a_newer_registration(store: Arc<dyn DeviceStore>) {
    let c = ConnectionId::generate();
    assert!(
        !store
            .clear_if_token(&c, "nothing-registered")
            .await
            .expect("clear_if_token failed"),
        "clear_if_token: cleared where nothing was registered"
    );
    let old = sample(PushPlatform::Fcm);
    set(&store, &c, &old).await;
    let newer = sample(PushPlatform::Apns);
    set(&store, &c, &newer).await;
    assert!(
        !store
            .clear_if_token(&c, &old.token)
            .await
            .expect("clear_if_token failed"),
        "clear_if_token: a stale token cleared the newer registration"
    );
    assert_eq!(
        get(&store, &c).await,
        Some(newer.clone()),
        "clear_if_token: a stale token changed the newer registration"
    );
    assert!(
        store
            .clear_if_token(&c, &newer.token)
            .await
            .expect("clear_if_token failed"),
        "clear_if_token: the current token did not clear"
    );
    assert_eq!(get(&store, &c).await, None, "clear_if_token: still there");
    assert!(
        !store
            .clear_if_token(&c, &newer.token)
            .await
            .expect("clear_if_token failed"),
        "clear_if_token: cleared twice"
    );
}

/// Registrations and claims of one connection never touch another's.
pub async fn connections_are_isolated(store: Arc<dyn DeviceStore>) {
    let (a, b) = (ConnectionId::generate(), ConnectionId::generate());
    let (info_a, info_b) = (sample(PushPlatform::Fcm), sample(PushPlatform::Apns));
    set(&store, &a, &info_a).await;
    set(&store, &b, &info_b).await;
    assert_eq!(get(&store, &a).await, Some(info_a.clone()));
    assert_eq!(get(&store, &b).await, Some(info_b.clone()));
    assert!(
        !store
            .clear_if_token(&a, &info_b.token)
            .await
            .expect("clear_if_token failed"),
        "clear_if_token: another connection's token cleared this one"
    );
    assert!(store.clear(&a).await.expect("clear failed"));
    assert_eq!(
        get(&store, &b).await,
        Some(info_b),
        "clear: removed another connection's registration"
    );
    assert!(
        claim(&store, &a, 60_000).await,
        "claim: the first claim of a"
    );
    assert!(
        claim(&store, &b, 60_000).await,
        "claim: a's claim held b's notifications back"
    );
    assert!(!claim(&store, &a, 60_000).await);
    assert!(!claim(&store, &b, 60_000).await);
}

/// A claim is true once, then false for everyone for its interval, whatever interval the later
/// callers ask for and whether or not the registration changes meanwhile.
pub async fn a_claim_holds_for_its_interval(store: Arc<dyn DeviceStore>) {
    let c = ConnectionId::generate();
    set(&store, &c, &sample(PushPlatform::Fcm)).await;
    assert!(claim(&store, &c, 60_000).await, "claim: the first claim");
    for interval in [60_000, 1, 3_600_000] {
        assert!(
            !claim(&store, &c, interval).await,
            "claim: true again within the interval (asked with {interval} ms)"
        );
    }
    assert!(store.clear(&c).await.expect("clear failed"));
    set(&store, &c, &sample(PushPlatform::Apns)).await;
    assert!(
        !claim(&store, &c, 60_000).await,
        "claim: a new registration freed the connection's claim"
    );
    // A connection without any registration can be claimed too (the store does not judge).
    let bare = ConnectionId::generate();
    assert!(claim(&store, &bare, 60_000).await);
    assert!(!claim(&store, &bare, 60_000).await);
    // Past the longest interval a backend honours: still held, no overflow.
    let long = ConnectionId::generate();
    assert!(claim(&store, &long, u64::MAX).await, "claim: u64::MAX ms");
    assert!(!claim(&store, &long, 60_000).await, "claim: u64::MAX ms");
}

/// A claim of 0 ms holds nothing: every call is true.
pub async fn a_zero_interval_claims_nothing(store: Arc<dyn DeviceStore>) {
    let c = ConnectionId::generate();
    for _ in 0..3 {
        assert!(claim(&store, &c, 0).await, "claim: 0 ms held the claim");
    }
}

/// Once the interval since the successful claim has passed, the next claim is true again; and
/// never before it has passed.
pub async fn a_claim_lapses_after_its_interval(store: Arc<dyn DeviceStore>) {
    const INTERVAL: Duration = Duration::from_millis(100);
    // Clocks count whole milliseconds (the store's may round the start down, ours may not).
    const SLACK: Duration = Duration::from_millis(3);
    let c = ConnectionId::generate();
    let interval_ms = u64::try_from(INTERVAL.as_millis()).expect("small");
    let started = Instant::now();
    assert!(
        claim(&store, &c, interval_ms).await,
        "claim: the first claim"
    );
    // Waiting on the clock (a claim is a time): polled, bounded; no bound on how fast.
    let deadline = started + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if claim(&store, &c, interval_ms).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "claim: still false 10 s after a claim of {interval_ms} ms"
        );
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed + SLACK >= INTERVAL,
        "claim: true again after {elapsed:?}, within the interval of {INTERVAL:?}"
    );
    assert!(
        !claim(&store, &c, 60_000).await,
        "claim: the claim after the interval did not hold"
    );
}

/// Of many callers claiming one connection at once, exactly one gets true.
pub async fn concurrent_claims_have_one_winner(store: Arc<dyn DeviceStore>) {
    const CALLERS: usize = 20;
    let c = ConnectionId::generate();
    let start = Arc::new(Barrier::new(CALLERS));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (store, c, start) = (store.clone(), c.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                claim(&store, &c, 60_000).await
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        if task.await.expect("claiming task panicked") {
            winners += 1;
        }
    }
    assert_eq!(
        winners, 1,
        "claim: {CALLERS} concurrent claims of one connection"
    );
}

/// `list` pages every registration once, in byte order of the connection ids, with its latest
/// info; cleared ones are not listed; a short page is the last; a page of 0 is empty.
pub async fn list_pages_every_device_in_order(store: Arc<dyn DeviceStore>) {
    let mut mine = Vec::new();
    for n in 0..7 {
        let c = ConnectionId::generate();
        let platform = if n % 2 == 0 {
            PushPlatform::Fcm
        } else {
            PushPlatform::Apns
        };
        set(&store, &c, &sample(platform)).await;
        // Replaced: the newest is listed.
        let info = sample(platform);
        set(&store, &c, &info).await;
        mine.push((c, info));
    }
    let cleared = ConnectionId::generate();
    set(&store, &cleared, &sample(PushPlatform::Fcm)).await;
    assert!(store.clear(&cleared).await.expect("clear failed"));
    let gone = ConnectionId::generate();
    let info = sample(PushPlatform::Apns);
    set(&store, &gone, &info).await;
    assert!(store
        .clear_if_token(&gone, &info.token)
        .await
        .expect("clear_if_token failed"));
    mine.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));

    let mut listed = Vec::new();
    let mut after: Option<ConnectionId> = None;
    for _ in 0..1000 {
        let page = store.list(after.as_ref(), 3).await.expect("list failed");
        assert!(page.len() <= 3, "list: a page longer than its limit");
        for (id, _) in &page {
            if let Some(after) = &after {
                assert!(
                    id.as_str() > after.as_str(),
                    "list: {id} listed in a page after {after}, out of order or repeated"
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
        !listed.iter().any(|(id, _)| *id == cleared || *id == gone),
        "list: a cleared registration was listed"
    );
    let listed_mine: Vec<(ConnectionId, DeviceInfo)> = listed
        .into_iter()
        .filter(|(id, _)| mine.iter().any(|(c, _)| c == id))
        .collect();
    assert_eq!(
        listed_mine, mine,
        "list: the pages do not list every registration once, in order, with its latest info"
    );
    assert_eq!(
        store.list(None, 0).await.expect("list failed"),
        Vec::new(),
        "list: a page of limit 0 must be empty"
    );
    let (first, _) = &mine[0];
    let from_first = store.list(Some(first), 1).await.expect("list failed");
    assert!(
        from_first
            .iter()
            .all(|(id, _)| id.as_str() > first.as_str()),
        "list: `after` itself was listed"
    );
}
