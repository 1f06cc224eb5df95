//! `idle-sockets`: opens many idle WebSockets to one mediator, for `scripts/sockets` (a
//! measurement of what an idle WebSocket costs the mediator, not a test).
//!
//! Each socket comes from one of several loopback source addresses (127.0.0.2, 127.0.0.3, ...),
//! so the ephemeral ports of one address are not exhausted; sends one data frame and waits for the
//! mediator's answer (so the session is established and has read and written); then stays idle,
//! answering the mediator's keepalive pings. Once all are open it prints `open N` on stdout and
//! waits for a line (or the end) on stdin; then it closes every socket and exits.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
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
        ws.send(Message::text("{}")).await?;
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(_) | Message::Binary(_)))) => Ok(ws),
            other => bail!("no answer to the first frame: {other:?}"),
        }
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
        holders.spawn(hold(cli.server, source, opened_tx.clone(), stop_rx.clone()));
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
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let _ = lines.next_line().await;
    let _ = stop_tx.send(true);
    let closing = Instant::now();
    while holders.join_next().await.is_some() {}
    println!("closed {ok} in {:.1} s", closing.elapsed().as_secs_f64());
    Ok(())
}
