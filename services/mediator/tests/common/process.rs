//! Real mediator processes (the binary) on loopback sharing a Redis, and the Forwards and
//! deliveries the process tests exchange with them.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use didcomm_envelope::{pack, unpack, ContentEnc, KeyPair, VerKey};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{Client, Ws};

pub const SECRET: &str = "fault-test-master-secret-0123456789abcdef";

/// A mediator process (the real binary), killed and reaped on drop.
pub struct Proc {
    pub name: String,
    pub base: String,
    child: Option<Child>,
    pub log: std::path::PathBuf,
}

impl Proc {
    pub fn start(name: &str, redis: &str, prefix: &str) -> Self {
        Self::start_with(name, redis, prefix, &[])
    }

    /// Like [`Proc::start`], with more `MEDIATOR_*` variables (they win over the defaults here).
    pub fn start_with(name: &str, redis: &str, prefix: &str, extra: &[(&str, &str)]) -> Self {
        Self::spawn(name, redis, prefix, extra, None)
    }

    /// Like [`Proc::start_with`], the process limited to `nofile` open files (soft and hard).
    pub fn start_with_fd_limit(
        name: &str,
        redis: &str,
        prefix: &str,
        extra: &[(&str, &str)],
        nofile: u32,
    ) -> Self {
        Self::spawn(name, redis, prefix, extra, Some(nofile))
    }

