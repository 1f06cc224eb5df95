//! credo-ts 0.5.19 through OUR mediator. A credo recipient connects with DID Exchange 1.1 using
//! did:peer:1, did:peer:2 and did:peer:4, and (separately) with Connections 1.0; mediation is
//! granted and its key registered; a credo sender without a mediator connects to the recipient
//! through our routing and sends 20 basic messages; the recipient receives all 20 by Pickup 2.0
//! polling. Needs `scripts/setup-interop-credo`.

use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use integration_tests::{
    credo::{credo_available, free_port, CredoAgent, Handshake, InitOptions, PickupStrategy},
    our_mediator::TestMediator,
};

const MESSAGES: usize = 20;

async fn deliver(recipient_options: InitOptions) -> Result<()> {
    let what = format!(
        "{:?} / numalgo {}",
        recipient_options.handshake, recipient_options.did_peer_numalgo
    );
    let mut recipient = CredoAgent::spawn(&recipient_options.label).await?;
    let init = recipient
        .init(recipient_options.clone())
        .await
        .with_context(|| format!("{what}: recipient init against our mediator"))?;
    ensure!(
        init["mediationGranted"] == true,
        "{what}: no mediation: {init}"
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
    let connection = sender
        .receive_invitation(&invitation)
        .await
        .with_context(|| format!("{what}: sender connects to the recipient through our routing"))?;
    let sent: Vec<String> = (1..=MESSAGES)
        .map(|i| format!("{what} message {i:02}"))
        .collect();
    for content in &sent {
        sender.send_message(&connection, content).await?;
    }
    // Pickup is at-least-once: a message can be delivered again while its acknowledgement is in
    // flight (credo polls again before its `messages-received` is processed). Collect until every
    // message has arrived, and count the duplicates.
    let mut unique = std::collections::BTreeSet::new();
    let mut duplicates = 0usize;
    while unique.len() < MESSAGES {
        let batch = recipient
            .collect_basic_messages(1, Duration::from_secs(60))
            .await
            .with_context(|| format!("{what}: {} of {MESSAGES} received", unique.len()))?;
        for content in batch {
            if !unique.insert(content) {
                duplicates += 1;
            }
        }
    }
    let expected: std::collections::BTreeSet<String> = sent.iter().cloned().collect();
    ensure!(
        unique == expected,
        "{what}: received {unique:?}, sent {sent:?}"
    );
    eprintln!("{what}: {MESSAGES}/{MESSAGES} received, {duplicates} duplicate deliveries");
    sender.shutdown().await?;
    recipient.shutdown().await?;
    Ok(())
}

fn recipient(label: &str, invitation: &str, numalgo: u8, handshake: Handshake) -> InitOptions {
    InitOptions {
        did_peer_numalgo: numalgo,
        handshake,
        polling_interval_ms: 200,
        ..InitOptions::recipient(label, invitation, PickupStrategy::PickUpV2)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credo_did_exchange_peer1_peer2_peer4_through_our_mediator() -> Result<()> {
    credo_available().map_err(|e| anyhow!(e))?;
    let mediator = TestMediator::start(&[]).await?;
    let invitation = mediator.invitation_url();
    for numalgo in [1, 2, 4] {
        deliver(recipient(
            &format!("recipient-peer{numalgo}"),
            &invitation,
            numalgo,
            Handshake::DidExchange,
        ))
        .await?;
    }
    mediator.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credo_connections_1_0_through_our_mediator() -> Result<()> {
    credo_available().map_err(|e| anyhow!(e))?;
    let mediator = TestMediator::start(&[]).await?;
    let invitation = mediator.connections_invitation_url();
    deliver(recipient(
        "recipient-connections",
        &invitation,
        1,
        Handshake::Connections,
    ))
    .await?;
    mediator.stop().await;
    Ok(())
}

/// A wallet given only the short invitation URL (`<endpoint>/i`, as the mediator prints it and
/// draws its terminal QR code) resolves it and gets mediation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credo_gets_mediation_from_the_short_invitation_url() -> Result<()> {
    credo_available().map_err(|e| anyhow!(e))?;
    let mediator = TestMediator::start(&[]).await?;
    let short = mediator.short_invitation_url();
    ensure!(
        !short.contains("oob=") && short.len() < 40,
        "not a short URL: {short}"
    );
    deliver(recipient(
        "recipient-short-url",
        &short,
        4,
        Handshake::DidExchange,
    ))
    .await?;
    mediator.stop().await;
    Ok(())
}
