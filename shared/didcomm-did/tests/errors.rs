//! Every malformed input has its own error.
#![allow(clippy::unwrap_used)]

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use didcomm_did::{
    resolve, resolve_attached, sign_attachment, sign_connection, verify_attachment,
    verify_connection_sig, DidDoc, DidError, KeyDecodeError, OwnDid, PublicKey,
};
use didcomm_envelope::{KeyPair, VerKey};
use didcomm_message::Attachment;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn key(seed: u8) -> KeyPair {
    KeyPair::from_seed(&[seed; 32]).unwrap()
}

fn b58(key: &KeyPair) -> String {
    key.verkey().to_base58()
}

/// A valid did:peer:1-style document around `service` and extra members.
fn doc_with(id: &str, service: Value) -> Value {
    json!({
        "id": id,
        "authentication": [{"id": "#key-1", "type": "Ed25519VerificationKey2018",
            "publicKeyBase58": b58(&key(1))}],
        "keyAgreement": [{"id": "#key-2", "type": "X25519KeyAgreementKey2019",
            "publicKeyBase58": bs58::encode([9u8; 32]).into_string()}],
        "service": [service],
    })
}

fn services_of(doc: &Value) -> Result<Vec<didcomm_did::DidCommService>, DidError> {
    DidDoc::from_json(doc)?.didcomm_services()
}

fn v1_service(recipient: Value, routing: Value) -> Value {
    json!({"id": "#inline-0", "type": "did-communication", "serviceEndpoint": "http://x",
        "recipientKeys": recipient, "routingKeys": routing})
}

fn long_peer4(encoded: &str) -> String {
    let digest = Sha256::digest(encoded.as_bytes());
    let mut mh = vec![0x12, 0x20];
    mh.extend_from_slice(&digest);
    format!("did:peer:4z{}:{encoded}", bs58::encode(mh).into_string())
}

fn peer4_of(tag: &[u8], body: &[u8]) -> String {
    let mut bytes = tag.to_vec();
    bytes.extend_from_slice(body);
    long_peer4(&format!("z{}", bs58::encode(bytes).into_string()))
}

// ----- DIDs -----

#[test]
fn did_strings() {
    let long = format!("did:peer:2.{}", "a".repeat(9000));
    assert!(matches!(
        resolve(&long, None),
        Err(DidError::TooLong { max: 8192, .. })
    ));
    for not_a_did in [
        "",
        "hello world",
        "did:",
        "did:peer",
        "did:key:",
        "did:key:z6Mk#frag",
        "did:peer:2.Vz6Mk?x",
        "did:peer:2/a",
        "foo",
        "0OIl",
    ] {
        assert!(
            matches!(resolve(not_a_did, None), Err(DidError::NotADid(_))),
            "{not_a_did:?}"
        );
    }
    assert!(matches!(
        resolve("did:web:example.com", None),
        Err(DidError::UnsupportedMethod(m)) if m == "web"
    ));
    for numalgo in ["did:peer:3zQmabc", "did:peer:x", "did:peer:é"] {
        assert!(
            matches!(
                resolve(numalgo, None),
                Err(DidError::UnsupportedPeerNumalgo(_))
            ),
            "{numalgo}"
        );
    }
}

