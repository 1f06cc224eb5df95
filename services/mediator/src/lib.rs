//! The DIDComm v1 mediator service.
//!
//! [`run`] starts a real instance on a listener the caller bound, until `shutdown` resolves; the
//! binary and the tests both call it. One listener carries HTTP POST of envelopes and WebSocket
//! upgrades (see [`server`]), accepted under the limits of [`transport`] and [`ratelimit`];
//! [`mediator::Mediator`] is the inbound and outbound path; the protocol handlers live in
//! [`protocols`].

pub mod bus;
pub mod cluster;
pub mod config;
pub mod copy;
pub mod crypto;
pub mod datadir;
pub mod delivery;
pub mod endpoint;
pub mod error;
pub mod fuzzing;
pub mod invitation;
pub mod keyring;
pub mod keyroutes;
pub mod limits;
pub mod mediator;
pub mod observed;
pub mod protocols;
pub mod push;
pub mod ratelimit;
pub mod server;
pub mod sessions;
pub mod stats;
pub mod storage;
pub mod telemetry;
pub mod testing;
pub mod transport;

use std::{future::Future, sync::Arc};

use tokio::net::TcpListener;
use tracing::{info, warn};

pub use config::Config;
pub use mediator::Mediator;

/// The server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Building the mediator failed.
    #[error("mediator setup failed")]
    Setup(#[from] mediator::SetupError),
    /// The stores could not be opened.
    #[error("storage could not be opened")]
    Storage(#[from] storage::StorageError),
    /// The listener failed.
    #[error("server I/O error")]
    Io(#[from] std::io::Error),
}

/// Runs one mediator instance on `listener` with the stores of its configuration until
/// `shutdown` resolves.
pub async fn run(
    config: Arc<Config>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let backend = storage::open(&config).await?;
    let mediator = Mediator::from_backend(config, backend)?;
    serve(mediator, listener, shutdown).await
}

/// Runs `mediator` on `listener` until `shutdown` resolves.
pub async fn serve(
    mediator: Mediator,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    if mediator.keys().is_ephemeral() {
        warn!("no master_secret configured: keys are random for this process and die with it");
    }
    let addr = listener.local_addr()?;
    server::log_listening(addr);
    info!(
        invitation = %mediator.invitation(false).short_url(),
        routing_key = %mediator.keys().routing_key().verkey_base58(),
        "mediator ready"
    );
    let mut background = cluster::Cluster::start(&mediator);
    background.push(tokio::spawn(sweep_expired(mediator.clone())));
    background.push(tokio::spawn(redeliver_live(mediator.clone())));
    if mediator.config().telemetry.queue_sample_interval_ms > 0 {
        background.push(tokio::spawn(sample_queues(mediator.clone())));
    }
    let limiter = ratelimit::RateLimiter::new(&mediator.config().rate_limit);
    let router = server::router(mediator.clone(), limiter.clone());
    let served = transport::serve(mediator, listener, router, limiter, shutdown).await;
    for task in background {
        task.abort();
    }
    served?;
    info!("mediator stopped");
    Ok(())
}

/// Every redelivery period, gives each live session here the messages it should have had that
/// wait again (see [`Mediator::redeliver_given_back`]).
async fn redeliver_live(mediator: Mediator) {
    let every =
        std::time::Duration::from_millis(mediator.config().pickup.redelivery_after_ms.max(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (connection, _) in mediator.sessions().live_connections() {
            if let Err(err) = mediator.redeliver_given_back(&connection).await {
                warn!(error = %err, connection = %connection, "redelivery to a live session failed");
            }
        }
    }
}

/// Counts what all queues hold, for the queue depth gauges.
async fn sample_queues(mediator: Mediator) {
    let every =
        std::time::Duration::from_millis(mediator.config().telemetry.queue_sample_interval_ms);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match mediator.stores().queue.totals().await {
            Ok(totals) => mediator.queue_depth().set(totals),
            Err(err) => warn!(error = %err, "counting queued messages failed"),
        }
    }
}

/// Removes expired messages from queues nobody touches, now and then (request paths expire the
/// queues they touch as they go), and connections whose handshake never completed (invisible
/// already; this gives their storage back).
async fn sweep_expired(mediator: Mediator) {
    let every = std::time::Duration::from_millis(mediator.config().queue.sweep_interval_ms);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match mediator.stores().queue.sweep_expired(1000).await {
            Ok(0) => {}
            Ok(n) => info!(expired = n, "expired messages removed"),
            Err(err) => warn!(error = %err, "sweeping expired messages failed"),
        }
        match mediator.stores().connections.sweep_expired(1000).await {
            Ok(0) => {}
            Ok(n) => info!(expired = n, "unfinished connections removed"),
            Err(err) => warn!(error = %err, "sweeping unfinished connections failed"),
        }
    }
}
