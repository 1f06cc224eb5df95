//! The ACA-Py harness against a real mediator: ACA-Py 1.7 itself (`--open-mediation`), the
//! baseline our mediator is measured against. An ACA-Py recipient takes the mediator's
//! invitation (`--mediator-invitation`), an ACA-Py sender without a mediator connects to the
//! recipient through the recipient's mediated invitation and sends 20 basic messages, which must
//! all reach the recipient's webhook.
//!
//! Needs `scripts/setup-interop-acapy` (a missing venv fails with that instruction, never a skip).
//! `ACAPY_TEST_LOG_LEVEL=debug ACAPY_TEST_LOG_DIR=<dir>` keeps every agent's full log, with each
//! plaintext DIDComm message, in `<dir>/<agent>.log`.

use std::{collections::BTreeSet, time::Duration};

use anyhow::{ensure, Context, Result};
use integration_tests::acapy::{acapy_available, key_bytes, AcaPyAgent, AcaPyConfig, Role};

const MESSAGES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acapy_mediator_relays_basic_messages_to_an_acapy_recipient() -> Result<()> {
    acapy_available().map_err(anyhow::Error::msg)?;

    // The agents are dropped (killed, wallets removed) on every return path, `?` included.
    let mediator = AcaPyAgent::start(AcaPyConfig::new("mediator", Role::Mediator)).await?;
    let mediator_invitation = mediator.create_invitation().await?;

    let recipient = AcaPyAgent::start(AcaPyConfig::new(
        "recipient",
        Role::Recipient {
            mediator_invitation: Some(mediator_invitation),
        },
    ))
    .await?;
    ensure!(
        recipient.mediator_connection().is_some(),
        "the recipient reports no connection to its mediator"
    );

    let sender = AcaPyAgent::start(AcaPyConfig::new("sender", Role::Plain)).await?;

    // The recipient's invitation must route through the mediator: its endpoint and routing key.
    let invitation = recipient.create_invitation_record(false).await?;
    ensure!(
        invitation.service_endpoint() == Some(mediator.endpoint()),
        "the recipient's invitation does not point at the mediator ({}): {}",
        mediator.endpoint(),
        invitation.message
    );
    let grant = recipient.admin_get("/mediation/default-mediator").await?;
    let granted_routing_keys: Vec<String> = grant["routing_keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k.as_str().map(String::from))
        .collect();
    let invitation_routing_keys = invitation.routing_keys();
    ensure!(
        !invitation_routing_keys.is_empty()
            && invitation_routing_keys
                .iter()
                .map(|k| key_bytes(k))
                .eq(granted_routing_keys.iter().map(|k| key_bytes(k))),
        "invitation routingKeys {invitation_routing_keys:?} are not the granted {granted_routing_keys:?}"
    );

    let to_recipient = sender.receive_invitation(&invitation.url).await?;
    let from_sender = recipient
        .connection_for_invitation(&invitation.invi_msg_id, Duration::from_secs(30))
        .await
        .context(
            "the recipient's side of the connection (didexchange complete via the mediator)",
        )?;
    // The sender resolved the recipient's DID doc: it must address the mediator, not the
    // recipient's own endpoint.
    let endpoints = sender
        .admin_get(&format!("/connections/{to_recipient}/endpoints"))
        .await?;
    ensure!(
        endpoints["their_endpoint"].as_str() == Some(mediator.endpoint()),
        "the sender sends to {} instead of the mediator {}",
        endpoints["their_endpoint"],
        mediator.endpoint()
    );

    let sent: Vec<String> = (0..MESSAGES)
        .map(|i| format!("reference message {i:02}"))
        .collect();
    for content in &sent {
        sender.send_message(&to_recipient, content).await?;
    }
    let received = recipient
        .collect_basic_messages(MESSAGES, Duration::from_secs(60))
        .await?;
    eprintln!("received in this order: {received:?}");
    let sent_set: BTreeSet<&String> = sent.iter().collect();
    let received_set: BTreeSet<&String> = received.iter().collect();
    ensure!(
        received.len() == MESSAGES && sent_set == received_set,
        "sent {sent:?}, the recipient got {received:?}"
    );

    // And back: the recipient answers through its own endpoint (no mediator on the sender side).
    recipient
        .send_message(&from_sender, "reply from the recipient")
        .await?;
    let reply = sender
        .collect_basic_messages(1, Duration::from_secs(30))
        .await?;
    ensure!(
        reply == ["reply from the recipient"],
        "sender got {reply:?}"
    );

    sender.shutdown().await?;
    recipient.shutdown().await?;
    mediator.shutdown().await?;
    Ok(())
}