#[test]
fn documents_that_must_be_attached() {
    let own = OwnDid::new(*key(1).verkey(), ["http://x"], []);
    let unqualified = own.unqualified().did;
    for did in [
        own.peer1().did,
        unqualified.clone(),
        format!("did:sov:{unqualified}"),
        own.peer4().short,
    ] {
        assert!(
            matches!(resolve(&did, None), Err(DidError::MissingDocument { .. })),
            "{did}"
        );
    }
    let peer1 = own.peer1();
    let mut wrong = peer1.doc.clone();
    wrong["id"] = "did:peer:1zQmOther".into();
    assert!(matches!(
        resolve(&peer1.did, Some(&wrong)),
        Err(DidError::DocumentIdMismatch { .. })
    ));
    assert!(matches!(
        resolve(
            &unqualified,
            Some(&OwnDid::new(*key(2).verkey(), ["x"], []).unqualified().doc)
        ),
        Err(DidError::DocumentIdMismatch { .. })
    ));
    assert!(matches!(
        resolve(
            &own.peer4().short,
            Some(&json!({"id": "did:peer:4zQmOther"}))
        ),
        Err(DidError::DocumentIdMismatch { .. })
    ));
    // A short form whose "long form" has another hash is not taken as the long form.
    assert!(matches!(
        resolve(
            &own.peer4().short,
            Some(&json!({"id": OwnDid::new(*key(2).verkey(), ["x"], []).peer4().long}))
        ),
        Err(DidError::DocumentIdMismatch { .. })
    ));
    assert!(matches!(
        resolve_attached(&peer1.did, b"nope"),
        Err(DidError::DocumentJson(_))
    ));
    assert!(matches!(
        resolve(&peer1.did, Some(&json!(5))),
        Err(DidError::DocumentNotObject)
    ));
    // The hash of a did:peer:1 is over the document as sent.
    let changed = peer1.doc_json.replace("http://x", "http://y");
    assert!(matches!(
        resolve_attached(&peer1.did, changed.as_bytes()),
        Err(DidError::Peer1HashMismatch { .. })
    ));
    // Re-indented (member order kept), the same document still matches its hash; with its
    // members reordered it does not.
    let pretty = peer1
        .doc_json
        .replace("\":", "\": ")
        .replace(",\"", ",\n  \"");
    assert_ne!(pretty, peer1.doc_json);
    resolve_attached(&peer1.did, pretty.as_bytes()).unwrap();
    let sorted = serde_json::to_string_pretty(&peer1.doc).unwrap();
    assert!(matches!(
        resolve_attached(&peer1.did, sorted.as_bytes()),
        Err(DidError::Peer1HashMismatch { .. })
    ));
}

#[test]
fn did_keys() {
    let source = |did: &str| match resolve(did, None) {
        Err(DidError::DidKey { source, .. }) => source,
        other => panic!("{did}: {other:?}"),
    };
    assert!(matches!(source("did:key:zabc0"), KeyDecodeError::Base58(_)));
    assert!(matches!(
        source("did:key:6Mkabc"),
        KeyDecodeError::NotBase58Multibase
    ));
    assert!(matches!(source("did:peer:0z"), KeyDecodeError::Varint));
    let secp = format!(
        "did:key:z{}",
        bs58::encode([&[0xe7, 0x01][..], &[2u8; 33]].concat()).into_string()
    );
    assert!(matches!(
        resolve(&secp, None),
        Err(DidError::DidKey {
            source: KeyDecodeError::UnexpectedMulticodec(0xe7),
            ..
        })
    ));
    let off_curve = format!(
        "did:key:z{}",
        bs58::encode(
            [&[0xed, 0x01][..], &{
                let mut b = [0u8; 32];
                b[0] = 2;
                b
            }]
            .concat()
        )
        .into_string()
    );
    assert!(matches!(
        resolve(&off_curve, None),
        Err(DidError::DidKey {
            source: KeyDecodeError::Ed25519(_),
            ..
        })
    ));
}

// ----- did:peer:2 -----

