//! `idle-sockets`: opens many idle WebSockets to one mediator, for `scripts/sockets` (a
//! measurement of what an idle WebSocket costs the mediator, not a test).
//!
//! With `--live` (what a wallet does) each socket belongs to a connection of its own: first every
//! connection is made over HTTP (DID Exchange, mediation, one key registered); then each socket
//! sends `live-delivery-change` and waits for the `status` that confirms Live Mode. Without it,
//! each socket sends one data frame and waits for the answer. Either way it then stays idle,
//! answering the mediator's keepalive pings. Each socket comes from one of several loopback source
//! addresses (127.0.0.2, 127.0.0.3, ...), so the ephemeral ports of one address are not exhausted.
//!
//! On stdout and stdin, so that the caller can read the mediator's memory between the phases:
//! `ready N` (connections made), then a line on stdin; `open N` (sockets open), then a line on
//! stdin; then it closes every socket, prints `closed N` and exits.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::Parser;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use loadgen::{is_type, message, Recipient};
use serde_json::json;
use tokio::{
    io::AsyncBufReadExt,
    net::TcpSocket,
    sync::{mpsc, watch},
    task::JoinSet,
};
use tokio_tungstenite::tungstenite::{protocol::WebSocketConfig, Message};

#[derive(Parser)]
#[command(about = "Open many idle WebSockets to a mediator and hold them until stdin says stop")]
struct Cli {
    /// The mediator's listener (127.0.0.1:3000).
    #[arg(long)]
    server: SocketAddr,
    /// WebSockets to open.
    #[arg(long, default_value_t = 20_000)]
    count: usize,
    /// Loopback source addresses to spread them over (127.0.0.2 and up).
    #[arg(long, default_value_t = 8)]
    sources: u8,
    /// Connects in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Live sockets: one connection each, in Live Mode (see the module docs).
    #[arg(long)]
    live: bool,
}

/// Small client buffers: this process holds as many sockets as the mediator.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096)
        .max_write_buffer_size(64 * 1024)
}

/// Opens one socket from `source`, sends a frame, waits for the answer, then idles (answering
/// pings while reading) until `stop`; reports the open on `opened`.
async fn hold(
    server: SocketAddr,
    source: IpAddr,
    live: Option<Recipient>,
    opened: mpsc::Sender<anyhow::Result<()>>,
    mut stop: watch::Receiver<bool>,
) {
    let open = async {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        let tcp = socket.connect(server).await?;
        tcp.set_nodelay(true)?;
        let (mut ws, _) = tokio_tungstenite::client_async_with_config(
            format!("ws://{server}/"),
            tcp,
            Some(client_config()),
        )
        .await?;
        let first = match &live {
            Some(me) => Message::binary(me.pack(&message(
                "messagepickup/2.0/live-delivery-change",
                json!({"live_delivery": true}),
            ))?),
            None => Message::text("{}"),
        };
        ws.send(first).await?;
        let answer = match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => t.as_bytes().to_vec(),
            Ok(Some(Ok(Message::Binary(b)))) => b.to_vec(),
            other => bail!("no answer to the first frame: {other:?}"),
        };
        if let Some(me) = &live {
            let status = me.open(&answer)?;
            if !is_type(&status, "messagepickup/2.0/status") || status["live_delivery"] != true {
                bail!("live mode not confirmed: {status}");
            }
        }
        Ok(ws)
    };
    let mut ws = match open.await {
        Ok(ws) => {
            let _ = opened.send(Ok(())).await;
            ws
        }
        Err(err) => {
            let _ = opened.send(Err(err)).await;
            return;
        }
    };
    drop(opened);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            frame = ws.next() => match frame {
                Some(Ok(_)) => continue,
                _ => return,
            },
        }
    }
    let _ = ws.close(None).await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.sources == 0 || cli.sources > 250 {
        bail!("--sources must be 1..=250");
    }
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut recipients = Vec::new();
    if cli.live {
        // Every connection first, so the caller can tell what the sockets alone cost.
        let base = format!("http://{}", cli.server);
        let http = reqwest::Client::new();
        let started = Instant::now();
        recipients = futures_util::stream::iter(0..cli.count)
            .map(|i| {
                let (base, http) = (&base, &http);
                async move { Recipient::set_up(i, 0, base, http, None).await }
            })
            .buffer_unordered(cli.concurrency.clamp(1, 64))
            .try_collect()
            .await
            .context("making the connections")?;
        println!(
            "ready {} connections in {:.1} s",
            recipients.len(),
            started.elapsed().as_secs_f64()
        );
    } else {
        println!("ready 0 connections");
    }
    let _ = lines.next_line().await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (opened_tx, mut opened_rx) = mpsc::channel::<anyhow::Result<()>>(cli.concurrency.max(1));
    let mut holders = JoinSet::new();
    let started = Instant::now();
    let mut in_flight = 0usize;
    let mut ok = 0usize;
    for n in 0..cli.count {
        if in_flight >= cli.concurrency {
            match opened_rx.recv().await {
                Some(result) => {
                    result.context("opening a WebSocket")?;
                    ok += 1;
                    in_flight -= 1;
                }
                None => bail!("openers gone"),
            }
        }
        let source = IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            0,
            2 + (n % cli.sources as usize) as u8,
        ));
        holders.spawn(hold(
            cli.server,
            source,
            recipients.pop(),
            opened_tx.clone(),
            stop_rx.clone(),
        ));
        in_flight += 1;
    }
    drop(opened_tx);
    while ok < cli.count {
        match opened_rx.recv().await {
            Some(result) => {
                result.context("opening a WebSocket")?;
                ok += 1;
            }
            None => bail!("only {ok} of {} WebSockets opened", cli.count),
        }
    }
    println!("open {ok} in {:.1} s", started.elapsed().as_secs_f64());
    let _ = lines.next_line().await;
    let _ = stop_tx.send(true);
    let closing = Instant::now();
    while holders.join_next().await.is_some() {}
    println!("closed {ok} in {:.1} s", closing.elapsed().as_secs_f64());
    Ok(())
}
