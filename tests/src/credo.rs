//! Driving credo-ts agents (JavaScript) from tests: 0.5.19 and 0.6.3 ([`CredoVersion`]).
//!
//! Each [`CredoAgent`] is one `node tests/interop/credo/agent.mjs` (0.5.19) or
//! `node tests/interop/credo-0.6/agent.mjs` (0.6.3, DIDComm in `@credo-ts/didcomm`) process
//! speaking JSON lines, the same protocol for both: commands on its stdin, answers (matched by
//! `id`) and events on its stdout, logs on its stderr (forwarded to the test output with the
//! agent's name as prefix). [`reference_mediator`] starts credo 0.5.19 itself as a mediator
//! (`tests/interop/credo/reference-mediator.mjs`), the reference that our mediator is compared
//! with.
//!
//! Every process is killed when its handle is dropped (also when a test panics), and exits by
//! itself when its stdin closes (when the test process dies). credo is installed by
//! `scripts/setup-interop-credo` (0.5.19) and `scripts/setup-interop-credo-0.6` (0.6.3);
//! [`credo_available`] / [`credo_available_version`] say so when it is missing.
//!
//! credo's habits that tests must live with:
//! - Invitations from [`CredoAgent::create_invitation`] are single use (a second
//!   `receive_invitation` of the same URL fails). Multi-use ones make a mediated credo time out on
//!   its own keylist-update, because it processes one message at a time.
//! - A mediated agent's `create_invitation` sends keylist-update and waits up to 15 s for
//!   keylist-update-response before it answers, so the invitation is routable once returned.
//! - `Implicit` pickup only receives what the mediator sends directly on the open WebSocket
//!   (the reference mediator does with `forwarding: "DirectDelivery"`, not by default).
//! - `CREDO_TRACE=1` logs every plaintext message in and out (stderr); `CREDO_LOG_LEVEL=debug`
//!   turns up credo's own logging.

use std::{
    collections::VecDeque,
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::mpsc,
    time::{timeout, Instant},
};

use crate::workspace_root;

/// How many stderr lines of an agent are kept for error messages.
const STDERR_TAIL: usize = 40;
/// Longest stderr line kept for error messages (message traces are long).
const STDERR_LINE_MAX: usize = 600;

/// Timeouts of the requests (each includes the agent's own waiting, see agent.mjs).
const SPAWN_TIMEOUT: Duration = Duration::from_secs(60);
const INIT_TIMEOUT: Duration = Duration::from_secs(150);
const INVITATION_TIMEOUT: Duration = Duration::from_secs(40);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// Which credo-ts an agent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CredoVersion {
    /// credo-ts 0.5.19 (`tests/interop/credo`).
    #[default]
    V0_5,
    /// credo-ts 0.6.3 with `@credo-ts/didcomm` (`tests/interop/credo-0.6`); its DID Exchange
    /// requests use did:peer:4 unless told otherwise.
    V0_6,
}

impl CredoVersion {
    /// Both versions.
    pub const ALL: [CredoVersion; 2] = [Self::V0_5, Self::V0_6];

    /// The pinned version, as in its package.json.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V0_5 => "0.5.19",
            Self::V0_6 => "0.6.3",
        }
    }

    /// did:peer numalgo of its DID Exchange requests by default: 1 (0.5.19, and
    /// [`InitOptions::default`]), 4 (0.6.3).
    pub fn default_did_peer_numalgo(self) -> u8 {
        match self {
            Self::V0_5 => 1,
            Self::V0_6 => 4,
        }
    }

    /// The harness directory.
    pub fn dir(self) -> PathBuf {
        match self {
            Self::V0_5 => workspace_root().join("tests/interop/credo"),
            Self::V0_6 => workspace_root().join("tests/interop/credo-0.6"),
        }
    }

    /// The script that installs it.
    pub fn setup_script(self) -> &'static str {
        match self {
            Self::V0_5 => "scripts/setup-interop-credo",
            Self::V0_6 => "scripts/setup-interop-credo-0.6",
        }
    }

    /// Where its askar native library is (relative to [`CredoVersion::dir`]), and the variable
    /// that may point at another folder holding it.
    fn askar_library(self) -> (&'static str, &'static str) {
        match self {
            Self::V0_5 => (
                "node_modules/@hyperledger/aries-askar-nodejs/native/libaries_askar.so",
                "LIB_ARIES_ASKAR_PATH",
            ),
            Self::V0_6 => (
                "node_modules/@openwallet-foundation/askar-nodejs/native/libaries_askar.so",
                "LIB_ASKAR_PATH",
            ),
        }
    }
}