    fn spawn(
        name: &str,
        redis: &str,
        prefix: &str,
        extra: &[(&str, &str)],
        nofile: Option<u32>,
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let log = std::env::temp_dir().join(format!("mediator-{name}-{port}.log"));
        let stdout = std::fs::File::create(&log).unwrap();
        let stderr = stdout.try_clone().unwrap();
        let binary = env!("CARGO_BIN_EXE_mediator");
        let mut command = match nofile {
            // `ulimit -n` sets the soft and the hard limit: the mediator cannot raise it.
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\""))
                    .arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let child = command
            .env("MEDIATOR_LISTEN", format!("127.0.0.1:{port}"))
            .env("MEDIATOR_PUBLIC_HTTP_ENDPOINT", &base)
            .env(
                "MEDIATOR_PUBLIC_WS_ENDPOINT",
                format!("ws://127.0.0.1:{port}"),
            )
            .env("MEDIATOR_MASTER_SECRET", SECRET)
            .env("MEDIATOR_STORAGE__BACKEND", "redis")
            .env("MEDIATOR_STORAGE__REDIS__URL", redis)
            .env("MEDIATOR_STORAGE__REDIS__KEY_PREFIX", prefix)
            .env("MEDIATOR_CLUSTER__INSTANCE_ID", name)
            .env("MEDIATOR_CLUSTER__LIVE_LEASE_MS", "3000")
            .env("MEDIATOR_PICKUP__REDELIVERY_AFTER_MS", "2000")
            .env("MEDIATOR_LOG", "info")
            // Test clients' endpoints are on loopback (a private address).
            .env("MEDIATOR_DELIVERY__ALLOW_PRIVATE_ENDPOINTS", "true")
            // The process tests' clients all come from 127.0.0.1 and send hundreds of messages a
            // second: per-address rate limits off, unless `extra` sets them (it comes last).
            .envs(mediator::config::RATE_LIMITS_OFF)
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            // Start-up errors go to stderr: into the same log, so a failed start explains itself.
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start the mediator binary");
        Self {
            name: name.to_owned(),
            base,
            child: Some(child),
            log,
        }
    }

    /// Waits until `/readyz` says ready (storage answers, subscribed).
    pub async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/readyz", self.base)).await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "mediator {} not ready; its log:\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `/readyz` says ready; its log when the process exits first (a port taken
    /// meanwhile, a bad setting) or is not ready within 30 s.
    pub async fn try_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/readyz", self.base)).await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() >= deadline {
                return Err(std::fs::read_to_string(&self.log).unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM (graceful shutdown); waits for the exit and returns whether it was clean.
    pub fn sigterm_and_wait(&mut self, limit: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }

    /// SIGKILL: no close frames, no deregistration, nothing.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn ws_url(&self) -> String {
        self.base.replacen("http://", "ws://", 1)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("mediator {} log kept: {}", self.name, self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Opens a delivery envelope's attachments: (queued id, sequence number) each.
pub fn open_delivery(
    client: &Client,
    recipient: &KeyPair,
    frame: &[u8],
) -> Option<Vec<(Value, u64)>> {
    // Not every frame is an envelope: a refused acknowledgement (storage down) is a JSON error.
    let plain = unpack(frame, |kid| {
        (kid == client.key.verkey_base58()).then_some(&client.key)
    })
    .ok()?;
    let msg: Value = serde_json::from_slice(&plain.message).ok()?;
    if msg["@type"] != "https://didcomm.org/messagepickup/2.0/delivery" {
        return None;
    }
    let mut out = Vec::new();
    for a in msg["~attach"].as_array()? {
        let inner = serde_json::to_vec(&a["data"]["json"]).ok()?;
        let plain = unpack(&inner, |kid| {
            (kid == recipient.verkey_base58()).then_some(recipient)
        })
        .ok()?;
        let v: Value = serde_json::from_slice(&plain.message).ok()?;
        out.push((a["@id"].clone(), v["seq"].as_u64()?));
    }
    Some(out)
}

/// A Forward of sequence number `seq` for `recipient`.
pub fn forward(routing: &VerKey, recipient: &VerKey, seq: u64) -> Vec<u8> {
    forward_json(routing, recipient, &json!({ "seq": seq }))
}

/// A Forward for `recipient` of `inner` (anoncrypted for it).
pub fn forward_json(routing: &VerKey, recipient: &VerKey, inner: &Value) -> Vec<u8> {
    let inner = pack(
        inner.to_string().as_bytes(),
        &[*recipient],
        None,
        ContentEnc::C20P,
    )
    .unwrap();
    let inner: Value = serde_json::from_slice(&inner).unwrap();
    let fwd = json!({
        "@type": "https://didcomm.org/routing/1.0/forward",
        "@id": super::new_id(),
        "to": recipient.to_base58(),
        "msg": inner,
    });
    pack(
        &serde_json::to_vec(&fwd).unwrap(),
        &[*routing],
        None,
        ContentEnc::C20P,
    )
    .unwrap()
}

pub async fn ws_connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// `mediator_limits_refused_total{limit}` on the Prometheus endpoint at `metrics` (host:port):
/// how many times that limit refused something (0 when the scrape fails).
pub async fn refusals(metrics: &str, limit: &str) -> u64 {
    let Ok(response) = reqwest::get(format!("http://{metrics}/metrics")).await else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    let label = format!("limit=\"{limit}\"");
    text.lines()
        .filter(|l| l.starts_with("mediator_limits_refused_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// The value of the unlabelled metric `name` on the Prometheus endpoint at `metrics` (host:port),
/// `None` when the scrape fails or the metric is not there.
pub async fn metric(metrics: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Starts `name` with a Prometheus endpoint of its own, on free ports (retried when another
/// process took one first); returns it, ready, and the endpoint's address.
pub async fn start_with_metrics(
    name: &str,
    redis: &str,
    prefix: &str,
    extra: &[(&str, &str)],
) -> (Proc, String) {
    let mut log = String::new();
    for _ in 0..5 {
        let metrics = free_addr();
        let mut env = vec![("MEDIATOR_TELEMETRY__PROMETHEUS__LISTEN", metrics.as_str())];
        env.extend_from_slice(extra);
        let mut proc = Proc::start_with(name, redis, prefix, &env);
        match proc.try_ready().await {
            Ok(()) => return (proc, metrics),
            Err(text) if text.contains("Address already in use") => log = text,
            Err(text) => panic!("the mediator did not start; its log:\n{text}"),
        }
    }
    panic!("no free ports for the mediator after 5 tries; last log:\n{log}");
}

/// A free loopback address for a listener (`127.0.0.1:<port>`).
pub fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}
