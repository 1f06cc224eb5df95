//! The mediator's own DIDs for a connection, encoded exactly as credo-ts 0.5 encodes its own
//! (same member order, key ids, service ids and abbreviations), so that what credo accepts
//! from a credo mediator it accepts from us:
//!
//! - did:peer:1 with its document (DID Exchange, `did_doc~attach`);
//! - did:peer:2 and did:peer:4 (DID Exchange with `did_rotate~attach`);
//! - an unqualified DID with its legacy DIDDoc (Connections 1.0, DID Exchange 1.0).
//!
//! Every document has one service per endpoint (`priority` = position) whose recipient key is
//! the connection verkey (`#key-1`, Ed25519VerificationKey2018), and lists the X25519 form of
//! that key for key agreement (`#key-2`, X25519KeyAgreementKey2019), as credo does.

use didcomm_envelope::VerKey;
use serde::Serialize;
use serde_json::{json, Value};

use crate::encoding::{
    b64url, ed25519_multikey, encode_multibase, peer2_json_string, sha256_multihash, write_varint,
    x25519_multikey, MULTICODEC_JSON,
};

/// What goes into a DID of ours: the connection key, where we listen, and the routing keys of
/// our own mediators (none for the mediator itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnDid {
    /// The connection's Ed25519 key.
    pub verkey: VerKey,
    /// Endpoints, most preferred first (e.g. `http://127.0.0.1:3001`, `ws://127.0.0.1:3001`).
    pub endpoints: Vec<String>,
    /// Routing keys, in RFC 0067 order.
    pub routing_keys: Vec<VerKey>,
}

/// A did:peer:1 and its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDid1 {
    /// `did:peer:1zQm…`.
    pub did: String,
    /// The document as JSON text: the bytes to attach (and sign) in `did_doc~attach`, and
    /// the text the DID is the hash of (minus `id`).
    pub doc_json: String,
    /// The same document parsed.
    pub doc: Value,
}

/// The two forms of a did:peer:4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDid4 {
    /// `did:peer:4<hash>:<encoded doc>`: what to send in the response.
    pub long: String,
    /// `did:peer:4<hash>`: how the peer will refer to it afterwards.
    pub short: String,
}

/// An unqualified DID with its legacy DIDDoc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnqualifiedDid {
    /// base58 of the first 16 bytes of the verkey.
    pub did: String,
    /// The DIDDoc as credo writes it in Connections 1.0 (ids `<did>#1`,
    /// `<did>#IndyAgentService-1`): for `connection.DIDDoc`.
    pub doc: Value,
    /// The DIDDoc as ACA-Py writes it (ids qualified `did:sov:<did>…`): for a DID Exchange 1.0
    /// `did_doc~attach`, since ACA-Py checks that the document id is `did:sov:<did>`.
    pub sov_doc: Value,
}

impl OwnDid {
    /// Collects the parts of a DID.
    pub fn new<E: Into<String>>(
        verkey: VerKey,
        endpoints: impl IntoIterator<Item = E>,
        routing_keys: impl IntoIterator<Item = VerKey>,
    ) -> Self {
        Self {
            verkey,
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            routing_keys: routing_keys.into_iter().collect(),
        }
    }

    fn routing_key_urls(&self) -> Vec<String> {
        self.routing_keys
            .iter()
            .map(VerKey::to_did_key_url)
            .collect()
    }

    fn credo_doc(&self, id: Option<&str>, with_controller: bool) -> String {
        let controller = with_controller.then_some("#id");
        let doc = CredoDoc {
            context: ["https://w3id.org/did/v1"],
            id,
            service: self
                .endpoints
                .iter()
                .enumerate()
                .map(|(priority, endpoint)| CredoService {
                    id: format!("#inline-{priority}"),
                    service_endpoint: endpoint,
                    kind: "did-communication",
                    priority,
                    recipient_keys: ["#key-1"],
                    routing_keys: self.routing_key_urls(),
                })
                .collect(),
            authentication: [CredoVm {
                id: "#key-1",
                kind: "Ed25519VerificationKey2018",
                controller,
                public_key_base58: self.verkey.to_base58(),
            }],
            key_agreement: [CredoVm {
                id: "#key-2",
                kind: "X25519KeyAgreementKey2019",
                controller,
                public_key_base58: bs58::encode(self.verkey.to_x25519_public()).into_string(),
            }],
        };
        // Serialising strings, numbers and arrays of them cannot fail.
        serde_json::to_string(&doc).unwrap_or_default()
    }

