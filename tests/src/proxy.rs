//! A tiny TCP round-robin proxy on loopback: the load balancer in front of some instances of a
//! mediator cluster in tests.
//!
//! Each accepted connection goes to the next backend of the list (per connection, not per
//! request: an HTTP client that keeps its connection alive stays on one backend), and bytes are
//! copied both ways until either side closes. A backend that refuses the connection is skipped
//! for that client connection (tried next in turn). Dropping the proxy stops it: the accept loop
//! and every connection it carries end.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use anyhow::{ensure, Context, Result};
use tokio::{
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

/// A running proxy; stopped when dropped.
#[derive(Debug)]
pub struct RoundRobinProxy {
    addr: SocketAddr,
    backends: Vec<SocketAddr>,
    /// Client connections carried to each backend (same order as `backends`).
    carried: Arc<Vec<AtomicUsize>>,
    task: JoinHandle<()>,
}

impl RoundRobinProxy {
    /// Listens on `127.0.0.1:0` and spreads connections over `backends` in turn.
    pub async fn start(backends: Vec<SocketAddr>) -> Result<Self> {
        ensure!(!backends.is_empty(), "a proxy needs at least one backend");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the proxy on 127.0.0.1:0")?;
        let addr = listener.local_addr().context("the proxy's address")?;
        let carried: Arc<Vec<AtomicUsize>> =
            Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let task = tokio::spawn(accept_loop(listener, backends.clone(), carried.clone()));
        Ok(Self {
            addr,
            backends,
            carried,
            task,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The backends, in turn order.
    pub fn backends(&self) -> &[SocketAddr] {
        &self.backends
    }

    /// How many client connections each backend has been given so far (same order as
    /// [`RoundRobinProxy::backends`]).
    pub fn connections_per_backend(&self) -> Vec<usize> {
        self.carried
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for RoundRobinProxy {
    fn drop(&mut self) {
        // The accept loop owns the JoinSet of the connections: aborting it drops (aborts) them.
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    backends: Vec<SocketAddr>,
    carried: Arc<Vec<AtomicUsize>>,
) {
    let mut connections = JoinSet::new();
    let mut next = 0usize;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (client, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        eprintln!("[proxy] accept failed: {err}");
                        continue;
                    }
                };
                let first = next;
                next = (next + 1) % backends.len();
                connections.spawn(carry(client, peer, backends.clone(), first, carried.clone()));
            }
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Connects `client` to the first backend from `first` on that accepts, then copies both ways.
async fn carry(
    mut client: TcpStream,
    peer: SocketAddr,
    backends: Vec<SocketAddr>,
    first: usize,
    carried: Arc<Vec<AtomicUsize>>,
) {
    for step in 0..backends.len() {
        let index = (first + step) % backends.len();
        let backend = backends[index];
        let mut upstream = match TcpStream::connect(backend).await {
            Ok(stream) => stream,
            Err(err) => {
                eprintln!("[proxy] {peer}: backend {backend} refused ({err}), trying the next");
                continue;
            }
        };
        carried[index].fetch_add(1, Ordering::Relaxed);
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        // Either side closing (or resetting) ends the connection; nothing to report.
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return;
    }
    eprintln!("[proxy] {peer}: no backend accepted the connection");
}
