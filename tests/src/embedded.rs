//! One mediator process (the real binary) on the embedded store, with no Redis and no master
//! secret configured (the one it generates and keeps in its data directory is used), and a kill
//! -9 of it while it delivers live to a credo-ts recipient: restarted on the same data directory
//! and port, it is the same mediator ([`kill_9_of_the_embedded_instance`]).
//!
//! Used by tests/tests/embedded_single_node.rs. Every process started here is killed when its
//! handle is dropped and the data directory removed, also when a test fails.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{anyhow, ensure, Context, Result};
use mediator::testing::MediatorProcess;
use serde_json::{json, Value};
use tokio::{sync::watch, time::Instant};

use crate::{
    cluster::{
        agent_connected, contents, credo_send_retrying, scrape, wait_until, KillScenario, Received,
        SendControl, SendTally, DELIVERY_TIMEOUT, STATE_TIMEOUT,
    },
    credo::{credo_available_version, free_port, CredoAgent, InitOptions, PickupStrategy},
};

/// How many messages the sender may be ahead of the recipient before the kill.
const AHEAD: usize = 10;

/// How often the mediator samples its queue depth (`mediator_queue_messages`), ms.
const QUEUE_SAMPLE_MS: &str = "100";

/// A directory of its own under the system's temporary directory, removed (with everything in
/// it) on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// `<tmp>/<name>-<pid>-<nanoseconds>`, created empty.
    pub fn new(name: &str) -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let path = std::env::temp_dir().join(format!("{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("create {}", path.display()))?;
        Ok(Self(path))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How many lines of the log at `path` contain `text`.
pub fn log_lines_with(path: &Path, text: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(text))
        .count()
}

/// What the mediator logs when it makes a connection (DID Exchange or Connections 1.0) or
/// answers a mediation request: none of these may happen after the restart.
pub const HANDSHAKE_LOG_LINES: [&str; 3] = [
    "DID exchange request accepted",
    "connections request accepted",
    "mediation request answered",
];

/// The mediator's invitation URL (`GET /invitation?format=url`).
pub async fn invitation_url(base: &str) -> Result<String> {
    let response = reqwest::get(format!("{base}/invitation?format=url"))
        .await
        .with_context(|| format!("GET {base}/invitation?format=url"))?;
    ensure!(
        response.status().is_success(),
        "GET {base}/invitation?format=url: {}",
        response.status()
    );
    Ok(response.text().await?.trim().to_owned())
}

/// Waits until the queues of the mediator whose metrics are at `metrics` hold nothing, waiting or
/// in flight (`mediator_queue_messages`, sampled every [`QUEUE_SAMPLE_MS`]): every message
/// delivered was acknowledged.
pub async fn wait_queues_empty(what: &str, metrics: &str) -> Result<()> {
    wait_until(what, STATE_TIMEOUT, || async move {
        let held = scrape(metrics, "mediator_queue_messages").await?;
        Ok((held == 0.0, format!("{held} messages queued or in flight")))
    })
    .await
}

/// The recipient's view of its mediator (credo's `status`): its connections and the default
/// mediation record.
#[derive(Debug, Clone, PartialEq)]
pub struct MediatorView {
    /// Every connection credo has: id, their label, state.
    pub connections: BTreeSet<(String, String, String)>,
    /// The mediation record (id, connection id, state, routing keys, endpoint).
    pub mediation: Value,
}

impl MediatorView {
    /// From credo's `status` answer.
    pub fn of(status: &Value) -> Self {
        let field = |c: &Value, name: &str| c[name].as_str().unwrap_or_default().to_owned();
        let connections = status["connections"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|c| {
                        (
                            field(c, "connectionId"),
                            field(c, "theirLabel"),
                            field(c, "state"),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let m = &status["mediator"];
        Self {
            connections,
            mediation: json!({
                "mediationId": m["mediationId"],
                "connectionId": m["connectionId"],
                "state": m["state"],
                "routingKeys": m["routingKeys"],
                "endpoint": m["endpoint"],
            }),
        }
    }
}

/// Polls the agent's `status` until live mode is on again (credo turns it on after it
/// reconnected), within [`STATE_TIMEOUT`]; returns that status.
pub async fn wait_live_again(agent: &mut CredoAgent) -> Result<Value> {
    let deadline = Instant::now() + STATE_TIMEOUT;
    loop {
        let status = agent.status().await?;
        if status["liveModeActive"] == true && status["mediatorSocketOpen"] == true {
            return Ok(status);
        }
        ensure!(
            Instant::now() < deadline,
            "{}: live mode not on again within {STATE_TIMEOUT:?}: {status}",
            agent.name()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What [`kill_9_of_the_embedded_instance`] saw.
#[derive(Debug, Clone)]
pub struct EmbeddedKillReport {
    /// Messages received once before the kill.
    pub killed_at: usize,
    /// Messages whose send credo reported done.
    pub accepted: usize,
    /// Sends that failed (the mediator down) and were sent again.
    pub failed_sends: usize,
    /// Accepted messages the recipient never received.
    pub lost: Vec<String>,
    /// Deliveries of a content received before (any cause).
    pub duplicates: usize,
    /// Deliveries of a DIDComm message (same id) received before: the mediator's redeliveries.
    pub redeliveries: usize,
    /// Contents received under two message ids (a failed send the mediator had taken, sent
    /// again).
    pub resent: usize,
    /// `mediator_messages_redelivered_total` of the first process (scraped just before the kill)
    /// and of the restarted one.
    pub counted: (f64, f64),
    /// The recipient's summary.
    pub summary: String,
    /// How long the scenario took.
    pub elapsed: Duration,
}

/// kill -9 of a single mediator process on the embedded store (a temporary data directory, no
/// Redis, no master secret) while it delivers live to a credo-ts recipient (Pickup 2.0 Live
/// Mode), mid-stream; restarted at once on the same data directory and port.
///
/// A credo-ts sender without mediator, connected to the recipient through our routing, sends
/// `scenario.messages` messages (Forwards over the mediator's HTTP endpoint) and sends again each
/// one whose send failed while the mediator was down ([`credo_send_retrying`]). The mediator is
/// killed once a third has arrived. Checked: every accepted message arrives (none lost); the
/// restarted process has the same invitation; the recipient reconnects to it with no new
/// handshake (its connections and mediation record are unchanged, and the restarted mediator
/// logged no DID Exchange, Connections or mediation request); live mode comes back on. A marker
/// sent once every queue is empty (all acknowledged) closes the count of duplicates.
pub async fn kill_9_of_the_embedded_instance(scenario: KillScenario) -> Result<EmbeddedKillReport> {
    credo_available_version(scenario.recipient_version).map_err(|e| anyhow!(e))?;
    credo_available_version(scenario.sender_version).map_err(|e| anyhow!(e))?;
    // Dropped in reverse order: the processes are killed, then their data directory removed.
    let dir = TempDir::new(&scenario.name)?;
    let mut procs: [Option<MediatorProcess>; 2] = [None, None];
    let result = kill_and_restart(scenario, dir.path(), &mut procs).await;
    result.map_err(|e| {
        // The processes' logs go with them: their ends, for the failure's reader.
        let mut logs = String::new();
        for p in procs.iter().flatten() {
            let log = std::fs::read_to_string(&p.log).unwrap_or_default();
            // Not the invitation's QR code.
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| !l.contains('█') && !l.contains('▀'))
                .collect();
            let tail = lines[lines.len().saturating_sub(60)..].join("\n");
            logs.push_str(&format!(
                "\n--- mediator {} (last 60 lines) ---\n{tail}",
                p.name
            ));
        }
        e.context(format!("the mediator processes' logs:{logs}"))
    })
}

async fn kill_and_restart(
    scenario: KillScenario,
    dir: &Path,
    procs: &mut [Option<MediatorProcess>; 2],
) -> Result<EmbeddedKillReport> {
    let n = scenario.messages;
    let started = Instant::now();
    let data = dir.join("data");
    let port = free_port()?;
    let metrics = [
        format!("127.0.0.1:{}", free_port()?),
        format!("127.0.0.1:{}", free_port()?),
    ];
    let env = |metrics: &str| -> Vec<(&'static str, String)> {
        vec![
            ("MEDIATOR_TELEMETRY__PROMETHEUS__LISTEN", metrics.to_owned()),
            (
                "MEDIATOR_TELEMETRY__QUEUE_SAMPLE_INTERVAL_MS",
                QUEUE_SAMPLE_MS.to_owned(),
            ),
            // Longer than credo takes to acknowledge a burst here: what is delivered again is
            // what the kill cost, not slow acknowledgements.
            ("MEDIATOR_PICKUP__REDELIVERY_AFTER_MS", "10000".to_owned()),
        ]
    };
    let start = |name: String, metrics: &str| {
        let env = env(metrics);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        MediatorProcess::start_embedded_on(port, &name, &data, &env)
    };
    let [first_slot, second_slot] = procs;
    let first = first_slot.insert(start(format!("{}-1", scenario.name), &metrics[0]));
    first
        .try_ready()
        .await
        .map_err(|log| anyhow!("the mediator did not start; its log:\n{log}"))?;
    let base = first.base.clone();
    let invitation = invitation_url(&base).await?;

    let label = scenario.recipient.label.clone();
    let label = label.as_str();
    let mut recipient = CredoAgent::spawn_version(label, scenario.recipient_version).await?;
    let init = recipient
        .init(InitOptions {
            mediator_invitation_url: Some(invitation.clone()),
            pickup_strategy: PickupStrategy::PickUpV2LiveMode,
            ..scenario.recipient.clone()
        })
        .await
        .with_context(|| format!("{label}: init against the embedded mediator"))?;
    ensure!(
        init["pickupReady"] == true,
        "{label}: live mode not on: {init}"
    );
    let sender_label = scenario.sender.label.clone();
    let sender_label = sender_label.as_str();
    let mut sender = CredoAgent::spawn_version(sender_label, scenario.sender_version).await?;
    sender
        .init(InitOptions {
            mediator_invitation_url: None,
            pickup_strategy: PickupStrategy::None,
            inbound_port: Some(free_port()?),
            ..scenario.sender.clone()
        })
        .await
        .with_context(|| format!("{sender_label}: init (no mediator)"))?;
    let url = recipient
        .create_invitation()
        .await
        .context("the recipient's invitation")?;
    let connection = sender
        .receive_invitation(&url)
        .await
        .context("the sender connects to the recipient through the mediator")?;
    agent_connected(&mut recipient, sender_label).await?;
    wait_queues_empty("the handshake forwards acknowledged", &metrics[0]).await?;
    let before = MediatorView::of(&recipient.status().await?);
    ensure!(
        before.mediation["state"] == "granted" && before.connections.len() == 2,
        "{label}: expected a granted mediation and two connections (mediator, sender): {before:?}"
    );

    let sent = contents("embedded kill-9 message", n);
    let marker = "embedded kill-9 marker".to_owned();
    let mut expected: BTreeSet<String> = sent.iter().cloned().collect();
    expected.insert(marker.clone());
    let ready_url = format!("{base}/readyz");
    // The sender stays AHEAD messages ahead of the recipient until the kill, then goes on
    // freely: its next sends find the mediator dead.
    let (allowed, allowed_rx) = watch::channel(AHEAD);
    let (progress_tx, mut progress) = watch::channel(SendTally::default());
    let sending = {
        let ready_url = ready_url.clone();
        let control = SendControl {
            allowed: allowed_rx,
            progress: progress_tx,
        };
        tokio::spawn(async move {
            credo_send_retrying(
                &mut sender,
                &connection,
                &sent,
                &ready_url,
                DELIVERY_TIMEOUT,
                Some(control),
            )
            .await
            .map(|tally| (sender, connection, tally))
        })
    };
    let mut received = Received::new(&expected);
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while received.unique.len() < n / 3 {
        received
            .take_one(&mut recipient, deadline)
            .await
            .context("before the kill")?;
        allowed.send_replace(received.unique.len() + AHEAD);
    }
    let counted_first = scrape(&metrics[0], "mediator_messages_redelivered_total").await?;
    first.kill9();
    let killed_at = received.unique.len();
    let accepted_at_kill = progress.borrow().accepted.len();
    allowed.send_replace(usize::MAX);
    // Restarted once a send has failed against the dead mediator (the sender sends again).
    tokio::time::timeout(
        STATE_TIMEOUT,
        progress.wait_for(|tally| !tally.failures.is_empty()),
    )
    .await
    .map_err(|_| anyhow!("no send failed within {STATE_TIMEOUT:?} of the kill"))?
    .map_err(|_| anyhow!("the sender stopped before a send failed"))?;
    eprintln!(
        "killed the mediator with {killed_at}/{n} received and {accepted_at_kill} accepted; a \
         send failed: restarting it"
    );

    // The same directory and port, still no secret configured: the same mediator.
    let second = second_slot.insert(start(format!("{}-2", scenario.name), &metrics[1]));
    second
        .try_ready()
        .await
        .map_err(|log| anyhow!("the mediator did not restart; its log:\n{log}"))?;
    let invitation_after = invitation_url(&second.base).await?;
    ensure!(
        invitation_after == invitation,
        "the restarted mediator has another invitation:\n{invitation_after}\nbefore:\n{invitation}"
    );

    let (mut sender, connection, tally) = sending
        .await?
        .context("the sender sends every message (again after a failure)")?;
    let accepted: BTreeSet<String> = tally.accepted.iter().cloned().collect();
    ensure!(accepted.len() == n, "{} of {n} accepted", accepted.len());
    while !accepted.is_subset(&received.unique) {
        if let Err(e) = received.take_one(&mut recipient, deadline).await {
            let lost: Vec<&String> = accepted.difference(&received.unique).collect();
            return Err(e.context(format!(
                "after the restart: {} of the {} accepted messages never arrived (lost: \
                 {lost:?}); {}",
                lost.len(),
                accepted.len(),
                received.summary()
            )));
        }
    }
    let lost: Vec<String> = accepted.difference(&received.unique).cloned().collect();
    wait_queues_empty("every message acknowledged", &metrics[1]).await?;
    let marker_sent = credo_send_retrying(
        &mut sender,
        &connection,
        std::slice::from_ref(&marker),
        &ready_url,
        STATE_TIMEOUT,
        None,
    )
    .await
    .context("the marker")?;
    while !received.unique.contains(&marker) {
        received.take_one(&mut recipient, deadline).await?;
    }
    let counted_second = scrape(&metrics[1], "mediator_messages_redelivered_total").await?;
    let after_status = wait_live_again(&mut recipient).await?;
    let after = MediatorView::of(&after_status);

    let handshakes_first: Vec<usize> = HANDSHAKE_LOG_LINES
        .iter()
        .map(|l| log_lines_with(&first.log, l))
        .collect();
    let handshakes_second: Vec<usize> = HANDSHAKE_LOG_LINES
        .iter()
        .map(|l| log_lines_with(&second.log, l))
        .collect();
    let report = EmbeddedKillReport {
        killed_at,
        accepted: accepted.len(),
        failed_sends: tally.failures.len() + marker_sent.failures.len(),
        lost,
        duplicates: received.duplicates.len(),
        redeliveries: received.redeliveries(),
        resent: received.resent().len(),
        counted: (counted_first, counted_second),
        summary: received.summary(),
        elapsed: started.elapsed(),
    };
    eprintln!(
        "kill -9 of the single embedded instance ({} recipient, {} sender): {n} sent, {} \
         accepted, {} failed sends sent again ({:?}); {} ({killed_at} before the kill); lost {}; \
         seen twice: {} ({} the same message delivered again, {} sent twice by the sender); \
         mediator_messages_redelivered_total: {counted_first} before the kill + \
         {counted_second} after the restart; handshake log lines (DID Exchange, Connections, \
         mediation) before the kill {handshakes_first:?}, after the restart \
         {handshakes_second:?}; total {:.1?}",
        scenario.recipient_version,
        scenario.sender_version,
        report.accepted,
        report.failed_sends,
        tally
            .failures
            .iter()
            .map(|(c, _)| c.as_str())
            .collect::<Vec<_>>(),
        report.summary,
        report.lost.len(),
        report.duplicates,
        report.redeliveries,
        report.resent,
        report.elapsed
    );
    ensure!(report.lost.is_empty(), "lost: {:?}", report.lost);
    ensure!(
        after == before,
        "{label}: its connections or mediation changed across the restart (a new handshake?):\n\
         before {before:?}\nafter  {after:?}"
    );
    ensure!(
        handshakes_second.iter().all(|n| *n == 0),
        "the restarted mediator made a connection or answered a mediation request (log lines \
         {HANDSHAKE_LOG_LINES:?}: {handshakes_second:?}); its log: {}",
        second.log.display()
    );
    ensure!(
        handshakes_first == [1, 0, 1],
        "the first process should have made exactly one connection (the recipient's DID \
         Exchange) and answered one mediation request (log lines {HANDSHAKE_LOG_LINES:?}: \
         {handshakes_first:?})"
    );
    ensure!(
        report.redeliveries as f64 <= counted_first + counted_second,
        "the recipient got {} deliveries of a message it had had already, the mediator counted \
         {} redeliveries",
        report.redeliveries,
        counted_first + counted_second
    );
    sender.shutdown().await?;
    recipient.shutdown().await?;
    ensure!(
        second.sigterm_and_wait(Duration::from_secs(20)),
        "the restarted mediator did not stop cleanly on SIGTERM; its log: {}",
        std::fs::read_to_string(&second.log).unwrap_or_default()
    );
    Ok(report)
}
