//! The hot path of the product: one Forward through a real mediator instance (in-memory stores):
//! envelope parse and unpack, key lookup, enqueue, and, with a live recipient, the Pickup 2.0
//! `delivery` built, packed and handed to the recipient's WebSocket writer. No network: this is
//! the CPU cost per Forward that bounds an instance.
#![allow(clippy::unwrap_used, missing_docs)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use didcomm_envelope::{pack, ContentEnc, KeyPair};
use didcomm_message::DocUri;
use mediator::{
    mediator::Via,
    sessions::{LiveSession, SessionHandle},
    Config, Mediator,
};
use mediator_store::{ConnectionId, KeylistAction, KeylistUpdate, Stores};

/// A Forward envelope for `recipient`, to the mediator's routing key, ~1 KiB inner message.
fn forward_envelope(mediator: &Mediator, recipient: &KeyPair) -> Vec<u8> {
    let inner = pack(&[b'x'; 600], &[*recipient.verkey()], None, ContentEnc::C20P).unwrap();
    let inner = String::from_utf8(inner).unwrap();
    let forward = format!(
        r#"{{"@type":"https://didcomm.org/routing/1.0/forward","@id":"5f0e4d4a-bb3c-4f35-8f3c-0c4b6a7f9d21","to":"{}","msg":{inner}}}"#,
        recipient.verkey_base58()
    );
    pack(
        forward.as_bytes(),
        &[*mediator.keys().routing_key().verkey()],
        None,
        ContentEnc::C20P,
    )
    .unwrap()
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mediator = Mediator::new(Arc::new(Config::defaults().unwrap()), Stores::memory()).unwrap();
    let conn = ConnectionId::generate();
    let recipient = KeyPair::generate().unwrap();
    rt.block_on(mediator.stores().mediation.update_keylist(
        &conn,
        &[KeylistUpdate {
            key: *recipient.verkey(),
            action: KeylistAction::Add,
        }],
    ))
    .unwrap();
    let envelope = forward_envelope(&mediator, &recipient);
    eprintln!("forward envelope: {} bytes", envelope.len());

    // Empties the queue between measured batches (not measured), so it does not grow forever.
    let drain = |m: &Mediator| {
        rt.block_on(async {
            let queued = m
                .stores()
                .queue
                .take(&conn, usize::MAX, None)
                .await
                .unwrap();
            let ids: Vec<_> = queued.into_iter().map(|q| q.id).collect();
            m.stores().queue.remove(&conn, &ids).await.unwrap();
        })
    };
    let run = |iters: u64| -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min(2000);
            let start = Instant::now();
            for _ in 0..n {
                rt.block_on(mediator.receive(&envelope, Via::Http)).unwrap();
            }
            total += start.elapsed();
            drain(&mediator);
            left -= n;
        }
        total
    };

    let mut group = c.benchmark_group("forward");
    group.throughput(Throughput::Elements(1));
    group.bench_function("queue_only_1KiB", |b| b.iter_custom(run));

    // A live recipient: its writer task just drops what it is given.
    let (session, mut frames) = SessionHandle::new(1, 1 << 16);
    rt.spawn(async move { while frames.recv().await.is_some() {} });
    let client = KeyPair::generate().unwrap();
    mediator.sessions().set_live(
        &conn,
        LiveSession {
            session,
            their_keys: vec![*client.verkey()],
            our_key: mediator.keys().connection_key(conn.as_str()).unwrap(),
            doc_uri: DocUri::DidcommOrg,
        },
    );
    group.bench_function("to_live_session_1KiB", |b| b.iter_custom(run));
    group.finish();
}

criterion_group!(forward, benches);
criterion_main!(forward);
