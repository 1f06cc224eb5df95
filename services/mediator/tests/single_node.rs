//! A single mediator started with no configuration but its addresses: the embedded store in
//! `./data` (owner-only), a master secret generated there (0600), and a restart — after SIGTERM
//! or kill -9 — is the same mediator: the same invitation URL, the same routing key (in its
//! "mediator ready" log line and in a mediation grant), and a client's connection still works
//! without a new handshake.
//!
//! The real binary runs with its working directory in a fresh temporary directory and none of
//! the storage, data_dir or master_secret settings (every inherited `MEDIATOR_*` variable is
//! removed; only MEDIATOR_LISTEN and the public endpoints are set, on a free loopback port).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::Client;
use didcomm_envelope::VerKey;
use mediator::testing::{free_port, MediatorProcess};
use serde_json::Value;
use tokio::time::Instant;

/// The mediator binary run in `dir` with nothing configured but where it listens; killed on
/// drop.
struct Bare {
    child: Option<Child>,
    base: String,
    log: PathBuf,
}

impl Bare {
    /// Starts it (its log in `dir/mediator-<run>.log`) and waits until `/readyz` answers.
    async fn start(dir: &Path, port: u16, run: usize) -> Self {
        let mut bare = Self::spawn(dir, port, run);
        bare.ready().await;
        bare
    }

    /// Starts it, without waiting for anything.
    fn spawn(dir: &Path, port: u16, run: usize) -> Self {
        let log = dir.join(format!("mediator-{run}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let mut command = Command::new(MediatorProcess::binary());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("MEDIATOR_") {
                command.env_remove(name);
            }
        }
        let child = command
            .arg("--json-logs")
            .current_dir(dir)
            .env("MEDIATOR_LISTEN", format!("127.0.0.1:{port}"))
            .env("MEDIATOR_PUBLIC_HTTP_ENDPOINT", &base)
            .env(
                "MEDIATOR_PUBLIC_WS_ENDPOINT",
                format!("ws://127.0.0.1:{port}"),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start the mediator binary");
        Self {
            child: Some(child),
            base,
            log,
        }
    }

    /// Waits (up to 30 s) for it to exit by itself; its exit status.
    fn exit_status(&mut self) -> std::process::ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still running after 30 s; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/readyz", self.base)).await {
                if r.status().is_success() {
                    return;
                }
            }
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))));
            assert!(
                !exited && Instant::now() < deadline,
                "the mediator did not get ready (exited: {exited}); its log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `routing_key` of its "mediator ready" log line (base58).
    fn logged_routing_key(&self) -> VerKey {
        let log = self.log_text();
        let ready = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["fields"]["message"] == "mediator ready")
            .unwrap_or_else(|| panic!("no \"mediator ready\" line in its log:\n{log}"));
        let key = ready["fields"]["routing_key"]
            .as_str()
            .unwrap_or_else(|| panic!("no routing_key in {ready}"));
        VerKey::parse(key).unwrap()
    }

    /// SIGTERM; waits (up to 20 s) for a clean exit.
    fn sigterm(&mut self) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "exit after SIGTERM: {status}; log:\n{}",
                    self.log_text()
                );
                return;
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no exit within 20 s of SIGTERM; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a start shows of the mediator's identity.
#[derive(Debug, PartialEq)]
struct Identity {
    invitation_url: String,
    logged_routing_key: VerKey,
    granted_routing_key: VerKey,
    master_secret: Vec<u8>,
}

/// Its invitation URL, its logged routing key, the routing key of a mediation grant to a new
/// client, and the secret kept in `./data`; checks the data directory's and the secret's modes.
async fn identity(dir: &Path, m: &Bare) -> Identity {
    let data = dir.join("data");
    let secret = data.join("master_secret");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert!(data.is_dir(), "{} was not created", data.display());
    assert_eq!(mode(&data), 0o700, "mode of {}", data.display());
    assert_eq!(mode(&secret), 0o600, "mode of {}", secret.display());
    let response = reqwest::get(format!("{}/invitation?format=url", m.base))
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let invitation_url = response.text().await.unwrap().trim().to_owned();
    assert!(invitation_url.contains("?oob="), "{invitation_url}");
    let client = Client::connect_base(&m.base, "didcomm:transport/queue").await;
    let grant = client.mediate().await;
    let granted_routing_key = VerKey::parse(grant["routing_keys"][0].as_str().unwrap()).unwrap();
    Identity {
        invitation_url,
        logged_routing_key: m.logged_routing_key(),
        granted_routing_key,
        master_secret: std::fs::read(&secret).unwrap(),
    }
}

/// The routing keys and endpoint of a mediation grant to `client` (on its connection: no new
/// handshake).
async fn grant_of(client: &Client) -> (Value, Value) {
    let grant = client.mediate().await;
    assert!(
        grant["@type"]
            .as_str()
            .is_some_and(|t| t.ends_with("/mediate-grant")),
        "{grant}"
    );
    (grant["routing_keys"].clone(), grant["endpoint"].clone())
}

#[tokio::test]
async fn a_restart_with_no_configuration_keeps_the_invitation_and_the_routing_key() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    assert!(!dir.path().join("data").exists());

    let mut first = Bare::start(dir.path(), port, 1).await;
    let before = identity(dir.path(), &first).await;
    assert_eq!(before.logged_routing_key, before.granted_routing_key);
    assert!(!before.master_secret.is_empty());
    // A client connected (and mediated) before the restarts: its connection must survive them.
    let mut kept = Client::connect_base(&first.base, "didcomm:transport/queue").await;
    let kept_grant = grant_of(&kept).await;
    eprintln!(
        "first start: routing key {}, invitation {}",
        before.granted_routing_key.to_base58(),
        before.invitation_url
    );

    first.sigterm();
    let mut second = Bare::start(dir.path(), port, 2).await;
    let after_sigterm = identity(dir.path(), &second).await;
    assert_eq!(after_sigterm, before, "after SIGTERM and a restart");
    kept.use_base(&second.base);
    assert_eq!(
        grant_of(&kept).await,
        kept_grant,
        "after SIGTERM and a restart"
    );

    second.kill9();
    let third = Bare::start(dir.path(), port, 3).await;
    let after_kill = identity(dir.path(), &third).await;
    assert_eq!(after_kill, before, "after kill -9 and a restart");
    kept.use_base(&third.base);
    assert_eq!(
        grant_of(&kept).await,
        kept_grant,
        "after kill -9 and a restart"
    );
    for (run, m) in [(2, &second), (3, &third)] {
        // The secret was found, not generated again.
        let log = m.log_text();
        assert!(
            !log.contains("generated one and kept it"),
            "start {run} generated a master secret:\n{log}"
        );
    }
    eprintln!("SIGTERM and kill -9 restarts: the same invitation, routing key and secret");
}

/// The kept secret lost while the store is still there: the mediator refuses to start rather
/// than take a new identity (a new invitation and routing key, and every stored connection's
/// keys gone), and says what to do.
#[tokio::test]
async fn a_store_whose_secret_is_gone_is_refused_not_given_a_new_identity() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut first = Bare::start(dir.path(), port, 1).await;
    first.sigterm();
    std::fs::remove_file(dir.path().join("data/master_secret")).unwrap();
    let mut second = Bare::spawn(dir.path(), port, 2);
    let status = second.exit_status();
    let log = second.log_text();
    assert!(!status.success(), "it started without its secret:\n{log}");
    assert!(
        log.contains("master_secret is missing but the data directory holds a store"),
        "{log}"
    );
    assert!(
        !dir.path().join("data/master_secret").exists(),
        "a new secret was written"
    );
}
