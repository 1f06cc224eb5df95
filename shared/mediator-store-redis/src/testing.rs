//! Test support (feature `test-support`): [`RedisServer`], a private `redis-server` on a free
//! 127.0.0.1 port with its own temporary directory, and [`RedisCluster`], a private Redis Cluster
//! of such servers (every node a master, no replicas).
//!
//! Tests must never use a shared Redis (the machine's 6379 belongs to nobody's test): each test
//! binary starts its own with this, and each test takes a unique key prefix. This module is for
//! tests only and must not be used by a service.
//!
//! The server is a child process: it is killed and reaped by its own [`Child`] handle when the
//! [`RedisServer`] is dropped (also when a test panics), and its directory removed. A server held
//! in a `static` is never dropped, so every server also gets a watchdog, a `sh` that waits for
//! end of file on a pipe only this process holds: when the test process ends, however it ends,
//! the watchdog kills that one PID and removes the directory.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read as _, Seek as _, SeekFrom},
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use deadpool_redis::{cluster, redis, CreatePoolError, Pool, Runtime};
use tempfile::TempDir;
use thiserror::Error;

/// How long a starting server may take to answer PING (loading a large AOF counts).
const READY_WITHIN: Duration = Duration::from_secs(20);
/// How often readiness is polled.
const POLL_EVERY: Duration = Duration::from_millis(10);
/// Tries with a fresh port when the one picked was taken meanwhile (the port is free when we
/// look, and another process can bind it before redis-server does).
const PORT_TRIES: usize = 5;
/// The program started: `$REDIS_SERVER` if set, else `redis-server` from `PATH`.
const PROGRAM_ENV: &str = "REDIS_SERVER";
/// The cluster tool: `$REDIS_CLI` if set, else `redis-cli` from `PATH`.
const CLI_ENV: &str = "REDIS_CLI";

/// Why a [`RedisServer`] could not be started, stopped or used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RedisServerError {
    /// The temporary directory or the log file could not be made.
    #[error("could not prepare the directory of redis-server")]
    Dir(#[source] io::Error),
    /// No free port could be found.
    #[error("could not find a free port on 127.0.0.1")]
    Port(#[source] io::Error),
    /// The program (or its watchdog) did not start.
    #[error("could not start {program}")]
    Spawn {
        /// What was started.
        program: String,
        /// Why not.
        #[source]
        source: io::Error,
    },
    /// redis-server exited before it answered PING (bad arguments, port taken...).
    #[error("redis-server exited ({status}) before answering PING; its log:\n{log}")]
    Exited {
        /// How it exited.
        status: ExitStatus,
        /// Its output so far.
        log: String,
    },
    /// redis-server did not answer PING in time.
    #[error("redis-server did not answer PING within {waited:?}; its log:\n{log}")]
    NotReady {
        /// How long we waited.
        waited: Duration,
        /// Its output so far.
        log: String,
        /// The last error of a PING attempt.
        #[source]
        last: redis::RedisError,
    },
    /// The process could not be killed or reaped.
    #[error("could not stop redis-server")]
    Stop(#[source] io::Error),
    /// The connection pool could not be made.
    #[error("could not make a connection pool for the test redis-server")]
    Pool(#[source] CreatePoolError),
    /// `redis-cli --cluster create` failed.
    #[error("redis-cli --cluster create exited ({status}); its output:\n{output}")]
    ClusterCreate {
        /// How it exited.
        status: ExitStatus,
        /// What it printed.
        output: String,
    },
    /// The cluster did not reach `cluster_state:ok` on every node in time.
    #[error(
        "the test cluster was not ok on every node within {waited:?}; last CLUSTER INFO:\n{info}"
    )]
    ClusterNotReady {
        /// How long we waited.
        waited: Duration,
        /// The last answer of a node that was not ready (or the error asking it).
        info: String,
    },
}

/// A `redis-server` of this test process, on `127.0.0.1:<free port>`, with nothing saved on
/// disk unless asked (`--save "" --appendonly no`, which extra arguments can override, e.g.
/// `--appendonly yes`).
///
/// Methods block the calling thread while the server starts (until it answers PING, a few
/// milliseconds usually); no runtime is needed, so one server can serve tests that each have
/// their own tokio runtime. Make a [`pool`](Self::pool) per runtime.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    url: String,
    args: Vec<String>,
    running: Option<Running>,
    // Last field: dropped (directory removed) after `Drop::drop` has killed the process.
    dir: TempDir,
}

/// A started server and its watchdog.
#[derive(Debug)]
struct Running {
    redis: Child,
    watchdog: Child,
    /// The write end of the watchdog's stdin: held, never written; its closing wakes the watchdog.
    _lifeline: ChildStdin,
}

impl RedisServer {
    /// Starts a server with the default arguments.
    pub fn start() -> Result<Self, RedisServerError> {
        Self::start_with_args(std::iter::empty::<String>())
    }

