//! What only these tests use: a scripted in-memory sender for the retry and router tests. The
//! stand-in servers, keys and JWS verification are `push_notify::testing` (feature
//! `test-support`), shared with the mediator's tests.

use std::{collections::VecDeque, sync::Mutex};

use async_trait::async_trait;
use push_notify::{Device, Notice, PushError, PushSender};

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
