//! Cross-implementation check: envelopes packed by Python aries-askar are unpacked by our crate,
//! and ours by it, for anoncrypt and authcrypt, one and three recipients, both content
//! encryptions. The Python peer (`tests/interop/askar_peer.py`) runs live in the venv that
//! `scripts/setup-interop` builds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use didcomm_envelope::{pack, unpack, ContentEnc, Envelope, KeyPair, VerKey};
use integration_tests::{interop_python, workspace_root, JsonPeer};
use serde_json::{json, Value};

fn seed(i: u8) -> [u8; 32] {
    let mut s = [0u8; 32];
    for (j, b) in s.iter_mut().enumerate() {
        *b = i.wrapping_mul(31).wrapping_add(j as u8).wrapping_add(7);
    }
    s
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn peer() -> JsonPeer {
    let python = interop_python().unwrap_or_else(|e| panic!("{e}"));
    let script = workspace_root().join("tests/interop/askar_peer.py");
    JsonPeer::spawn(&python, &[script.to_str().unwrap()]).expect("start the Python askar peer")
}

fn ok(answer: Value) -> Value {
    assert!(answer.get("error").is_none(), "Python peer error: {answer}");
    answer
}

struct Party {
    seed: [u8; 32],
    key: KeyPair,
}

fn party(i: u8) -> Party {
    let seed = seed(i);
    Party {
        seed,
        key: KeyPair::from_seed(&seed).unwrap(),
    }
}

const CASES: [(ContentEnc, &str); 2] = [(ContentEnc::C20P, "C20P"), (ContentEnc::XC20P, "XC20P")];

#[test]
fn both_implementations_derive_the_same_verkey_from_a_seed() {
    let mut py = peer();
    for i in 0..4 {
        let p = party(i);
        let answer = ok(py
            .call(&json!({"op": "verkey", "seed": hex(&p.seed)}))
            .unwrap());
        assert_eq!(answer["verkey"], p.key.verkey_base58());
    }
}

#[test]
fn python_packed_envelopes_unpack_in_rust() {
    let mut py = peer();
    let sender = party(100);
    for (enc, enc_name) in CASES {
        for n in [1u8, 3] {
            for authcrypt in [false, true] {
                let recipients: Vec<Party> = (0..n).map(party).collect();
                let message = format!(
                    r#"{{"@type":"https://didcomm.org/basicmessage/1.0/message","@id":"py-{enc_name}-{n}-{authcrypt}","content":"héllo from python"}}"#
                );
                let to: Vec<&str> = recipients.iter().map(|r| r.key.verkey_base58()).collect();
                let from_seed = authcrypt.then(|| hex(&sender.seed));
                let answer = ok(py
                    .call(&json!({"op": "pack", "message": message, "to": to, "from_seed": from_seed, "enc": enc_name}))
                    .unwrap());
                let envelope = answer["envelope"].as_str().unwrap().as_bytes().to_vec();
                assert_eq!(
                    Envelope::parse(&envelope).unwrap().enc(),
                    enc,
                    "nonce length read"
                );
                for r in &recipients {
                    let out = unpack(&envelope, |kid| {
                        (kid == r.key.verkey_base58()).then_some(&r.key)
                    })
                    .unwrap_or_else(|e| panic!("{enc_name} n={n} auth={authcrypt}: {e:?}"));
                    assert_eq!(out.message, message.as_bytes());
                    assert_eq!(out.recipient, *r.key.verkey());
                    assert_eq!(out.sender, authcrypt.then(|| *sender.key.verkey()));
                }
            }
        }
    }
}

#[test]
fn rust_packed_envelopes_unpack_in_python() {
    let mut py = peer();
    let sender = party(200);
    for (enc, enc_name) in CASES {
        for n in [1u8, 3] {
            for authcrypt in [false, true] {
                let recipients: Vec<Party> = (10..10 + n).map(party).collect();
                let message = format!(
                    r#"{{"@type":"https://didcomm.org/basicmessage/1.0/message","@id":"rs-{enc_name}-{n}-{authcrypt}","content":"héllo from rust"}}"#
                );
                let to: Vec<VerKey> = recipients.iter().map(|r| *r.key.verkey()).collect();
                let envelope = pack(
                    message.as_bytes(),
                    &to,
                    authcrypt.then_some(&sender.key),
                    enc,
                )
                .unwrap();
                for r in &recipients {
                    let answer = ok(py
                        .call(&json!({
                            "op": "unpack",
                            "envelope": String::from_utf8(envelope.clone()).unwrap(),
                            "seeds": [hex(&r.seed)],
                        }))
                        .unwrap());
                    assert_eq!(
                        answer["message"], message,
                        "{enc_name} n={n} auth={authcrypt}"
                    );
                    assert_eq!(answer["recipient"], r.key.verkey_base58());
                    let expected_sender = authcrypt.then(|| sender.key.verkey_base58().to_owned());
                    assert_eq!(answer["sender"], json!(expected_sender));
                }
            }
        }
    }
}

#[test]
fn python_refuses_what_it_must_refuse() {
    // The peer is a real check, not an echo: an envelope for other keys fails there too.
    let mut py = peer();
    let ours = party(1);
    let envelope = pack(b"{}", &[*party(2).key.verkey()], None, ContentEnc::C20P).unwrap();
    let answer = py
        .call(&json!({"op": "unpack", "envelope": String::from_utf8(envelope).unwrap(), "seeds": [hex(&ours.seed)]}))
        .unwrap();
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("no recipient key"),
        "{answer}"
    );
}
