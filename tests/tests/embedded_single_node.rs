//! kill -9 of a single mediator on the embedded store during live delivery to a real credo-ts
//! 0.5.19 client (issue 14).
//!
//! ONE mediator process (the real binary) on the embedded store in a temporary data directory:
//! no Redis, no master secret configured (it generates one and keeps it in the data directory).
//! A credo-ts 0.5.19 recipient is mediated by it in Pickup 2.0 Live Mode; a credo-ts sender
//! without mediator is connected to the recipient through our routing (its messages are
//! Forwards POSTed to the mediator's HTTP endpoint). Once a third of 150 messages arrived the
//! mediator is killed with SIGKILL and restarted on the same data directory and port; the sender
//! sends again each message whose send failed meanwhile (a message counts as accepted when
//! credo's send returned OK).
//!
//! Checked: every accepted message arrives (0 lost); the restarted mediator has the same
//! invitation; credo reconnects to it and turns live mode on again with no new handshake (its
//! connections and mediation record are unchanged, the restarted mediator logged no DID
//! Exchange, Connections or mediation request); the messages the recipient got twice are
//! counted and printed, with the mediator's `mediator_messages_redelivered_total`, and the
//! recipient never got a message more often than the mediator says it delivered it again.
//!
//! Needs `scripts/setup-interop-credo`.

use integration_tests::{
    cluster::KillScenario, credo::CredoVersion, embedded::kill_9_of_the_embedded_instance,
};

/// Messages sent (and a marker after them).
const MESSAGES: usize = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_single_embedded_mediator_during_credo_live_delivery() -> anyhow::Result<()> {
    let report = kill_9_of_the_embedded_instance(KillScenario::new(
        "embedded-kill",
        CredoVersion::V0_5,
        "embedded",
        MESSAGES,
    ))
    .await?;
    assert!(report.lost.is_empty(), "{report:?}");
    assert_eq!(report.accepted, MESSAGES, "{report:?}");
    Ok(())
}
