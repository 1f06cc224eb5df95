//! The credo-ts harness against credo-ts itself as the mediator (the reference our mediator is
//! compared with): a mediated recipient, an unmediated sender with an HTTP endpoint, basic
//! messages from sender to recipient through the mediator. credo is installed by
//! `scripts/setup-interop-credo`; without it these tests fail with that instruction.

use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use integration_tests::credo::{
    credo_available, free_port, reference_mediator, reference_mediator_with, CredoAgent, Handshake,
    InitOptions, PickupStrategy, ReferenceMediatorOptions,
};

/// Connects a new sender to a new recipient (mediated per `recipient_options`), sends `n`
/// messages and checks that all arrive.
async fn deliver_through_mediator(recipient_options: InitOptions, n: usize) -> Result<()> {
    let what = format!(
        "{:?} / {:?} / numalgo {}",
        recipient_options.pickup_strategy,
        recipient_options.handshake,
        recipient_options.did_peer_numalgo
    );
    let mut recipient = CredoAgent::spawn(&recipient_options.label).await?;
    let init = recipient.init(recipient_options.clone()).await?;
    ensure!(
        init["mediationGranted"] == true,
        "{what}: no mediation: {init}"
    );
    ensure!(
        init["pickupReady"] == true,
        "{what}: pickup did not start: {init}"
    );

    let mut sender = CredoAgent::spawn("sender").await?;
    sender
        .init(InitOptions {
            handshake: recipient_options.handshake,
            did_peer_numalgo: recipient_options.did_peer_numalgo,
            ..InitOptions::sender("sender", free_port()?)
        })
        .await?;

    let invitation = recipient.create_invitation().await?;
    let connection = sender.receive_invitation(&invitation).await?;
    let sent: Vec<String> = (1..=n).map(|i| format!("message {i}/{n}")).collect();
    for content in &sent {
        sender.send_message(&connection, content).await?;
    }
    let mut received = recipient
        .collect_basic_messages(n, Duration::from_secs(60))
        .await
        .with_context(|| what.clone())?;
    received.sort();
    let mut expected = sent.clone();
    expected.sort();
    ensure!(
        received == expected,
        "{what}: received {received:?}, sent {sent:?}"
    );

    sender.shutdown().await?;
    recipient.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn credo_recipient_in_live_mode_receives_20_messages_through_the_reference_mediator(
) -> Result<()> {
    credo_available().map_err(|e| anyhow!(e))?;
    // Dropping the handles (also when a step fails) kills the processes.
    let (_mediator, invitation) = reference_mediator(free_port()?, free_port()?).await?;
    deliver_through_mediator(
        InitOptions::recipient("recipient", &invitation, PickupStrategy::PickUpV2LiveMode),
        20,
    )
    .await
}

/// Other pickup strategies, handshakes and DID methods of the harness, against the reference.
#[tokio::test]
async fn credo_pickup_strategies_and_handshakes_through_the_reference_mediator() -> Result<()> {
    credo_available().map_err(|e| anyhow!(e))?;
    let (_mediator, invitation) = reference_mediator(free_port()?, free_port()?).await?;
    deliver_through_mediator(
        InitOptions {
            handshake: Handshake::Connections,
            ..InitOptions::recipient(
                "recipient-v2-connections",
                &invitation,
                PickupStrategy::PickUpV2,
            )
        },
        5,
    )
    .await?;
    deliver_through_mediator(
        InitOptions {
            did_peer_numalgo: 4,
            ..InitOptions::recipient(
                "recipient-live-peer4",
                &invitation,
                PickupStrategy::PickUpV2LiveMode,
            )
        },
        5,
    )
    .await?;

    // Implicit pickup needs a mediator that sends on the open WebSocket: credo's DirectDelivery.
    let (_direct, direct_invitation) = reference_mediator_with(ReferenceMediatorOptions {
        forwarding: "DirectDelivery".into(),
        ..ReferenceMediatorOptions::new(free_port()?, free_port()?)
    })
    .await?;
    deliver_through_mediator(
        InitOptions::recipient(
            "recipient-implicit",
            &direct_invitation,
            PickupStrategy::Implicit,
        ),
        5,
    )
    .await
}
