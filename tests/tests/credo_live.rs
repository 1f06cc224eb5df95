//! Live Mode and the other pickups of credo-ts 0.5.19 against OUR mediator, with real agents.
//!
//! - Pickup 2.0 Live Mode: 50 messages reach the recipient while its live session stays up; then
//!   the mediator closes that WebSocket and refuses new ones (503), 20 messages wait in the queue
//!   while the recipient is away, and once WebSockets are admitted again credo reconnects, picks
//!   them up and turns live mode back on; nothing acknowledged is delivered again.
//! - Pickup 2.0 polling: 50 of 50. Pickup 1.0 polling (credo's `PickUpV1`): 50 of 50.
//! - Implicit pickup (a WebSocket kept open with return route) with `direct` forwarding: 50 of 50,
//!   each removed from the queue once the socket's pong confirms it.
//!
//! Pickup is at-least-once, so duplicates (deliveries before the acknowledgement) are counted and
//! printed; a message delivered again after it was acknowledged fails. Every round waits until
//! the recipient has processed every delivery the mediator made (its `delivered` counter), so a
//! late duplicate is never mistaken for a redelivery after acknowledgement, nor missed.
//! Needs `scripts/setup-interop-credo`.

use std::{collections::BTreeSet, time::Duration};

use anyhow::{anyhow, ensure, Context, Result};
use integration_tests::{
    cluster::{
        contents, credo_send_all, invitation_connection, pending_session_events, wait_queue,
        Received,
    },
    credo::{credo_available, free_port, CredoAgent, InitOptions, PickupStrategy},
    our_mediator::TestMediator,
};
use mediator::{
    sessions::{LiveSessionChange, LiveSessionEvent},
    Mediator,
};
use mediator_store::ConnectionId;
use serde_json::json;
use tokio::{
    sync::broadcast,
    time::{timeout, Instant},
};

/// Messages of the first round (and of the polling and implicit tests).
const FIRST: usize = 50;
/// Messages sent while the live recipient's WebSocket is refused.
const SECOND: usize = 20;
/// How long a round of deliveries may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the mediator's queue may take to reach a count.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);
/// Refused reconnections (credo `socketClosed` events after the mediator's close) to wait for
/// before the second round is sent. credo retries after 100 ms, doubling, and each retry first
/// polls over HTTP (status-request, delivery-requests) and only then tries the WebSocket
/// (live-delivery-change); after the 6th refusal the next retry is 6.4 s away: time to send the
/// second round (well under a second) and see it wait in the queue, with nobody picking it up.
const REFUSED_RECONNECTS_BEFORE_SENDING: usize = 6;

/// A credo recipient mediated by our mediator, and a credo sender without mediator connected to
/// the recipient through our routing.
struct Pair {
    recipient: CredoAgent,
    sender: CredoAgent,
    /// The sender's connection to the recipient (credo's id).
    connection: String,
    /// The recipient's connection on the mediator.
    conn: ConnectionId,
}

/// Starts a [`Pair`]. The recipient's pickup is running when its init returns (live mode on, or
/// its WebSocket open); the recipient's side of its connection with the sender is complete and
/// the handshake messages forwarded to it are acknowledged (its queue is empty).
async fn recipient_and_sender(m: &Mediator, recipient_options: InitOptions) -> Result<Pair> {
    let label = recipient_options.label.clone();
    let pickup = recipient_options.pickup_strategy;
    let mut recipient = CredoAgent::spawn(&label).await?;
    let init = recipient
        .init(recipient_options)
        .await
        .with_context(|| format!("{label} ({pickup:?}): init against our mediator"))?;
    ensure!(
        init["pickupReady"] == true,
        "{label} ({pickup:?}): pickup not running after init (live mode not on / no WebSocket): {init}"
    );
    let sender_label = format!("{label}-sender");
    let mut sender = CredoAgent::spawn(&sender_label).await?;
    sender
        .init(InitOptions::sender(&sender_label, free_port()?))
        .await
        .with_context(|| format!("{sender_label}: init"))?;
    // `request` rather than `create_invitation`: the answer's invitation JSON has the recipient
    // key, registered by credo's keylist-update, which names the connection on the mediator.
    let answer = recipient
        .request(json!({"cmd": "createInvitation"}), Duration::from_secs(40))
        .await
        .with_context(|| format!("{label}: create an invitation routed through our mediator"))?;
    let url = answer["invitationUrl"]
        .as_str()
        .ok_or_else(|| anyhow!("{label}: createInvitation without invitationUrl: {answer}"))?;
    let conn = invitation_connection(m, &label, &answer).await?;
    let connection = sender.receive_invitation(url).await.with_context(|| {
        format!("{label}: the sender connects to the recipient through our mediator")
    })?;
    // The sender's side completes first; the recipient's needs the sender's `complete`, forwarded
    // through our mediator. Wait for it, so that the rounds count only basic messages.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = recipient
            .next_event("connectionState", left)
            .await
            .with_context(|| format!("{label}: its connection with the sender completes"))?;
        if event["state"] == "completed" && event["theirLabel"] == sender_label.as_str() {
            break;
        }
    }
    wait_queue(m, &conn, 0, QUEUE_TIMEOUT)
        .await
        .with_context(|| format!("{label}: the handshake messages forwarded to it acknowledged"))?;
    Ok(Pair {
        recipient,
        sender,
        connection,
        conn,
    })
}

