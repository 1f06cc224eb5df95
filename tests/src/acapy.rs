//! Driving ACA-Py 1.7 agents (PyPI `acapy-agent`) from tests.
//!
//! [`AcaPyAgent::start`] runs `aca-py start` from the venv that `scripts/setup-interop-acapy`
//! builds (`.venv-acapy/`), as a child process that is killed when the agent is dropped, so a
//! failing test leaves nothing behind; a guard also kills it if the test process itself is
//! killed. Every agent gets:
//! - its own askar sqlite wallet under a fresh `ACAPY_HOME` temporary directory, removed on drop
//!   (ACA-Py 1.7.0's in-memory `--wallet-test` cannot start: it opens `sqlite://:memory:` before
//!   provisioning it and fails with "no such table: config");
//! - an HTTP inbound transport (`--endpoint` is that address), HTTP and WebSocket outbound
//!   transports, an admin API (`--admin-insecure-mode`) and a webhook receiver (axum, in this
//!   process), each on a free `127.0.0.1` port;
//! - `--auto-accept-invites --auto-accept-requests --auto-ping-connection --no-ledger`;
//! - its output forwarded line by line to stderr with an `[acapy <name>]` prefix (libtest shows it
//!   for failing tests), and also appended to `$ACAPY_TEST_LOG_DIR/<name>.log` when that variable
//!   is set. `$ACAPY_TEST_LOG_LEVEL` overrides the default log level `info` (`debug` shows every
//!   plaintext message: lines with `Expanded message:` and `queued_for_delivery`).
//!
//! A [`Role::Recipient`] with a mediator invitation connects to that mediator at start-up
//! (`--mediator-invitation`: an out-of-band URL with `?oob=`), requests mediation and makes the
//! mediator its default, so every later connection is routed through it; `start` returns once the
//! grant has arrived.
//!
//! See `tests/interop/acapy/README.md` for what ACA-Py sends its mediator.

use std::{
    collections::{HashMap, VecDeque},
    net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener},
    path::PathBuf,
    process::Stdio,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{anyhow, bail, Context, Result};
use axum::{body::Bytes, http::Uri, Router};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
    sync::Notify,
    task::JoinHandle,
};

use crate::workspace_root;

/// How long `start` waits for the admin API (and, for a recipient, for the mediation grant).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connection and mediation steps wait by default.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
/// Run by `sh -c` with aca-py and its arguments: arms the guard, then becomes aca-py. The guard
/// (a background subshell holding stdin as fd 3) kills aca-py and removes its `ACAPY_HOME` once
/// stdin reaches end-of-file.
const GUARD_SCRIPT: &str = r#"exec 3<&0
(read -r _ <&3; kill -KILL $$ 2>/dev/null; [ -n "$ACAPY_HOME" ] && rm -rf "$ACAPY_HOME") &
exec 3<&-
exec "$0" "$@""#;
/// Output lines kept per agent for error messages.
const TAIL_LINES: usize = 40;

/// The `aca-py` executable of the ACA-Py venv: `$ACAPY_BIN`, else `.venv-acapy/bin/aca-py`.
/// The error says how to install it.
pub fn acapy_available() -> Result<PathBuf, String> {
    let path = std::env::var_os("ACAPY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv-acapy/bin/aca-py"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "ACA-Py is not installed: no {} — run `scripts/setup-interop-acapy` (it builds the \
             .venv-acapy venv with Python 3.13 and the acapy-agent version pinned in \
             tests/interop/acapy/requirements.txt), or set ACAPY_BIN to an `aca-py` executable",
            path.display()
        ))
    }
}

/// What an agent is for.
#[derive(Debug, Clone)]
pub enum Role {
    /// An ordinary agent with its own HTTP endpoint and no mediator (e.g. a sender).
    Plain,
    /// An agent that uses a mediator when `mediator_invitation` (an out-of-band invitation URL)
    /// is given: `--mediator-invitation <url>`. ACA-Py then connects with DID Exchange, sends
    /// `mediate-request`, and on `mediate-grant` makes that mediator the default for every new
    /// connection. `start` waits for the grant.
    Recipient { mediator_invitation: Option<String> },
    /// ACA-Py as a mediator, the baseline: `--open-mediation` (grants every request) and
    /// `--enable-undelivered-queue` (holds messages for recipients without an endpoint).
    Mediator,
}