impl std::fmt::Display for CredoVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "credo-ts {}", self.as_str())
    }
}

/// `tests/interop/credo` (credo-ts 0.5.19).
pub fn credo_dir() -> PathBuf {
    CredoVersion::V0_5.dir()
}

/// The Node.js executable: `$NODE`, else `node` from the PATH.
pub fn node_program() -> PathBuf {
    std::env::var_os("NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("node"))
}

/// Whether credo-ts 0.5.19 can run here; the error says what is missing and how to install it.
pub fn credo_available() -> Result<(), String> {
    credo_available_version(CredoVersion::V0_5)
}

/// Whether this credo-ts version can run here; the error says what is missing and how to install
/// it.
pub fn credo_available_version(version: CredoVersion) -> Result<(), String> {
    let dir = version.dir();
    let setup = format!(
        "run `{}` (installs {version} and its askar library)",
        version.setup_script()
    );
    let node = node_program();
    match std::process::Command::new(&node)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => {}
        Ok(status) => return Err(format!("`{} --version` failed ({status})", node.display())),
        Err(e) => {
            return Err(format!(
                "cannot run Node.js `{}` ({e}): install Node >= 18 or set $NODE",
                node.display()
            ))
        }
    }
    let core = dir.join("node_modules/@credo-ts/core/package.json");
    if !core.exists() {
        return Err(format!(
            "{version} is not installed ({} is missing): {setup}",
            core.display()
        ));
    }
    let (library, variable) = version.askar_library();
    let library = dir.join(library);
    if !library.exists() && std::env::var_os(variable).is_none() {
        return Err(format!(
            "the askar native library is missing ({}): {setup}",
            library.display()
        ));
    }
    Ok(())
}

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// How a mediated agent collects its messages from the mediator (credo's `MediatorPickupStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickupStrategy {
    /// Pickup 1.0 `batch-pickup`, polling.
    PickUpV1,
    /// Pickup 2.0 `status-request` / `delivery-request`, polling.
    PickUpV2,
    /// Pickup 2.0, then `live-delivery-change` on a WebSocket.
    PickUpV2LiveMode,
    /// A WebSocket kept open with return route; the mediator must deliver on it directly.
    Implicit,
    /// No pickup.
    None,
}

impl PickupStrategy {
    /// All strategies.
    pub const ALL: [PickupStrategy; 5] = [
        Self::PickUpV1,
        Self::PickUpV2,
        Self::PickUpV2LiveMode,
        Self::Implicit,
        Self::None,
    ];

    /// credo's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PickUpV1 => "PickUpV1",
            Self::PickUpV2 => "PickUpV2",
            Self::PickUpV2LiveMode => "PickUpV2LiveMode",
            Self::Implicit => "Implicit",
            Self::None => "None",
        }
    }
}

/// Handshake protocol used for connections (with the mediator too: the agent drops the others
/// from the invitations it receives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// DID Exchange 1.x.
    DidExchange,
    /// Connections 1.0.
    Connections,
    /// Whatever credo picks from the invitation.
    Any,
}

impl Handshake {
    fn as_str(self) -> &'static str {
        match self {
            Self::DidExchange => "didexchange",
            Self::Connections => "connections",
            Self::Any => "any",
        }
    }
}

/// The `init` command.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The agent's label.
    pub label: String,
    /// Connect to this mediator, request mediation and make it the default mediator.
    pub mediator_invitation_url: Option<String>,
    /// How to collect messages from the mediator.
    pub pickup_strategy: PickupStrategy,
    /// did:peer numalgo of the DIDs in DID Exchange requests: 1, 2 or 4.
    pub did_peer_numalgo: u8,
    /// Handshake protocol.
    pub handshake: Handshake,
    /// An HTTP endpoint of its own on this port (an agent without mediator needs one to be
    /// reachable).
    pub inbound_port: Option<u16>,
    /// Polling interval of PickUpV1 / PickUpV2.
    pub polling_interval_ms: u64,
    /// How long `init` waits for the pickup strategy to be running (live mode on, WebSocket
    /// open); the answer's `pickupReady` says whether it was.
    pub pickup_ready_timeout_ms: u64,
    /// Plaintext traces of every message in and out on stderr.
    pub trace: bool,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            label: "credo".into(),
            mediator_invitation_url: None,
            pickup_strategy: PickupStrategy::PickUpV2LiveMode,
            did_peer_numalgo: 1,
            handshake: Handshake::DidExchange,
            inbound_port: None,
            polling_interval_ms: 500,
            pickup_ready_timeout_ms: 15_000,
            trace: std::env::var("CREDO_TRACE").is_ok_and(|v| v == "1"),
        }
    }
}

