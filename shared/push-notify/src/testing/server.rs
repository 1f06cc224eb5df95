//! Plain local HTTP servers for tests: a checking, recording server over HTTP/1 or h2c, a server
//! that accepts connections and never answers, and an address where nothing listens.

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, header::HeaderMap, service::service_fn, Method, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::{net::TcpListener, sync::watch};

/// Locks `mutex`, also after a panic elsewhere (a failed assertion in a test must not turn every
/// later look at a stand-in into a second panic).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One request as a server received it (the whole body read).
#[derive(Debug, Clone)]
pub struct Received {
    /// The method.
    pub method: Method,
    /// The path and query.
    pub path: String,
    /// HTTP/1.1 or HTTP/2.
    pub version: Version,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Received {
    /// The header's value, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON.
    ///
    /// # Panics
    ///
    /// If the body is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// What a server answers to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers to send.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// `status` with a JSON body (`content-type: application/json`).
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    /// `status` with no body.
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// This response with one more header.
    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// Responses queued by a test, then a default. Clones share the queue.
#[derive(Debug, Clone)]
pub struct Script {
    queue: Arc<Mutex<VecDeque<Response>>>,
    default: Response,
}

impl Script {
    /// A script that always answers `default`.
    pub fn new(default: Response) -> Self {
        Self {
            queue: Arc::default(),
            default,
        }
    }

    /// Queues `response` for one request, after those already queued.
    pub fn then(self, response: Response) -> Self {
        lock(&self.queue).push_back(response);
        self
    }

    /// The next queued response, or the default.
    pub fn next(&self) -> Response {
        lock(&self.queue)
            .pop_front()
            .unwrap_or_else(|| self.default.clone())
    }
}

/// The protocol a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 over cleartext with prior knowledge (what an `http://` APNs base URL is spoken as):
    /// an HTTP/1 client cannot talk to it.
    H2c,
}

/// Decides the answer to one request: `None` never answers (the request hangs until the client
/// gives up or the server stops).
pub(crate) type Handler = dyn Fn(Received) -> Option<Response> + Send + Sync;

/// Serves `listener` with `handler` until every `watch::Sender` of `stop` is dropped; then the
/// listener is closed and every connection (with any request left hanging) is dropped.
pub(crate) fn spawn(
    listener: TcpListener,
    proto: Proto,
    handler: Arc<Handler>,
    stop: watch::Receiver<()>,
) {
    tokio::spawn(async move {
        let mut accept_stop = stop.clone();
        loop {
            // Stop first: once stopped, nothing more is accepted or served.
            let stream = tokio::select! {
                biased;
                _ = accept_stop.changed() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let handler = handler.clone();
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let handler = handler.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let request = Received {
                        method: parts.method,
                        path: parts
                            .uri
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default(),
                        version: parts.version,
                        headers: parts.headers,
                        body,
                    };
                    let Some(reply) = handler(request) else {
                        // Never answer. The future is dropped when the client gives up (resets
                        // the stream, closes the connection) or the server stops.
                        match std::future::pending::<Infallible>().await {}
                    };
                    Ok::<_, Infallible>(into_hyper(reply))
                }
            });
            let io = TokioIo::new(stream);
            let mut conn_stop = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    biased;
                    _ = conn_stop.changed() => {}
                    _ = async {
                        let _ = match proto {
                            Proto::Http1 => {
                                hyper::server::conn::http1::Builder::new()
                                    .serve_connection(io, service)
                                    .await
                            }
                            Proto::H2c => {
                                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                                    .serve_connection(io, service)
                                    .await
                            }
                        };
                    } => {}
                }
            });
        }
    });
}

fn into_hyper(reply: Response) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = hyper::StatusCode::from_u16(reply.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in reply.headers {
        if let Ok(value) = hyper::header::HeaderValue::from_str(&value) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// Binds 127.0.0.1 on a free port.
///
/// # Panics
///
/// If no port can be bound.
pub(crate) async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0")
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener.local_addr().expect("the listener's address")
}

/// A running server from [`serve`]. Clones share it; it stops (closing its port and every
/// connection) when the last clone is dropped, or when the test's runtime ends.
#[derive(Debug, Clone)]
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    failures: Arc<Mutex<Vec<String>>>,
    _stop: Arc<watch::Sender<()>>,
}

impl Server {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in order of arrival (failed checks included).
    pub fn received(&self) -> Vec<Received> {
        lock(&self.received).clone()
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        lock(&self.received).len()
    }

    /// What the handler's checks reported so far.
    pub fn failures(&self) -> Vec<String> {
        lock(&self.failures).clone()
    }

    /// Panics with every check the handler failed.
    pub fn assert_checks_passed(&self) {
        let failures = lock(&self.failures);
        assert!(failures.is_empty(), "server checks failed: {failures:#?}");
    }
}

/// Starts a server on 127.0.0.1:0 that records every request and answers what `handler` says.
/// `handler` checks each request: `Err(what)` is recorded as a failed check (see
/// [`Server::assert_checks_passed`]) and answered 418, which no sender reads as success, a gone
/// token or a retryable failure.
pub async fn serve<H>(proto: Proto, handler: H) -> Server
where
    H: Fn(&Received) -> Result<Response, String> + Send + Sync + 'static,
{
    let listener = bind().await;
    let (stop, stopped) = watch::channel(());
    let server = Server {
        addr: local_addr(&listener),
        received: Arc::default(),
        failures: Arc::default(),
        _stop: Arc::new(stop),
    };
    let (received, failures) = (server.received.clone(), server.failures.clone());
    let handler = move |request: Received| {
        let reply = match handler(&request) {
            Ok(reply) => reply,
            Err(what) => {
                lock(&failures).push(what.clone());
                Response::json(418, serde_json::json!({ "reason": what }))
            }
        };
        lock(&received).push(request);
        Some(reply)
    };
    spawn(listener, proto, Arc::new(handler), stopped);
    server
}

/// A server from [`silent_server`]: it accepts connections and never answers nor closes them
/// (until the last clone is dropped or the runtime ends).
#[derive(Debug, Clone)]
pub struct Silent {
    /// Where it listens.
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    _stop: Arc<watch::Sender<()>>,
}

impl Silent {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Starts a server that accepts connections and never answers: a provider that hangs.
pub async fn silent_server() -> Silent {
    let listener = bind().await;
    let (stop, mut stopped) = watch::channel(());
    let silent = Silent {
        addr: local_addr(&listener),
        accepted: Arc::default(),
        _stop: Arc::new(stop),
    };
    let accepted = silent.accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                biased;
                _ = stopped.changed() => return,
                conn = listener.accept() => match conn {
                    Ok((stream, _)) => {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        held.push(stream);
                    }
                    Err(_) => continue,
                },
            }
        }
    });
    silent
}

/// An address where nothing listens (bound, then released: a connection is refused unless
/// another process takes the port meanwhile).
pub async fn closed_port() -> SocketAddr {
    local_addr(&bind().await)
}