/// How to start an agent.
#[derive(Debug, Clone)]
pub struct AcaPyConfig {
    /// Agent label, also the prefix of its output lines; keep it short and unique per test.
    pub name: String,
    pub role: Role,
    /// `--log-level`; default `$ACAPY_TEST_LOG_LEVEL` or `info`.
    pub log_level: String,
    /// Appended to the command line as they are.
    pub extra_args: Vec<String>,
}

impl AcaPyConfig {
    pub fn new(name: impl Into<String>, role: Role) -> Self {
        Self {
            name: name.into(),
            role,
            log_level: std::env::var("ACAPY_TEST_LOG_LEVEL").unwrap_or_else(|_| "info".into()),
            extra_args: Vec::new(),
        }
    }

    pub fn log_level(mut self, level: impl Into<String>) -> Self {
        self.log_level = level.into();
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }
}

/// An out-of-band invitation created by an agent.
#[derive(Debug, Clone)]
pub struct Invitation {
    /// `<endpoint>?oob=<base64url JSON>`.
    pub url: String,
    /// The invitation message's `@id` (connections made from it carry it as `invitation_msg_id`).
    pub invi_msg_id: String,
    /// The invitation message itself.
    pub message: Value,
}

impl Invitation {
    /// The first service's first `recipientKeys` entry (a `did:key`, possibly with a fragment).
    pub fn recipient_key(&self) -> Option<&str> {
        self.message
            .pointer("/services/0/recipientKeys/0")
            .and_then(Value::as_str)
    }

    /// The first service's `serviceEndpoint`.
    pub fn service_endpoint(&self) -> Option<&str> {
        self.message
            .pointer("/services/0/serviceEndpoint")
            .and_then(Value::as_str)
    }

    /// The first service's `routingKeys` (empty for an agent without a mediator).
    pub fn routing_keys(&self) -> Vec<String> {
        self.message
            .pointer("/services/0/routingKeys")
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One webhook ACA-Py posted to `<webhook-url>/topic/<topic>/`.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub topic: String,
    pub body: Value,
}

#[derive(Debug, Default)]
struct WebhookQueue {
    events: Mutex<VecDeque<Webhook>>,
    arrived: Notify,
}

impl WebhookQueue {
    fn push(&self, hook: Webhook) {
        if let Ok(mut events) = self.events.lock() {
            events.push_back(hook);
        }
        self.arrived.notify_waiters();
    }

    /// Removes and returns the first queued event of `topic` that `accept` takes.
    fn take(&self, topic: &str, accept: &dyn Fn(&Value) -> bool) -> Option<Webhook> {
        let mut events = self.events.lock().ok()?;
        let index = events
            .iter()
            .position(|h| h.topic == topic && accept(&h.body))?;
        events.remove(index)
    }

