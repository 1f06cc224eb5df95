//! A load driver for the mediator (one instance or a cluster) that speaks real DIDComm v1.
//!
//! [`run`] sets up `recipients` real clients (DID Exchange 1.1 with a did:peer:2, mediation, one
//! fresh recipient key registered, a WebSocket in Pickup 2.0 Live Mode), spread round-robin over
//! the instances; then `senders` tasks post anoncrypted Forwards to random instances, and every
//! recipient opens what reaches its socket, acknowledges it (`messages-received`) and records when
//! it arrived. The [`Report`] says what was accepted, delivered, lost and duplicated, and how long
//! it took. The binary (`main.rs`) only turns the command line into a [`Config`] and prints.
//!
//! What it must not do: measure itself. Packing costs CPU, so the Forwards are built before the
//! timed phase by default ([`Config::prebuild`]); times are taken on one monotonic clock in this
//! process, never compared with the mediator's.

mod client;
pub mod config;
pub mod error;
mod forward;
mod progress;
mod receiver;
pub mod report;
mod sender;
mod tracker;

use std::{sync::Arc, time::Duration};

use futures_util::{stream, StreamExt, TryStreamExt};
use tokio::{sync::watch, time::Instant};

pub use client::{is_type, message, Recipient};
pub use config::Config;
pub use error::LoadError;
pub use report::Report;

use crate::{
    forward::{Keys, Pool},
    receiver::{Outcome, Receiver},
    tracker::Tracker,
};

/// Handshakes run at once during set-up: enough to hide round trips, few enough not to look like
/// a connection storm to a small instance.
const SETUP_CONCURRENCY: usize = 16;

/// How often the drain phase checks whether everything accepted has arrived.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Backstop for a receiver that does not end once told to stop (each gives up on its final
/// `status` after a few seconds by itself).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs one load test as `config` says and reports on it.
///
/// Fails only when the set-up fails (an instance unreachable, a handshake refused): what goes
/// wrong while sending and receiving is counted in the [`Report`].
pub async fn run(config: Config) -> Result<Report, LoadError> {
    config.validate()?;
    let config = Arc::new(config);
    let run_id = uuid::Uuid::new_v4().to_string();
    let started = Instant::now();

    let http = reqwest::Client::builder()
        .timeout(config.request_timeout)
        .build()
        .map_err(|source| LoadError::HttpClient { source })?;

    // Set-up: every recipient connected, mediated and live before the first Forward, since
    // messages queued before live mode is on are not pushed (the client would have to ask).
    let recipients: Vec<Recipient> = stream::iter(0..config.recipients)
        .map(|index| {
            let base = config.mediators[index % config.mediators.len()].clone();
            let http = http.clone();
            let instance = index % config.mediators.len();
            let config = config.clone();
            async move {
                Recipient::set_up(index, instance, &base, &http, config.invitation.as_ref()).await
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    let keys: Arc<Vec<Keys>> = Arc::new(recipients.iter().map(Recipient::keys).collect());
    let planned = config.planned_messages();
    let tracker = Arc::new(Tracker::new(
        run_id.clone(),
        planned,
        config.recipients,
        config.mediators.len(),
    ));

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut receivers = Vec::with_capacity(recipients.len());
    // Queue only: the recipients stay offline (nothing is delivered, nothing to wait for).
    let live_recipients = if config.live { recipients } else { Vec::new() };
    for recipient in live_recipients {
        // Nothing is sent yet, so nothing comes before the confirmation.
        let (ws, _) = recipient.go_live().await?;
        let receiver = Receiver::new(
            Arc::new(recipient),
            ws,
            tracker.clone(),
            config.clone(),
            stop_rx.clone(),
        );
        receivers.push(tokio::spawn(receiver.run()));
    }
    let setup_secs = started.elapsed().as_secs_f64();

    // The receivers already read their sockets (and answer pings) while this runs.
    let prebuild_started = Instant::now();
    let pool = if config.prebuild {
        Pool::prebuilt(planned, keys.clone(), &run_id, config.payload_bytes).await?
    } else {
        Pool::on_the_fly(keys.clone(), &run_id, config.payload_bytes)
    };
    let prebuild_secs = prebuild_started.elapsed().as_secs_f64();

    let progress = progress::Progress::start(config.progress, planned, tracker.clone());
    let send_start = Instant::now();
    let senders = sender::spawn_all(
        config.clone(),
        http.clone(),
        Arc::new(pool),
        tracker.clone(),
        send_start,
    );
    for task in senders {
        task.await?;
    }
    let send_end = Instant::now();

    // Drain: wait for what was accepted, up to the drain timeout.
    let drain_deadline = send_end + config.drain_timeout;
    while config.live && Instant::now() < drain_deadline && !tracker.all_accepted_delivered() {
        tokio::time::sleep(DRAIN_POLL).await;
    }
    let drain_end = Instant::now();
    progress.finish();

    let _ = stop_tx.send(true);
    let mut outcomes = Vec::with_capacity(receivers.len());
    for task in receivers {
        match tokio::time::timeout(STOP_GRACE, task).await {
            Ok(outcome) => outcomes.push(outcome?),
            Err(_) => {
                tracker.error("receiver did not stop in time".to_owned());
                outcomes.push(Outcome::default());
            }
        }
    }

    Ok(report::build(report::Inputs {
        config: &config,
        run_id,
        tracker: &tracker,
        outcomes: &outcomes,
        setup_secs,
        prebuild_secs,
        send_start,
        send_end,
        drain_end,
    }))
}