impl InitOptions {
    /// A mediated agent (no endpoint of its own).
    pub fn recipient(label: &str, mediator_invitation_url: &str, pickup: PickupStrategy) -> Self {
        Self {
            label: label.into(),
            mediator_invitation_url: Some(mediator_invitation_url.into()),
            pickup_strategy: pickup,
            ..Self::default()
        }
    }

    /// An agent without mediator, reachable over HTTP on `inbound_port`.
    pub fn sender(label: &str, inbound_port: u16) -> Self {
        Self {
            label: label.into(),
            pickup_strategy: PickupStrategy::None,
            inbound_port: Some(inbound_port),
            ..Self::default()
        }
    }

    fn to_command(&self) -> Value {
        json!({
            "cmd": "init",
            "label": self.label,
            "mediatorInvitationUrl": self.mediator_invitation_url,
            "pickupStrategy": self.pickup_strategy.as_str(),
            "didPeerNumalgo": self.did_peer_numalgo,
            "handshake": self.handshake.as_str(),
            "inboundPort": self.inbound_port,
            "pollingIntervalMs": self.polling_interval_ms,
            "pickupReadyTimeoutMs": self.pickup_ready_timeout_ms,
            "trace": self.trace,
        })
    }
}

/// The last lines of a process's stderr, shared with the task that forwards them.
#[derive(Debug, Clone, Default)]
struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    fn push(&self, line: &str) {
        let mut line = line.to_string();
        if line.len() > STDERR_LINE_MAX {
            let mut cut = STDERR_LINE_MAX;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        if let Ok(mut tail) = self.0.lock() {
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }

    fn render(&self) -> String {
        match self.0.lock() {
            Ok(tail) if !tail.is_empty() => {
                let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
                format!("\n--- last stderr lines ---\n{}", lines.join("\n"))
            }
            _ => "\n(no stderr output)".to_string(),
        }
    }
}

/// Forwards a child's stderr to the test output, prefixed, and keeps its tail.
fn forward_stderr(name: String, stderr: tokio::process::ChildStderr, tail: StderrTail) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[{name}] {line}");
            tail.push(&line);
        }
    });
}

/// Reads a child's stdout JSON lines into a channel (non-JSON lines are logged and skipped).
fn read_json_lines(
    name: String,
    stdout: tokio::process::ChildStdout,
    tail: StderrTail,
) -> mpsc::UnboundedReceiver<Value> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(&line) {
                Ok(value) => {
                    if tx.send(value).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    eprintln!("[{name}] (stdout, not JSON: {e}) {line}");
                    tail.push(&format!("(stdout, not JSON) {line}"));
                }
            }
        }
    });
    rx
}

/// One credo-ts agent process.
#[derive(Debug)]
pub struct CredoAgent {
    name: String,
    version: CredoVersion,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<Value>,
    /// Events read while waiting for something else, oldest first.
    events: VecDeque<Value>,
    stderr: StderrTail,
    next_id: u64,
    /// What the agent was last asked to do (for error messages).
    doing: String,
}

impl CredoAgent {
    /// Starts `node tests/interop/credo/agent.mjs` (credo-ts 0.5.19); `name` prefixes its log
    /// lines and errors.
    pub async fn spawn(name: &str) -> Result<Self> {
        Self::spawn_version(name, CredoVersion::V0_5).await
    }

    /// Starts the agent of this credo-ts version (`agent.mjs` in [`CredoVersion::dir`]).
    pub async fn spawn_version(name: &str, version: CredoVersion) -> Result<Self> {
        credo_available_version(version).map_err(|e| anyhow!(e))?;
        let dir = version.dir();
        let script = dir.join("agent.mjs");
        let mut child = Command::new(node_program())
            .arg(&script)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start credo agent `{name}`: node {}", script.display()))?;
        let stderr = StderrTail::default();
        let prefix = match version {
            CredoVersion::V0_5 => format!("credo {name}"),
            CredoVersion::V0_6 => format!("credo-0.6 {name}"),
        };
        forward_stderr(
            prefix.clone(),
            child.stderr.take().context("no stderr pipe")?,
            stderr.clone(),
        );
        let lines = read_json_lines(
            prefix,
            child.stdout.take().context("no stdout pipe")?,
            stderr.clone(),
        );
        let stdin = child.stdin.take();
        let mut agent = Self {
            name: name.to_string(),
            version,
            child,
            stdin,
            lines,
            events: VecDeque::new(),
            stderr,
            next_id: 1,
            doing: "starting (loading credo-ts)".into(),
        };
        agent.next_event("ready", SPAWN_TIMEOUT).await?;
        Ok(agent)
    }

