//! The content cipher of every envelope (ChaCha20-Poly1305, IETF, 1 KiB with a ~600-byte AAD, the
//! protected header), in the implementations the registries offer: RustCrypto's chacha20poly1305
//! (what askar-crypto runs) and aws-lc-rs (AWS-LC assembly). Seal and open of the same message.
#![allow(clippy::unwrap_used, missing_docs)]

use askar_crypto::{
    alg::chacha20::{Chacha20Key, C20P},
    encrypt::KeyAeadInPlace,
    repr::KeySecretBytes,
};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

fn benches(c: &mut Criterion) {
    let key = [7u8; 32];
    let nonce = [9u8; 12];
    let message = vec![0x5au8; 1024];
    let aad = "a".repeat(600);
    let mut group = c.benchmark_group("chacha20poly1305_1KiB");
    group.throughput(Throughput::Bytes(1024));

    group.bench_function("seal/rustcrypto_askar", |b| {
        b.iter(|| {
            let k = Chacha20Key::<C20P>::from_secret_bytes(&key).unwrap();
            let mut buffer = message.clone();
            k.encrypt_in_place(&mut buffer, &nonce, aad.as_bytes())
                .unwrap();
            black_box(buffer)
        })
    });
    group.bench_function("seal/aws_lc_rs", |b| {
        b.iter(|| {
            let k = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key).unwrap());
            let mut buffer = message.clone();
            k.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut buffer,
            )
            .unwrap();
            black_box(buffer)
        })
    });

    let k = Chacha20Key::<C20P>::from_secret_bytes(&key).unwrap();
    let mut sealed = message.clone();
    k.encrypt_in_place(&mut sealed, &nonce, aad.as_bytes())
        .unwrap();
    group.bench_function("open/rustcrypto_askar", |b| {
        b.iter(|| {
            let k = Chacha20Key::<C20P>::from_secret_bytes(&key).unwrap();
            let mut buffer = sealed.clone();
            k.decrypt_in_place(&mut buffer, &nonce, aad.as_bytes())
                .unwrap();
            black_box(buffer)
        })
    });
    group.bench_function("open/aws_lc_rs", |b| {
        b.iter(|| {
            let k = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key).unwrap());
            let mut buffer = sealed.clone();
            let n = k
                .open_in_place(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad.as_bytes()),
                    &mut buffer,
                )
                .unwrap()
                .len();
            buffer.truncate(n);
            black_box(buffer)
        })
    });
    group.finish();
}

criterion_group!(aead, benches);
criterion_main!(aead);