    fn topics_seen(&self) -> Vec<String> {
        let Ok(events) = self.events.lock() else {
            return Vec::new();
        };
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for h in events.iter() {
            *counts.entry(h.topic.as_str()).or_default() += 1;
        }
        let mut out: Vec<String> = counts.iter().map(|(t, n)| format!("{t}×{n}")).collect();
        out.sort();
        out
    }
}

/// Aborts the webhook server when the agent goes.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A running ACA-Py agent. Dropping it kills the process and removes its wallet directory.
#[derive(Debug)]
pub struct AcaPyAgent {
    name: String,
    child: Child,
    home: PathBuf,
    admin: String,
    endpoint: String,
    http: reqwest::Client,
    webhooks: Arc<WebhookQueue>,
    tail: SharedTail,
    /// Every output line logged at ERROR level.
    errors: SharedLines,
    mediator_connection: Option<String>,
    _webhook_server: AbortOnDrop,
    /// Write end of the child's stdin: closing it (drop, or this process dying) kills aca-py.
    _guard: Option<tokio::process::ChildStdin>,
}

static AGENT_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A free TCP port on 127.0.0.1 (bound to port 0, then released for the child to take).
pub fn free_port() -> Result<u16> {
    let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}

impl AcaPyAgent {
    /// Starts `aca-py start` for `config` and waits until its admin API is ready and, for a
    /// recipient with a mediator invitation, until mediation is granted.
    pub async fn start(config: AcaPyConfig) -> Result<Self> {
        let bin = acapy_available().map_err(|e| anyhow!(e))?;
        let name = config.name.clone();
        let serial = AGENT_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let unique = format!(
            "{}-{}-{serial}-{nanos:08x}",
            sanitize(&name),
            std::process::id()
        );
        let home = std::env::temp_dir().join(format!("acapy-{unique}"));
        std::fs::create_dir_all(&home)
            .with_context(|| format!("[acapy {name}] creating its home {}", home.display()))?;

        // Webhook receiver first: ACA-Py posts from the moment it starts.
        let webhooks = Arc::new(WebhookQueue::default());
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .with_context(|| format!("[acapy {name}] binding the webhook receiver"))?;
        let webhook_addr: SocketAddr = listener.local_addr()?;
        let server = {
            let queue = webhooks.clone();
            let label = name.clone();
            let app = Router::new().fallback(move |uri: Uri, body: Bytes| {
                let queue = queue.clone();
                let label = label.clone();
                async move {
                    receive_webhook(&label, &queue, &uri, &body);
                    "ok"
                }
            });
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    eprintln!("[acapy webhooks] server stopped: {e}");
                }
            })
        };

        let inbound_port = free_port()?;
        let admin_port = free_port()?;
        let endpoint = format!("http://127.0.0.1:{inbound_port}");
        let admin = format!("http://127.0.0.1:{admin_port}");
        let mut args: Vec<String> = vec![
            "start".into(),
            "--label".into(),
            name.clone(),
            "--wallet-type".into(),
            "askar".into(),
            "--wallet-name".into(),
            format!("wallet-{unique}"),
            "--wallet-key".into(),
            format!("key-{unique}"),
            // Interactive-strength KDF: the default (argon2i:mod) costs ~1 s per start.
            "--wallet-key-derivation-method".into(),
            "kdf:argon2i:int".into(),
            "--auto-provision".into(),
            "--inbound-transport".into(),
            "http".into(),
            "127.0.0.1".into(),
            inbound_port.to_string(),
            "--outbound-transport".into(),
            "http".into(),
            "--outbound-transport".into(),
            "ws".into(),
            "--endpoint".into(),
            endpoint.clone(),
            "--admin".into(),
            "127.0.0.1".into(),
            admin_port.to_string(),
            "--admin-insecure-mode".into(),
            "--auto-accept-invites".into(),
            "--auto-accept-requests".into(),
            "--auto-ping-connection".into(),
            "--no-ledger".into(),
            "--log-level".into(),
            config.log_level.clone(),
            "--webhook-url".into(),
            format!("http://{webhook_addr}"),
        ];
        let mediator_invitation = match &config.role {
            Role::Plain => None,
            Role::Recipient {
                mediator_invitation,
            } => {
                if let Some(url) = mediator_invitation {
                    args.push("--mediator-invitation".into());
                    args.push(url.clone());
                }
                mediator_invitation.clone()
            }
            Role::Mediator => {
                args.push("--open-mediation".into());
                args.push("--enable-undelivered-queue".into());
                None
            }
        };
        args.extend(config.extra_args.iter().cloned());

        // `sh` only arms a guard, then becomes aca-py (same pid, so kill_on_drop reaches it):
        // a background subshell waits for end-of-file on stdin, whose write end only this
        // process holds, then kills aca-py and removes its home. So aca-py also dies when this
        // test process is killed outright (Ctrl-C, a CI timeout) and no destructor runs.
        let mut command = Command::new("sh");
        // ConfigArgParse reads ACAPY_* variables as options: keep the caller's out.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ACAPY_") {
                command.env_remove(key);
            }
        }
        command
            .arg("-c")
            .arg(GUARD_SCRIPT)
            .arg(&bin)
            .args(&args)
            .env("ACAPY_HOME", &home)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        eprintln!(
            "[acapy {name}] starting: {} {} (ACAPY_HOME={})",
            bin.display(),
            args.join(" "),
            home.display()
        );
        let mut child = command
            .spawn()
            .with_context(|| format!("[acapy {name}] spawning {}", bin.display()))?;

        let guard = child.stdin.take();
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let log_file = std::env::var_os("ACAPY_TEST_LOG_DIR").map(|dir| {
            let dir = PathBuf::from(dir);
            let _ = std::fs::create_dir_all(&dir);
            dir.join(format!("{}.log", sanitize(&name)))
        });
        if let Some(out) = child.stdout.take() {
            let sinks = (tail.clone(), errors.clone());
            forward_output(out, name.clone(), sinks, log_file.clone());
        }
        if let Some(err) = child.stderr.take() {
            let sinks = (tail.clone(), errors.clone());
            forward_output(err, name.clone(), sinks, log_file);
        }

        let mut agent = Self {
            name,
            child,
            home,
            admin,
            endpoint,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .context("building the HTTP client")?,
            webhooks,
            tail,
            errors,
            mediator_connection: None,
            _webhook_server: AbortOnDrop(server),
            _guard: guard,
        };
        agent.wait_ready(START_TIMEOUT).await?;
        if mediator_invitation.is_some() {
            let record = agent.wait_mediation_granted(START_TIMEOUT).await?;
            agent.mediator_connection = record
                .get("connection_id")
                .and_then(Value::as_str)
                .map(String::from);
        }
        Ok(agent)
    }

    /// The agent's label.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its DIDComm HTTP endpoint (`--endpoint`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Base URL of its admin API.
    pub fn admin_url(&self) -> &str {
        &self.admin
    }

    /// The connection to its mediator, once mediation was granted.
    pub fn mediator_connection(&self) -> Option<&str> {
        self.mediator_connection.as_deref()
    }

    /// The lines the agent logged at ERROR level so far.
    pub fn error_lines(&self) -> Vec<String> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// The last lines the agent printed (for error messages).
    pub fn output_tail(&self) -> String {
        self.tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    fn context(&self, doing: &str) -> String {
        format!("[acapy {}] {doing}", self.name)
    }

    /// Fails with the exit status and last output if the process has ended.
    fn check_alive(&mut self, doing: &str) -> Result<()> {
        match self.child.try_wait() {
            Ok(Some(status)) => bail!(
                "{}: aca-py exited ({status}); last output:\n{}",
                self.context(doing),
                self.output_tail()
            ),
            Ok(None) => Ok(()),
            Err(e) => bail!("{}: cannot check the process: {e}", self.context(doing)),
        }
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let doing = "waiting for the admin API (GET /status/ready)";
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive(doing)?;
            let answer = self
                .http
                .get(format!("{}/status/ready", self.admin))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if let Ok(resp) = answer {
                if let Ok(body) = resp.json::<Value>().await {
                    if body.get("ready") == Some(&Value::Bool(true)) {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: not ready after {timeout:?}; last output:\n{}",
                    self.context(doing),
                    self.output_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the default mediator is set and granted (`GET /mediation/default-mediator`)
    /// and returns that mediation record.
    pub async fn wait_mediation_granted(&mut self, timeout: Duration) -> Result<Value> {
        let doing = "waiting for mediation to be granted (GET /mediation/default-mediator)";
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        loop {
            self.check_alive(doing)?;
            // ACA-Py logs a bad --mediator-invitation and runs on without a mediator.
            if let Some(line) = self
                .error_lines()
                .into_iter()
                .find(|l| l.contains("mediation invitation") || l.contains("mediator invitation"))
            {
                bail!(
                    "{}: ACA-Py could not use the mediator invitation: {line}; last output:\n{}",
                    self.context(doing),
                    self.output_tail()
                );
            }
            let resp = self
                .http
                .get(format!("{}/mediation/default-mediator", self.admin))
                .send()
                .await
                .with_context(|| self.context(doing))?;
            if resp.status().is_success() {
                let record: Value = resp.json().await.with_context(|| self.context(doing))?;
                if record.get("state").and_then(Value::as_str) == Some("granted") {
                    return Ok(record);
                }
                last = record;
            }
            if Instant::now() > deadline {
                let requests = self
                    .admin_get("/mediation/requests")
                    .await
                    .unwrap_or(Value::Null);
                let connections = self.admin_get("/connections").await.unwrap_or(Value::Null);
                bail!(
                    "{}: no granted default mediator after {timeout:?}; default-mediator: {last}; \
                     mediation requests: {requests}; connections: {connections}; last output:\n{}",
                    self.context(doing),
                    self.output_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `GET <admin><path>` as JSON.
    pub async fn admin_get(&self, path: &str) -> Result<Value> {
        let doing = format!("GET {path}");
        let resp = self
            .http
            .get(format!("{}{path}", self.admin))
            .send()
            .await
            .with_context(|| self.context(&doing))?;
        self.json_answer(resp, &doing).await
    }

    /// `POST <admin><path>` with a JSON body, answer as JSON.
    pub async fn admin_post(&self, path: &str, body: &Value) -> Result<Value> {
        let doing = format!("POST {path}");
        let resp = self
            .http
            .post(format!("{}{path}", self.admin))
            .json(body)
            .send()
            .await
            .with_context(|| self.context(&doing))?;
        self.json_answer(resp, &doing).await
    }

    async fn json_answer(&self, resp: reqwest::Response, doing: &str) -> Result<Value> {
        let status = resp.status();
        let text = resp.text().await.with_context(|| self.context(doing))?;
        if !status.is_success() {
            bail!("{}: HTTP {status}: {text}", self.context(doing));
        }
        serde_json::from_str(&text)
            .with_context(|| format!("{}: answer is not JSON: {text}", self.context(doing)))
    }

    /// Creates a single-use out-of-band invitation offering DID Exchange 1.1 and returns its URL.
    /// For a recipient with a mediator, the invitation routes through the mediator and this waits
    /// until the mediator confirmed the invitation key (`keylist-update-response`).
    pub async fn create_invitation(&self) -> Result<String> {
        Ok(self.create_invitation_record(false).await?.url)
    }

    /// Like [`Self::create_invitation`], multi-use. A mediated ACA-Py 1.7 recipient's multi-use
    /// invitation works only once: after the first connection it sends its mediator a
    /// keylist-update removing the invitation key.
    pub async fn create_multi_use_invitation(&self) -> Result<String> {
        Ok(self.create_invitation_record(true).await?.url)
    }

    /// Creates an out-of-band invitation (handshake `https://didcomm.org/didexchange/1.1`).
    pub async fn create_invitation_record(&self, multi_use: bool) -> Result<Invitation> {
        let doing = "creating an out-of-band invitation";
        let answer = self
            .admin_post(
                &format!("/out-of-band/create-invitation?multi_use={multi_use}&auto_accept=true"),
                &json!({
                    "handshake_protocols": ["https://didcomm.org/didexchange/1.1"],
                    "use_public_did": false,
                }),
            )
            .await
            .with_context(|| self.context(doing))?;
        let url = answer
            .get("invitation_url")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{}: no invitation_url in {answer}", self.context(doing)))?;
        let message = answer.get("invitation").cloned().unwrap_or(Value::Null);
        let invitation = Invitation {
            url: url.to_string(),
            invi_msg_id: answer
                .get("invi_msg_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            message,
        };
        if let (Some(mediator), Some(key)) = (&self.mediator_connection, invitation.recipient_key())
        {
            self.wait_route(mediator, key, STEP_TIMEOUT).await?;
        }
        Ok(invitation)
    }

    /// Waits until the mediator's `keylist-update-response` confirmed `key` (a did:key or
    /// base58 verkey): ACA-Py stores a client route record for each confirmed key.
    pub async fn wait_route(
        &self,
        mediator_connection: &str,
        key: &str,
        timeout: Duration,
    ) -> Result<()> {
        let doing =
            format!("waiting for the mediator to confirm key {key} (GET /mediation/keylists)");
        let want = key_bytes(key)
            .ok_or_else(|| anyhow!("{}: cannot read the key {key}", self.context(&doing)))?;
        let deadline = Instant::now() + timeout;
        loop {
            let routes = self
                .admin_get(&format!(
                    "/mediation/keylists?conn_id={mediator_connection}&role=client"
                ))
                .await?;
            let confirmed = routes
                .get("results")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|r| r.get("recipient_key").and_then(Value::as_str))
                .any(|k| key_bytes(k).as_ref() == Some(&want));
            if confirmed {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: not confirmed after {timeout:?} (did the mediator answer keylist-update \
                     with a keylist-update-response POSTed to the recipient's endpoint?); \
                     routes: {routes}; last output:\n{}",
                    self.context(&doing),
                    self.output_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Accepts an out-of-band invitation (a URL with `?oob=`, or the invitation JSON) and waits
    /// until the connection is `active`/`completed`; returns its connection id.
    pub async fn receive_invitation(&self, invitation: &str) -> Result<String> {
        self.receive_invitation_within(invitation, STEP_TIMEOUT)
            .await
    }

    pub async fn receive_invitation_within(
        &self,
        invitation: &str,
        timeout: Duration,
    ) -> Result<String> {
        let doing = "receiving an out-of-band invitation";
        let message = invitation_from_url(invitation).with_context(|| self.context(doing))?;
        let record = self
            .admin_post(
                "/out-of-band/receive-invitation?auto_accept=true&use_existing_connection=false",
                &message,
            )
            .await
            .with_context(|| self.context(doing))?;
        let connection = record
            .get("connection_id")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{}: no connection_id in {record}", self.context(doing)))?
            .to_string();
        self.wait_connection_active(&connection, timeout).await?;
        Ok(connection)
    }

    /// Waits until the connection's state is `active` or `completed`.
    pub async fn wait_connection_active(
        &self,
        connection: &str,
        timeout: Duration,
    ) -> Result<Value> {
        let doing = format!("waiting for connection {connection} to become active");
        let deadline = Instant::now() + timeout;
        loop {
            let record = self.admin_get(&format!("/connections/{connection}")).await;
            if let Ok(record) = &record {
                match record.get("state").and_then(Value::as_str) {
                    Some("active" | "completed") => return Ok(record.clone()),
                    Some("abandoned" | "error") => bail!(
                        "{}: connection failed: {record}; last output:\n{}",
                        self.context(&doing),
                        self.output_tail()
                    ),
                    _ => {}
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: still not active after {timeout:?}: {}; last output:\n{}",
                    self.context(&doing),
                    match record {
                        Ok(r) => r.to_string(),
                        Err(e) => format!("{e:#}"),
                    },
                    self.output_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for the connection that came from this agent's invitation `invi_msg_id` to become
    /// active and returns its id.
    pub async fn connection_for_invitation(
        &self,
        invi_msg_id: &str,
        timeout: Duration,
    ) -> Result<String> {
        let doing = format!("waiting for a connection from invitation {invi_msg_id}");
        let deadline = Instant::now() + timeout;
        loop {
            let list = self
                .admin_get(&format!("/connections?invitation_msg_id={invi_msg_id}"))
                .await?;
            let active = list
                .get("results")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|c| {
                    matches!(
                        c.get("state").and_then(Value::as_str),
                        Some("active" | "completed")
                    )
                })
                .and_then(|c| c.get("connection_id").and_then(Value::as_str));
            if let Some(id) = active {
                return Ok(id.to_string());
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: none active after {timeout:?}: {list}; last output:\n{}",
                    self.context(&doing),
                    self.output_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends a basic message (`https://didcomm.org/basicmessage/1.0/message`) on a connection.
    pub async fn send_message(&self, connection: &str, content: &str) -> Result<()> {
        self.admin_post(
            &format!("/connections/{connection}/send-message"),
            &json!({ "content": content }),
        )
        .await
        .with_context(|| self.context(&format!("sending a basic message on {connection}")))?;
        Ok(())
    }

    /// The next webhook of `topic` (e.g. `connections`, `basicmessages`, `mediation`,
    /// `out_of_band`, `ping`), waiting up to `timeout`. Events of other topics stay queued.
    pub async fn next_webhook(&self, topic: &str, timeout: Duration) -> Result<Value> {
        self.next_webhook_matching(topic, timeout, |_| true).await
    }

    /// The next webhook of `topic` whose body `accept` takes; others stay queued.
    pub async fn next_webhook_matching(
        &self,
        topic: &str,
        timeout: Duration,
        accept: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before looking, so a push in between is not missed.
            let arrived = self.webhooks.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(hook) = self.webhooks.take(topic, &accept) {
                return Ok(hook.body);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                bail!(
                    "{}: no `{topic}` webhook within {timeout:?} (queued: [{}]); last output:\n{}",
                    self.context("waiting for a webhook"),
                    self.webhooks.topics_seen().join(", "),
                    self.output_tail()
                );
            }
        }
    }

    /// Collects the contents of `n` received basic messages (webhook topic `basicmessages`),
    /// in arrival order, waiting up to `timeout` in all.
    pub async fn collect_basic_messages(&self, n: usize, timeout: Duration) -> Result<Vec<String>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut contents = Vec::with_capacity(n);
        while contents.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self
                .next_webhook_matching("basicmessages", left, |b| {
                    b.get("state").and_then(Value::as_str) != Some("sent")
                })
                .await
            {
                Ok(body) => contents.push(
                    body.get("content")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                ),
                Err(e) => {
                    return Err(e.context(format!(
                        "[acapy {}] collecting {n} basic messages: got {} within {timeout:?}: {contents:?}",
                        self.name,
                        contents.len()
                    )))
                }
            }
        }
        Ok(contents)
    }

    /// Kills the process, waits for it and removes its wallet directory.
    pub async fn shutdown(mut self) -> Result<()> {
        let doing = "shutting down";
        if self.child.try_wait().ok().flatten().is_none() {
            self.child
                .kill()
                .await
                .with_context(|| self.context(doing))?;
        }
        let _ = std::fs::remove_dir_all(&self.home);
        eprintln!("[acapy {}] stopped", self.name);
        Ok(())
    }
}

impl Drop for AcaPyAgent {
    fn drop(&mut self) {
        // kill_on_drop also does this; do it first so the wallet directory is no longer in use.
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn receive_webhook(label: &str, queue: &WebhookQueue, uri: &Uri, body: &[u8]) {
    // ACA-Py posts to <webhook-url>/topic/<topic>/
    let topic = uri
        .path()
        .trim_matches('/')
        .strip_prefix("topic/")
        .unwrap_or(uri.path())
        .trim_matches('/')
        .to_string();
    let body: Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
    let state = body.get("state").and_then(Value::as_str).unwrap_or("-");
    eprintln!("[acapy {label} webhook] {topic} state={state}");
    queue.push(Webhook { topic, body });
}

type SharedTail = Arc<Mutex<VecDeque<String>>>;
type SharedLines = Arc<Mutex<Vec<String>>>;

fn forward_output(
    stream: impl AsyncRead + Unpin + Send + 'static,
    name: String,
    (tail, errors): (SharedTail, SharedLines),
    log_file: Option<PathBuf>,
) {
    tokio::spawn(async move {
        let mut file = log_file.and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        // Byte segments, not `lines()`: one non-UTF-8 byte must not stop the draining (a full
        // pipe would block aca-py).
        let mut segments = BufReader::new(stream).split(b'\n');
        while let Ok(Some(segment)) = segments.next_segment().await {
            let line = String::from_utf8_lossy(&segment)
                .trim_end_matches('\r')
                .to_string();
            if let Some(f) = file.as_mut() {
                use std::io::Write;
                let _ = writeln!(f, "{line}");
            }
            // Askar's FFI debug lines and the access log of the harness polling the admin API
            // (GET) are noise on the console and in error messages; they stay in the log file.
            if line.contains("aries_askar.native")
                || (line.contains("aiohttp.access") && line.contains("\"GET /"))
            {
                continue;
            }
            eprintln!("[acapy {name}] {line}");
            if line.contains(" ERROR ") {
                if let Ok(mut e) = errors.lock() {
                    e.push(line.clone());
                }
            }
            if let Ok(mut t) = tail.lock() {
                if t.len() == TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(line);
            }
        }
    });
}

/// The invitation JSON from an out-of-band URL (`…?oob=<base64url>`, padding optional, standard
/// base64 accepted too) or from the JSON itself.
pub fn invitation_from_url(invitation: &str) -> Result<Value> {
    let trimmed = invitation.trim();
    if trimmed.starts_with('{') {
        return serde_json::from_str(trimmed).context("parsing the invitation JSON");
    }
    let query = trimmed
        .split_once('?')
        .map(|(_, q)| q)
        .ok_or_else(|| anyhow!("invitation URL has no query: {trimmed}"))?;
    let query = query.split('#').next().unwrap_or_default();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "oob" || key == "c_i" {
            let encoded = percent_decode(value)?;
            let bytes = base64_decode(&encoded)
                .ok_or_else(|| anyhow!("`{key}` is not base64: {encoded}"))?;
            return serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "`{key}` does not decode to JSON: {}",
                    String::from_utf8_lossy(&bytes)
                )
            });
        }
    }
    bail!("invitation URL has no `oob` parameter: {trimmed}")
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 3 <= bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])?;
                out.push(u8::from_str_radix(hex, 16).with_context(|| format!("bad %{hex}"))?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8(out)?)
}

/// Base64 in either alphabet, padding optional.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

const BASE58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Bitcoin-alphabet base58.
pub fn base58_decode(s: &str) -> Option<Vec<u8>> {
    let mut digits: Vec<u8> = Vec::new(); // little-endian base-256
    for c in s.bytes() {
        let mut carry = BASE58.iter().position(|&a| a == c)? as u32;
        for d in digits.iter_mut() {
            carry += u32::from(*d) * 58;
            *d = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            digits.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = s.bytes().take_while(|&c| c == b'1').count();
    let mut out = vec![0u8; zeros];
    out.extend(digits.iter().rev());
    Some(out)
}

/// The raw 32-byte Ed25519 key of a base58 verkey, a `did:key:z6Mk…` (with or without a
/// `#fragment`), for comparing keys written either way.
pub fn key_bytes(key: &str) -> Option<Vec<u8>> {
    let key = key.split('#').next().unwrap_or(key);
    if let Some(multibase) = key.strip_prefix("did:key:") {
        let bytes = base58_decode(multibase.strip_prefix('z')?)?;
        // multicodec ed25519-pub = 0xed 0x01
        return match bytes.as_slice() {
            [0xed, 0x01, rest @ ..] if rest.len() == 32 => Some(rest.to_vec()),
            _ => None,
        };
    }
    let bytes = base58_decode(key)?;
    (bytes.len() == 32).then_some(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_an_acapy_oob_url() {
        let url = "http://127.0.0.1:18000?oob=eyJAdHlwZSI6ICJodHRwczovL2RpZGNvbW0ub3JnL291dC1vZi1iYW5kLzEuMS9pbnZpdGF0aW9uIiwgIkBpZCI6ICJkZjZjYjlmZC1mZjE2LTRjMjQtYTZmNS1kN2I1ZmRjMTJmMjMifQ";
        let inv = invitation_from_url(url).unwrap();
        assert_eq!(inv["@id"], "df6cb9fd-ff16-4c24-a6f5-d7b5fdc12f23");
        assert_eq!(
            inv["@type"],
            "https://didcomm.org/out-of-band/1.1/invitation"
        );
        // padded, percent-encoded padding, JSON as is
        let padded = invitation_from_url("https://m.example/?x=1&oob=eyJhIjogMX0%3D").unwrap();
        assert_eq!(padded["a"], 1);
        assert_eq!(invitation_from_url("{\"a\":2}").unwrap()["a"], 2);
        assert!(invitation_from_url("https://m.example/").is_err());
    }

    #[test]
    fn compares_did_key_and_base58_forms() {
        // Observed in an ACA-Py log: the same key as a did:key and as a base58 verkey.
        let did_key = "did:key:z6MknXiNYinsQSmjhsBqX8ngFvKseJddpsgigJvEfVBZheyQ";
        let with_fragment = format!("{did_key}#z6MknXiNYinsQSmjhsBqX8ngFvKseJddpsgigJvEfVBZheyQ");
        let a = key_bytes(did_key).unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(key_bytes(&with_fragment).unwrap(), a);
        assert_eq!(
            key_bytes("95TKxUYS4uHGbNM8qZpqQpmspjMnQzSMzJ1JqDDYnSC2").unwrap(),
            a
        );
        assert!(key_bytes("did:key:zNotAKey").is_none());
    }
}