    /// The name given to [`CredoAgent::spawn`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The credo-ts version it runs.
    pub fn version(&self) -> CredoVersion {
        self.version
    }

    fn failure(&mut self, what: String) -> anyhow::Error {
        let exit = match self.child.try_wait() {
            Ok(Some(status)) => format!(" (the process exited: {status})"),
            _ => String::new(),
        };
        anyhow!(
            "credo agent `{}` ({}): {what}{exit}; it was {}{}",
            self.name,
            self.version,
            self.doing,
            self.stderr.render()
        )
    }

    /// Sends `command` (an object with `cmd`; an `id` is added) and waits for its answer.
    /// Events that arrive meanwhile are kept for [`CredoAgent::next_event`]. An answer with
    /// `"ok": false` is an error.
    pub async fn request(&mut self, mut command: Value, limit: Duration) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let cmd = command["cmd"].as_str().unwrap_or("?").to_string();
        command["id"] = json!(id);
        self.doing = format!("answering `{cmd}` (request {id})");
        let mut line = serde_json::to_string(&command)?;
        line.push('\n');
        let written = match self.stdin.as_mut() {
            Some(stdin) => match stdin.write_all(line.as_bytes()).await {
                Ok(()) => stdin.flush().await,
                Err(e) => Err(e),
            },
            None => Err(std::io::Error::other("stdin already closed")),
        };
        if let Err(e) = written {
            return Err(self.failure(format!("cannot send `{cmd}`: {e}")));
        }
        let deadline = Instant::now() + limit;
        loop {
            let message = match timeout(
                deadline.saturating_duration_since(Instant::now()),
                self.lines.recv(),
            )
            .await
            {
                Ok(Some(message)) => message,
                Ok(None) => {
                    // Give the process a moment to be reaped so the error can show its status.
                    let _ = timeout(Duration::from_secs(2), self.child.wait()).await;
                    return Err(self.failure(format!("closed its output before answering `{cmd}`")));
                }
                Err(_) => {
                    return Err(self.failure(format!("`{cmd}` timed out after {limit:?}")));
                }
            };
            if message.get("id").and_then(Value::as_u64) == Some(id) {
                if message.get("ok") == Some(&Value::Bool(false)) {
                    let error = message["error"]
                        .as_str()
                        .unwrap_or("(no error text)")
                        .to_string();
                    return Err(self.failure(format!("`{cmd}` failed: {error}")));
                }
                self.doing = format!("idle after `{cmd}`");
                return Ok(message);
            }
            if message.get("event").is_some() {
                self.events.push_back(message);
            } else {
                eprintln!(
                    "[credo {}] (answer to an earlier request) {message}",
                    self.name
                );
            }
        }
    }

    /// `init`: configures and starts the agent; with a mediator invitation, it returns once
    /// mediation is granted and the mediator is the default. The answer has `mediationGranted`,
    /// `pickupReady`, `mediator` (endpoint, routing keys) and `endpoints`.
    pub async fn init(&mut self, options: InitOptions) -> Result<Value> {
        let answer = self.request(options.to_command(), INIT_TIMEOUT).await?;
        if options.mediator_invitation_url.is_some() && answer["mediationGranted"] != json!(true) {
            return Err(self.failure(format!("init answered without granted mediation: {answer}")));
        }
        Ok(answer)
    }

    /// A new single-use out-of-band invitation; when mediated, its routing goes through the
    /// mediator (credo first sends keylist-update and waits for the response).
    pub async fn create_invitation(&mut self) -> Result<String> {
        let answer = self
            .request(json!({"cmd": "createInvitation"}), INVITATION_TIMEOUT)
            .await?;
        answer["invitationUrl"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("createInvitation answered without invitationUrl: {answer}"))
    }

    /// Like [`CredoAgent::create_invitation`], with the out-of-band record id (for
    /// [`CredoAgent::wait_for_connection`]).
    pub async fn create_invitation_with_id(&mut self) -> Result<(String, String)> {
        let answer = self
            .request(json!({"cmd": "createInvitation"}), INVITATION_TIMEOUT)
            .await?;
        match (
            answer["invitationUrl"].as_str(),
            answer["outOfBandId"].as_str(),
        ) {
            (Some(url), Some(id)) => Ok((url.to_string(), id.to_string())),
            _ => bail!("createInvitation answered without invitationUrl / outOfBandId: {answer}"),
        }
    }

    /// Accepts an invitation; returns the connection id once the connection is completed.
    pub async fn receive_invitation(&mut self, url: &str) -> Result<String> {
        let answer = self
            .request(
                json!({"cmd": "receiveInvitation", "url": url, "timeoutMs": 45_000}),
                CONNECT_TIMEOUT,
            )
            .await?;
        answer["connectionId"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("receiveInvitation answered without connectionId: {answer}"))
    }

    /// On the inviter's side: the connection id once someone has used the invitation.
    pub async fn wait_for_connection(&mut self, out_of_band_id: &str) -> Result<String> {
        let answer = self
            .request(
                json!({"cmd": "waitForConnection", "outOfBandId": out_of_band_id, "timeoutMs": 45_000}),
                CONNECT_TIMEOUT,
            )
            .await?;
        answer["connectionId"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("waitForConnection answered without connectionId: {answer}"))
    }

    /// Sends a basic message; returns when credo has handed it to the transport.
    pub async fn send_message(&mut self, connection_id: &str, content: &str) -> Result<()> {
        self.request(
            json!({"cmd": "sendMessage", "connectionId": connection_id, "content": content}),
            SEND_TIMEOUT,
        )
        .await?;
        Ok(())
    }

    /// The agent's connections, mediator, live-mode state and count of received basic messages.
    pub async fn status(&mut self) -> Result<Value> {
        self.request(json!({"cmd": "status"}), SEND_TIMEOUT).await
    }

    /// The next event of this kind (`basicMessage`, `connectionState`, `mediationState`,
    /// `liveSession`, `keylistUpdated`, `pickupCompleted`, `error`), including ones that arrived
    /// earlier and were not taken yet. Other events are kept.
    pub async fn next_event(&mut self, kind: &str, limit: Duration) -> Result<Value> {
        if let Some(pos) = self.events.iter().position(|e| e["event"] == kind) {
            if let Some(event) = self.events.remove(pos) {
                return Ok(event);
            }
        }
        let previously = std::mem::replace(
            &mut self.doing,
            format!("expected to emit a `{kind}` event"),
        );
        let deadline = Instant::now() + limit;
        loop {
            match timeout(
                deadline.saturating_duration_since(Instant::now()),
                self.lines.recv(),
            )
            .await
            {
                Ok(Some(message)) => {
                    if message["event"] == kind {
                        self.doing = previously;
                        return Ok(message);
                    }
                    if message.get("event").is_some() {
                        self.events.push_back(message);
                    }
                }
                Ok(None) => {
                    let _ = timeout(Duration::from_secs(2), self.child.wait()).await;
                    return Err(self.failure(format!(
                        "closed its output while waiting for a `{kind}` event"
                    )));
                }
                Err(_) => {
                    return Err(self.failure(format!("no `{kind}` event within {limit:?}")));
                }
            }
        }
    }

    /// The next basic message: its content and its DIDComm message id (the same id twice is
    /// one message delivered twice; the same content under two ids, a message sent twice).
    pub async fn next_basic_message(&mut self, limit: Duration) -> Result<(String, String)> {
        let event = self.next_event("basicMessage", limit).await?;
        Ok((
            event["content"].as_str().unwrap_or_default().to_string(),
            event["messageId"].as_str().unwrap_or_default().to_string(),
        ))
    }

    /// Waits for `n` basic messages in all (counting ones already received and not taken) and
    /// returns their contents in arrival order.
    pub async fn collect_basic_messages(
        &mut self,
        n: usize,
        limit: Duration,
    ) -> Result<Vec<String>> {
        let deadline = Instant::now() + limit;
        let mut contents = Vec::with_capacity(n);
        while contents.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event("basicMessage", left).await {
                Ok(event) => contents.push(event["content"].as_str().unwrap_or_default().to_string()),
                Err(e) => {
                    return Err(e.context(format!(
                        "credo agent `{}` received {} of {n} basic messages within {limit:?}: {contents:?}",
                        self.name,
                        contents.len()
                    )))
                }
            }
        }
        Ok(contents)
    }

    /// Stops the agent cleanly (`shutdown`) and waits for the process to exit; kills it if it
    /// does not.
    pub async fn shutdown(&mut self) -> Result<()> {
        if self.stdin.is_none() {
            return Ok(());
        }
        let answer = self
            .request(json!({"cmd": "shutdown"}), SHUTDOWN_TIMEOUT)
            .await;
        self.stdin = None;
        let exited = timeout(SHUTDOWN_TIMEOUT, self.child.wait()).await;
        match (answer, exited) {
            (Ok(_), Ok(Ok(status))) if status.success() => Ok(()),
            (answer, exited) => {
                let _ = self.child.kill().await;
                Err(self.failure(format!(
                    "did not shut down cleanly (answer: {answer:?}, exit: {exited:?})"
                )))
            }
        }
    }
}

