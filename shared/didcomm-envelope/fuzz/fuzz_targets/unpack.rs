//! Fuzzes envelope parsing and opening with a key that is a recipient of the seed corpus
//! (generate one with `cargo run -p didcomm-tool -- fuzz-corpus`), so the fuzzer reaches the
//! cryptographic paths, not only the JSON parser. Any panic is a bug.
#![no_main]

use std::sync::OnceLock;

use didcomm_envelope::{unpack, KeyPair};
use libfuzzer_sys::fuzz_target;

/// The fixed key that `didcomm-tool fuzz-corpus` packs its envelopes for.
const FUZZ_SEED: [u8; 32] = [7u8; 32];

fn key() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| KeyPair::from_seed(&FUZZ_SEED).expect("valid seed"))
}

fuzz_target!(|data: &[u8]| {
    let key = key();
    let _ = unpack(data, |kid| (kid == key.verkey_base58()).then_some(key));
});