/// Waits for the agent's next `liveSession` event with this `state`, skipping others.
async fn wait_live_state(agent: &mut CredoAgent, state: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = agent
            .next_event("liveSession", left)
            .await
            .with_context(|| {
                format!(
                    "{}: no liveSession `{state}` within {limit:?}",
                    agent.name()
                )
            })?;
        if event["state"] == state {
            return Ok(());
        }
    }
}

/// The next live-session event of `conn` with this change.
async fn wait_session_event(
    events: &mut broadcast::Receiver<LiveSessionEvent>,
    conn: &ConnectionId,
    change: LiveSessionChange,
    limit: Duration,
) -> Result<LiveSessionEvent> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = timeout(left, events.recv())
            .await
            .map_err(|_| anyhow!("no {change:?} live-session event of {conn} within {limit:?}"))?
            .context("live-session events")?;
        if &event.connection_id == conn && event.change == change {
            return Ok(event);
        }
    }
}

/// No message is forbidden.
static NOTHING: BTreeSet<String> = BTreeSet::new();

/// [`contents`] as a set.
fn content_set(prefix: &str, n: usize) -> BTreeSet<String> {
    contents(prefix, n).into_iter().collect()
}

/// One round without interruption: sends `sent`, takes them all, waits until the queue is empty
/// (all acknowledged) and the recipient has processed every delivery made.
async fn plain_round<'a>(
    m: &Mediator,
    pair: &mut Pair,
    sent: &'a BTreeSet<String>,
    forbidden: &'a BTreeSet<String>,
) -> Result<(Received<'a>, Duration)> {
    let before = m.stats().snapshot();
    let started = Instant::now();
    let list: Vec<String> = sent.iter().cloned().collect();
    credo_send_all(&mut pair.sender, &pair.connection, &list)
        .await
        .context("sender")?;
    let mut received = Received::with_forbidden(sent, forbidden);
    received
        .until_all(&mut pair.recipient, DELIVERY_TIMEOUT)
        .await?;
    let elapsed = started.elapsed();
    wait_queue(m, &pair.conn, 0, QUEUE_TIMEOUT)
        .await
        .context("every message acknowledged (queue drained)")?;
    let after = m.stats().snapshot();
    ensure!(
        after.delivered - before.delivered >= sent.len() as u64
            && after.acknowledged - before.acknowledged >= sent.len() as u64,
        "stats before {before:?}, after {after:?}: fewer than {} delivered / acknowledged",
        sent.len()
    );
    let deliveries = (after.delivered - before.delivered) as usize;
    received
        .until_deliveries(&mut pair.recipient, deliveries, DELIVERY_TIMEOUT)
        .await
        .context("the recipient processes every delivery the mediator made")?;
    Ok((received, elapsed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credo_live_mode_receives_everything_live_and_after_the_mediator_drops_its_socket(
) -> Result<()> {
    credo_available().map_err(|e| anyhow!(e))?;
    let started = Instant::now();
    let mediator = TestMediator::start(&[])
        .await
        .context("start our mediator (queue-and-live forwarding)")?;
    let m = mediator.mediator.clone();
    let mut session_events = m.sessions().subscribe();

    let mut pair = recipient_and_sender(
        &m,
        InitOptions::recipient(
            "live-recipient",
            &mediator.invitation_url(),
            PickupStrategy::PickUpV2LiveMode,
        ),
    )
    .await?;
    let live = m.sessions().live_connections();
    ensure!(
        live.len() == 1,
        "one live session expected on the mediator after credo turned live mode on, found {live:?}"
    );
    let (conn, session) = live[0].clone();
    ensure!(
        conn == pair.conn,
        "the live session is of connection {conn}, the recipient's invitation key of {}",
        pair.conn
    );
    let opened = pending_session_events(&mut session_events);
    ensure!(
        opened.iter().any(|e| e.change == LiveSessionChange::Opened
            && e.connection_id == conn
            && e.session_id == session),
        "no Opened event for the live session {conn}/{session}: {opened:?}"
    );

    // Round 1: 50 messages while live.
    let round1 = content_set("live round 1 message", FIRST);
    let (got1, round1_time) = plain_round(&m, &mut pair, &round1, &NOTHING)
        .await
        .context("round 1 (live)")?;
    // Live: the session that was live before the round is still the live one and never closed
    // (credo only turns live mode on again after its socket closed).
    let during1 = pending_session_events(&mut session_events);
    ensure!(
        during1.is_empty(),
        "round 1: the live session changed while it was supposed to stay live: {during1:?}"
    );
    ensure!(
        m.sessions().live_connections() == vec![(conn.clone(), session)],
        "round 1: live sessions now {:?}, expected still {conn}/{session}",
        m.sessions().live_connections()
    );

    // The mediator drops the socket and refuses new ones.
    m.set_websocket_admission(false);
    let asked = m.sessions().close_connection(&conn);
    ensure!(asked >= 1, "close_connection({conn}) closed no session");
    wait_session_event(
        &mut session_events,
        &conn,
        LiveSessionChange::Closed,
        Duration::from_secs(10),
    )
    .await
    .context("the mediator announces the end of the live session")?;
    wait_live_state(&mut pair.recipient, "socketClosed", Duration::from_secs(10))
        .await
        .context("credo sees its WebSocket closed by the mediator")?;
    let down = Instant::now();
    for attempt in 1..=REFUSED_RECONNECTS_BEFORE_SENDING {
        wait_live_state(&mut pair.recipient, "socketClosed", Duration::from_secs(20))
            .await
            .with_context(|| format!("credo's reconnection attempt {attempt} refused (503)"))?;
    }
    let refused_for = down.elapsed();
    ensure!(
        m.sessions().live_connections().is_empty(),
        "a live session exists while WebSockets are refused: {:?}",
        m.sessions().live_connections()
    );

    // Round 2: 20 messages while the recipient is away: they wait in the queue.
    let round2 = content_set("live round 2 message", SECOND);
    let before2 = m.stats().snapshot();
    let round2_started = Instant::now();
    let list: Vec<String> = round2.iter().cloned().collect();
    credo_send_all(&mut pair.sender, &pair.connection, &list)
        .await
        .context("round 2 (recipient away): sender")?;
    wait_queue(&m, &conn, SECOND, QUEUE_TIMEOUT)
        .await
        .context("round 2: the messages sent while WebSockets are refused wait in the queue")?;
    ensure!(
        m.stats().snapshot().delivered == before2.delivered,
        "round 2: delivered while the recipient's WebSocket was refused: before {before2:?}, now {:?}",
        m.stats().snapshot()
    );

    // WebSockets admitted again: credo reconnects, picks up the 20, turns live mode back on.
    m.set_websocket_admission(true);
    let mut got2 = Received::with_forbidden(&round2, &round1);
    got2.until_all(&mut pair.recipient, DELIVERY_TIMEOUT)
        .await
        .context("round 2 (after reconnecting)")?;
    let round2_time = round2_started.elapsed();
    wait_live_state(&mut pair.recipient, "live", Duration::from_secs(30))
        .await
        .context("credo turns live mode on again after reconnecting")?;
    let reopened = wait_session_event(
        &mut session_events,
        &conn,
        LiveSessionChange::Opened,
        Duration::from_secs(10),
    )
    .await
    .context("the mediator announces the new live session")?;
    wait_queue(&m, &conn, 0, QUEUE_TIMEOUT)
        .await
        .context("round 2: every message acknowledged (queue drained)")?;
    let after2 = m.stats().snapshot();
    got2.until_deliveries(
        &mut pair.recipient,
        (after2.delivered - before2.delivered) as usize,
        DELIVERY_TIMEOUT,
    )
    .await
    .context("round 2: the recipient processes every delivery the mediator made")?;
    let live = m.sessions().live_connections();
    ensure!(
        live == vec![(conn.clone(), reopened.session_id)] && reopened.session_id != session,
        "after reconnecting: live sessions {live:?}, expected the new session {} of {conn}",
        reopened.session_id
    );

    eprintln!(
        "credo live mode: round 1 (live) {} in {round1_time:.1?}; WebSockets refused for \
         {refused_for:.1?} ({REFUSED_RECONNECTS_BEFORE_SENDING} reconnections refused) before \
         round 2; round 2 (queued while away) {} in {round2_time:.1?}; nothing redelivered after \
         acknowledgement; mediator stats {:?}; total {:.1?}",
        got1.summary(),
        got2.summary(),
        m.stats().snapshot(),
        started.elapsed()
    );
    pair.sender.shutdown().await?;
    pair.recipient.shutdown().await?;
    mediator.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credo_pickup_v2_polling_receives_50_of_50() -> Result<()> {
    credo_available().map_err(|e| anyhow!(e))?;
    let started = Instant::now();
    let mediator = TestMediator::start(&[])
        .await
        .context("start our mediator")?;
    let m = mediator.mediator.clone();
    let mut pair = recipient_and_sender(
        &m,
        InitOptions {
            polling_interval_ms: 200,
            ..InitOptions::recipient(
                "polling-recipient",
                &mediator.invitation_url(),
                PickupStrategy::PickUpV2,
            )
        },
    )
    .await?;
    let sent = content_set("polling message", FIRST);
    let (got, elapsed) = plain_round(&m, &mut pair, &sent, &NOTHING)
        .await
        .context("Pickup 2.0 polling every 200 ms")?;
    eprintln!(
        "credo pickup v2 polling: {} in {elapsed:.1?}; mediator stats {:?}; total {:.1?}",
        got.summary(),
        m.stats().snapshot(),
        started.elapsed()
    );
    pair.sender.shutdown().await?;
    pair.recipient.shutdown().await?;
    mediator.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credo_pickup_v1_polling_receives_50_of_50() -> Result<()> {
    credo_available().map_err(|e| anyhow!(e))?;
    let started = Instant::now();
    let mediator = TestMediator::start(&[])
        .await
        .context("start our mediator")?;
    let m = mediator.mediator.clone();
    let mut pair = recipient_and_sender(
        &m,
        InitOptions {
            polling_interval_ms: 200,
            ..InitOptions::recipient(
                "v1-recipient",
                &mediator.invitation_url(),
                PickupStrategy::PickUpV1,
            )
        },
    )
    .await?;
    let sent = content_set("pickup v1 message", FIRST);
    // Pickup 1.0 has no acknowledgement: each batch leaves the queue when credo asks again.
    let (got, elapsed) = plain_round(&m, &mut pair, &sent, &NOTHING)
        .await
        .context("Pickup 1.0 polling every 200 ms")?;
    eprintln!(
        "credo pickup v1 polling: {} in {elapsed:.1?}; mediator stats {:?}; total {:.1?}",
        got.summary(),
        m.stats().snapshot(),
        started.elapsed()
    );
    pair.sender.shutdown().await?;
    pair.recipient.shutdown().await?;
    mediator.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credo_implicit_with_direct_forwarding_receives_50_of_50() -> Result<()> {
    credo_available().map_err(|e| anyhow!(e))?;
    let started = Instant::now();
    let mediator = TestMediator::start(&[("MEDIATOR_PICKUP__FORWARDING", "direct")])
        .await
        .context("start our mediator (direct forwarding)")?;
    let m = mediator.mediator.clone();
    let mut pair = recipient_and_sender(
        &m,
        InitOptions::recipient(
            "implicit-recipient",
            &mediator.invitation_url(),
            PickupStrategy::Implicit,
        ),
    )
    .await?;
    let sent = content_set("implicit message", FIRST);
    // plain_round waits for the queue to drain: direct deliveries leave it once the socket's pong
    // confirms them.
    let (got, elapsed) = plain_round(&m, &mut pair, &sent, &NOTHING)
        .await
        .context("implicit pickup with direct forwarding")?;
    eprintln!(
        "credo implicit + direct: {} in {elapsed:.1?}; mediator stats {:?}; total {:.1?}",
        got.summary(),
        m.stats().snapshot(),
        started.elapsed()
    );
    pair.sender.shutdown().await?;
    pair.recipient.shutdown().await?;
    mediator.stop().await;
    Ok(())
}
