//! Figures of the embedded store itself (not criterion: each is one timed run, printed):
//! durable adds per second of 1 KiB messages with 1, 16 and 64 concurrent adders (group
//! commit), disk bytes per queued 1 KiB message, and, with the argument `million`, the time to
//! open a directory holding 1,000,000 queued messages (and of the first reads after it).
//!
//! `cargo bench -p mediator-store-embedded --bench store` (add `-- million` for the open time;
//! filling the million takes a few minutes and about 1.3 GB of disk).

#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use mediator_store::{ConnectionId, MessageQueue, QueueLimits};
use mediator_store_embedded::{EmbeddedMessageQueue, EmbeddedStores};

fn open(dir: &Path) -> EmbeddedStores {
    EmbeddedStores::open(dir, QueueLimits::UNLIMITED, 100).unwrap()
}

/// `total` adds of 1 KiB from `adders` tasks over `connections` queues; returns the time taken.
async fn fill(
    queue: &EmbeddedMessageQueue,
    adders: usize,
    total: usize,
    connections: usize,
) -> Duration {
    let payload = Bytes::from(vec![0x5au8; 1024]);
    let conns: Arc<Vec<ConnectionId>> =
        Arc::new((0..connections).map(|_| ConnectionId::generate()).collect());
    let start = Instant::now();
    let tasks: Vec<_> = (0..adders)
        .map(|task| {
            let (queue, payload, conns) = (queue.clone(), payload.clone(), conns.clone());
            tokio::spawn(async move {
                for i in (task..total).step_by(adders) {
                    queue
                        .add(&conns[i % conns.len()], &[], payload.clone())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    start.elapsed()
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    for (adders, total) in [(1, 2_000), (16, 10_000), (64, 20_000)] {
        let dir = tempfile::tempdir().unwrap();
        let queue = open(dir.path()).queue;
        let took = fill(&queue, adders, total, 100).await;
        println!(
            "durable adds, 1 KiB, {adders:>2} concurrent adders: {:>7.0} adds/s ({total} in {took:.2?})",
            total as f64 / took.as_secs_f64()
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let messages = 20_000;
    {
        let queue = open(dir.path()).queue;
        fill(&queue, 16, messages, 100).await;
    }
    // Closed: the last connection checkpointed the WAL into the database and removed it.
    let bytes = dir_bytes(dir.path());
    println!(
        "disk: {bytes} bytes for {messages} queued 1 KiB messages in 100 queues = {:.0} bytes per message",
        bytes as f64 / messages as f64
    );

    if std::env::args().any(|a| a == "million") {
        let dir = tempfile::tempdir().unwrap();
        let million = 1_000_000;
        {
            let queue = open(dir.path()).queue;
            let took = fill(&queue, 64, million, 1_000).await;
            println!("filled {million} messages (1,000 queues, 64 adders) in {took:.1?}");
        }
        println!(
            "disk: {} bytes for {million} messages",
            dir_bytes(dir.path())
        );
        let start = Instant::now();
        let stores = open(dir.path());
        let opened = start.elapsed();
        let totals = stores.queue.totals().await.unwrap();
        let counted = start.elapsed();
        println!(
            "open with {} queued messages: {opened:.2?}; open + first totals(): {counted:.2?}",
            totals.messages
        );
    }
}
