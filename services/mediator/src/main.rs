//! The mediator binary: parse the command line, load config, start logging, bind, run.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::Parser;
use mediator::{Config, Mediator};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(version, about = "DIDComm v1 mediator (Pickup 2.0, live mode)")]
struct Cli {
    /// Configuration file (TOML), layered over the defaults and under MEDIATOR_* variables.
    #[arg(long, env = "MEDIATOR_CONFIG")]
    config: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long)]
    json_logs: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("MEDIATOR_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if cli.json_logs {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let config = Arc::new(
        Config::load(cli.config.as_deref(), std::env::vars()).context("loading configuration")?,
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let backend = mediator::storage::open(&config)
        .await
        .context("opening storage")?;
    let mediator = Mediator::from_backend(config, backend)?;
    let invitation = mediator.invitation(false);
    println!(
        "\nInvitation URL:\n{}\n\n{}",
        invitation.url(),
        invitation.qr_terminal()
    );
    let base = &mediator.config().public_http_endpoint;
    println!("Also at {base}/invitation (JSON) and {base}/invitation.svg (QR code).");
    println!(
        "For ACA-Py (--mediator-invitation; it accepts exactly one service):\n{}\n",
        mediator.single_service_invitation().url()
    );
    mediator::serve(mediator, listener, shutdown_signal()).await?;
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
