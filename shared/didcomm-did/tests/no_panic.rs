//! Hostile input never panics: arbitrary strings, arbitrary JSON shaped like DID documents,
//! mutated valid DIDs, arbitrary JWS and connection~sig values.
#![allow(clippy::unwrap_used)]

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use didcomm_did::{
    resolve, resolve_attached, verify_attachment, verify_connection_sig, DidDoc, OwnDid,
};
use didcomm_envelope::KeyPair;
use didcomm_message::{Attachment, AttachmentData};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn verkey(seed: u8) -> didcomm_envelope::VerKey {
    *KeyPair::from_seed(&[seed; 32]).unwrap().verkey()
}

/// Strings that look like the parts of DID documents, and some that do not.
fn leaf_string() -> impl Strategy<Value = String> {
    let vk = verkey(1);
    let x = bs58::encode(vk.to_x25519_public()).into_string();
    prop_oneof![
        Just("#key-1".to_owned()),
        Just("#key-2".to_owned()),
        Just("did:peer:1zQmX#key-1".to_owned()),
        Just("did-communication".to_owned()),
        Just("IndyAgent".to_owned()),
        Just("DIDCommMessaging".to_owned()),
        Just("Ed25519VerificationKey2018".to_owned()),
        Just("Ed25519VerificationKey2020".to_owned()),
        Just("X25519KeyAgreementKey2019".to_owned()),
        Just("Multikey".to_owned()),
        Just("JsonWebKey2020".to_owned()),
        Just("OKP".to_owned()),
        Just("Ed25519".to_owned()),
        Just(vk.to_base58()),
        Just(vk.to_did_key()),
        Just(vk.to_did_key_url()),
        Just(x),
        Just(OwnDid::new(verkey(2), ["http://m"], []).peer2() + "#key-1"),
        Just("didcomm:transport/queue".to_owned()),
        "z[1-9A-HJ-NP-Za-km-z]{0,50}",
        ".{0,20}",
    ]
}

fn key_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("id"),
        Just("type"),
        Just("controller"),
        Just("service"),
        Just("verificationMethod"),
        Just("publicKey"),
        Just("authentication"),
        Just("keyAgreement"),
        Just("assertionMethod"),
        Just("alsoKnownAs"),
        Just("serviceEndpoint"),
        Just("recipientKeys"),
        Just("routingKeys"),
        Just("accept"),
        Just("priority"),
        Just("uri"),
        Just("publicKeyBase58"),
        Just("publicKeyMultibase"),
        Just("publicKeyJwk"),
        Just("kty"),
        Just("crv"),
        Just("x"),
        Just("kid"),
        Just("alg"),
        Just("jwk"),
        Just("signatures"),
        Just("protected"),
        Just("signature"),
        Just("header"),
    ]
    .prop_map(str::to_owned)
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        leaf_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key_name(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn did_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "did:peer:[0-9][ -~]{0,80}",
        "did:peer:2(\\.[AEVIDS][ -~]{0,30}){0,4}",
        "did:peer:4z[1-9A-Za-z]{0,50}(:z[1-9A-Za-z]{0,80})?",
        "did:key:z[1-9A-HJ-NP-Za-km-z]{0,60}",
        "did:sov:[1-9A-HJ-NP-Za-km-z]{0,30}",
        "[1-9A-HJ-NP-Za-km-z]{0,50}",
        ".{0,100}",
        any::<String>(),
    ]
}

/// Valid DIDs of every kind, and documents to attach, computed once.
fn valid() -> &'static (Vec<String>, Vec<Value>) {
    static VALID: std::sync::OnceLock<(Vec<String>, Vec<Value>)> = std::sync::OnceLock::new();
    VALID.get_or_init(|| {
        let own = OwnDid::new(verkey(3), ["http://a", "ws://b?x=>~é"], [verkey(4)]);
        let dids = vec![
            own.peer1().did,
            own.peer2(),
            own.peer4().long,
            own.peer4().short,
            own.unqualified().did,
            verkey(5).to_did_key(),
        ];
        (dids, vec![own.peer1().doc, own.unqualified().doc])
    })
}

