//! The one Diffie-Hellman a Forward cannot avoid (opening its anoncrypt envelope), measured in
//! the X25519 implementations the registries offer: curve25519-dalek (what askar-crypto and
//! RustCrypto's crypto_box use, and what this crate runs) and aws-lc-rs (AWS-LC, s2n-bignum
//! assembly). Each computes one shared secret from a fixed private key and a fresh public key.
#![allow(clippy::unwrap_used, missing_docs)]

use askar_crypto::{
    alg::x25519::X25519KeyPair,
    kdf::KeyExchange,
    repr::{KeyGen, KeyPublicBytes},
};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("x25519");
    group.throughput(Throughput::Elements(1));

    let ours = X25519KeyPair::random().unwrap();
    let theirs = X25519KeyPair::random().unwrap();
    let mut their_public = [0u8; 32];
    theirs.with_public_bytes(|b| their_public.copy_from_slice(b));
    group.bench_function("dalek_askar", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(32);
            ours.write_key_exchange(black_box(&theirs), &mut out)
                .unwrap();
            out
        })
    });

    let private =
        aws_lc_rs::agreement::PrivateKey::generate(&aws_lc_rs::agreement::X25519).unwrap();
    let peer =
        aws_lc_rs::agreement::UnparsedPublicKey::new(&aws_lc_rs::agreement::X25519, their_public);
    group.bench_function("aws_lc_rs", |b| {
        b.iter(|| {
            aws_lc_rs::agreement::agree(
                black_box(&private),
                black_box(&peer),
                aws_lc_rs::error::Unspecified,
                |secret| {
                    let mut out = [0u8; 32];
                    out.copy_from_slice(secret);
                    Ok(out)
                },
            )
            .unwrap()
        })
    });
    group.finish();
}

criterion_group!(x25519, benches);
criterion_main!(x25519);
