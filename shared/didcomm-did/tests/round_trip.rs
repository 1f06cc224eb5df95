//! What we create resolves back to the same keys and services; what we sign verifies.
#![allow(clippy::unwrap_used)]

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use didcomm_did::{
    resolve, resolve_attached, sign_attachment, sign_attachment_multi, sign_connection,
    sign_connection_at, verify_attachment, verify_attachment_signers, verify_connection_sig,
    DidCommService, OwnDid, PublicKey, ServiceKind,
};
use didcomm_envelope::{KeyPair, VerKey};
use serde_json::{json, Value};

fn key(seed: u8) -> KeyPair {
    KeyPair::from_seed(&[seed; 32]).unwrap()
}

fn cases() -> Vec<OwnDid> {
    let vk = *key(1).verkey();
    let r1 = *key(2).verkey();
    let r2 = *key(3).verkey();
    vec![
        OwnDid::new(vk, ["http://127.0.0.1:3001", "ws://127.0.0.1:3001"], []),
        OwnDid::new(vk, ["https://mediator.example/didcomm"], [r1]),
        OwnDid::new(vk, ["http://a", "https://b/x", "wss://c"], [r1, r2]),
        OwnDid::new(vk, Vec::<String>::new(), []),
        // Characters whose base64url would hold '-' or '_' (refused by credo's did:peer:2
        // regex) and non-ASCII.
        OwnDid::new(
            vk,
            ["https://m.example/d?a=>~&b=é", "didcomm:transport/queue"],
            [r2],
        ),
    ]
}

fn expected(own: &OwnDid) -> Vec<(Vec<VerKey>, Vec<VerKey>, String, i64)> {
    own.endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| {
            (
                vec![own.verkey],
                own.routing_keys.clone(),
                e.clone(),
                i64::try_from(i).unwrap(),
            )
        })
        .collect()
}

fn summary(services: &[DidCommService]) -> Vec<(Vec<VerKey>, Vec<VerKey>, String, i64)> {
    services
        .iter()
        .map(|s| {
            (
                s.recipient_keys.clone(),
                s.routing_keys.clone(),
                s.endpoint.clone(),
                s.priority,
            )
        })
        .collect()
}

