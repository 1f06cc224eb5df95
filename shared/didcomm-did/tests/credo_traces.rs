//! Real messages of credo-ts 0.5.19 (a credo recipient and sender talking to a credo mediator):
//! what credo sends must resolve and verify, and what we create for the same keys and
//! endpoints must be byte for byte what the credo mediator sent.
#![allow(clippy::unwrap_used)]

use didcomm_did::{
    resolve, resolve_attached, verify_attachment, verify_connection_sig, DidCommService, DidDoc,
    OwnDid, PublicKey, ServiceKind, VerificationMethodType,
};
use didcomm_envelope::VerKey;
use didcomm_message::Attachment;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/credo-0.5.19-{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn attachment(message: &Value, field: &str) -> Attachment {
    serde_json::from_value(message[field].clone()).unwrap()
}

fn invitation_key(invitation: &Value) -> VerKey {
    VerKey::parse(
        invitation["services"][0]["recipientKeys"][0]
            .as_str()
            .unwrap(),
    )
    .unwrap()
}

fn vk(text: &str) -> VerKey {
    VerKey::parse(text).unwrap()
}

fn service(
    recipient: &str,
    routing: &[&str],
    endpoint: &str,
    priority: i64,
) -> (Vec<VerKey>, Vec<VerKey>, String, i64) {
    (
        vec![vk(recipient)],
        routing.iter().map(|r| vk(r)).collect(),
        endpoint.to_owned(),
        priority,
    )
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

/// The X25519 key agreement method of a credo document is the X25519 form of its verkey.
fn assert_x25519_is_derived(doc: &DidDoc) {
    let ed = doc.authentication_keys()[0];
    let x = doc
        .key_agreement
        .iter()
        .map(|id| doc.verification_method(id).unwrap().key)
        .next()
        .unwrap();
    assert_eq!(x, PublicKey::X25519(ed.to_x25519_public()));
}

// ----- DID Exchange 1.1 with did:peer:1 (the default) -----

#[test]
fn default_request_did_doc_attach_verifies_and_resolves() {
    let fx = fixture("default");
    let request = &fx["request_to_mediator"];
    let did = request["did"].as_str().unwrap();
    let (bytes, signer) = verify_attachment(&attachment(request, "did_doc~attach")).unwrap();
    // credo signs its request document with the DID's own key.
    assert_eq!(signer, vk("BSvNiZdv9GVrvqZxEoW3KZC2zSjjzeUMJGvtghnsF5oo"));
    assert_eq!(
        signer.to_did_key(),
        request["did_doc~attach"]["data"]["jws"]["header"]["kid"]
    );

    // The hash of did:peer:1 is checked against credo's own JSON.
    let doc = resolve_attached(did, &bytes).unwrap();
    assert_eq!(doc.id, did);
    assert_eq!(doc.authentication_keys(), vec![signer]);
    assert_x25519_is_derived(&doc);
    let vm = doc.verification_method("#key-1").unwrap();
    assert_eq!(vm.id, format!("{did}#key-1"));
    assert_eq!(
        vm.method_type,
        VerificationMethodType::Ed25519VerificationKey2018
    );
    assert_eq!(vm.controller, "#id");

    let services = doc.didcomm_services().unwrap();
    assert_eq!(
        summary(&services),
        vec![service(
            "BSvNiZdv9GVrvqZxEoW3KZC2zSjjzeUMJGvtghnsF5oo",
            &[],
            "didcomm:transport/queue",
            0
        )]
    );
    assert!(services[0].is_queue_endpoint());
    assert_eq!(services[0].id, format!("{did}#inline-0"));

    // The same through the parsed value.
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(resolve(did, Some(&value)).unwrap(), doc);
}

#[test]
fn default_mediator_response_verifies_resolves_and_is_what_we_create() {
    let fx = fixture("default");
    let response = &fx["mediator_response"];
    let did = response["did"].as_str().unwrap();
    let (bytes, signer) = verify_attachment(&attachment(response, "did_doc~attach")).unwrap();
    // A credo mediator signs the did:peer:1 document with the new DID's key, not the
    // invitation key (credo accepts either).
    let verkey = vk("8mZgyzyzeeXfnYWx751C89UfbQpUBK2nn88MWMxrKVi4");
    assert_eq!(signer, verkey);
    assert_ne!(signer, invitation_key(&fx["mediator_invitation"]));

    let doc = resolve_attached(did, &bytes).unwrap();
    assert_x25519_is_derived(&doc);
    assert_eq!(
        summary(&doc.didcomm_services().unwrap()),
        vec![
            service(&verkey.to_base58(), &[], "http://127.0.0.1:3001", 0),
            service(&verkey.to_base58(), &[], "ws://127.0.0.1:3002", 1),
        ]
    );

    let ours = OwnDid::new(verkey, ["http://127.0.0.1:3001", "ws://127.0.0.1:3002"], []).peer1();
    assert_eq!(ours.did, did);
    assert_eq!(ours.doc_json.as_bytes(), &bytes[..]);
}

#[test]
fn default_peer1_with_routing_keys_is_what_we_create() {
    // The credo recipient answering the sender: its DID carries the mediator's routing key.
    let fx = fixture("default");
    let response = &fx["recipient_response"];
    let did = response["did"].as_str().unwrap();
    let (bytes, signer) = verify_attachment(&attachment(response, "did_doc~attach")).unwrap();
    assert_eq!(signer, invitation_key(&fx["recipient_invitation"]));
    let doc = resolve_attached(did, &bytes).unwrap();
    let routing = "did:key:z6MksPJC6j5Aoyajvb8eG1XhdZKwrDy8N2T1Lccm9xUv8sra";
    assert_eq!(
        summary(&doc.didcomm_services().unwrap()),
        vec![service(
            "Et688yviwFUuedMJNR2UdXuiFr6DLuaiCUkKdoDse2mw",
            &[routing],
            "http://127.0.0.1:3001",
            0
        )]
    );
    let ours = OwnDid::new(signer, ["http://127.0.0.1:3001"], [vk(routing)]).peer1();
    assert_eq!(ours.did, did);
    assert_eq!(ours.doc_json.as_bytes(), &bytes[..]);

    let request = &fx["sender_request"];
    let (bytes, _) = verify_attachment(&attachment(request, "did_doc~attach")).unwrap();
    let doc = resolve_attached(request["did"].as_str().unwrap(), &bytes).unwrap();
    assert_eq!(
        doc.didcomm_services().unwrap()[0].endpoint,
        "http://127.0.0.1:3010"
    );
}

#[test]
fn credo_jws_protected_header_is_the_one_we_write() {
    let fx = fixture("default");
    let jws = &fx["request_to_mediator"]["did_doc~attach"]["data"]["jws"];
    let kid = vk(jws["header"]["kid"].as_str().unwrap());
    let x = base64_url(kid.as_bytes());
    let header = format!(r#"{{"alg":"EdDSA","jwk":{{"kty":"OKP","crv":"Ed25519","x":"{x}"}}}}"#);
    assert_eq!(jws["protected"], base64_url(header.as_bytes()));

    let key = didcomm_envelope::KeyPair::generate().unwrap();
    let ours = didcomm_did::sign_attachment("a", Some("application/json"), b"{}", &key);
    let ours = ours.data.jws.unwrap();
    let x = base64_url(key.verkey().as_bytes());
    let header = format!(r#"{{"alg":"EdDSA","jwk":{{"kty":"OKP","crv":"Ed25519","x":"{x}"}}}}"#);
    assert_eq!(ours["protected"], base64_url(header.as_bytes()));
    assert_eq!(ours["header"]["kid"], key.verkey().to_did_key());
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

// ----- did:peer:2 -----

#[test]
fn numalgo2_request_did_resolves_as_credo_numbers_it() {
    let fx = fixture("numalgo2");
    let did = fx["request_to_mediator"]["did"].as_str().unwrap();
    assert!(fx["request_to_mediator"].get("did_doc~attach").is_none());
    let doc = resolve(did, None).unwrap();
    assert_eq!(doc.authentication, vec![format!("{did}#key-1")]);
    assert_eq!(doc.key_agreement, vec![format!("{did}#key-2")]);
    let verkey = vk("did:key:z6MkiaUnYzQjVRrGWdAS6m8TimLjhzKJ7HV6FKeknEnrnMkt");
    assert_eq!(doc.authentication_keys(), vec![verkey]);
    assert_x25519_is_derived(&doc);
    assert_eq!(doc.services.len(), 1);
    assert_eq!(doc.services[0].id, format!("{did}#did-communication-0"));
    assert_eq!(doc.services[0].kind, ServiceKind::DidCommunication);
    let services = doc.didcomm_services().unwrap();
    assert_eq!(
        summary(&services),
        vec![service(
            &verkey.to_base58(),
            &[],
            "didcomm:transport/queue",
            0
        )]
    );
    assert!(services[0].is_queue_endpoint());
}

#[test]
fn numalgo2_mediator_response_rotate_verifies_and_is_what_we_create() {
    let fx = fixture("numalgo2");
    let response = &fx["mediator_response"];
    let did = response["did"].as_str().unwrap();
    let (bytes, signer) = verify_attachment(&attachment(response, "did_rotate~attach")).unwrap();
    assert_eq!(bytes, did.as_bytes());
    assert_eq!(signer, invitation_key(&fx["mediator_invitation"]));

    let doc = resolve(did, None).unwrap();
    let verkey = doc.authentication_keys()[0];
    assert_eq!(
        summary(&doc.didcomm_services().unwrap()),
        vec![
            service(&verkey.to_base58(), &[], "http://127.0.0.1:3001", 0),
            service(&verkey.to_base58(), &[], "ws://127.0.0.1:3002", 1),
        ]
    );
    let ours = OwnDid::new(verkey, ["http://127.0.0.1:3001", "ws://127.0.0.1:3002"], []);
    assert_eq!(ours.peer2(), did);
}

#[test]
fn numalgo2_with_routing_keys_is_what_we_create() {
    let fx = fixture("numalgo2");
    let response = &fx["recipient_response"];
    let did = response["did"].as_str().unwrap();
    let (bytes, signer) = verify_attachment(&attachment(response, "did_rotate~attach")).unwrap();
    assert_eq!(bytes, did.as_bytes());
    assert_eq!(signer, invitation_key(&fx["recipient_invitation"]));
    let routing = "did:key:z6MknXvcLCpi194cWYSuaxcDigSKRyg3XCr8rL6SWaQ9iFp4";
    let doc = resolve(did, None).unwrap();
    assert_eq!(
        summary(&doc.didcomm_services().unwrap()),
        vec![service(
            &signer.to_base58(),
            &[routing],
            "http://127.0.0.1:3001",
            0
        )]
    );
    assert_eq!(
        OwnDid::new(signer, ["http://127.0.0.1:3001"], [vk(routing)]).peer2(),
        did
    );
    let sender = fx["sender_request"]["did"].as_str().unwrap();
    assert_eq!(
        resolve(sender, None).unwrap().didcomm_services().unwrap()[0].endpoint,
        "http://127.0.0.1:3010"
    );
}

// ----- did:peer:4 -----

#[test]
fn numalgo4_request_long_form_resolves() {
    let fx = fixture("numalgo4");
    let did = fx["request_to_mediator"]["did"].as_str().unwrap();
    let doc = resolve(did, None).unwrap();
    let (short, _) = did.rsplit_once(':').unwrap();
    assert_eq!(doc.id, did);
    assert_eq!(doc.also_known_as, vec![short.to_owned()]);
    // The encoded document has no controllers; they default to the DID.
    assert_eq!(doc.verification_methods[0].controller, did);
    assert_x25519_is_derived(&doc);
    let services = doc.didcomm_services().unwrap();
    assert_eq!(
        summary(&services),
        vec![service(
            "6rgKJ5MygviFBqPvvaUQ4KPS9w8ftBbGA4Z7VgbBzkLo",
            &[],
            "didcomm:transport/queue",
            0
        )]
    );
    // References through the short form point at the same keys.
    assert_eq!(
        doc.verification_method(&format!("{short}#key-1"))
            .unwrap()
            .id,
        format!("{did}#key-1")
    );
    // The short form resolves with the long form's document attached.
    let attached = serde_json::json!({ "id": did });
    assert_eq!(resolve(short, Some(&attached)).unwrap(), doc);
}

#[test]
fn numalgo4_mediator_response_rotate_verifies_and_is_what_we_create() {
    let fx = fixture("numalgo4");
    let response = &fx["mediator_response"];
    let did = response["did"].as_str().unwrap();
    let (bytes, signer) = verify_attachment(&attachment(response, "did_rotate~attach")).unwrap();
    assert_eq!(bytes, did.as_bytes());
    assert_eq!(signer, invitation_key(&fx["mediator_invitation"]));
    let doc = resolve(did, None).unwrap();
    let verkey = doc.authentication_keys()[0];
    assert_eq!(verkey, vk("nxkEvdBjkuieiftQNu6kpH15vP6ArbieAeg31JUNUf9"));
    assert_eq!(
        summary(&doc.didcomm_services().unwrap()),
        vec![
            service(&verkey.to_base58(), &[], "http://127.0.0.1:3001", 0),
            service(&verkey.to_base58(), &[], "ws://127.0.0.1:3002", 1),
        ]
    );
    let ours = OwnDid::new(verkey, ["http://127.0.0.1:3001", "ws://127.0.0.1:3002"], []).peer4();
    assert_eq!(ours.long, did);
    assert_eq!(ours.short, did.rsplit_once(':').unwrap().0);
}

#[test]
fn numalgo4_with_routing_keys_is_what_we_create() {
    let fx = fixture("numalgo4");
    let response = &fx["recipient_response"];
    let did = response["did"].as_str().unwrap();
    let (_, signer) = verify_attachment(&attachment(response, "did_rotate~attach")).unwrap();
    assert_eq!(signer, invitation_key(&fx["recipient_invitation"]));
    let doc = resolve(did, None).unwrap();
    let verkey = doc.authentication_keys()[0];
    let routing = "did:key:z6MkwTPxzGV8p4SB8Q8HmXWZNi3hDoP5xftdWyULhUxChxLw";
    assert_eq!(
        summary(&doc.didcomm_services().unwrap()),
        vec![service(
            &verkey.to_base58(),
            &[routing],
            "http://127.0.0.1:3001",
            0
        )]
    );
    let ours = OwnDid::new(verkey, ["http://127.0.0.1:3001"], [vk(routing)]).peer4();
    assert_eq!(ours.long, did);
    resolve(fx["sender_request"]["did"].as_str().unwrap(), None).unwrap();
}

// ----- Connections 1.0 -----

#[test]
fn connections_request_legacy_diddoc_resolves() {
    let fx = fixture("connections");
    let connection = &fx["request_to_mediator"]["connection"];
    let did = connection["DID"].as_str().unwrap();
    let doc = resolve(did, Some(&connection["DIDDoc"])).unwrap();
    assert_eq!(doc.id, did);
    assert_eq!(
        doc.authentication_keys(),
        vec![vk("47xjBGMwJhbcqcyi2JoWStFNpq3zhDYS9W9Wtachf7B8")]
    );
    assert_eq!(doc.services[0].kind, ServiceKind::IndyAgent);
    let services = doc.didcomm_services().unwrap();
    assert_eq!(
        summary(&services),
        vec![service(
            "47xjBGMwJhbcqcyi2JoWStFNpq3zhDYS9W9Wtachf7B8",
            &[],
            "didcomm:transport/queue",
            0
        )]
    );
    assert!(services[0].is_queue_endpoint());
}

#[test]
fn connections_mediator_response_sig_verifies_and_is_what_we_create() {
    let fx = fixture("connections");
    let (connection, signer) =
        verify_connection_sig(&fx["mediator_response"]["connection~sig"]).unwrap();
    assert_eq!(signer, invitation_key(&fx["mediator_invitation"]));
    let did = connection["DID"].as_str().unwrap();
    let doc = resolve(did, Some(&connection["DIDDoc"])).unwrap();
    let verkey = vk("qRYqtsnWAoGQ8N3dp8d8jLFTYfss7mzeEQW8tipyEs4");
    assert_eq!(
        summary(&doc.didcomm_services().unwrap()),
        vec![
            service(&verkey.to_base58(), &[], "http://127.0.0.1:3001", 0),
            service(&verkey.to_base58(), &[], "ws://127.0.0.1:3002", 1),
        ]
    );
    let ours =
        OwnDid::new(verkey, ["http://127.0.0.1:3001", "ws://127.0.0.1:3002"], []).unqualified();
    assert_eq!(ours.did, did);
    assert_eq!(ours.doc, connection["DIDDoc"]);
}

#[test]
fn connections_with_routing_keys_is_what_we_create() {
    let fx = fixture("connections");
    let (connection, signer) =
        verify_connection_sig(&fx["recipient_response"]["connection~sig"]).unwrap();
    assert_eq!(signer, invitation_key(&fx["recipient_invitation"]));
    let doc = resolve(
        connection["DID"].as_str().unwrap(),
        Some(&connection["DIDDoc"]),
    )
    .unwrap();
    let routing = "B6BeS3vZHEECxUJyQHWrjpHP2VY6r39TTVBjzKgdnjnR";
    assert_eq!(
        summary(&doc.didcomm_services().unwrap()),
        vec![service(
            "FZ3SpK1wfgvXe5Cd6GbH9HZE7KLyTPygsthAR65dbwxN",
            &[routing],
            "http://127.0.0.1:3001",
            0
        )]
    );
    let ours = OwnDid::new(
        vk("FZ3SpK1wfgvXe5Cd6GbH9HZE7KLyTPygsthAR65dbwxN"),
        ["http://127.0.0.1:3001"],
        [vk(routing)],
    )
    .unqualified();
    assert_eq!(ours.doc, connection["DIDDoc"]);
    let sender = &fx["sender_request"]["connection"];
    resolve(sender["DID"].as_str().unwrap(), Some(&sender["DIDDoc"])).unwrap();
}

#[test]
fn tampered_trace_signatures_fail() {
    let fx = fixture("connections");
    let mut sig = fx["mediator_response"]["connection~sig"].clone();
    sig["signer"] = "47xjBGMwJhbcqcyi2JoWStFNpq3zhDYS9W9Wtachf7B8".into();
    assert!(matches!(
        verify_connection_sig(&sig),
        Err(didcomm_did::DidError::SigInvalid(_))
    ));

    let fx = fixture("numalgo2");
    let mut att = attachment(&fx["mediator_response"], "did_rotate~attach");
    att.data.base64 = Some(base64_url(b"did:peer:2.Vz6Mkother"));
    assert!(matches!(
        verify_attachment(&att),
        Err(didcomm_did::DidError::JwsBadSignature { .. })
    ));

    // A did:peer:1 document changed after hashing no longer matches its DID.
    let fx = fixture("default");
    let request = &fx["request_to_mediator"];
    let (bytes, _) = verify_attachment(&attachment(request, "did_doc~attach")).unwrap();
    let changed = String::from_utf8(bytes)
        .unwrap()
        .replace("didcomm:transport/queue", "https://evil.example");
    assert!(matches!(
        resolve_attached(request["did"].as_str().unwrap(), changed.as_bytes()),
        Err(didcomm_did::DidError::Peer1HashMismatch { .. })
    ));
}