    /// Starts a server with `args` after the default ones (a later option wins in Redis, so
    /// `["--appendonly", "yes"]` turns the append-only file on).
    pub fn start_with_args<I, S>(args: I) -> Result<Self, RedisServerError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        let mut attempt = 1;
        loop {
            let dir = tempfile::Builder::new()
                .prefix("mediator-redis-test-")
                .tempdir()
                .map_err(RedisServerError::Dir)?;
            let port = free_port()?;
            let mut server = Self {
                port,
                url: format!("redis://127.0.0.1:{port}/"),
                args: args.clone(),
                running: None,
                dir,
            };
            match server.launch() {
                Ok(()) => return Ok(server),
                // The port was taken meanwhile: again on another port.
                Err(RedisServerError::Exited { log, .. })
                    if attempt < PORT_TRIES && log.contains("Address already in use") =>
                {
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// `redis://127.0.0.1:<port>/`
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port it listens on (kept across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its working directory (`--dir`: the append-only file and `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The PID of the running process, `None` after [`stop`](Self::stop).
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.redis.id())
    }

    /// A new connection pool to this server. Pools are cheap: make one per tokio runtime (per
    /// test), because a pooled connection is tied to the runtime it was opened on.
    pub fn pool(&self) -> Result<Pool, RedisServerError> {
        deadpool_redis::Config::from_url(self.url.clone())
            .create_pool(Some(Runtime::Tokio1))
            .map_err(RedisServerError::Pool)
    }

    /// Kills the server at once (SIGKILL, as a crash: only what the append-only file already
    /// holds survives; with `--appendfsync always` that is every acknowledged write) and reaps
    /// it. Nothing happens if it is not running.
    pub fn stop(&mut self) -> Result<(), RedisServerError> {
        let Some(mut running) = self.running.take() else {
            return Ok(());
        };
        // The watchdog first: once it is gone it cannot kill a PID that is reaped and reused.
        let watchdog = kill_and_reap(&mut running.watchdog);
        kill_and_reap(&mut running.redis).map_err(RedisServerError::Stop)?;
        watchdog.map_err(RedisServerError::Stop)
    }

    /// Stops the server if it runs and starts it again on the same port, in the same directory,
    /// with the same arguments (so with `--appendonly yes` it reloads its data), waiting until
    /// it answers PING.
    pub fn restart(&mut self) -> Result<(), RedisServerError> {
        self.stop()?;
        self.launch()
    }

    /// Starts redis-server and its watchdog, and waits for PING.
    fn launch(&mut self) -> Result<(), RedisServerError> {
        let program = std::env::var(PROGRAM_ENV).unwrap_or_else(|_| "redis-server".to_owned());
        let log = self.open_log()?;
        let log_err = log.try_clone().map_err(RedisServerError::Dir)?;
        let mut redis = Command::new(&program)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| RedisServerError::Spawn {
                program: program.clone(),
                source,
            })?;
        let (watchdog, lifeline) = match spawn_watchdog(redis.id(), self.dir.path()) {
            Ok(spawned) => spawned,
            Err(err) => {
                // Best effort: the error about the watchdog is the one to report.
                let _ = kill_and_reap(&mut redis);
                return Err(err);
            }
        };
        self.running = Some(Running {
            redis,
            watchdog,
            _lifeline: lifeline,
        });
        if let Err(err) = self.wait_ready() {
            let _ = self.stop();
            return Err(err);
        }
        Ok(())
    }

    /// Polls PING until it answers, the process exits, or the deadline passes.
    fn wait_ready(&mut self) -> Result<(), RedisServerError> {
        let started = Instant::now();
        let client =
            redis::Client::open(self.url.as_str()).map_err(|err| RedisServerError::NotReady {
                waited: Duration::ZERO,
                log: String::new(),
                last: err,
            })?;
        loop {
            if let Some(running) = self.running.as_mut() {
                if let Some(status) = running.redis.try_wait().map_err(RedisServerError::Stop)? {
                    // Reaped already; the watchdog must not outlive it.
                    let _ = kill_and_reap(&mut running.watchdog);
                    self.running = None;
                    return Err(RedisServerError::Exited {
                        status,
                        log: self.log_text(),
                    });
                }
            }
            let last = match ping(&client) {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            if started.elapsed() > READY_WITHIN {
                return Err(RedisServerError::NotReady {
                    waited: started.elapsed(),
                    log: self.log_text(),
                    last,
                });
            }
            thread::sleep(POLL_EVERY);
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn open_log(&self) -> Result<File, RedisServerError> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(RedisServerError::Dir)
    }

    /// The end of the log, for error messages.
    fn log_text(&self) -> String {
        const TAIL: u64 = 4096;
        let Ok(mut file) = File::open(self.log_path()) else {
            return String::from("(no log)");
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL)));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// A Redis Cluster of this test process: `masters` [`RedisServer`]s in cluster mode, joined by
/// `redis-cli --cluster create` (no replicas), each owning a third (a `masters`th) of the slots.
///
/// Like [`RedisServer`], starting blocks the calling thread (until `CLUSTER INFO` says
/// `cluster_state:ok` on every node) and needs no runtime; the nodes are killed when it is
/// dropped. Make a [`pool`](Self::pool) per runtime.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` nodes (at least 3, what `redis-cli --cluster create` accepts) and makes
    /// them one cluster.
    pub fn start(masters: usize) -> Result<Self, RedisServerError> {
        let nodes = (0..masters)
            .map(|_| {
                // `nodes.conf` lands in the node's own directory (`--dir`), so a restarted node
                // finds its cluster identity again.
                RedisServer::start_with_args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = Self { nodes };
        cluster.create()?;
        cluster.wait_ok()?;
        Ok(cluster)
    }

    /// The nodes (each one master), in the order they were given to `--cluster create`.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// `redis://127.0.0.1:<port>/` of every node: the seeds of a cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url().to_owned()).collect()
    }

    /// A new cluster connection pool (one per tokio runtime, as for [`RedisServer::pool`]).
    pub fn pool(&self) -> Result<cluster::Pool, RedisServerError> {
        cluster::Config::from_urls(self.urls())
            .create_pool(Some(Runtime::Tokio1))
            .map_err(RedisServerError::Pool)
    }

    fn create(&self) -> Result<(), RedisServerError> {
        let program = std::env::var(CLI_ENV).unwrap_or_else(|_| "redis-cli".to_owned());
        let output = Command::new(&program)
            .arg("--cluster")
            .arg("create")
            .args(self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| RedisServerError::Spawn { program, source })?;
        if output.status.success() {
            return Ok(());
        }
        Err(RedisServerError::ClusterCreate {
            status: output.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }

    /// Polls `CLUSTER INFO` on every node until each says the cluster is ok, every slot is
    /// assigned and it knows every node.
    fn wait_ok(&self) -> Result<(), RedisServerError> {
        let started = Instant::now();
        let known = format!("cluster_known_nodes:{}", self.nodes.len());
        for node in &self.nodes {
            loop {
                let info = cluster_info(node.url());
                let last = match info {
                    Ok(info)
                        if info.contains("cluster_state:ok")
                            && info.contains("cluster_slots_assigned:16384")
                            && info.contains(&known) =>
                    {
                        break;
                    }
                    Ok(info) => info,
                    Err(err) => err.to_string(),
                };
                if started.elapsed() > READY_WITHIN {
                    return Err(RedisServerError::ClusterNotReady {
                        waited: started.elapsed(),
                        info: format!("{}: {last}", node.url()),
                    });
                }
                thread::sleep(POLL_EVERY);
            }
        }
        Ok(())
    }
}

/// `CLUSTER INFO` of one node, with short timeouts so that the deadline is kept.
fn cluster_info(url: &str) -> Result<String, redis::RedisError> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_millis(200))?;
    conn.set_read_timeout(Some(Duration::from_millis(500)))?;
    redis::cmd("CLUSTER").arg("INFO").query(&mut conn)
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Errors cannot be reported from Drop; the watchdog covers a process we failed to kill.
        let _ = self.stop();
    }
}

/// One PING, with short timeouts so that the deadline is kept.
fn ping(client: &redis::Client) -> Result<(), redis::RedisError> {
    let mut conn = client.get_connection_with_timeout(Duration::from_millis(200))?;
    conn.set_read_timeout(Some(Duration::from_millis(500)))?;
    redis::cmd("PING").query::<String>(&mut conn).map(drop)
}

/// A port that is free now (bound to 127.0.0.1:0, then released).
fn free_port() -> Result<u16, RedisServerError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(RedisServerError::Port)?;
    Ok(listener
        .local_addr()
        .map_err(RedisServerError::Port)?
        .port())
}

/// A `sh` that kills `pid` and removes `dir` when its stdin reaches end of file, which happens
/// when the returned [`ChildStdin`] is closed: by this process ending, however it ends.
fn spawn_watchdog(pid: u32, dir: &Path) -> Result<(Child, ChildStdin), RedisServerError> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"read -r _; kill -9 "$1" 2>/dev/null; rm -rf "$2""#)
        .arg("redis-watchdog")
        .arg(pid.to_string())
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| RedisServerError::Spawn {
            program: "sh (redis-server watchdog)".to_owned(),
            source,
        })?;
    match child.stdin.take() {
        Some(stdin) => Ok((child, stdin)),
        None => {
            let _ = kill_and_reap(&mut child);
            Err(RedisServerError::Spawn {
                program: "sh (redis-server watchdog)".to_owned(),
                source: io::Error::other("no stdin pipe"),
            })
        }
    }
}

/// SIGKILL (nothing if it has exited already) and reap.
fn kill_and_reap(child: &mut Child) -> io::Result<()> {
    child.kill()?;
    child.wait().map(drop)
}
