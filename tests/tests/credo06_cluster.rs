//! credo-ts 0.6.3 (DIDComm in `@credo-ts/didcomm`) against our cluster: three instances of OUR
//! mediator (a, b, c) on one private Redis, the same topology as cluster_interop.rs
//! ([`Cluster`]: HTTP endpoint = a round-robin proxy in front of b and c, WebSocket endpoint = a).
//!
//! - Pickup 2.0 Live Mode, with did:peer:4 (credo 0.6's default for DID Exchange requests) and
//!   with did:peer:2: the recipient's live session is on a, two credo 0.6 senders' Forwards are
//!   taken only by b and c, and every one arrives live on a's session (N/N), the session never
//!   changing during the round ([`live_round`]).
//! - Pickup 2.0 polling (no live mode): every Forward taken by b or c is fetched with
//!   delivery-requests over HTTP (through the proxy, so by b and c), N/N, the queue drains.
//! - kill -9 of the instance holding the recipient's live session mid-stream (three mediator
//!   processes): nothing lost, at most 5% twice, and the survivors' duplicate counter
//!   (`mediator_messages_redelivered_total`) equals what the recipient saw twice
//!   ([`kill_9_of_the_live_holder`], as for credo 0.5.19 in cluster_interop.rs).
//!
//! Needs `scripts/setup-interop-credo-0.6` and `redis-server` on the PATH (or `$REDIS_SERVER`).

use std::{collections::BTreeSet, time::Duration};

use anyhow::{anyhow, ensure, Context, Result};
use integration_tests::{
    cluster::{
        contents, credo_send_all, invitation_connection, kill_9_of_the_live_holder,
        live_recipient_with, live_round, recipient_connected, recipient_invitation, round,
        wait_queue, Cluster, KillScenario, Recipient, Round, STATE_TIMEOUT,
    },
    credo::{
        credo_available_version, free_port, CredoAgent, CredoVersion, InitOptions, PickupStrategy,
    },
};
use serde_json::json;
use tokio::time::Instant;

/// Three instances, Redis and several credo-ts agents each: one test at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Messages per sender (two senders).
const MESSAGES: usize = 25;
const V0_6: CredoVersion = CredoVersion::V0_6;

fn available() -> Result<()> {
    credo_available_version(V0_6).map_err(|e| anyhow!(e))
}