/// Options of the reference credo mediator.
#[derive(Debug, Clone)]
pub struct ReferenceMediatorOptions {
    /// HTTP inbound port (its first endpoint, and the invitation's URL).
    pub http_port: u16,
    /// WebSocket inbound port.
    pub ws_port: u16,
    /// `QueueAndLiveModeDelivery` (default: queue, deliver live to a live-mode session),
    /// `DirectDelivery` (send on any open session, needed by the `Implicit` strategy) or
    /// `QueueOnly`.
    pub forwarding: String,
    /// Handshakes its invitation offers: `both`, `didexchange` or `connections`.
    pub handshake: String,
    /// Plaintext traces of every message on stderr.
    pub trace: bool,
}

impl ReferenceMediatorOptions {
    /// Defaults (queue and live-mode delivery, both handshakes) on these ports.
    pub fn new(http_port: u16, ws_port: u16) -> Self {
        Self {
            http_port,
            ws_port,
            forwarding: "QueueAndLiveModeDelivery".into(),
            handshake: "both".into(),
            trace: std::env::var("CREDO_TRACE").is_ok_and(|v| v == "1"),
        }
    }
}

/// Starts credo-ts as a mediator (`reference-mediator.mjs`) on 127.0.0.1 and returns the process
/// (killed when dropped) and its multi-use invitation URL.
pub async fn reference_mediator(http_port: u16, ws_port: u16) -> Result<(Child, String)> {
    reference_mediator_with(ReferenceMediatorOptions::new(http_port, ws_port)).await
}

