//! Our mediator, started in-process on a loopback port, for the interop tests.
//!
//! Storage is whatever the configuration names (`MEDIATOR_STORAGE__BACKEND`): in memory unless
//! the test says otherwise, or Redis for cluster tests (several instances sharing one Redis under one key prefix
//! and master secret).

use std::sync::Arc;

use anyhow::{Context, Result};
use mediator::{Config, Mediator};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// A running mediator instance; stopped when dropped.
#[derive(Debug)]
pub struct TestMediator {
    /// `http://127.0.0.1:<port>`: where it listens (not necessarily its public endpoint).
    pub endpoint: String,
    /// The instance (stores, keys, invitation).
    pub mediator: Mediator,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestMediator {
    /// Starts an instance on a free loopback port; `env` adds `MEDIATOR_*` settings.
    pub async fn start(env: &[(&str, &str)]) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind 127.0.0.1:0 for our mediator")?;
        Self::start_on(listener, env).await
    }

    /// Starts an instance on `listener` (bound by the caller, who may need the address before
    /// the instance exists). Its public HTTP and WebSocket endpoints are the listener's address
    /// unless `env` sets `MEDIATOR_PUBLIC_HTTP_ENDPOINT` / `MEDIATOR_PUBLIC_WS_ENDPOINT` (a
    /// setting in `env` wins); the stores are those of the configuration (memory by default).
    pub async fn start_on(listener: TcpListener, env: &[(&str, &str)]) -> Result<Self> {
        let addr = listener
            .local_addr()
            .context("the mediator listener's address")?;
        // The agents under test listen on loopback: their endpoints are private addresses. The
        // rate limits stay at their defaults (interop runs with the limits on).
        let mut vars: Vec<(String, String)> = vec![
            (
                "MEDIATOR_DELIVERY__ALLOW_PRIVATE_ENDPOINTS".to_owned(),
                "true".to_owned(),
            ),
            // In memory unless `env` says otherwise (the default, embedded, is on disk).
            ("MEDIATOR_STORAGE__BACKEND".to_owned(), "memory".to_owned()),
        ];
        vars.extend([
            (
                "MEDIATOR_PUBLIC_HTTP_ENDPOINT".to_owned(),
                format!("http://{addr}"),
            ),
            (
                "MEDIATOR_PUBLIC_WS_ENDPOINT".to_owned(),
                format!("ws://{addr}"),
            ),
        ]);
        // `Config::load` collects the variables into a map: a later duplicate replaces an
        // earlier one, so `env` overrides the defaults above.
        vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let config = Arc::new(Config::load(None, vars).context("mediator configuration")?);
        let backend = mediator::storage::open(&config)
            .await
            .context("open the mediator's storage")?;
        let mediator =
            Mediator::from_backend(config, backend).context("build the mediator instance")?;
        let (tx, rx) = oneshot::channel::<()>();
        let server = mediator.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(err) = mediator::serve(server, listener, shutdown).await {
                eprintln!("mediator stopped with error: {err:?}");
            }
        });
        Ok(Self {
            endpoint: format!("http://{addr}"),
            mediator,
            stop: Some(tx),
            task: Some(task),
        })
    }

    /// The short invitation URL (`<endpoint>/i`: the invitation JSON to a client asking for
    /// JSON, a redirect to the `?oob=` URL otherwise).
    pub fn short_invitation_url(&self) -> String {
        self.mediator.invitation(false).short_url().to_owned()
    }

    /// The invitation URL (`?oob=`), DID Exchange first.
    pub fn invitation_url(&self) -> String {
        self.mediator.invitation(false).url().to_owned()
    }

    /// The invitation URL with one (HTTP) service, which ACA-Py requires.
    pub fn single_service_invitation_url(&self) -> String {
        self.mediator.single_service_invitation().url().to_owned()
    }

    /// The Connections-1.0-only invitation URL.
    pub fn connections_invitation_url(&self) -> String {
        self.mediator.invitation(true).url().to_owned()
    }

    /// Stops the instance and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestMediator {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
