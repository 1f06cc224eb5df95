//! The mediator binary: parse the command line, load config, start logging, bind, run.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::Parser;
use mediator::{telemetry::Telemetry, Config, Mediator};

#[derive(Parser)]
#[command(version, about = "DIDComm v1 mediator (Pickup 2.0, live mode)")]
struct Cli {
    /// Configuration file (TOML), layered over the defaults and under MEDIATOR_* variables.
    #[arg(long, env = "MEDIATOR_CONFIG")]
    config: Option<PathBuf>,
    /// Log as JSON lines (the same as `log.format = "json"`).
    #[arg(long)]
    json_logs: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Copies connections, mediation records, keylists and queued messages from one store to
    /// the other (embedded store in `data_dir` <-> Redis in `storage.redis.*`), both from the
    /// usual configuration. Offline: refuses to run while a mediator uses either store, and
    /// into a store that already holds data.
    Copy {
        /// The store copied from.
        #[arg(long, value_enum)]
        from: mediator::copy::Side,
        /// The store copied to.
        #[arg(long, value_enum)]
        to: mediator::copy::Side,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config =
        Config::load(cli.config.as_deref(), std::env::vars()).context("loading configuration")?;
    if let Some(Command::Copy { from, to }) = cli.command {
        return copy(&config, from, to);
    }
    config.cluster.ensure_instance_id();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if config.runtime.worker_threads > 0 {
        runtime.worker_threads(config.runtime.worker_threads);
    }
    let runtime = runtime.build().context("starting the async runtime")?;
    runtime.block_on(run(cli, Arc::new(config)))
}

async fn run(cli: Cli, config: Arc<Config>) -> anyhow::Result<()> {
    let telemetry =
        Telemetry::install(&config, cli.json_logs).context("setting up logs and telemetry")?;
    // Each connection is a descriptor: the soft limit (often 1024) would run out long before
    // transport.max_connections.
    mediator::transport::raise_fd_limit(&config.transport);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let metrics = match config.telemetry.prometheus.address() {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics listener {addr}"))?;
            tracing::info!(%addr, "Prometheus metrics at /metrics");
            telemetry.metrics_endpoint(listener).map(tokio::spawn)
        }
        None => None,
    };
    let backend = mediator::storage::open(&config)
        .await
        .context("opening storage")?;
    let mediator = Mediator::from_backend(config, backend)?;
    let invitation = mediator.invitation(false);
    println!(
        "\nInvitation: {}\n\n{}",
        invitation.short_url(),
        invitation.qr_terminal()
    );
    let base = &mediator.config().public_http_endpoint;
    println!(
        "The full invitation URL (the short one redirects there):\n{}\n",
        invitation.url()
    );
    println!("Also at {base}/invitation (JSON) and {base}/invitation.svg (QR code).");
    println!(
        "For ACA-Py (--mediator-invitation; it accepts exactly one service):\n{}\n",
        mediator.single_service_invitation().url()
    );
    let served = mediator::serve(mediator, listener, shutdown_signal()).await;
    if let Some(task) = metrics {
        task.abort();
    }
    // What is still batched goes out before the process ends.
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    served?;
    Ok(())
}

/// `mediator copy`: prints what it copied; any error is the exit status 1.
fn copy(
    config: &Config,
    from: mediator::copy::Side,
    to: mediator::copy::Side,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let copied = runtime
        .block_on(mediator::copy::run(config, from, to))
        .with_context(|| format!("copying from {from} to {to}"))?;
    println!("copied from {from} to {to}: {copied}");
    if to == mediator::copy::Side::Redis && config.master_secret.is_empty() {
        println!(
            "start the cluster's instances with this node's master secret: master_secret = the contents of {}",
            mediator::copy::secret_file(config).display()
        );
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutdown signal received");
}