    /// A did:peer:1: the hash of the document without `id`, then the document with it.
    pub fn peer1(&self) -> PeerDid1 {
        let genesis = self.credo_doc(None, true);
        let did = format!("did:peer:1{}", sha256_multihash(genesis.as_bytes()));
        let doc_json = self.credo_doc(Some(&did), true);
        let doc = serde_json::from_str(&doc_json).unwrap_or(Value::Null);
        PeerDid1 { did, doc_json, doc }
    }

    /// A did:peer:2: `.V` the verkey, `.E` its X25519 form, one `.S` per endpoint with credo's
    /// abbreviations (`s`, `t`, `r`; `did-communication` is not abbreviated).
    pub fn peer2(&self) -> String {
        let mut did = format!(
            "did:peer:2.V{}.E{}",
            ed25519_multikey(&self.verkey),
            x25519_multikey(&self.verkey.to_x25519_public())
        );
        let routing = self.routing_key_urls();
        for (priority, endpoint) in self.endpoints.iter().enumerate() {
            let mut service = String::from("{\"s\":");
            peer2_json_string(endpoint, &mut service);
            service.push_str(&format!(
                ",\"t\":\"did-communication\",\"priority\":{priority},\"recipientKeys\":[\"#key-1\"],\"r\":["
            ));
            for (i, key) in routing.iter().enumerate() {
                if i > 0 {
                    service.push(',');
                }
                peer2_json_string(key, &mut service);
            }
            service.push_str("]}");
            did.push_str(".S");
            did.push_str(&b64url(service.as_bytes()));
        }
        did
    }

    /// A did:peer:4: the document without `id` and controllers, JSON-multicodec tagged and
    /// base58btc encoded, prefixed with its hash.
    pub fn peer4(&self) -> PeerDid4 {
        let doc = self.credo_doc(None, false);
        let mut tagged = Vec::with_capacity(doc.len() + 2);
        write_varint(MULTICODEC_JSON, &mut tagged);
        tagged.extend_from_slice(doc.as_bytes());
        let encoded = encode_multibase(&tagged);
        let short = format!("did:peer:4{}", sha256_multihash(encoded.as_bytes()));
        let long = format!("{short}:{encoded}");
        PeerDid4 { long, short }
    }

    /// An unqualified DID (base58 of the first 16 bytes of the verkey) with its legacy DIDDoc.
    pub fn unqualified(&self) -> UnqualifiedDid {
        let did = bs58::encode(&self.verkey.as_bytes()[..16]).into_string();
        let verkey = self.verkey.to_base58();
        let routing: Vec<String> = self.routing_keys.iter().map(VerKey::to_base58).collect();
        let legacy = |id: &str, key_id: String, service_id: &dyn Fn(usize) -> String| {
            json!({
                "@context": "https://w3id.org/did/v1",
                "id": id,
                "publicKey": [{
                    "id": key_id,
                    "controller": id,
                    "type": "Ed25519VerificationKey2018",
                    "publicKeyBase58": verkey,
                }],
                "service": self.endpoints.iter().enumerate().map(|(i, endpoint)| json!({
                    "id": service_id(i),
                    "serviceEndpoint": endpoint,
                    "type": "IndyAgent",
                    "priority": i,
                    "recipientKeys": [verkey],
                    "routingKeys": routing,
                })).collect::<Vec<_>>(),
                "authentication": [{
                    "publicKey": key_id,
                    "type": "Ed25519SignatureAuthentication2018",
                }],
            })
        };
        let doc = legacy(&did, format!("{did}#1"), &|i| {
            format!("{did}#IndyAgentService-{}", i + 1)
        });
        let sov = format!("did:sov:{did}");
        let sov_doc = legacy(&sov, format!("{sov}#1"), &|i| match i {
            0 => format!("{sov};indy"),
            n => format!("{sov};indy{n}"),
        });
        UnqualifiedDid { did, doc, sov_doc }
    }
}

/// A document in credo's member order (`@context`, `id`, `service`, `authentication`,
/// `keyAgreement`).
#[derive(Serialize)]
struct CredoDoc<'a> {
    #[serde(rename = "@context")]
    context: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    service: Vec<CredoService<'a>>,
    authentication: [CredoVm; 1],
    #[serde(rename = "keyAgreement")]
    key_agreement: [CredoVm; 1],
}

#[derive(Serialize)]
struct CredoService<'a> {
    id: String,
    #[serde(rename = "serviceEndpoint")]
    service_endpoint: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    priority: usize,
    #[serde(rename = "recipientKeys")]
    recipient_keys: [&'static str; 1],
    #[serde(rename = "routingKeys")]
    routing_keys: Vec<String>,
}

#[derive(Serialize)]
struct CredoVm {
    id: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    controller: Option<&'static str>,
    #[serde(rename = "publicKeyBase58")]
    public_key_base58: String,
}
