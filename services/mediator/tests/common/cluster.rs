//! What the tests of several in-process instances on one Redis (`cluster.rs`) and on a Redis
//! Cluster (`redis_cluster.rs`) share: waiting on in-process state, turning live mode on, and
//! waiting until every instance routes a connection to its holder.

use std::time::Duration;

use mediator_store::ConnectionId;
use serde_json::json;

use super::{Client, Instance, Ws};

/// Waits for a condition on in-process state (re-checked every 10 ms, 10 s at most).
pub async fn wait_for(mut condition: impl FnMut() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 10 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Turns live mode on on `ws`; the next frame must be the `status` saying so.
pub async fn go_live(client: &Client, ws: &mut Ws) {
    let change = Client::msg(
        "messagepickup/2.0/live-delivery-change",
        json!({"live_delivery": true}),
    );
    client.ws_send(ws, &change).await;
    let st = client.ws_next(ws).await;
    assert_eq!(st["live_delivery"], true, "{st}");
}

/// Every instance's routing cache says `holder` holds `conn`.
pub async fn routed_everywhere(instances: &[&Instance], conn: &ConnectionId, holder: &str) {
    for i in instances {
        wait_for(
            || {
                i.mediator
                    .cluster()
                    .routes()
                    .get(conn)
                    .is_some_and(|h| h.instance == holder)
            },
            &format!(
                "{} routes {conn} to {holder}",
                i.mediator.cluster().instance_id()
            ),
        )
        .await;
    }
}
