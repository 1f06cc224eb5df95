//! The `loadgen` binary: parse the command line, run the load test, print the summary, write the
//! JSON report; exit non-zero when messages were lost (unless `--allow-loss`).

use std::{io::IsTerminal, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::Parser;
use loadgen::Config;

#[derive(Parser)]
#[command(
    version,
    about = "Load driver for the DIDComm mediator: real recipients in Live Mode, senders posting Forwards"
)]
struct Cli {
    /// HTTP base URLs of the mediator instances, comma-separated (WebSocket: the same with ws://).
    #[arg(
        long,
        env = "LOADGEN_MEDIATORS",
        value_delimiter = ',',
        required = true
    )]
    mediators: Vec<String>,
    /// Recipients (real clients, each live on a WebSocket), spread round-robin over the instances.
    #[arg(long, default_value_t = 20)]
    recipients: usize,
    /// Sender tasks posting Forwards (each one request at a time) to random instances.
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// Forwards per second over all senders; 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Seconds to send for (default 10 when --messages is not given).
    #[arg(long)]
    duration: Option<f64>,
    /// Forwards to send in all (with --duration: whichever ends first).
    #[arg(long)]
    messages: Option<u64>,
    /// Seconds to wait after sending for accepted messages to arrive; the rest count as lost.
    #[arg(long, default_value_t = 10.0)]
    drain_timeout: f64,
    /// Build every Forward before the timed phase (the default).
    #[arg(long, overrides_with = "no_prebuild")]
    prebuild: bool,
    /// Pack each Forward just before it is posted (measures the driver too).
    #[arg(long, overrides_with = "prebuild")]
    no_prebuild: bool,
    /// Messages to plan for when neither --messages nor --rate x --duration fixes the count.
    #[arg(long, default_value_t = 20_000)]
    pool: u64,
    /// Filler bytes in each inner message.
    #[arg(long, default_value_t = 256)]
    payload_bytes: usize,
    /// Acknowledge once this many deliveries are pending...
    #[arg(long, default_value_t = 10)]
    ack_batch: usize,
    /// ...or after this many milliseconds.
    #[arg(long, default_value_t = 20)]
    ack_interval_ms: u64,
    /// Timeout of each HTTP request, seconds.
    #[arg(long, default_value_t = 10.0)]
    request_timeout: f64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Exit 0 even when messages were lost.
    #[arg(long)]
    allow_loss: bool,
    /// Queue only: recipients stay offline, only the Forwards' acceptance is measured.
    #[arg(long)]
    queue_only: bool,
    /// The out-of-band invitation (JSON, or @FILE) to connect with instead of each instance's
    /// GET /invitation: to drive another mediator (ACA-Py, credo-ts).
    #[arg(long)]
    invitation: Option<String>,
}

fn seconds(flag: &str, s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("--{flag} {s} is not a duration"))
}

impl Cli {
    fn config(&self) -> anyhow::Result<Config> {
        let mut c = Config::new(self.mediators.iter().map(|m| m.trim()));
        c.recipients = self.recipients;
        c.senders = self.senders;
        c.rate = self.rate;
        c.messages = self.messages;
        c.duration = match (self.duration, self.messages) {
            (Some(d), _) => Some(seconds("duration", d)?),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        };
        c.drain_timeout = seconds("drain-timeout", self.drain_timeout)?;
        // The two flags override each other: the last one given wins.
        c.prebuild = self.prebuild || !self.no_prebuild;
        c.pool = self.pool;
        c.payload_bytes = self.payload_bytes;
        c.ack_batch = self.ack_batch;
        c.ack_interval = Duration::from_millis(self.ack_interval_ms.max(1));
        c.request_timeout = seconds("request-timeout", self.request_timeout)?;
        c.live = !self.queue_only;
        c.invitation = match self.invitation.as_deref() {
            None => None,
            Some(text) => {
                let text = match text.strip_prefix('@') {
                    Some(path) => std::fs::read_to_string(path)
                        .with_context(|| format!("reading the invitation {path}"))?,
                    None => text.to_owned(),
                };
                Some(serde_json::from_str(&text).context("--invitation is not JSON")?)
            }
        };
        c.progress =
            !self.quiet && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        Ok(c)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let config = cli.config()?;
    let report = loadgen::run(config).await.context("load test failed")?;
    print!("{report}");
    if let Some(path) = &cli.report {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    if report.lost > 0 && !cli.allow_loss {
        eprintln!("{} accepted messages were lost", report.lost);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
