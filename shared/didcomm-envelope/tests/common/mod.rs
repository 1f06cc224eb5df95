//! Helpers for the envelope tests: build envelopes, and take them apart to tamper with them.
#![allow(dead_code, clippy::unwrap_used)]

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use didcomm_envelope::{pack, ContentEnc, KeyPair, VerKey};
use serde_json::Value;

pub fn keys(n: usize) -> Vec<KeyPair> {
    (0..n).map(|_| KeyPair::generate().unwrap()).collect()
}

pub fn verkeys(keys: &[KeyPair]) -> Vec<VerKey> {
    keys.iter().map(|k| *k.verkey()).collect()
}

pub const MESSAGE: &[u8] =
    br#"{"@type":"https://didcomm.org/basicmessage/1.0/message","@id":"1","content":"hello"}"#;

pub fn packed(recipients: &[KeyPair], sender: Option<&KeyPair>, enc: ContentEnc) -> Vec<u8> {
    pack(MESSAGE, &verkeys(recipients), sender, enc).unwrap()
}

/// An envelope as JSON, with its protected header decoded, for tampering.
#[derive(Debug)]
pub struct Parts {
    pub outer: Value,
    pub header: Value,
}

impl Parts {
    pub fn of(bytes: &[u8]) -> Self {
        let outer: Value = serde_json::from_slice(bytes).unwrap();
        let header = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(outer["protected"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        Self { outer, header }
    }

    /// Re-encodes the header into `protected` and serialises the envelope.
    pub fn bytes(&mut self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).unwrap();
        self.outer["protected"] = URL_SAFE_NO_PAD.encode(header).into();
        serde_json::to_vec(&self.outer).unwrap()
    }

    /// Serialises the envelope keeping `protected` as it is (the AAD unchanged).
    pub fn bytes_keep_protected(&self) -> Vec<u8> {
        serde_json::to_vec(&self.outer).unwrap()
    }
}

pub fn flip_b64(value: &mut Value, index: usize) {
    let mut bytes = URL_SAFE_NO_PAD.decode(value.as_str().unwrap()).unwrap();
    let i = index % bytes.len();
    bytes[i] ^= 0x01;
    *value = URL_SAFE_NO_PAD.encode(bytes).into();
}
