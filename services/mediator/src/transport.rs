//! The accept loop of the one listener: TCP connections served as HTTP/1.1 (with upgrades, for
//! WebSockets) by hyper, under the limits an internet-facing server needs.
//!
//! - **Header timeout** (`transport.header_timeout_ms`): hyper's header read timeout, which runs
//!   whenever the connection waits for a request head: after the accept and again after every
//!   response. So a socket that sends nothing, sends its head slowly, or idles between keep-alive
//!   requests is closed after this long (counted as `header_timeout`). Upgraded WebSockets have
//!   left hyper by then; their keepalive is the session's ping/pong.
//! - **Connection cap** (`transport.max_connections`) on open TCP connections of the instance,
//!   WebSockets included (the count follows the socket through the upgrade), plus
//!   `transport.health_reserve` more that are served `/healthz` and `/readyz` only (anything
//!   else: 503 with Retry-After), so the probes answer when the instance is full. Beyond both, a
//!   connection is closed at once (counted as `connections`).
//! - **New connections per client address** (`rate_limit.connections_*`): over the rate, the
//!   connection is closed at once without a response (counted as `rate_connections`); trusted
//!   proxies are not limited here.
//! - **Accept errors** (out of descriptors, EMFILE): the loop backs off (10 ms doubling to 1 s)
//!   instead of spinning, and logs at most once a second.
//! - **Graceful shutdown**: when `shutdown` resolves the mediator drains (readiness off,
//!   WebSockets closed) while the loop still accepts; then it stops accepting, asks every
//!   connection to finish its request in flight and close, and waits for them.
//!
//! Every request carries the TCP peer as `ConnectInfo<SocketAddr>`. HTTP/2 is not served (no
//! client of a DIDComm mediator needs h2c; TLS, and with it h2, ends at the load balancer).
//!
//! What this module must not do: look at what a request means (that is [`crate::server`]).

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{extract::ConnectInfo, response::IntoResponse, Router};
use hyper::{body::Incoming, server::conn::http1, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
};
use tower_service::Service;
use tracing::{debug, info, warn};

use crate::{
    config::TransportConfig,
    error::Refusal,
    ratelimit::{Class, RateLimiter},
    stats::Limit,
    Mediator,
};

/// Descriptors kept free beyond `max_connections + health_reserve` (Redis pool, the metrics
/// listener, outbound deliveries, log files).
pub const DESCRIPTOR_MARGIN: u64 = 256;