#[test]
fn peer2_elements() {
    let vk = key(1).verkey().to_did_key();
    let fp = &vk["did:key:".len()..];
    let svc = |json: &str| format!("did:peer:2.V{fp}.S{}", URL_SAFE_NO_PAD.encode(json));
    assert!(matches!(
        resolve(&format!("did:peer:2V{fp}"), None),
        Err(DidError::Peer2Malformed)
    ));
    for empty in [format!("did:peer:2..V{fp}"), format!("did:peer:2.V{fp}.")] {
        assert!(matches!(
            resolve(&empty, None),
            Err(DidError::Peer2EmptyElement)
        ));
    }
    assert!(matches!(
        resolve(&format!("did:peer:2.X{fp}"), None),
        Err(DidError::Peer2UnknownPurpose('X'))
    ));
    assert!(matches!(
        resolve(&format!("did:peer:2.V{fp}.S!!!"), None),
        Err(DidError::Peer2ServiceBase64(_))
    ));
    assert!(matches!(
        resolve(&svc("not json"), None),
        Err(DidError::Peer2ServiceJson(_))
    ));
    for shape in ["42", "[1]", "\"s\""] {
        assert!(matches!(
            resolve(&svc(shape), None),
            Err(DidError::Peer2ServiceShape)
        ));
    }
    assert!(matches!(
        resolve("did:peer:2.Vz6Mk", None),
        Err(DidError::DidKey { .. })
    ));
    // A did-communication service without endpoint is malformed; an array of services and a
    // padded, standard-alphabet encoding are read.
    assert!(matches!(
        resolve(
            &svc(r##"{"t":"did-communication","recipientKeys":["#key-1"]}"##),
            None
        ),
        Err(DidError::MissingField {
            field: "serviceEndpoint",
            ..
        })
    ));
    let two = r##"[{"t":"did-communication","s":"http://a","recipientKeys":["#key-1"]},{"t":"dm","s":{"uri":"http://b","a":["didcomm/v2"]}}]"##;
    let did = format!(
        "did:peer:2.V{fp}.S{}",
        base64::engine::general_purpose::STANDARD.encode(two)
    );
    let doc = resolve(&did, None).unwrap();
    assert_eq!(doc.services.len(), 2);
    assert_eq!(doc.services[1].id, format!("{did}#didcommmessaging-1"));
    assert_eq!(doc.services[1].accept, vec!["didcomm/v2"]);
}

// ----- did:peer:4 -----

#[test]
fn peer4_forms() {
    for malformed in ["did:peer:4abc", "did:peer:4zQm:abc", "did:peer:4Qm:zabc"] {
        assert!(
            matches!(resolve(malformed, None), Err(DidError::Peer4Malformed(_))),
            "{malformed}"
        );
    }
    let long = OwnDid::new(*key(1).verkey(), ["http://x"], []).peer4().long;
    let tampered = format!("{}X", long);
    assert!(matches!(
        resolve(&tampered, None),
        Err(DidError::Peer4HashMismatch)
    ));
    assert!(matches!(
        resolve(&long_peer4("z0OIl"), None),
        Err(DidError::Peer4Encoding(KeyDecodeError::Base58(_)))
    ));
    assert!(matches!(
        resolve(&long_peer4("z"), None),
        Err(DidError::Peer4Encoding(KeyDecodeError::Varint))
    ));
    assert!(matches!(
        resolve(&peer4_of(&[0x80, 0x06], b"{}"), None),
        Err(DidError::Peer4NotJson(0x300))
    ));
    assert!(matches!(
        resolve(&peer4_of(&[0x80, 0x04], b"not json"), None),
        Err(DidError::Peer4DocJson(_))
    ));
    assert!(matches!(
        resolve(&peer4_of(&[0x80, 0x04], b"[1]"), None),
        Err(DidError::DocumentNotObject)
    ));
    // An ACA-Py style input document (Multikey, `#key-0` in both relationships, spaces in the
    // JSON) resolves.
    let multikey = key(3).verkey().to_did_key()["did:key:".len()..].to_owned();
    let acapy = format!(
        r##"{{"@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"], "verificationMethod": [{{"id": "#key-0", "type": "Multikey", "publicKeyMultibase": "{multikey}"}}], "authentication": ["#key-0"], "keyAgreement": ["#key-0"], "service": [{{"id": "#didcomm-0", "type": "did-communication", "recipientKeys": ["#key-0"], "routingKeys": ["{}"], "serviceEndpoint": "http://acapy:8020", "priority": 0}}]}}"##,
        key(4).verkey().to_did_key()
    );
    let did = peer4_of(&[0x80, 0x04], acapy.as_bytes());
    let services = resolve(&did, None).unwrap().didcomm_services().unwrap();
    assert_eq!(services[0].recipient_keys, vec![*key(3).verkey()]);
    assert_eq!(services[0].routing_keys, vec![*key(4).verkey()]);
    assert_eq!(services[0].endpoint, "http://acapy:8020");
}

// ----- documents -----

#[test]
fn document_shapes() {
    let missing = |doc: Value, field: &str| match DidDoc::from_json(&doc) {
        Err(DidError::MissingField { field: f, .. }) => assert_eq!(f, field, "{doc}"),
        other => panic!("{doc}: {other:?}"),
    };
    missing(json!({}), "id");
    missing(
        json!({"id": "d", "verificationMethod": [{"type": "Multikey"}]}),
        "id",
    );
    missing(
        json!({"id": "d", "verificationMethod": [{"id": "#a"}]}),
        "type",
    );
    missing(
        json!({"id": "d", "verificationMethod": [{"id": "#a", "type": "Multikey"}]}),
        "publicKeyMultibase",
    );
    missing(
        json!({"id": "d", "verificationMethod": [{"id": "#a", "type": "JsonWebKey2020"}]}),
        "publicKeyJwk",
    );
    missing(
        json!({"id": "d", "verificationMethod": [{"id": "#a", "type": "Ed25519VerificationKey2018"}]}),
        "publicKeyMultibase",
    );
    missing(
        json!({"id": "d", "service": [{"serviceEndpoint": "x"}]}),
        "type",
    );
    missing(
        json!({"id": "d", "service": [{"type": "did-communication"}]}),
        "serviceEndpoint",
    );
    missing(
        json!({"id": "d", "service": [{"type": "IndyAgent", "serviceEndpoint": {"routingKeys": []}}]}),
        "serviceEndpoint.uri",
    );

    let wrong = |doc: Value, field: &str| match DidDoc::from_json(&doc) {
        Err(DidError::WrongType { field: f, .. }) => assert_eq!(f, field, "{doc}"),
        other => panic!("{doc}: {other:?}"),
    };
    wrong(json!({"id": 5}), "id");
    wrong(json!({"id": "d", "alsoKnownAs": "x"}), "alsoKnownAs");
    wrong(
        json!({"id": "d", "verificationMethod": {}}),
        "verificationMethod",
    );
    wrong(
        json!({"id": "d", "verificationMethod": [5]}),
        "verificationMethod",
    );
    wrong(json!({"id": "d", "publicKey": [{"id": 5}]}), "id");
    wrong(json!({"id": "d", "authentication": "x"}), "authentication");
    wrong(json!({"id": "d", "keyAgreement": [5]}), "keyAgreement");
    wrong(json!({"id": "d", "service": {}}), "service");
    wrong(json!({"id": "d", "service": [5]}), "service");
    wrong(json!({"id": "d", "service": [{"type": 5}]}), "type");
    let svc = |extra: Value| {
        let mut s = json!({"type": "did-communication", "serviceEndpoint": "x"});
        for (k, v) in extra.as_object().unwrap() {
            s[k] = v.clone();
        }
        json!({"id": "d", "service": [s]})
    };
    wrong(svc(json!({"recipientKeys": "k"})), "recipientKeys");
    wrong(svc(json!({"routingKeys": [1]})), "routingKeys");
    wrong(svc(json!({"accept": {}})), "accept");
    wrong(svc(json!({"priority": "1"})), "priority");
    wrong(svc(json!({"priority": 1.5})), "priority");
    wrong(svc(json!({"serviceEndpoint": 5})), "serviceEndpoint");
    wrong(svc(json!({"id": 5})), "id");

    // Lists longer than any real document's.
    let many_vms: Vec<Value> = (0..=didcomm_did::MAX_DOC_ENTRIES)
        .map(|i| json!({"id": format!("#k{i}"), "type": "Other"}))
        .collect();
    let too_many = |doc: Value, field: &str| match DidDoc::from_json(&doc) {
        Err(DidError::TooManyEntries { field: f, max: 256 }) => assert_eq!(f, field),
        other => panic!("{other:?}"),
    };
    too_many(
        json!({"id": "d", "verificationMethod": many_vms}),
        "verificationMethod",
    );
    let (half, rest) = many_vms.split_at(200);
    too_many(
        json!({"id": "d", "verificationMethod": half, "publicKey": rest}),
        "verificationMethod",
    );
    let many_keys: Vec<String> = (0..300).map(|i| format!("#k{i}")).collect();
    too_many(svc(json!({"recipientKeys": many_keys})), "recipientKeys");
    too_many(
        json!({"id": "d", "authentication": many_keys}),
        "authentication",
    );
    let many_endpoints: Vec<String> = (0..300).map(|i| format!("http://e{i}")).collect();
    too_many(
        svc(json!({"serviceEndpoint": many_endpoints})),
        "serviceEndpoint",
    );

    // Services DIDComm v1 does not use never make a document unreadable.
    let doc = DidDoc::from_json(&json!({"id": "d", "service": [
        {"type": "LinkedDomains", "serviceEndpoint": {"origins": ["https://x"]}},
        {"type": "DIDCommMessaging", "serviceEndpoint": 5},
    ]}))
    .unwrap();
    assert!(doc.services.is_empty());
}

#[test]
fn verification_method_keys() {
    let bad = |vm: Value| {
        let doc = json!({"id": "d", "verificationMethod": [vm]});
        match DidDoc::from_json(&doc) {
            Err(DidError::VerificationMethodKey { id, source }) => {
                assert_eq!(id, "d#a");
                source
            }
            other => panic!("{doc}: {other:?}"),
        }
    };
    assert!(matches!(
        bad(json!({"id": "#a", "type": "Ed25519VerificationKey2018", "publicKeyBase58": "0OIl"})),
        KeyDecodeError::Ed25519(_)
    ));
    assert!(matches!(
        bad(json!({"id": "#a", "type": "X25519KeyAgreementKey2019",
            "publicKeyBase58": bs58::encode([1u8; 31]).into_string()})),
        KeyDecodeError::Length {
            expected: 32,
            actual: 31
        }
    ));
    assert!(matches!(
        bad(json!({"id": "#a", "type": "X25519KeyAgreementKey2019", "publicKeyBase58": "0"})),
        KeyDecodeError::Base58(_)
    ));
    assert!(matches!(
        bad(json!({"id": "#a", "type": "Ed25519VerificationKey2020",
            "publicKeyMultibase": format!("z{}", bs58::encode([&[0xec, 0x01][..], &[1u8; 32]].concat()).into_string())})),
        KeyDecodeError::UnexpectedMulticodec(0xec)
    ));
    assert!(matches!(
        bad(json!({"id": "#a", "type": "X25519KeyAgreementKey2020", "publicKeyMultibase": "abc"})),
        KeyDecodeError::NotBase58Multibase
    ));
    assert!(matches!(
        bad(json!({"id": "#a", "type": "Multikey", "publicKeyMultibase": "z"})),
        KeyDecodeError::Varint
    ));
    assert!(matches!(
        bad(json!({"id": "#a", "type": "JsonWebKey2020",
            "publicKeyJwk": {"kty": "OKP", "crv": "Ed25519", "x": "!!"}})),
        KeyDecodeError::Base64(_)
    ));

    // Every supported encoding of the same key reads as that key.
    let vk = *key(5).verkey();
    let multikey = vk.to_did_key()["did:key:".len()..].to_owned();
    let raw_multibase = format!("z{}", vk.to_base58());
    let x = URL_SAFE_NO_PAD.encode(vk.as_bytes());
    for vm in [
        json!({"type": "Ed25519VerificationKey2018", "publicKeyBase58": vk.to_base58()}),
        json!({"type": "Ed25519VerificationKey2020", "publicKeyMultibase": multikey}),
        json!({"type": "Ed25519VerificationKey2020", "publicKeyMultibase": raw_multibase}),
        json!({"type": "Multikey", "publicKeyMultibase": multikey}),
        json!({"type": "JsonWebKey2020", "publicKeyJwk": {"kty": "OKP", "crv": "Ed25519", "x": x}}),
    ] {
        let mut vm = vm;
        vm["id"] = "did:example:d#a".into();
        let doc =
            DidDoc::from_json(&json!({"id": "did:example:d", "authentication": [vm]})).unwrap();
        assert_eq!(doc.authentication_keys(), vec![vk], "{doc:?}");
    }
    // Unknown types and curves parse, as unusable keys.
    let doc = DidDoc::from_json(&json!({"id": "d", "verificationMethod": [
        {"id": "#p", "type": "JsonWebKey2020", "publicKeyJwk": {"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}},
        {"id": "#s", "type": "EcdsaSecp256k1VerificationKey2019", "publicKeyHex": "02"},
        {"id": "#m", "type": "Multikey", "publicKeyMultibase": format!("z{}", bs58::encode([&[0xe7, 0x01][..], &[2u8; 33]].concat()).into_string())},
    ]}))
    .unwrap();
    assert!(doc
        .verification_methods
        .iter()
        .all(|vm| vm.key == PublicKey::Unsupported));
}

#[test]
fn service_keys() {
    let id = "did:peer:1zQmX";
    let service_err = |recipient: Value, routing: Value| {
        services_of(&doc_with(id, v1_service(recipient, routing))).unwrap_err()
    };
    assert!(matches!(
        service_err(json!([]), json!([])),
        DidError::NoRecipientKeys { .. }
    ));
    assert!(matches!(
        service_err(json!(["#key-9"]), json!([])),
        DidError::UnknownKeyReference { .. }
    ));
    // A recipient key of another DID is refused; a routing key of another DID is resolved
    // when the DID resolves offline.
    assert!(matches!(
        service_err(json!(["did:web:example.com#key-1"]), json!([])),
        DidError::UnknownKeyReference { .. }
    ));
    match service_err(json!(["#key-1"]), json!(["did:web:example.com#key-1"])) {
        DidError::UnresolvableKeyReference { source, .. } => {
            assert!(matches!(*source, DidError::UnsupportedMethod(_)));
        }
        other => panic!("{other:?}"),
    }
    let peer2 = OwnDid::new(*key(3).verkey(), ["http://m"], []).peer2();
    assert!(matches!(
        service_err(json!(["#key-1"]), json!([format!("{peer2}#key-7")])),
        DidError::UnknownKeyReference { .. }
    ));
    // `#key-2` is an X25519 key no Ed25519 key of the document converts to.
    assert!(matches!(
        service_err(json!(["#key-2"]), json!([])),
        DidError::NotEd25519 { .. }
    ));
    for bad in ["0OIl", "did:key:zbad", "abc"] {
        assert!(
            matches!(
                service_err(json!([bad]), json!([])),
                DidError::ServiceKey { .. }
            ),
            "{bad}"
        );
    }
    // Other DIDs are resolved once each, and only so many of them.
    let mediators: Vec<String> = (20..30u8)
        .map(|seed| OwnDid::new(*key(seed).verkey(), ["http://m"], []).peer2())
        .collect();
    let same: Vec<String> = (0..20).map(|_| format!("{}#key-1", mediators[0])).collect();
    let doc = doc_with(id, v1_service(json!(["#key-1"]), json!(same)));
    assert_eq!(services_of(&doc).unwrap()[0].routing_keys.len(), 20);
    let distinct: Vec<String> = mediators.iter().map(|m| format!("{m}#key-1")).collect();
    match service_err(json!(["#key-1"]), json!(distinct)) {
        DidError::UnresolvableKeyReference {
            reference, source, ..
        } => {
            assert_eq!(reference, distinct[didcomm_did::MAX_EXTERNAL_DIDS]);
            assert!(matches!(*source, DidError::TooManyExternalDids { max: 8 }));
        }
        other => panic!("{other:?}"),
    }
    // A reference to an unsupported key type.
    let mut doc = doc_with(id, v1_service(json!(["#p"]), json!([])));
    doc["verificationMethod"] = json!([{"id": "#p", "type": "JsonWebKey2020",
        "publicKeyJwk": {"kty": "EC", "crv": "P-256"}}]);
    assert!(matches!(
        services_of(&doc).unwrap_err(),
        DidError::NotEd25519 { .. }
    ));
}

#[test]
fn services_are_ordered_and_v2_services_are_optional() {
    let id = "did:peer:1zQmX";
    let vk = *key(1).verkey();
    let mut doc = doc_with(id, v1_service(json!(["#key-1"]), json!([])));
    doc["service"] = json!([
        {"id": "#b", "type": "did-communication", "priority": 2, "serviceEndpoint": "http://b",
         "recipientKeys": ["#key-1"]},
        {"id": "#a", "type": "IndyAgent", "priority": 1, "serviceEndpoint": "http://a",
         "recipientKeys": [vk.to_base58()]},
        // DIDComm v2: keys from keyAgreement, whose X25519 key (9,9,…) maps to no Ed25519 key.
        {"id": "#v2", "type": "DIDCommMessaging", "serviceEndpoint": {"uri": "http://v2"}},
        {"id": "#c", "type": "did-communication", "serviceEndpoint": ["http://c1", {"uri": "http://c2"}],
         "recipientKeys": [format!("{id}#key-1")]},
    ]);
    let services = services_of(&doc).unwrap();
    let endpoints: Vec<_> = services.iter().map(|s| s.endpoint.as_str()).collect();
    assert_eq!(
        endpoints,
        ["http://c1", "http://c2", "http://a", "http://b"]
    );

    // With the X25519 form of the verkey in keyAgreement, the v2 service is usable.
    doc["keyAgreement"][0]["publicKeyBase58"] =
        bs58::encode(vk.to_x25519_public()).into_string().into();
    let services = services_of(&doc).unwrap();
    let v2 = services.iter().find(|s| s.endpoint == "http://v2").unwrap();
    assert_eq!(v2.recipient_keys, vec![vk]);
    assert!(!v2.is_queue_endpoint());
}

// ----- signed attachments -----

fn signed() -> Attachment {
    sign_attachment("a", Some("application/json"), b"{\"id\":\"x\"}", &key(1))
}

fn with_jws(jws: Value) -> Attachment {
    let mut att = signed();
    att.data.jws = Some(jws);
    att
}

fn protected(header: Value) -> String {
    URL_SAFE_NO_PAD.encode(header.to_string())
}

#[test]
fn attachment_errors() {
    let mut att = signed();
    att.data.base64 = None;
    att.data.json = Some(json!({"id": "x"}));
    assert!(matches!(
        verify_attachment(&att),
        Err(DidError::AttachmentNotBase64)
    ));
    let mut att = signed();
    att.data.base64 = Some("***".into());
    assert!(matches!(
        verify_attachment(&att),
        Err(DidError::AttachmentBase64(_))
    ));
    let mut att = signed();
    att.data.jws = None;
    assert!(matches!(
        verify_attachment(&att),
        Err(DidError::AttachmentNotSigned)
    ));
    assert!(matches!(
        verify_attachment(&with_jws(json!("x"))),
        Err(DidError::JwsNotObject)
    ));
    assert!(matches!(
        verify_attachment(&with_jws(json!({"signatures": [1]}))),
        Err(DidError::JwsNotObject)
    ));
    assert!(matches!(
        verify_attachment(&with_jws(json!({"signatures": {}}))),
        Err(DidError::JwsSignaturesNotArray)
    ));
    assert!(matches!(
        verify_attachment(&with_jws(json!({"signatures": []}))),
        Err(DidError::JwsNoSignatures)
    ));

    let good = signed().data.jws.unwrap();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut jws = good.clone();
        f(&mut jws);
        verify_attachment(&with_jws(jws))
    };
    assert!(matches!(
        edit(&|j| {
            j.as_object_mut().unwrap().remove("protected");
        }),
        Err(DidError::JwsMissingField("protected"))
    ));
    assert!(matches!(
        edit(&|j| j["signature"] = json!(5)),
        Err(DidError::JwsMissingField("signature"))
    ));
    assert!(matches!(
        edit(&|j| j["protected"] = "***".into()),
        Err(DidError::JwsBase64 {
            field: "protected",
            ..
        })
    ));
    assert!(matches!(
        edit(&|j| j["signature"] = "***".into()),
        Err(DidError::JwsBase64 {
            field: "signature",
            ..
        })
    ));
    assert!(matches!(
        edit(&|j| j["protected"] = URL_SAFE_NO_PAD.encode("[]").into()),
        Err(DidError::JwsProtectedJson(_))
    ));
    assert!(matches!(
        edit(&|j| j["protected"] = protected(json!({"jwk": {}})).into()),
        Err(DidError::JwsMissingField("alg"))
    ));
    assert!(matches!(
        edit(&|j| j["protected"] = protected(json!({"alg": "ES256"})).into()),
        Err(DidError::JwsUnsupportedAlg(alg)) if alg == "ES256"
    ));
    assert!(matches!(
        edit(&|j| {
            j["protected"] = protected(json!({"alg": "EdDSA"})).into();
            j.as_object_mut().unwrap().remove("header");
        }),
        Err(DidError::JwsNoSignerKey)
    ));
    assert!(matches!(
        edit(&|j| j["protected"] =
            protected(json!({"alg": "EdDSA", "jwk": {"kty": "EC", "crv": "P-256"}})).into()),
        Err(DidError::JwsJwk(KeyDecodeError::UnsupportedJwk))
    ));
    assert!(matches!(
        edit(&|j| j["protected"] = protected(json!({"alg": "EdDSA",
            "jwk": {"kty": "OKP", "crv": "X25519", "x": URL_SAFE_NO_PAD.encode([1u8; 32])}}))
        .into()),
        Err(DidError::JwsJwk(KeyDecodeError::UnsupportedJwk))
    ));
    assert!(matches!(
        edit(&|j| j["header"]["kid"] = "did:key:zbad".into()),
        Err(DidError::JwsKid { .. })
    ));
    assert!(matches!(
        edit(&|j| j["header"]["kid"] = key(2).verkey().to_did_key().into()),
        Err(DidError::JwsKeyMismatch { .. })
    ));
    // A non-did:key kid is only a hint.
    assert!(edit(&|j| j["header"]["kid"] = "did:peer:1zQm#key-1".into()).is_ok());
    assert!(matches!(
        edit(&|j| j["signature"] = URL_SAFE_NO_PAD.encode([0u8; 64]).into()),
        Err(DidError::JwsBadSignature { .. })
    ));
    // Without jwk, two did:key kids must agree.
    assert!(matches!(
        edit(&|j| j["protected"] =
            protected(json!({"alg": "EdDSA", "kid": key(2).verkey().to_did_key()})).into()),
        Err(DidError::JwsKeyMismatch { .. })
    ));
}

// ----- connection~sig -----

#[test]
fn connection_sig_errors() {
    let signer = key(1);
    let good = sign_connection(&json!({"DID": "x"}), &signer);
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut sig = good.clone();
        f(&mut sig);
        verify_connection_sig(&sig)
    };
    assert!(matches!(
        verify_connection_sig(&json!([])),
        Err(DidError::SigNotObject)
    ));
    assert!(matches!(
        edit(&|s| s["@type"] = "https://didcomm.org/signature/1.0/other".into()),
        Err(DidError::SigUnsupportedType(_))
    ));
    assert!(edit(&|s| s["@type"] = didcomm_did::SIGNATURE_TYPE_SOV.into()).is_ok());
    for field in ["@type", "signer", "sig_data", "signature"] {
        let removed = edit(&|s| {
            s.as_object_mut().unwrap().remove(field);
        });
        assert!(
            matches!(removed, Err(DidError::SigMissingField(f)) if f == field),
            "{field}"
        );
    }
    assert!(matches!(
        edit(&|s| s["signer"] = "0OIl".into()),
        Err(DidError::SigSigner(_))
    ));
    assert!(matches!(
        edit(&|s| s["sig_data"] = "***".into()),
        Err(DidError::SigBase64 {
            field: "sig_data",
            ..
        })
    ));
    assert!(matches!(
        edit(&|s| s["signature"] = "***".into()),
        Err(DidError::SigBase64 {
            field: "signature",
            ..
        })
    ));
    assert!(matches!(
        edit(&|s| s["sig_data"] = URL_SAFE_NO_PAD.encode([0u8; 7]).into()),
        Err(DidError::SigDataTooShort(7))
    ));
    assert!(matches!(
        edit(&|s| s["signer"] = key(2).verkey_base58().into()),
        Err(DidError::SigInvalid(_))
    ));
    // Correctly signed bytes that are not JSON after the timestamp.
    let data = b"\0\0\0\0\0\0\0\x01not json";
    let sig = json!({
        "@type": didcomm_did::SIGNATURE_TYPE,
        "signer": signer.verkey_base58(),
        "sig_data": URL_SAFE_NO_PAD.encode(data),
        "signature": URL_SAFE_NO_PAD.encode(signer.sign(data)),
    });
    assert!(matches!(
        verify_connection_sig(&sig),
        Err(DidError::SigConnectionJson(_))
    ));
    // A did:key signer is read too.
    assert!(edit(&|s| s["signer"] = signer.verkey().to_did_key().into()).is_ok());
    let _: VerKey = verify_connection_sig(&good).unwrap().1;
}
