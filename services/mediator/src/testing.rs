//! Real mediator processes (this crate's binary) on loopback sharing a Redis, or one on the
//! embedded store, for the process tests of this crate and the interop tests (kill -9, SIGTERM,
//! file-descriptor limits). Test
//! support only: everything here panics on failure.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use tokio::time::Instant;

/// The master secret every test process shares (one cluster: the same keys everywhere).
pub const SECRET: &str = "fault-test-master-secret-0123456789abcdef";

/// A mediator process (the real binary), killed and reaped on drop.
#[derive(Debug)]
pub struct MediatorProcess {
    pub name: String,
    pub base: String,
    child: Option<Child>,
    pub log: std::path::PathBuf,
}

impl MediatorProcess {
    /// The mediator binary the processes run: `MEDIATOR_TEST_BINARY`, or `mediator` in the
    /// target directory of the running test (`target/<profile>/deps/<test>` ->
    /// `target/<profile>/mediator`), which cargo builds for this crate's tests and for any
    /// `cargo test --workspace`.
    pub fn binary() -> PathBuf {
        if let Some(path) = std::env::var_os("MEDIATOR_TEST_BINARY") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("the test's own path");
        let dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("the test binary is in target/<profile>/deps");
        let binary = dir.join("mediator");
        assert!(
            binary.exists(),
            "{} is missing: build it first (cargo build -p mediator, or cargo test --workspace)",
            binary.display()
        );
        binary
    }

    /// Starts instance `name` on a free loopback port, on the Redis at `redis` under `prefix`.
    pub fn start(name: &str, redis: &str, prefix: &str) -> Self {
        Self::start_with(name, redis, prefix, &[])
    }

    /// Like [`MediatorProcess::start_with`], listening on `port` (chosen by the caller, who
    /// needs it first: a load balancer in front, say).
    pub fn start_on(
        port: u16,
        name: &str,
        redis: &str,
        prefix: &str,
        extra: &[(&str, &str)],
    ) -> Self {
        Self::spawn(Some(port), name, redis, prefix, extra, None)
    }

    /// Like [`MediatorProcess::start`], with more `MEDIATOR_*` variables (they win over the defaults here).
    pub fn start_with(name: &str, redis: &str, prefix: &str, extra: &[(&str, &str)]) -> Self {
        Self::spawn(None, name, redis, prefix, extra, None)
    }

    /// Like [`MediatorProcess::start_with`], the process limited to `nofile` open files (soft and hard).
    pub fn start_with_fd_limit(
        name: &str,
        redis: &str,
        prefix: &str,
        extra: &[(&str, &str)],
        nofile: u32,
    ) -> Self {
        Self::spawn(None, name, redis, prefix, extra, Some(nofile))
    }

    /// A single instance on the embedded store in `data_dir`, listening on `port` (a restart
    /// on the same directory and port is the same mediator). No master secret is configured:
    /// the one kept in the data directory is used.
    pub fn start_embedded_on(
        port: u16,
        name: &str,
        data_dir: &std::path::Path,
        extra: &[(&str, &str)],
    ) -> Self {
        let storage = [
            ("MEDIATOR_STORAGE__BACKEND", "embedded".to_owned()),
            ("MEDIATOR_DATA_DIR", data_dir.display().to_string()),
        ];
        Self::spawn_with(Some(port), name, &storage, extra, None)
    }

    fn spawn(
        port: Option<u16>,
        name: &str,
        redis: &str,
        prefix: &str,
        extra: &[(&str, &str)],
        nofile: Option<u32>,
    ) -> Self {
        let storage = [
            ("MEDIATOR_MASTER_SECRET", SECRET.to_owned()),
            ("MEDIATOR_STORAGE__BACKEND", "redis".to_owned()),
            ("MEDIATOR_STORAGE__REDIS__URL", redis.to_owned()),
            ("MEDIATOR_STORAGE__REDIS__KEY_PREFIX", prefix.to_owned()),
        ];
        Self::spawn_with(port, name, &storage, extra, nofile)
    }

    fn spawn_with(
        port: Option<u16>,
        name: &str,
        storage: &[(&str, String)],
        extra: &[(&str, &str)],
        nofile: Option<u32>,
    ) -> Self {
        let port = port.unwrap_or_else(free_port);
        let base = format!("http://127.0.0.1:{port}");
        let log = std::env::temp_dir().join(format!("mediator-{name}-{port}.log"));
        let stdout = std::fs::File::create(&log).expect("the log file");
        let stderr = stdout.try_clone().expect("the log file");
        let binary = Self::binary();
        let mut command = match nofile {
            // `ulimit -n` sets the soft and the hard limit: the mediator cannot raise it.
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\""))
                    .arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        let child = command
            .env("MEDIATOR_LISTEN", format!("127.0.0.1:{port}"))
            .env("MEDIATOR_PUBLIC_HTTP_ENDPOINT", &base)
            .env(
                "MEDIATOR_PUBLIC_WS_ENDPOINT",
                format!("ws://127.0.0.1:{port}"),
            )
            .envs(storage.iter().map(|(k, v)| (*k, v.as_str())))
            .env("MEDIATOR_CLUSTER__INSTANCE_ID", name)
            .env("MEDIATOR_CLUSTER__LIVE_LEASE_MS", "3000")
            .env("MEDIATOR_PICKUP__REDELIVERY_AFTER_MS", "2000")
            .env("MEDIATOR_PICKUP__TAKEOVER_GRACE_MS", "1000")
            .env("MEDIATOR_LOG", "info")
            // Test clients' endpoints are on loopback (a private address).
            .env("MEDIATOR_DELIVERY__ALLOW_PRIVATE_ENDPOINTS", "true")
            // The process tests' clients all come from 127.0.0.1 and send hundreds of messages a
            // second: per-address rate limits off, unless `extra` sets them (it comes last).
            .envs(crate::config::RATE_LIMITS_OFF)
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

impl Drop for MediatorProcess {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("mediator {} log kept: {}", self.name, self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// A free loopback port (bound and let go: another process may take it first).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}