/// The DID the agent uses on its connection `connection_id` (from its `status`).
async fn our_did(agent: &mut CredoAgent, connection_id: &str) -> Result<String> {
    let status = agent.status().await?;
    status["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["connectionId"] == connection_id)
        .and_then(|c| c["did"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            anyhow!(
                "{}: no DID on connection {connection_id}: {status}",
                agent.name()
            )
        })
}

/// `did:peer:4zQm…` shortened for messages.
fn short(did: &str) -> &str {
    &did[..did.len().min(16)]
}

/// Two credo 0.6 senders (no mediator, HTTP inbound of their own, DID Exchange with did:peer:
/// `numalgo`), each connected to the recipient through its invitation routed by the cluster.
async fn connect_senders(
    cluster: &Cluster,
    recipient: &mut Recipient,
    prefix: &str,
    numalgo: u8,
) -> Result<Vec<(CredoAgent, String)>> {
    let mut senders = Vec::new();
    for i in 1..=2 {
        let label = format!("{prefix}-sender-{i}");
        let mut sender = CredoAgent::spawn_version(&label, V0_6).await?;
        sender
            .init(InitOptions {
                did_peer_numalgo: numalgo,
                ..InitOptions::sender(&label, free_port()?)
            })
            .await
            .with_context(|| format!("{label}: init (no mediator)"))?;
        let url = recipient_invitation(cluster, recipient).await?;
        let connection = sender
            .receive_invitation(&url)
            .await
            .with_context(|| format!("{label}: connects to the recipient through the cluster"))?;
        recipient_connected(recipient, &label).await?;
        let did = our_did(&mut sender, &connection).await?;
        ensure!(
            did.starts_with(&format!("did:peer:{numalgo}")),
            "{label}: its DID with the recipient is {did}, not did:peer:{numalgo}"
        );
        senders.push((sender, connection));
    }
    wait_queue(&cluster.a.mediator, &recipient.conn, 0, STATE_TIMEOUT)
        .await
        .context("the handshake messages forwarded to the recipient acknowledged")?;
    Ok(senders)
}

/// Live mode with did:peer:`numalgo`: the recipient live on a, two senders through b and c.
async fn live_mode_through_b_and_c(numalgo: u8) -> Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    available()?;
    let started = Instant::now();
    let cluster = Cluster::start(&format!("credo06-live-peer{numalgo}"))
        .await
        .context("start the cluster")?;
    let label = format!("c06-live-p{numalgo}-recipient");
    let options = InitOptions {
        did_peer_numalgo: numalgo,
        ..InitOptions::recipient(
            &label,
            &cluster.a.invitation_url(),
            PickupStrategy::PickUpV2LiveMode,
        )
    };
    let mut recipient = live_recipient_with(&cluster, V0_6, options).await?;
    let recipient_up = started.elapsed();
    let status = recipient.agent.status().await?;
    let mediator_connection = status["mediator"]["connectionId"]
        .as_str()
        .ok_or_else(|| anyhow!("{label}: no default mediator in its status: {status}"))?
        .to_owned();
    let did = our_did(&mut recipient.agent, &mediator_connection).await?;
    ensure!(
        did.starts_with(&format!("did:peer:{numalgo}")),
        "{label}: its DID with our mediator is {did}, not did:peer:{numalgo}"
    );

    let mut senders = connect_senders(
        &cluster,
        &mut recipient,
        &format!("c06-live-p{numalgo}"),
        numalgo,
    )
    .await?;
    let connected = started.elapsed();
    let lists: Vec<Vec<String>> = senders
        .iter()
        .map(|(s, _)| contents(&format!("{} message", s.name()), MESSAGES))
        .collect();
    let expected: BTreeSet<String> = lists.iter().flatten().cloned().collect();
    let [(s1, c1), (s2, c2)] = &mut senders[..] else {
        anyhow::bail!("two senders expected");
    };
    let report = live_round(&cluster, &mut recipient, &expected, async {
        tokio::try_join!(
            credo_send_all(s1, c1, &lists[0]),
            credo_send_all(s2, c2, &lists[1]),
        )
        .map(|_| ())
    })
    .await
    .with_context(|| format!("did:peer:{numalgo}: 2 credo 0.6 senders x {MESSAGES} messages"))?;
    eprintln!(
        "credo 0.6 live mode, did:peer:{numalgo} ({} with the mediator): {report}; recipient \
         live {recipient_up:.1?}, senders connected {connected:.1?}, total {:.1?}",
        short(&did),
        started.elapsed()
    );
    for (sender, _) in &mut senders {
        sender.shutdown().await?;
    }
    recipient.agent.shutdown().await?;
    cluster.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credo06_live_mode_did_peer_4_receives_everything_live_on_a_from_senders_through_b_and_c(
) -> Result<()> {
    live_mode_through_b_and_c(4).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credo06_live_mode_did_peer_2_receives_everything_live_on_a_from_senders_through_b_and_c(
) -> Result<()> {
    live_mode_through_b_and_c(2).await
}

/// Pickup 2.0 polling (every 200 ms, no live mode): the recipient's status-requests and
/// delivery-requests go over HTTP to the proxy, so to b and c, which also take the senders'
/// Forwards; every message arrives and the queue drains; no instance holds a live session.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credo06_pickup_v2_polling_receives_everything_through_b_and_c() -> Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    available()?;
    let started = Instant::now();
    let cluster = Cluster::start("credo06-polling")
        .await
        .context("start the cluster")?;
    let label = "c06-polling-recipient";
    let mut agent = CredoAgent::spawn_version(label, V0_6).await?;
    let init = agent
        .init(InitOptions {
            did_peer_numalgo: 4,
            polling_interval_ms: 200,
            ..InitOptions::recipient(label, &cluster.a.invitation_url(), PickupStrategy::PickUpV2)
        })
        .await
        .with_context(|| format!("{label}: init against the cluster (polling)"))?;
    ensure!(
        init["pickupReady"] == true,
        "{label}: polling not running: {init}"
    );
    // Its connection on the mediator: the key of a first invitation names it (registered by
    // credo's keylist-update, on whichever instance took it).
    let answer = agent
        .request(json!({"cmd": "createInvitation"}), Duration::from_secs(40))
        .await
        .with_context(|| format!("{label}: an invitation routed through the cluster"))?;
    let conn = invitation_connection(&cluster.c.mediator, label, &answer).await?;
    let mut recipient = Recipient {
        agent,
        conn,
        session: 0,
    };
    let mut senders = connect_senders(&cluster, &mut recipient, "c06-polling", 4).await?;
    let lists: Vec<Vec<String>> = senders
        .iter()
        .map(|(s, _)| contents(&format!("{} message", s.name()), MESSAGES))
        .collect();
    let expected: BTreeSet<String> = lists.iter().flatten().cloned().collect();
    let n = expected.len() as u64;
    let [(s1, c1), (s2, c2)] = &mut senders[..] else {
        anyhow::bail!("two senders expected");
    };
    let Round {
        summary,
        all_arrived,
        queued,
        delivered,
        ..
    } = round(&cluster, &mut recipient, &expected, async {
        tokio::try_join!(
            credo_send_all(s1, c1, &lists[0]),
            credo_send_all(s2, c2, &lists[1]),
        )
        .map(|_| ())
    })
    .await
    .context("2 credo 0.6 senders x 25 messages to a polling recipient")?;
    let report = format!(
        "{}; all arrived {all_arrived:.1?} after the first send; Forwards queued by a, b, c \
         {queued:?}; delivered by a, b, c {delivered:?}; stats {}",
        summary,
        cluster.describe_stats()
    );
    eprintln!(
        "credo 0.6 pickup v2 polling: {report}; total {:.1?}",
        started.elapsed()
    );
    ensure!(
        queued[0] == 0 && queued[1] > 0 && queued[2] > 0 && queued[1] + queued[2] == n,
        "the Forwards went to both b and c, and only there; {report}"
    );
    ensure!(
        delivered[0] == 0 && delivered[1] + delivered[2] >= n,
        "the polling recipient's delivery-requests reach b and c only; {report}"
    );
    for (id, m) in cluster.instances() {
        ensure!(
            m.sessions().live_connections().is_empty(),
            "instance {id} holds a live session of a polling recipient: {:?}",
            m.sessions().live_connections()
        );
    }
    for (sender, _) in &mut senders {
        sender.shutdown().await?;
    }
    recipient.agent.shutdown().await?;
    cluster.stop().await;
    Ok(())
}

/// kill -9 of the instance holding a credo-ts 0.6.3 live session (did:peer:4) mid-stream, with a
/// credo-ts 0.6.3 sender: nothing lost, at most 5% twice, the survivors' duplicate counter equal
/// to what the recipient saw twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_instance_holding_a_credo06_live_session_loses_nothing_and_repeats_little(
) -> Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    available()?;
    let report =
        kill_9_of_the_live_holder(KillScenario::new("kill-credo06", V0_6, "c06-kill", 150)).await?;
    eprintln!(
        "credo 0.6 kill -9: {} duplicates, {} counted, in {:.1?}",
        report.duplicates, report.counted, report.elapsed
    );
    Ok(())
}
