//! Local stand-ins for the providers: HTTP/1 and HTTP/2 (h2c) servers on 127.0.0.1:0 that run a
//! checking handler on every request and record what they received, a server that never
//! answers, throwaway keys, JWS verification, and a scripted in-memory sender.

use std::{
    collections::VecDeque,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use async_trait::async_trait;
use aws_lc_rs::{
    encoding::AsDer,
    rand::SystemRandom,
    rsa::{KeyPair as RsaKeyPair, KeySize},
    signature::{
        EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
        ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_2048_8192_SHA256,
    },
};
use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, header::HeaderMap, service::service_fn, Method, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use push_notify::{Device, Notice, PushError, PushSender};
use serde_json::Value;
use tokio::net::TcpListener;

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// What the handler answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// Answers queued by a test, then a default.
#[derive(Debug, Clone)]
pub struct Script {
    queue: Arc<Mutex<VecDeque<Reply>>>,
    default: Reply,
}

impl Script {
    pub fn new(default: Reply) -> Self {
        Self {
            queue: Arc::default(),
            default,
        }
    }

    pub fn then(self, reply: Reply) -> Self {
        self.queue.lock().expect("lock").push_back(reply);
        self
    }

    pub fn next(&self) -> Reply {
        self.queue
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or_else(|| self.default.clone())
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Proto {
    Http1,
    /// HTTP/2 over cleartext with prior knowledge: an HTTP/1 client cannot talk to it.
    H2c,
}

/// A running stand-in. Stops when the test's runtime ends.
#[derive(Debug, Clone)]
pub struct Server {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    failures: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().expect("lock").len()
    }

    /// Panics with every check the handler failed.
    pub fn assert_checks_passed(&self) {
        let failures = self.failures.lock().expect("lock");
        assert!(failures.is_empty(), "server checks failed: {failures:#?}");
    }
}

/// Starts a server on 127.0.0.1:0. `handler` checks each request: `Err(what)` is recorded as a
/// failed check and answered 418 (which no sender reads as success, token gone or retryable).
pub async fn serve<H>(proto: Proto, handler: H) -> Server
where
    H: Fn(&Received) -> Result<Reply, String> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = Server {
        addr: listener.local_addr().expect("addr"),
        received: Arc::default(),
        failures: Arc::default(),
    };
    let handler = Arc::new(handler);
    let (received, failures) = (server.received.clone(), server.failures.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (handler, received, failures) =
                (handler.clone(), received.clone(), failures.clone());
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let (handler, received, failures) =
                    (handler.clone(), received.clone(), failures.clone());
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
                    let reply = match handler(&request) {
                        Ok(reply) => reply,
                        Err(what) => {
                            failures.lock().expect("lock").push(what.clone());
                            Reply::json(418, serde_json::json!({"reason": what}))
                        }
                    };
                    received.lock().expect("lock").push(request);
                    let mut response = hyper::Response::builder().status(reply.status);
                    for (name, value) in reply.headers {
                        response = response.header(name, value);
                    }
                    Ok::<_, Infallible>(
                        response
                            .body(Full::new(Bytes::from(reply.body)))
                            .expect("response"),
                    )
                }
            });
            let io = TokioIo::new(stream);
            tokio::spawn(async move {
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
            });
        }
    });
    server
}

/// A server that accepts connections and never answers (nor closes them).
#[derive(Debug, Clone)]
pub struct Silent {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Silent {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

pub async fn silent_server() -> Silent {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent = Silent {
        addr: listener.local_addr().expect("addr"),
        accepted: Arc::default(),
    };
    let accepted = silent.accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    silent
}

/// An address where nothing listens.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A throwaway RSA key: PKCS#8 PEM and the public key.
pub struct RsaKey {
    pub pem: String,
    pub public: Vec<u8>,
}

pub fn rsa_key() -> RsaKey {
    let key = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key");
    let der = key.as_der().expect("PKCS#8");
    RsaKey {
        pem: pem("PRIVATE KEY", der.as_ref()),
        public: key.public_key().as_ref().to_vec(),
    }
}

/// A throwaway P-256 key (what an APNs `.p8` holds): PKCS#8 PEM and the public point.
pub struct EcKey {
    pub pem: String,
    pub public: Vec<u8>,
}

pub fn ec_key() -> EcKey {
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .expect("P-256 key");
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).expect("parse");
    EcKey {
        pem: pem("PRIVATE KEY", doc.as_ref()),
        public: key.public_key().as_ref().to_vec(),
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Alg {
    Rs256,
    Es256,
}

/// Verifies a compact JWS with `public` and returns its header and claims; `Err` says what
/// failed (a bad signature included).
pub fn verify_jws(jws: &str, alg: Alg, public: &[u8]) -> Result<(Value, Value), String> {
    let parts: Vec<&str> = jws.split('.').collect();
    let [header, claims, sig] = parts[..] else {
        return Err(format!("a JWS has 3 parts, this one {}", parts.len()));
    };
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|e| format!("signature base64url: {e}"))?;
    let signed = format!("{header}.{claims}");
    let checked = match alg {
        Alg::Rs256 => UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public)
            .verify(signed.as_bytes(), &sig),
        Alg::Es256 => {
            if sig.len() != 64 {
                return Err(format!(
                    "an ES256 signature is r||s, 64 bytes, not {}",
                    sig.len()
                ));
            }
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public).verify(signed.as_bytes(), &sig)
        }
    };
    checked.map_err(|_| "bad signature".to_owned())?;
    let decode = |part: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|e| format!("base64url: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("JSON: {e}"))
    };
    Ok((decode(header)?, decode(claims)?))
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// `Err` unless `cond`.
pub fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

/// A sender that answers from a script and counts its calls.
#[derive(Debug)]
pub struct Scripted {
    pub name: &'static str,
    results: Mutex<VecDeque<Result<(), PushError>>>,
    pub calls: Mutex<Vec<Device>>,
}

impl Scripted {
    pub fn new(name: &'static str, results: Vec<Result<(), PushError>>) -> Self {
        Self {
            name,
            results: Mutex::new(results.into()),
            calls: Mutex::default(),
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.lock().expect("lock").len()
    }
}

#[async_trait]
impl PushSender for Scripted {
    async fn send(&self, device: &Device, _notice: &Notice) -> Result<(), PushError> {
        self.calls.lock().expect("lock").push(device.clone());
        self.results
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or(Ok(()))
    }

    fn provider(&self) -> &'static str {
        self.name
    }
}
