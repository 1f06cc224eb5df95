//! Property tests: unpack never panics, and never yields anything but the original message.
//!
//! Inputs are arbitrary bytes, and valid envelopes mutated structurally: members removed or
//! replaced by values of other JSON types, bits flipped inside each base64 field, recipients
//! duplicated or dropped, labels changed, and the serialised bytes cut anywhere.
#![allow(clippy::unwrap_used)]

mod common;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use common::*;
use didcomm_envelope::{unpack, ContentEnc, KeyPair};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::OnceLock;

struct Fixture {
    recipient: KeyPair,
    others: Vec<KeyPair>,
    sender: KeyPair,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture {
        recipient: KeyPair::generate().unwrap(),
        others: keys(2),
        sender: KeyPair::generate().unwrap(),
    })
}

/// Unpack with our one key; the property every case checks.
fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let f = fixture();
    let key = &f.recipient;
    if let Ok(out) = unpack(bytes, |kid| (kid == key.verkey_base58()).then_some(key)) {
        // Authenticated encryption: success means the untouched plaintext.
        prop_assert_eq!(out.message, MESSAGE);
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Mutation {
    RemoveOuter(usize),
    ReplaceOuter(usize, Value),
    FlipOuter(usize, usize),
    RemoveHeader(usize),
    ReplaceHeader(usize, Value),
    FlipRecipient(usize, usize),
    ReplaceRecipientHeader(usize, Value),
    DuplicateRecipient,
    DropRecipient,
    Truncate(usize),
    AppendGarbage(Vec<u8>),
}

const OUTER: [&str; 4] = ["protected", "iv", "ciphertext", "tag"];
const HEADER: [&str; 4] = ["enc", "alg", "typ", "recipients"];
const RECIPIENT_B64: [&str; 3] = ["encrypted_key", "sender", "iv"];
const RECIPIENT_HEADER: [&str; 3] = ["kid", "sender", "iv"];

fn any_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        "[A-Za-z0-9_-]{0,60}".prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
        Just(json!(["a", 1])),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0..4usize).prop_map(Mutation::RemoveOuter),
        (0..4usize, any_json()).prop_map(|(i, v)| Mutation::ReplaceOuter(i, v)),
        (0..4usize, any::<usize>()).prop_map(|(i, b)| Mutation::FlipOuter(i, b)),
        (0..4usize).prop_map(Mutation::RemoveHeader),
        (0..4usize, any_json()).prop_map(|(i, v)| Mutation::ReplaceHeader(i, v)),
        (0..3usize, any::<usize>()).prop_map(|(i, b)| Mutation::FlipRecipient(i, b)),
        (0..3usize, any_json()).prop_map(|(i, v)| Mutation::ReplaceRecipientHeader(i, v)),
        Just(Mutation::DuplicateRecipient),
        Just(Mutation::DropRecipient),
        any::<usize>().prop_map(Mutation::Truncate),
        proptest::collection::vec(any::<u8>(), 1..16).prop_map(Mutation::AppendGarbage),
    ]
}

fn flip(value: &mut Value, bit: usize) {
    if let Some(text) = value.as_str() {
        if let Ok(mut bytes) = URL_SAFE_NO_PAD.decode(text) {
            if !bytes.is_empty() {
                let len = bytes.len();
                bytes[(bit / 8) % len] ^= 1 << (bit % 8);
                *value = URL_SAFE_NO_PAD.encode(bytes).into();
            }
        }
    }
}

fn apply(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut parts = Parts::of(bytes);
    let mut header_touched = false;
    let mut cut: Option<usize> = None;
    let mut tail = Vec::new();
    for m in mutations {
        match m {
            Mutation::RemoveOuter(i) => {
                parts.outer.as_object_mut().unwrap().remove(OUTER[*i]);
            }
            Mutation::ReplaceOuter(i, v) => parts.outer[OUTER[*i]] = v.clone(),
            Mutation::FlipOuter(i, b) => flip(&mut parts.outer[OUTER[*i]], *b),
            Mutation::RemoveHeader(i) => {
                header_touched = true;
                if let Some(h) = parts.header.as_object_mut() {
                    h.remove(HEADER[*i]);
                }
            }
            Mutation::ReplaceHeader(i, v) => {
                header_touched = true;
                parts.header[HEADER[*i]] = v.clone();
            }
            Mutation::FlipRecipient(i, b) => {
                header_touched = true;
                // Earlier mutations may have replaced these with non-objects: index only objects.
                if let Some(r) = parts.header["recipients"]
                    .get_mut(0)
                    .filter(|r| r.is_object())
                {
                    let field = RECIPIENT_B64[*i];
                    if field == "encrypted_key" {
                        flip(&mut r[field], *b);
                    } else if let Some(h) = r.get_mut("header").filter(|h| h.is_object()) {
                        flip(&mut h[field], *b);
                    }
                }
            }
            Mutation::ReplaceRecipientHeader(i, v) => {
                header_touched = true;
                if let Some(h) = parts.header["recipients"]
                    .get_mut(0)
                    .and_then(|r| r.get_mut("header"))
                {
                    if h.is_object() {
                        h[RECIPIENT_HEADER[*i]] = v.clone();
                    }
                }
            }
            Mutation::DuplicateRecipient => {
                header_touched = true;
                if let Some(list) = parts.header["recipients"].as_array_mut() {
                    if let Some(first) = list.first().cloned() {
                        list.push(first);
                    }
                }
            }
            Mutation::DropRecipient => {
                header_touched = true;
                if let Some(list) = parts.header["recipients"].as_array_mut() {
                    list.pop();
                }
            }
            Mutation::Truncate(at) => cut = Some(*at),
            Mutation::AppendGarbage(g) => tail.extend_from_slice(g),
        }
    }
    let mut out = if header_touched && parts.outer.get("protected").is_some_and(Value::is_string) {
        parts.bytes()
    } else {
        parts.bytes_keep_protected()
    };
    if let Some(at) = cut {
        out.truncate(at % (out.len() + 1));
    }
    out.extend_from_slice(&tail);
    out
}

fn base_envelope() -> impl Strategy<Value = Vec<u8>> {
    (any::<bool>(), any::<bool>(), 0..3usize).prop_map(|(auth, xc, extra)| {
        let f = fixture();
        let mut recipients = vec![f.recipient.clone()];
        recipients.extend(f.others.iter().take(extra).cloned());
        let enc = if xc {
            ContentEnc::XC20P
        } else {
            ContentEnc::C20P
        };
        packed(&recipients, auth.then_some(&f.sender), enc)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check(&bytes)?;
    }

    #[test]
    fn json_shaped_garbage_never_panics(text in r#"\{("(protected|iv|ciphertext|tag)":"[A-Za-z0-9_=+/-]{0,64}",?){0,5}\}"#) {
        check(text.as_bytes())?;
    }

    #[test]
    fn mutated_envelopes_fail_cleanly_or_yield_the_original(
        base in base_envelope(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let bytes = apply(&base, &mutations);
        check(&bytes)?;
    }

    #[test]
    fn unmutated_envelopes_always_open(base in base_envelope()) {
        let f = fixture();
        let key = &f.recipient;
        let out = unpack(&base, |kid| (kid == key.verkey_base58()).then_some(key));
        prop_assert!(out.is_ok(), "{:?}", out.err());
    }
}