/// Raises this process's open-file soft limit to its hard limit, and warns when that still does
/// not cover the connection cap. Call once at start-up (it changes the process).
pub fn raise_fd_limit(config: &TransportConfig) {
    let wanted = (config.max_connections as u64)
        .saturating_add(config.health_reserve as u64)
        .saturating_add(DESCRIPTOR_MARGIN);
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, hard)) => {
            let now = if soft < hard {
                match rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard) {
                    Ok(()) => hard,
                    Err(err) => {
                        warn!(error = %err, soft, hard, "could not raise the open-file limit");
                        soft
                    }
                }
            } else {
                soft
            };
            if config.max_connections == 0 {
                info!(
                    limit = now,
                    "open-file limit (transport.max_connections: no cap)"
                );
            } else if now < wanted {
                warn!(
                    limit = now,
                    wanted,
                    max_connections = config.max_connections,
                    health_reserve = config.health_reserve,
                    "open-file limit is below transport.max_connections + health_reserve + {DESCRIPTOR_MARGIN}: raise it (ulimit -n, LimitNOFILE) or lower the cap"
                );
            } else {
                debug!(limit = now, wanted, "open-file limit");
            }
        }
        Err(err) => warn!(error = %err, "could not read the open-file limit"),
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains `mediator` and stops
/// (see the module docs).
pub async fn serve(
    mediator: Mediator,
    listener: TcpListener,
    router: Router,
    limiter: RateLimiter,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let config = mediator.config().transport.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a clone; `recv` returns None once they all ended.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let acceptor = Acceptor {
        mediator: mediator.clone(),
        router,
        limiter,
        open: Arc::new(AtomicUsize::new(0)),
        header_timeout: Duration::from_millis(config.header_timeout_ms),
        config,
        stop: stop_rx,
        done: done_tx,
    };
    let draining = mediator.clone();
    let stopping = async move {
        shutdown.await;
        // Still accepting meanwhile: readiness says 503 and load balancers move on.
        draining.drain().await;
    };
    tokio::pin!(stopping);
    let mut backoff = Backoff::default();
    loop {
        let accepted = tokio::select! {
            () = &mut stopping => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff.reset();
                acceptor.admit(tcp, peer);
            }
            Err(err) if is_connection_error(&err) => {}
            Err(err) => {
                let wait = backoff.failed(&err);
                tokio::select! {
                    () = &mut stopping => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    drop(listener);
    let open = acceptor.open.load(Ordering::Relaxed);
    let Acceptor { stop, done, .. } = acceptor;
    drop(stop);
    drop(done);
    let _ = stop_tx.send(true);
    debug!(open, "listener closed; waiting for connections to finish");
    let _ = done_rx.recv().await;
    Ok(())
}

/// An error of one connection that is no fault of the listener: accept again at once.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Accept-error backoff: 10 ms doubling to 1 s; one log line a second at most.
#[derive(Debug, Default)]
struct Backoff {
    wait: Option<Duration>,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    fn failed(&mut self, err: &io::Error) -> Duration {
        let wait = self.wait.map_or(Self::FIRST, |w| (w * 2).min(Self::MAX));
        self.wait = Some(wait);
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            warn!(error = %err, retry_in_ms = wait.as_millis() as u64, suppressed = self.suppressed, "accept failed");
            self.last_log = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        wait
    }

    fn reset(&mut self) {
        self.wait = None;
    }
}

/// What a connection may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// Anything.
    Full,
    /// `/healthz` and `/readyz` only: the connection is in the health reserve.
    HealthOnly,
}

struct Acceptor {
    mediator: Mediator,
    router: Router,
    limiter: RateLimiter,
    open: Arc<AtomicUsize>,
    config: TransportConfig,
    header_timeout: Duration,
    stop: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
}

impl Acceptor {
    /// Admits (or closes) one accepted connection and spawns its task.
    fn admit(&self, tcp: TcpStream, peer: SocketAddr) {
        let stats = self.mediator.stats();
        if !self.limiter.is_trusted(peer.ip())
            && self.limiter.check(Class::Connections, peer.ip()).is_err()
        {
            stats.refused(Limit::RateConnections);
            debug!(%peer, "connection over the rate limit: closed");
            return;
        }
        let slot = OpenSlot::take(&self.open);
        let cap = self.config.max_connections;
        let admission = if cap == 0 || slot.number <= cap {
            Admission::Full
        } else if slot.number <= cap + self.config.health_reserve {
            Admission::HealthOnly
        } else {
            stats.refused(Limit::Connections);
            debug!(%peer, "connection over the cap: closed");
            return;
        };
        // No Nagle: a live delivery is one small frame that must go now, not after the client's
        // delayed ACK (10-40 ms per frame otherwise, measured with the load driver).
        if let Err(err) = tcp.set_nodelay(true) {
            debug!(error = %err, "TCP_NODELAY not set");
        }
        let io = TokioIo::new(Counted {
            inner: tcp,
            _slot: slot,
        });
        let router = self.router.clone();
        let mediator = self.mediator.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            let mediator = mediator.clone();
            async move {
                if admission == Admission::HealthOnly
                    && !matches!(req.uri().path(), "/healthz" | "/readyz")
                {
                    mediator.stats().refused(Limit::Connections);
                    return Ok::<_, Infallible>(
                        Refusal::Busy("this instance is at its connection limit").into_response(),
                    );
                }
                router.call(req).await
            }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout);
        let connection = builder.serve_connection(io, service).with_upgrades();
        let mut stop = self.stop.clone();
        let done = self.done.clone();
        let mediator = self.mediator.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let stopping = async move {
                let _ = stop.wait_for(|stop| *stop).await;
            };
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = stopping => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = served {
                if err.is_timeout() {
                    mediator.stats().refused(Limit::HeaderTimeout);
                    debug!(%peer, "no request head in time: connection closed");
                } else {
                    debug!(%peer, error = %err, "connection ended with an error");
                }
            }
            drop(done);
        });
    }
}

/// One place under the connection count; given back when dropped (when the socket closes, also
/// after an upgrade: it travels inside the socket).
#[derive(Debug)]
struct OpenSlot {
    open: Arc<AtomicUsize>,
    /// How many connections were open with this one, when it was accepted.
    number: usize,
}

impl OpenSlot {
    fn take(open: &Arc<AtomicUsize>) -> Self {
        let number = open.fetch_add(1, Ordering::AcqRel) + 1;
        Self {
            open: open.clone(),
            number,
        }
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A TCP stream that holds its place under the connection count for as long as it lives.
#[derive(Debug)]
struct Counted {
    inner: TcpStream,
    _slot: OpenSlot,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_to_a_second_and_resets() {
        let mut b = Backoff::default();
        let err = io::Error::other("EMFILE");
        let waits: Vec<u128> = (0..10).map(|_| b.failed(&err).as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        // Nine failures within the second after the first logged one: one line, nine suppressed.
        assert_eq!(b.suppressed, 9);
        b.reset();
        assert_eq!(b.failed(&err).as_millis(), 10);
    }
}