#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, char),
    Insert(usize, char),
    Delete(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<char>()).prop_map(|(i, c)| Edit::Replace(i, c)),
        (
            any::<usize>(),
            prop::sample::select(vec!['.', ':', '#', 'S', 'V', 'z', '=', '-', 'é'])
        )
            .prop_map(|(i, c)| Edit::Insert(i, c)),
        any::<usize>().prop_map(Edit::Delete),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let len = chars.len().max(1);
        match *e {
            Edit::Replace(i, c) if !chars.is_empty() => chars[i % len] = c,
            Edit::Insert(i, c) => chars.insert(i % (chars.len() + 1), c),
            Edit::Delete(i) if !chars.is_empty() => {
                chars.remove(i % len);
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

/// Resolving and, when that works, listing services: neither may panic.
fn exercise(did: &str, doc: Option<&Value>) {
    if let Ok(resolved) = resolve(did, doc) {
        let _ = resolved.didcomm_services();
        let _ = resolved.authentication_keys();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_dids_never_panic(did in did_string(), doc in prop::option::of(json_value())) {
        exercise(&did, doc.as_ref());
    }

    #[test]
    fn arbitrary_documents_never_panic(doc in json_value()) {
        if let Ok(parsed) = DidDoc::from_json(&doc) {
            let _ = parsed.didcomm_services();
        }
        for did in ["did:peer:1zQmX", "did:peer:4zQmX", "did:sov:6j21pFLeTffQZdVPmbuMwu",
                    "6j21pFLeTffQZdVPmbuMwu"] {
            exercise(did, Some(&doc));
            let _ = resolve_attached(did, doc.to_string().as_bytes());
        }
        // The document's own id, so that id checks pass and the rest is exercised.
        if let Some(id) = doc.get("id").and_then(Value::as_str) {
            exercise(id, Some(&doc));
            let _ = resolve_attached(id, doc.to_string().as_bytes());
        }
    }

    #[test]
    fn arbitrary_peer2_services_never_panic(service in json_value(), raw in ".{0,40}") {
        let fp = &verkey(6).to_did_key()["did:key:".len()..];
        for text in [service.to_string(), raw] {
            let did = format!("did:peer:2.V{fp}.S{}", URL_SAFE_NO_PAD.encode(text));
            exercise(&did, None);
        }
    }

    #[test]
    fn arbitrary_peer4_documents_never_panic(doc in json_value()) {
        let mut tagged = vec![0x80, 0x04];
        tagged.extend_from_slice(doc.to_string().as_bytes());
        let encoded = format!("z{}", bs58::encode(tagged).into_string());
        let mut mh = vec![0x12, 0x20];
        mh.extend_from_slice(&<sha2::Sha256 as sha2::Digest>::digest(encoded.as_bytes()));
        let did = format!("did:peer:4z{}:{encoded}", bs58::encode(mh).into_string());
        exercise(&did, None);
    }

    #[test]
    fn mutated_valid_dids_never_panic(which in 0usize..6, edits in prop::collection::vec(edit(), 1..4)) {
        let (dids, docs) = valid();
        let did = apply(&dids[which % dids.len()], &edits);
        exercise(&did, None);
        for doc in docs {
            exercise(&did, Some(doc));
        }
    }

    #[test]
    fn arbitrary_jws_never_panics(jws in json_value(), data in prop::option::of(".{0,40}")) {
        let attachment = Attachment {
            id: None,
            mime_type: None,
            filename: None,
            lastmod_time: None,
            byte_count: None,
            description: None,
            data: AttachmentData { base64: data, jws: Some(jws), ..AttachmentData::default() },
        };
        let _ = verify_attachment(&attachment);
    }

    #[test]
    fn arbitrary_connection_sigs_never_panic(sig in json_value(), data in prop::collection::vec(any::<u8>(), 0..40)) {
        let _ = verify_connection_sig(&sig);
        let key = KeyPair::from_seed(&[1; 32]).unwrap();
        let signed = serde_json::json!({
            "@type": didcomm_did::SIGNATURE_TYPE,
            "signer": key.verkey_base58(),
            "sig_data": URL_SAFE_NO_PAD.encode(&data),
            "signature": URL_SAFE_NO_PAD.encode(key.sign(&data)),
        });
        let _ = verify_connection_sig(&signed);
    }
}