/// [`reference_mediator`] with options.
pub async fn reference_mediator_with(options: ReferenceMediatorOptions) -> Result<(Child, String)> {
    credo_available().map_err(|e| anyhow!(e))?;
    let script = credo_dir().join("reference-mediator.mjs");
    let mut command = Command::new(node_program());
    command
        .arg(&script)
        .args(["--http-port", &options.http_port.to_string()])
        .args(["--ws-port", &options.ws_port.to_string()])
        .args(["--forwarding", &options.forwarding])
        .args(["--handshake", &options.handshake]);
    if options.trace {
        command.arg("--trace");
    }
    // stdin stays open inside the returned Child: the mediator exits when it closes.
    let mut child = command
        .current_dir(credo_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start the reference mediator: node {}", script.display()))?;
    let tail = StderrTail::default();
    let name = "credo mediator".to_string();
    forward_stderr(
        name.clone(),
        child.stderr.take().context("no stderr pipe")?,
        tail.clone(),
    );
    let mut lines = read_json_lines(
        name.clone(),
        child.stdout.take().context("no stdout pipe")?,
        tail.clone(),
    );
    let ready = timeout(SPAWN_TIMEOUT, async {
        while let Some(message) = lines.recv().await {
            if message["event"] == "ready" {
                return Ok(message);
            }
            if message["event"] == "error" {
                return Err(anyhow!("{}", message["error"]));
            }
        }
        Err(anyhow!("it exited before it was ready"))
    })
    .await
    .unwrap_or_else(|_| Err(anyhow!("not ready within {SPAWN_TIMEOUT:?}")));
    let ready = match ready {
        Ok(ready) => ready,
        Err(e) => {
            let _ = child.kill().await;
            bail!(
                "reference credo mediator (http {}, ws {}): {e}{}",
                options.http_port,
                options.ws_port,
                tail.render()
            );
        }
    };
    // Keep draining its stdout (answers to commands nobody sends now, but a full pipe would block it).
    tokio::spawn(async move {
        while let Some(message) = lines.recv().await {
            eprintln!("[{name}] {message}");
        }
    });
    let url = ready["invitationUrl"]
        .as_str()
        .ok_or_else(|| anyhow!("reference mediator ready without invitationUrl: {ready}"))?;
    Ok((child, url.to_string()))
}
