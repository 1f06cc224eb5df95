//! Hot-path benchmarks: unpack of a ~1 KiB anoncrypted Forward (what the mediator does for every
//! inbound message) and pack of an authcrypted message (every reply and delivery).
#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use didcomm_envelope::{pack, unpack, Channel, ContentEnc, Envelope, KeyPair, OpenCache};

/// A Forward whose inner `msg` is a real envelope, about 1 KiB of plaintext in all.
fn forward_plaintext(recipient: &KeyPair) -> Vec<u8> {
    let inner = pack(&[b'x'; 300], &[*recipient.verkey()], None, ContentEnc::C20P).unwrap();
    let inner = String::from_utf8(inner).unwrap();
    format!(
        r#"{{"@type":"https://didcomm.org/routing/1.0/forward","@id":"5f0e4d4a-bb3c-4f35-8f3c-0c4b6a7f9d21","to":"{}","msg":{inner}}}"#,
        recipient.verkey_base58()
    )
    .into_bytes()
}

fn benches(c: &mut Criterion) {
    let mediator = KeyPair::generate().unwrap();
    let final_recipient = KeyPair::generate().unwrap();
    let plaintext = forward_plaintext(&final_recipient);
    let envelope = pack(&plaintext, &[*mediator.verkey()], None, ContentEnc::C20P).unwrap();
    eprintln!(
        "forward plaintext {} bytes, envelope {} bytes",
        plaintext.len(),
        envelope.len()
    );

    let mut group = c.benchmark_group("unpack");
    group.throughput(Throughput::Elements(1));
    group.bench_function("anoncrypt_forward_1KiB", |b| {
        b.iter(|| {
            unpack(black_box(&envelope), |kid| {
                (kid == mediator.verkey_base58()).then_some(&mediator)
            })
            .unwrap()
        })
    });
    group.bench_function("parse_only_forward_1KiB", |b| {
        b.iter(|| Envelope::parse(black_box(&envelope)).unwrap())
    });
    let sender = KeyPair::generate().unwrap();
    let auth = pack(
        &plaintext,
        &[*mediator.verkey()],
        Some(&sender),
        ContentEnc::C20P,
    )
    .unwrap();
    group.bench_function("authcrypt_1KiB", |b| {
        b.iter(|| {
            unpack(black_box(&auth), |kid| {
                (kid == mediator.verkey_base58()).then_some(&mediator)
            })
            .unwrap()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("pack");
    group.throughput(Throughput::Elements(1));
    let recipient = [*final_recipient.verkey()];
    group.bench_function("authcrypt_1KiB", |b| {
        b.iter_batched(
            || plaintext.clone(),
            |msg| pack(black_box(&msg), &recipient, Some(&sender), ContentEnc::C20P).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("anoncrypt_1KiB", |b| {
        b.iter(|| pack(black_box(&plaintext), &recipient, None, ContentEnc::C20P).unwrap())
    });
    // What a live delivery costs: authcrypt to a peer whose box and sealed sender are cached.
    let channel = Channel::new(&sender, &recipient).unwrap();
    group.bench_function("authcrypt_1KiB_cached_peer", |b| {
        b.iter(|| {
            channel
                .pack(black_box(&plaintext), ContentEnc::C20P)
                .unwrap()
        })
    });
    group.finish();

    // Opening an authcrypted message from a peer seen before (an acknowledgement on a live
    // session): its sealed sender and box remembered.
    let mut group = c.benchmark_group("unpack");
    group.throughput(Throughput::Elements(1));
    let from_peer = Channel::new(&sender, &[*mediator.verkey()]).unwrap();
    let ack = from_peer.pack(&plaintext, ContentEnc::C20P).unwrap();
    let cache = OpenCache::new(16);
    group.bench_function("authcrypt_1KiB_cached_peer", |b| {
        b.iter(|| {
            Envelope::parse(black_box(&ack))
                .unwrap()
                .open_cached(&mediator, &cache)
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(envelope, benches);
criterion_main!(envelope);
