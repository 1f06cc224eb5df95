//! ACA-Py 1.7 through OUR mediator: an ACA-Py recipient started with `--mediator-invitation`
//! gets mediation granted; an ACA-Py sender without a mediator connects to it through the
//! recipient's mediated invitation and sends 20 basic messages; all 20 arrive, POSTed by our
//! mediator to the recipient's endpoint. Needs `scripts/setup-interop-acapy`.

use std::{collections::BTreeSet, time::Duration};

use anyhow::{ensure, Context, Result};
use integration_tests::{
    acapy::{acapy_available, key_bytes, AcaPyAgent, AcaPyConfig, Role},
    our_mediator::TestMediator,
};

const MESSAGES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acapy_recipient_and_sender_through_our_mediator() -> Result<()> {
    acapy_available().map_err(anyhow::Error::msg)?;
    let mediator = TestMediator::start(&[]).await?;

    let recipient = AcaPyAgent::start(AcaPyConfig::new(
        "recipient",
        Role::Recipient {
            mediator_invitation: Some(mediator.single_service_invitation_url()),
        },
    ))
    .await
    .context("ACA-Py recipient with our mediator (mediation must be granted)")?;

    let grant = recipient.admin_get("/mediation/default-mediator").await?;
    ensure!(
        grant["state"] == "granted",
        "mediation not granted: {grant}"
    );
    let routing_key = *mediator.mediator.keys().routing_key().verkey();
    let granted: Vec<String> = grant["routing_keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k.as_str().map(String::from))
        .collect();
    ensure!(
        granted.len() == 1
            && key_bytes(&granted[0]).as_deref() == Some(&routing_key.as_bytes()[..]),
        "granted routing keys {granted:?} are not our routing key"
    );

    let sender = AcaPyAgent::start(AcaPyConfig::new("sender", Role::Plain)).await?;
    let invitation = recipient.create_invitation_record(false).await?;
    ensure!(
        invitation.service_endpoint() == Some(mediator.endpoint.as_str()),
        "the recipient's invitation does not point at our mediator: {}",
        invitation.message
    );
    let to_recipient = sender.receive_invitation(&invitation.url).await?;
    recipient
        .connection_for_invitation(&invitation.invi_msg_id, Duration::from_secs(30))
        .await
        .context("the recipient's side of the connection (complete, forwarded by us)")?;

    let sent: Vec<String> = (0..MESSAGES)
        .map(|i| format!("through rust {i:02}"))
        .collect();
    for content in &sent {
        sender.send_message(&to_recipient, content).await?;
    }
    let received = recipient
        .collect_basic_messages(MESSAGES, Duration::from_secs(60))
        .await?;
    let sent_set: BTreeSet<&String> = sent.iter().collect();
    let received_set: BTreeSet<&String> = received.iter().collect();
    ensure!(
        received.len() == MESSAGES && sent_set == received_set,
        "sent {sent:?}, the recipient got {received:?}"
    );

    sender.shutdown().await?;
    recipient.shutdown().await?;
    mediator.stop().await;
    Ok(())
}
