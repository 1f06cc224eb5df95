//! Our mediator, started in-process on a free loopback port, for the interop tests.

use std::sync::Arc;

use anyhow::Result;
use mediator::{Config, Mediator};
use mediator_store::Stores;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// A running mediator instance; stopped when dropped.
#[derive(Debug)]
pub struct TestMediator {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The instance (stores, keys, invitation).
    pub mediator: Mediator,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestMediator {
    /// Starts an instance with in-memory stores; `env` adds `MEDIATOR_*` settings.
    pub async fn start(env: &[(&str, &str)]) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut vars = vec![
            (
                "MEDIATOR_PUBLIC_HTTP_ENDPOINT".to_owned(),
                format!("http://{addr}"),
            ),
            (
                "MEDIATOR_PUBLIC_WS_ENDPOINT".to_owned(),
                format!("ws://{addr}"),
            ),
        ];
        vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let config = Arc::new(Config::load(None, vars)?);
        let mediator = Mediator::new(
            config.clone(),
            Stores::memory_with_limits(config.queue.limits()),
        )?;
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