/// credo-ts 0.5 `isValidPeerDid` for numalgo 2: key elements, then service elements of
/// `[0-9a-zA-Z=]*`.
fn credo_accepts_peer2(did: &str) -> bool {
    let Some(body) = did.strip_prefix("did:peer:2.") else {
        return false;
    };
    let mut seen_service = false;
    for element in body.split('.') {
        let (purpose, rest) = element.split_at(1.min(element.len()));
        match purpose {
            "A" | "E" | "V" | "I" | "D" if !seen_service => {
                let Some(b58) = rest.strip_prefix('z') else {
                    return false;
                };
                if !(5..=200).contains(&b58.len()) || bs58::decode(b58).into_vec().is_err() {
                    return false;
                }
            }
            "S" => {
                seen_service = true;
                if !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'=') {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

#[test]
fn peer1_round_trips() {
    for own in cases() {
        let created = own.peer1();
        assert!(created.did.starts_with("did:peer:1zQm"), "{}", created.did);
        let doc = resolve_attached(&created.did, created.doc_json.as_bytes()).unwrap();
        assert_eq!(doc, resolve(&created.did, Some(&created.doc)).unwrap());
        assert_eq!(doc.authentication_keys(), vec![own.verkey]);
        assert_eq!(
            doc.verification_method("#key-2").unwrap().key,
            PublicKey::X25519(own.verkey.to_x25519_public())
        );
        assert_eq!(summary(&doc.didcomm_services().unwrap()), expected(&own));
    }
}

#[test]
fn peer2_round_trips_and_passes_credos_regex() {
    for own in cases() {
        let did = own.peer2();
        assert!(credo_accepts_peer2(&did), "{did}");
        let doc = resolve(&did, None).unwrap();
        assert_eq!(doc.authentication_keys(), vec![own.verkey]);
        assert_eq!(summary(&doc.didcomm_services().unwrap()), expected(&own));
    }
}

#[test]
fn peer4_round_trips_in_both_forms() {
    for own in cases() {
        let created = own.peer4();
        assert!(created.long.starts_with(&format!("{}:z", created.short)));
        let doc = resolve(&created.long, None).unwrap();
        assert_eq!(doc.also_known_as, vec![created.short.clone()]);
        assert_eq!(doc.authentication_keys(), vec![own.verkey]);
        assert_eq!(summary(&doc.didcomm_services().unwrap()), expected(&own));
        // The short form, with a document naming the long form (hash checked) or itself.
        let by_long = resolve(&created.short, Some(&json!({ "id": created.long }))).unwrap();
        assert_eq!(by_long, doc);
        let short_doc = json!({
            "id": created.short,
            "verificationMethod": [{"id": "#k", "type": "Ed25519VerificationKey2018",
                "publicKeyBase58": own.verkey.to_base58()}],
        });
        let by_short = resolve(&created.short, Some(&short_doc)).unwrap();
        assert_eq!(by_short.id, created.short);
    }
}

#[test]
fn unqualified_round_trips_in_both_styles() {
    for own in cases() {
        let created = own.unqualified();
        assert_eq!(
            bs58::decode(&created.did).into_vec().unwrap(),
            own.verkey.as_bytes()[..16]
        );
        let sov = format!("did:sov:{}", created.did);
        for (did, doc) in [
            (&created.did, &created.doc),
            (&created.did, &created.sov_doc),
            (&sov, &created.sov_doc),
            (&sov, &created.doc),
        ] {
            let resolved = resolve(did, Some(doc)).unwrap();
            assert_eq!(resolved.authentication_keys(), vec![own.verkey]);
            assert!(resolved
                .services
                .iter()
                .all(|s| s.kind == ServiceKind::IndyAgent));
            assert_eq!(
                summary(&resolved.didcomm_services().unwrap()),
                expected(&own)
            );
        }
    }
}

#[test]
fn signed_attachments_round_trip_in_both_jws_forms() {
    let signer = key(7);
    let did = cases()[0].peer2();
    let rotate = sign_attachment("r", None, did.as_bytes(), &signer);
    assert!(rotate.mime_type.is_none());
    assert!(rotate
        .data
        .jws
        .as_ref()
        .unwrap()
        .get("signatures")
        .is_none());
    let (bytes, who) = verify_attachment(&rotate).unwrap();
    assert_eq!(bytes, did.as_bytes());
    assert_eq!(&who, signer.verkey());

    // data.base64 is written in the standard alphabet with padding (as credo does for
    // documents); base64url in the attachment verifies the same.
    let data = [0xfbu8, 0xff, 0xfe, 1, 2];
    let mut att = sign_attachment("d", Some("application/json"), &data, &signer);
    assert_eq!(att.data.base64.as_deref(), Some("+//+AQI="));
    assert_eq!(att.mime_type.as_deref(), Some("application/json"));
    verify_attachment(&att).unwrap();
    att.data.base64 = Some(URL_SAFE_NO_PAD.encode(data));
    assert_eq!(verify_attachment(&att).unwrap().0, data);

    let second = key(8);
    let both = sign_attachment_multi("d", Some("application/json"), b"{}", &[&signer, &second]);
    let jws = both.data.jws.as_ref().unwrap();
    assert_eq!(jws["signatures"].as_array().unwrap().len(), 2);
    let (_, signers) = verify_attachment_signers(&both).unwrap();
    assert_eq!(signers, vec![*signer.verkey(), *second.verkey()]);
    assert_eq!(verify_attachment(&both).unwrap().1, *signer.verkey());

    let unsigned = sign_attachment_multi("d", None, b"x", &[]);
    assert!(unsigned.data.jws.is_none());
}

#[test]
fn kid_only_and_acapy_jwk_kid_forms_verify() {
    let signer = key(9);
    let payload = URL_SAFE_NO_PAD.encode(b"hello");
    let x = URL_SAFE_NO_PAD.encode(signer.verkey().as_bytes());
    let kid = signer.verkey().to_did_key();
    for header in [
        json!({"alg": "EdDSA", "kid": kid}),
        // ACA-Py: the did:key also inside the jwk.
        json!({"alg": "EdDSA", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid}}),
    ] {
        let protected = URL_SAFE_NO_PAD.encode(header.to_string());
        let sig = signer.sign(format!("{protected}.{payload}").as_bytes());
        let att: didcomm_message::Attachment = serde_json::from_value(json!({
            "@id": "a",
            "data": {"base64": "aGVsbG8=", "jws": {
                "protected": protected, "signature": URL_SAFE_NO_PAD.encode(sig)}}
        }))
        .unwrap();
        assert_eq!(verify_attachment(&att).unwrap().1, *signer.verkey());
    }
}

#[test]
fn connection_signature_round_trips() {
    let invitation = key(11);
    let own = OwnDid::new(*key(12).verkey(), ["http://127.0.0.1:3001"], []);
    let created = own.unqualified();
    let connection = json!({ "DID": created.did, "DIDDoc": created.doc });
    let sig = sign_connection(&connection, &invitation);
    assert_eq!(
        sig["@type"],
        "https://didcomm.org/signature/1.0/ed25519Sha512_single"
    );
    assert_eq!(sig["signer"], invitation.verkey_base58());
    let (back, signer) = verify_connection_sig(&sig).unwrap();
    assert_eq!(back, connection);
    assert_eq!(&signer, invitation.verkey());
    let doc = resolve(back["DID"].as_str().unwrap(), Some(&back["DIDDoc"])).unwrap();
    assert_eq!(summary(&doc.didcomm_services().unwrap()), expected(&own));

    let at = sign_connection_at(&connection, &invitation, 1_795_339_949);
    let data = URL_SAFE_NO_PAD
        .decode(at["sig_data"].as_str().unwrap())
        .unwrap();
    assert_eq!(data[..8], 1_795_339_949u64.to_be_bytes());
    assert_eq!(verify_connection_sig(&at).unwrap().0, connection);
}

#[test]
fn did_key_and_peer0_resolve_to_the_key() {
    let vk = *key(13).verkey();
    let did = vk.to_did_key();
    let doc = resolve(&did, None).unwrap();
    assert_eq!(doc.authentication_keys(), vec![vk]);
    assert_eq!(doc.authentication, vec![vk.to_did_key_url()]);
    assert!(doc.didcomm_services().unwrap().is_empty());
    let peer0 = format!("did:peer:0{}", &did["did:key:".len()..]);
    assert_eq!(
        resolve(&peer0, None).unwrap().authentication_keys(),
        vec![vk]
    );
    // An X25519 did:key is a key agreement key only.
    let x = resolve(&format!("did:key:{}", x25519_fingerprint(&vk)), None).unwrap();
    assert!(x.authentication.is_empty());
    assert_eq!(x.key_agreement.len(), 1);
}

fn x25519_fingerprint(vk: &VerKey) -> String {
    let mut bytes = vec![0xec, 0x01];
    bytes.extend_from_slice(&vk.to_x25519_public());
    format!("z{}", bs58::encode(bytes).into_string())
}

#[test]
fn routing_keys_of_self_resolving_dids_resolve() {
    let mediator = OwnDid::new(*key(14).verkey(), ["http://m"], []);
    let mediator_did = mediator.peer2();
    let doc: Value = json!({
        "id": "did:peer:1zQmX",
        "authentication": [{"id": "#key-1", "type": "Ed25519VerificationKey2018",
            "publicKeyBase58": key(15).verkey().to_base58()}],
        "service": [{"id": "#inline-0", "type": "did-communication", "serviceEndpoint": "http://x",
            "recipientKeys": ["#key-1"],
            "routingKeys": [format!("{mediator_did}#key-1"), format!("{mediator_did}#key-2")]}],
    });
    let services = resolve("did:peer:1zQmX", Some(&doc))
        .unwrap()
        .didcomm_services()
        .unwrap();
    // `#key-2` is the mediator's X25519 key; it maps back to the Ed25519 key it came from.
    assert_eq!(
        services[0].routing_keys,
        vec![*key(14).verkey(), *key(14).verkey()]
    );
}
