//! The DID document model, as much of it as DIDComm v1 needs, and the DIDComm services of a
//! document with every key reference resolved.
//!
//! One parser reads both document shapes peers send:
//! - W3C DID documents (DID Exchange, did:peer): `verificationMethod`, `authentication` and
//!   `keyAgreement` as references or embedded methods, services of type `did-communication`
//!   and `DIDCommMessaging`;
//! - the legacy Aries DIDDoc of Connections 1.0 and DID Exchange 1.0 with unqualified DIDs:
//!   `publicKey`, `authentication` entries `{type, publicKey: <ref>}`, services of type
//!   `IndyAgent` with base58 verkeys.
//!
//! Verification method ids and references are stored absolute (`<doc id>#<fragment>`), so that
//! `#key-1`, `<did>#key-1` and, for legacy documents, `did:sov:<did>#1` and `<did>#1` are the
//! same key.

use std::cell::OnceCell;

use didcomm_envelope::VerKey;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    encoding::{b64_decode, decode_multibase, decode_multikey, read_varint, x25519_bytes},
    encoding::{MULTICODEC_ED25519, MULTICODEC_X25519},
    error::{DidError, KeyDecodeError},
};

/// The endpoint credo-ts writes when it has no endpoint of its own: "send me messages on the
/// return route of my connection, or queue them for pickup".
pub const QUEUE_ENDPOINT: &str = "didcomm:transport/queue";

/// A public key of a verification method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicKey {
    /// An Ed25519 signing key (a DIDComm v1 verkey).
    Ed25519(VerKey),
    /// An X25519 key agreement key.
    X25519([u8; 32]),
    /// A key type this crate does not use (secp256k1, P-256, BLS…): carried so that the
    /// document still parses, refused where a DIDComm key is needed.
    Unsupported,
}

/// The `type` of a verification method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerificationMethodType {
    /// `Ed25519VerificationKey2018` (`publicKeyBase58`).
    Ed25519VerificationKey2018,
    /// `Ed25519VerificationKey2020` (`publicKeyMultibase`).
    Ed25519VerificationKey2020,
    /// `Multikey` (`publicKeyMultibase` with multicodec).
    Multikey,
    /// `X25519KeyAgreementKey2019` (`publicKeyBase58`).
    X25519KeyAgreementKey2019,
    /// `X25519KeyAgreementKey2020` (`publicKeyMultibase`).
    X25519KeyAgreementKey2020,
    /// `JsonWebKey2020` (`publicKeyJwk`).
    JsonWebKey2020,
    /// Any other type, as written.
    Other(String),
}

impl VerificationMethodType {
    fn parse(text: &str) -> Self {
        match text {
            "Ed25519VerificationKey2018" => Self::Ed25519VerificationKey2018,
            "Ed25519VerificationKey2020" => Self::Ed25519VerificationKey2020,
            "Multikey" => Self::Multikey,
            "X25519KeyAgreementKey2019" => Self::X25519KeyAgreementKey2019,
            "X25519KeyAgreementKey2020" => Self::X25519KeyAgreementKey2020,
            "JsonWebKey2020" => Self::JsonWebKey2020,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// A verification method (or a legacy `publicKey` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationMethod {
    /// Absolute id (`<doc id>#<fragment>` for the document's own methods).
    pub id: String,
    /// The type.
    pub method_type: VerificationMethodType,
    /// The controller as written (credo writes `#id`), or the document id when absent.
    pub controller: String,
    /// The key.
    pub key: PublicKey,
}

/// The kind of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// `did-communication` (DIDComm v1, RFC 0067).
    DidCommunication,
    /// `IndyAgent` (legacy Aries DIDDoc).
    IndyAgent,
    /// `DIDCommMessaging` (DIDComm v2), or its older name `DIDComm`.
    DidCommMessaging,
    /// Any other type, as written.
    Other(String),
}

/// A service entry. A `DIDCommMessaging` service with several endpoints gives one entry per
/// endpoint, all with the service's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Absolute id, or the id as written when it is not a fragment.
    pub id: String,
    /// The type.
    pub kind: ServiceKind,
    /// The endpoint URI (kept as written, including [`QUEUE_ENDPOINT`]).
    pub endpoint: String,
    /// Recipient keys as written: references, did:key or base58.
    pub recipient_keys: Vec<String>,
    /// Routing keys as written: did:key, references or base58.
    pub routing_keys: Vec<String>,
    /// Accepted media types / profiles.
    pub accept: Vec<String>,
    /// Priority (lower first); 0 when absent.
    pub priority: i64,
}

/// A parsed DID document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DidDoc {
    /// The document id (the DID).
    pub id: String,
    /// Other DIDs of the same subject (did:peer:4 lists its short form here).
    pub also_known_as: Vec<String>,
    /// All verification methods, listed or embedded in a relationship.
    pub verification_methods: Vec<VerificationMethod>,
    /// Absolute ids of the authentication methods.
    pub authentication: Vec<String>,
    /// Absolute ids of the key agreement methods.
    pub key_agreement: Vec<String>,
    /// The services.
    pub services: Vec<Service>,
}

/// A DIDComm v1 service with its keys resolved: where to send, to whom, through which
/// mediators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DidCommService {
    /// The service id (for logs).
    pub id: String,
    /// The keys to encrypt to.
    pub recipient_keys: Vec<VerKey>,
    /// The mediators' keys, outermost last (RFC 0067 order).
    pub routing_keys: Vec<VerKey>,
    /// The endpoint URI; [`QUEUE_ENDPOINT`] means "no endpoint".
    pub endpoint: String,
    /// Priority (lower first).
    pub priority: i64,
    /// `accept` of the service (empty when not given).
    pub accept: Vec<String>,
}

impl DidCommService {
    /// Whether the endpoint is credo's `didcomm:transport/queue`: the peer has no endpoint and
    /// receives on the return route or by pickup.
    pub fn is_queue_endpoint(&self) -> bool {
        self.endpoint == QUEUE_ENDPOINT
    }
}

const DOC: &str = "DID document";
const VM: &str = "verification method";
const SERVICE: &str = "service";

/// Relationships whose embedded methods are collected (references in them are not needed).
const OTHER_RELATIONSHIPS: [&str; 3] = [
    "assertionMethod",
    "capabilityInvocation",
    "capabilityDelegation",
];

impl DidDoc {
    /// A document with only an id, to be filled by the resolvers that build documents.
    pub(crate) fn empty(id: &str) -> Self {
        DidDoc {
            id: id.to_owned(),
            also_known_as: Vec::new(),
            verification_methods: Vec::new(),
            authentication: Vec::new(),
            key_agreement: Vec::new(),
            services: Vec::new(),
        }
    }

    /// Parses a DID document (W3C or legacy Aries DIDDoc) from JSON.
    pub fn from_json(value: &Value) -> Result<Self, DidError> {
        let obj = value.as_object().ok_or(DidError::DocumentNotObject)?;
        let id = str_field(obj, DOC, "id")?.ok_or(DidError::MissingField {
            context: DOC,
            field: "id",
        })?;
        let also_known_as = str_array(obj, DOC, "alsoKnownAs")?;
        let mut doc = DidDoc::empty(id);
        doc.also_known_as = also_known_as;

        for field in ["verificationMethod", "publicKey"] {
            for entry in obj_array(obj, DOC, field)? {
                let vm = doc.parse_vm(entry)?;
                doc.add_vm(vm)?;
            }
        }
        doc.authentication = doc.parse_relationship(obj, "authentication")?;
        doc.key_agreement = doc.parse_relationship(obj, "keyAgreement")?;
        for field in OTHER_RELATIONSHIPS {
            doc.parse_relationship(obj, field)?;
        }

        match obj.get("service") {
            None | Some(Value::Null) => {}
            Some(Value::Array(entries)) => {
                cap(entries.len(), "service")?;
                for (index, entry) in entries.iter().enumerate() {
                    doc.parse_service(entry, index)?;
                }
            }
            Some(_) => {
                return Err(DidError::WrongType {
                    context: DOC,
                    field: "service",
                    expected: "an array",
                })
            }
        }
        Ok(doc)
    }

    /// Parses a DID document from JSON bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, DidError> {
        let value: Value = serde_json::from_slice(bytes).map_err(DidError::DocumentJson)?;
        Self::from_json(&value)
    }

    /// The verification method a reference (`#key-1`, `<did>#key-1`, …) points to, if it is
    /// one of this document's.
    pub fn verification_method(&self, reference: &str) -> Option<&VerificationMethod> {
        let id = self.absolute(reference);
        self.verification_methods.iter().find(|vm| vm.id == id)
    }

    /// The Ed25519 keys of the authentication methods (the keys that may sign for this DID:
    /// credo accepts a `did_doc~attach` signed by one of them).
    pub fn authentication_keys(&self) -> Vec<VerKey> {
        let forms = Forms::new();
        self.authentication
            .iter()
            .filter_map(|id| self.verification_method(id))
            .filter_map(|vm| ed25519_of(self, &forms, vm))
            .collect()
    }

    /// The DIDComm v1 services with all key references resolved, lowest priority first
    /// (document order among equal priorities).
    ///
    /// `did-communication` and `IndyAgent` services must be well-formed: a missing, unknown or
    /// non-Ed25519 key is an error. `DIDCommMessaging` services take their recipient keys from
    /// `keyAgreement` (an X25519 key counts when an Ed25519 key of the document converts to
    /// it, as credo does); one that yields no Ed25519 keys, or whose routing keys do not
    /// resolve, is skipped rather than failing the document, since DIDComm v1 peers list it
    /// only as an extra. Other service types are ignored. A document without DIDComm services
    /// (a did:key) gives an empty list.
    pub fn didcomm_services(&self) -> Result<Vec<DidCommService>, DidError> {
        let mut out = Vec::new();
        let mut external = ExternalDocs::default();
        let forms = Forms::new();
        for service in &self.services {
            match service.kind {
                ServiceKind::DidCommunication | ServiceKind::IndyAgent => {
                    out.push(self.v1_service(service, &forms, &mut external)?);
                }
                ServiceKind::DidCommMessaging => {
                    if let Ok(resolved) = self.v2_service(service, &forms, &mut external) {
                        out.push(resolved);
                    }
                }
                ServiceKind::Other(_) => {}
            }
        }
        // A stable sort keeps document order among equal priorities.
        out.sort_by_key(|s| s.priority);
        Ok(out)
    }

    fn v1_service(
        &self,
        service: &Service,
        forms: &Forms,
        external: &mut ExternalDocs,
    ) -> Result<DidCommService, DidError> {
        let recipient_keys = service
            .recipient_keys
            .iter()
            .map(|r| self.resolve_key(&service.id, r, forms, None))
            .collect::<Result<Vec<_>, _>>()?;
        self.finish_service(service, recipient_keys, forms, external)
    }

    /// Resolves a service's routing keys and assembles it, once its recipient keys are known
    /// (shared by the v1 and v2 service forms).
    fn finish_service(
        &self,
        service: &Service,
        recipient_keys: Vec<VerKey>,
        forms: &Forms,
        external: &mut ExternalDocs,
    ) -> Result<DidCommService, DidError> {
        if recipient_keys.is_empty() {
            return Err(DidError::NoRecipientKeys {
                service: service.id.clone(),
            });
        }
        let routing_keys = service
            .routing_keys
            .iter()
            .map(|r| self.resolve_key(&service.id, r, forms, Some(&mut *external)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DidCommService {
            id: service.id.clone(),
            recipient_keys,
            routing_keys,
            endpoint: service.endpoint.clone(),
            priority: service.priority,
            accept: service.accept.clone(),
        })
    }

    fn v2_service(
        &self,
        service: &Service,
        forms: &Forms,
        external: &mut ExternalDocs,
    ) -> Result<DidCommService, DidError> {
        let mut recipient_keys = Vec::new();
        if service.recipient_keys.is_empty() {
            for id in &self.key_agreement {
                if let Some(key) = self
                    .verification_method(id)
                    .and_then(|vm| ed25519_of(self, forms, vm))
                {
                    if !recipient_keys.contains(&key) {
                        recipient_keys.push(key);
                    }
                }
            }
        } else {
            for r in &service.recipient_keys {
                recipient_keys.push(self.resolve_key(&service.id, r, forms, None)?);
            }
        }
        self.finish_service(service, recipient_keys, forms, external)
    }

    /// Resolves a recipient or routing key as written in a service: a did:key (URL), a
    /// reference to a verification method, or a base58 verkey. References to other DIDs are
    /// followed only with `external` (routing keys).
    fn resolve_key(
        &self,
        service: &str,
        reference: &str,
        forms: &Forms,
        external: Option<&mut ExternalDocs>,
    ) -> Result<VerKey, DidError> {
        let malformed = |source| DidError::ServiceKey {
            service: service.to_owned(),
            reference: reference.to_owned(),
            source,
        };
        if reference.starts_with("did:key:") {
            return VerKey::from_did_key(reference)
                .map_err(|e| malformed(KeyDecodeError::Ed25519(e)));
        }
        if !(reference.contains('#') || reference.starts_with("did:")) {
            return VerKey::from_base58(reference)
                .map_err(|e| malformed(KeyDecodeError::Ed25519(e)));
        }
        let not_ed25519 = || DidError::NotEd25519 {
            service: service.to_owned(),
            reference: reference.to_owned(),
        };
        if let Some(vm) = self.verification_method(reference) {
            return ed25519_of(self, forms, vm).ok_or_else(not_ed25519);
        }
        let absolute = self.absolute(reference);
        let did = absolute
            .split_once('#')
            .map_or(absolute.as_str(), |(d, _)| d);
        let external = match external {
            Some(external) if !self.is_self(did) => external,
            _ => {
                return Err(DidError::UnknownKeyReference {
                    service: service.to_owned(),
                    reference: reference.to_owned(),
                })
            }
        };
        // A routing key of a mediator that uses a self-resolving DID (did:peer:2, long
        // did:peer:4): resolve that DID. Resolving a document never resolves services, so this
        // does not recurse further.
        let (other, other_forms) =
            external
                .get(did)
                .map_err(|e| DidError::UnresolvableKeyReference {
                    service: service.to_owned(),
                    reference: reference.to_owned(),
                    source: Box::new(e),
                })?;
        let vm =
            other
                .verification_method(&absolute)
                .ok_or_else(|| DidError::UnknownKeyReference {
                    service: service.to_owned(),
                    reference: reference.to_owned(),
                })?;
        ed25519_of(other, other_forms, vm).ok_or_else(not_ed25519)
    }

    /// Whether `did` names this document's subject: its id, an alias, or for legacy documents
    /// the same DID with or without `did:sov:`.
    pub(crate) fn is_self(&self, did: &str) -> bool {
        fn unsov(s: &str) -> &str {
            s.strip_prefix("did:sov:").unwrap_or(s)
        }
        did.is_empty()
            || did == self.id
            || self.also_known_as.iter().any(|a| a == did)
            || (!unsov(did).starts_with("did:") && unsov(did) == unsov(&self.id))
    }

    /// The absolute form of a reference: `<doc id>#<fragment>` when it points into this
    /// document, unchanged otherwise.
    pub(crate) fn absolute(&self, reference: &str) -> String {
        match reference.split_once('#') {
            Some((did, fragment)) if self.is_self(did) => format!("{}#{fragment}", self.id),
            _ => reference.to_owned(),
        }
    }

    fn add_vm(&mut self, vm: VerificationMethod) -> Result<(), DidError> {
        // The same method can be listed and embedded; the first one wins.
        if !self.verification_methods.iter().any(|m| m.id == vm.id) {
            cap(self.verification_methods.len() + 1, "verificationMethod")?;
            self.verification_methods.push(vm);
        }
        Ok(())
    }

    fn parse_relationship(
        &mut self,
        obj: &Map<String, Value>,
        field: &'static str,
    ) -> Result<Vec<String>, DidError> {
        let mut ids = Vec::new();
        let entries = match obj.get(field) {
            None | Some(Value::Null) => return Ok(ids),
            Some(Value::Array(entries)) => entries,
            Some(_) => {
                return Err(DidError::WrongType {
                    context: DOC,
                    field,
                    expected: "an array",
                })
            }
        };
        cap(entries.len(), field)?;
        for entry in entries {
            match entry {
                Value::String(reference) => ids.push(self.absolute(reference)),
                Value::Object(o) => {
                    // Legacy: `{"type": "Ed25519SignatureAuthentication2018", "publicKey": ref}`.
                    if let (Some(Value::String(reference)), false) = (
                        o.get("publicKey"),
                        o.contains_key("publicKeyBase58") || o.contains_key("id"),
                    ) {
                        ids.push(self.absolute(reference));
                    } else {
                        let vm = self.parse_vm(entry)?;
                        ids.push(vm.id.clone());
                        self.add_vm(vm)?;
                    }
                }
                _ => {
                    return Err(DidError::WrongType {
                        context: DOC,
                        field,
                        expected: "an array of references or verification methods",
                    })
                }
            }
        }
        Ok(ids)
    }

    fn parse_vm(&self, entry: &Value) -> Result<VerificationMethod, DidError> {
        let obj = entry.as_object().ok_or(DidError::WrongType {
            context: DOC,
            field: "verificationMethod",
            expected: "an array of objects",
        })?;
        let id = self.absolute(str_field(obj, VM, "id")?.ok_or(DidError::MissingField {
            context: VM,
            field: "id",
        })?);
        let method_type = VerificationMethodType::parse(str_field(obj, VM, "type")?.ok_or(
            DidError::MissingField {
                context: VM,
                field: "type",
            },
        )?);
        let controller = str_field(obj, VM, "controller")?
            .unwrap_or(&self.id)
            .to_owned();
        let bad_key = |source| DidError::VerificationMethodKey {
            id: id.clone(),
            source,
        };
        let key = match &method_type {
            VerificationMethodType::Ed25519VerificationKey2018 => {
                match str_field(obj, VM, "publicKeyBase58")? {
                    Some(b58) => PublicKey::Ed25519(
                        VerKey::from_base58(b58)
                            .map_err(|e| bad_key(KeyDecodeError::Ed25519(e)))?,
                    ),
                    // Some writers put the 2020 encoding under the 2018 type.
                    None => multibase_key(obj, MULTICODEC_ED25519).map_err(|e| e.or(&bad_key))?,
                }
            }
            VerificationMethodType::Ed25519VerificationKey2020 => {
                multibase_key(obj, MULTICODEC_ED25519).map_err(|e| e.or(&bad_key))?
            }
            VerificationMethodType::X25519KeyAgreementKey2019 => {
                match str_field(obj, VM, "publicKeyBase58")? {
                    Some(b58) => {
                        let bytes = bs58::decode(b58)
                            .into_vec()
                            .map_err(|e| bad_key(KeyDecodeError::Base58(e)))?;
                        PublicKey::X25519(x25519_bytes(&bytes).map_err(bad_key)?)
                    }
                    None => multibase_key(obj, MULTICODEC_X25519).map_err(|e| e.or(&bad_key))?,
                }
            }
            VerificationMethodType::X25519KeyAgreementKey2020 => {
                multibase_key(obj, MULTICODEC_X25519).map_err(|e| e.or(&bad_key))?
            }
            VerificationMethodType::Multikey => {
                let text =
                    str_field(obj, VM, "publicKeyMultibase")?.ok_or(DidError::MissingField {
                        context: VM,
                        field: "publicKeyMultibase",
                    })?;
                match decode_multikey(text) {
                    Ok(key) => key,
                    // Multikey also covers curves DIDComm v1 does not use.
                    Err(KeyDecodeError::UnexpectedMulticodec(_)) => PublicKey::Unsupported,
                    Err(e) => return Err(bad_key(e)),
                }
            }
            VerificationMethodType::JsonWebKey2020 => match obj.get("publicKeyJwk") {
                Some(jwk) => match okp_jwk(jwk) {
                    Ok(key) => key,
                    Err(KeyDecodeError::UnsupportedJwk) => PublicKey::Unsupported,
                    Err(e) => return Err(bad_key(e)),
                },
                None => {
                    return Err(DidError::MissingField {
                        context: VM,
                        field: "publicKeyJwk",
                    })
                }
            },
            VerificationMethodType::Other(_) => PublicKey::Unsupported,
        };
        Ok(VerificationMethod {
            id,
            method_type,
            controller,
            key,
        })
    }

    pub(crate) fn parse_service(&mut self, entry: &Value, index: usize) -> Result<(), DidError> {
        let obj = entry.as_object().ok_or(DidError::WrongType {
            context: DOC,
            field: "service",
            expected: "an array of objects",
        })?;
        let kind = match obj.get("type") {
            Some(Value::String(t)) => service_kind(t),
            // DID Core allows a set of types; the first known one decides.
            Some(Value::Array(types)) => types
                .iter()
                .filter_map(Value::as_str)
                .map(service_kind)
                .find(|k| !matches!(k, ServiceKind::Other(_)))
                .unwrap_or_else(|| ServiceKind::Other(String::new())),
            None => {
                return Err(DidError::MissingField {
                    context: SERVICE,
                    field: "type",
                })
            }
            Some(_) => {
                return Err(DidError::WrongType {
                    context: SERVICE,
                    field: "type",
                    expected: "a string",
                })
            }
        };
        let parsed = self.parse_service_fields(obj, kind.clone(), index);
        match kind {
            ServiceKind::DidCommunication | ServiceKind::IndyAgent => {
                self.services.extend(parsed?);
            }
            // Services DIDComm v1 does not need must not make the document unreadable.
            ServiceKind::DidCommMessaging | ServiceKind::Other(_) => {
                if let Ok(services) = parsed {
                    self.services.extend(services);
                }
            }
        }
        cap(self.services.len(), "service")
    }

    fn parse_service_fields(
        &self,
        obj: &Map<String, Value>,
        kind: ServiceKind,
        index: usize,
    ) -> Result<Vec<Service>, DidError> {
        let id = match str_field(obj, SERVICE, "id")? {
            Some(id) => self.absolute(id),
            None => format!("{}#service-{index}", self.id),
        };
        let recipient_keys = str_array(obj, SERVICE, "recipientKeys")?;
        let routing_keys = str_array(obj, SERVICE, "routingKeys")?;
        let accept = str_array(obj, SERVICE, "accept")?;
        let priority = match obj.get("priority") {
            None | Some(Value::Null) => 0,
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_u64().map(|_| i64::MAX))
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite() && f.fract() == 0.0)
                        // Saturating float-to-int conversion.
                        .map(|f| f as i64)
                })
                .ok_or(DidError::WrongType {
                    context: SERVICE,
                    field: "priority",
                    expected: "an integer",
                })?,
            Some(_) => {
                return Err(DidError::WrongType {
                    context: SERVICE,
                    field: "priority",
                    expected: "an integer",
                })
            }
        };
        let endpoint = obj.get("serviceEndpoint").ok_or(DidError::MissingField {
            context: SERVICE,
            field: "serviceEndpoint",
        })?;
        let endpoints: Vec<&Value> = match endpoint {
            Value::Array(items) => {
                cap(items.len(), "serviceEndpoint")?;
                items.iter().collect()
            }
            other => vec![other],
        };
        let mut out = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let (uri, routing, accept) = match endpoint {
                Value::String(uri) => (uri.clone(), routing_keys.clone(), accept.clone()),
                // DIDComm v2 form: `{uri, routingKeys, accept}`.
                Value::Object(e) => {
                    let uri = str_field(e, SERVICE, "uri")?.ok_or(DidError::MissingField {
                        context: SERVICE,
                        field: "serviceEndpoint.uri",
                    })?;
                    let routing = if e.contains_key("routingKeys") {
                        str_array(e, SERVICE, "routingKeys")?
                    } else {
                        routing_keys.clone()
                    };
                    let accept = if e.contains_key("accept") {
                        str_array(e, SERVICE, "accept")?
                    } else {
                        accept.clone()
                    };
                    (uri.to_owned(), routing, accept)
                }
                _ => {
                    return Err(DidError::WrongType {
                        context: SERVICE,
                        field: "serviceEndpoint",
                        expected: "a URI, an object with `uri`, or an array of them",
                    })
                }
            };
            out.push(Service {
                id: id.clone(),
                kind: kind.clone(),
                endpoint: uri,
                recipient_keys: recipient_keys.clone(),
                routing_keys: routing,
                accept,
                priority,
            });
        }
        Ok(out)
    }
}

/// The Ed25519 keys of a document with their X25519 forms, computed at most once per call
/// (the conversion costs a point decompression).
type Forms = OnceCell<Vec<(VerKey, [u8; 32])>>;

/// The Ed25519 key of a method: its own, or for an X25519 method the Ed25519 key of the
/// document that converts to it (credo lists the X25519 form of its verkey separately).
fn ed25519_of(doc: &DidDoc, forms: &Forms, vm: &VerificationMethod) -> Option<VerKey> {
    match vm.key {
        PublicKey::Ed25519(key) => Some(key),
        PublicKey::X25519(x) => forms
            .get_or_init(|| {
                doc.verification_methods
                    .iter()
                    .filter_map(|m| match m.key {
                        PublicKey::Ed25519(key) => Some((key, key.to_x25519_public())),
                        _ => None,
                    })
                    .collect()
            })
            .iter()
            .find(|(_, form)| *form == x)
            .map(|(key, _)| *key),
        PublicKey::Unsupported => None,
    }
}

/// The most distinct other DIDs one document's routing keys may name. Resolving a long
/// did:peer:4 costs milliseconds (base58 is quadratic), so a hostile document listing many
/// must not multiply that.
pub const MAX_EXTERNAL_DIDS: usize = 8;

/// Documents of other DIDs named by routing keys, resolved once per
/// [`DidDoc::didcomm_services`] call, and at most [`MAX_EXTERNAL_DIDS`] resolutions (failed
/// ones included) per call.
#[derive(Default)]
struct ExternalDocs {
    docs: Vec<(String, DidDoc, Forms)>,
    attempts: usize,
}

impl ExternalDocs {
    fn get(&mut self, did: &str) -> Result<(&DidDoc, &Forms), DidError> {
        if let Some(index) = self.docs.iter().position(|(d, _, _)| d == did) {
            let (_, doc, forms) = &self.docs[index];
            return Ok((doc, forms));
        }
        if self.attempts >= MAX_EXTERNAL_DIDS {
            return Err(DidError::TooManyExternalDids {
                max: MAX_EXTERNAL_DIDS,
            });
        }
        self.attempts += 1;
        let doc = crate::resolve::resolve(did, None)?;
        self.docs.push((did.to_owned(), doc, Forms::new()));
        let last = self.docs.len() - 1;
        let (_, doc, forms) = &self.docs[last];
        Ok((doc, forms))
    }
}

fn service_kind(text: &str) -> ServiceKind {
    match text {
        "did-communication" => ServiceKind::DidCommunication,
        "IndyAgent" => ServiceKind::IndyAgent,
        "DIDCommMessaging" | "DIDComm" => ServiceKind::DidCommMessaging,
        other => ServiceKind::Other(other.to_owned()),
    }
}

/// Either a document-shape error (already complete) or a key error that still needs the
/// verification method id.
enum MultibaseKeyError {
    Shape(DidError),
    Key(KeyDecodeError),
}

impl MultibaseKeyError {
    fn or(self, wrap: &dyn Fn(KeyDecodeError) -> DidError) -> DidError {
        match self {
            Self::Shape(e) => e,
            Self::Key(e) => wrap(e),
        }
    }
}

/// Reads `publicKeyMultibase` as a key of multicodec `code`; a bare 32-byte value (written by
/// some Ed25519VerificationKey2020 implementations without the multicodec) is accepted.
fn multibase_key(obj: &Map<String, Value>, code: u64) -> Result<PublicKey, MultibaseKeyError> {
    let text = str_field(obj, VM, "publicKeyMultibase")
        .map_err(MultibaseKeyError::Shape)?
        .ok_or(MultibaseKeyError::Shape(DidError::MissingField {
            context: VM,
            field: "publicKeyMultibase",
        }))?;
    let bytes = decode_multibase(text).map_err(MultibaseKeyError::Key)?;
    let key = if bytes.len() == 32 {
        &bytes[..]
    } else {
        let (found, key) =
            read_varint(&bytes).ok_or(MultibaseKeyError::Key(KeyDecodeError::Varint))?;
        if found != code {
            return Err(MultibaseKeyError::Key(
                KeyDecodeError::UnexpectedMulticodec(found),
            ));
        }
        key
    };
    if code == MULTICODEC_ED25519 {
        VerKey::from_bytes(key)
            .map(PublicKey::Ed25519)
            .map_err(|e| MultibaseKeyError::Key(KeyDecodeError::Ed25519(e)))
    } else {
        x25519_bytes(key)
            .map(PublicKey::X25519)
            .map_err(MultibaseKeyError::Key)
    }
}

/// Reads an OKP JWK (Ed25519 or X25519).
pub(crate) fn okp_jwk(jwk: &Value) -> Result<PublicKey, KeyDecodeError> {
    let kty = jwk.get("kty").and_then(Value::as_str);
    let crv = jwk.get("crv").and_then(Value::as_str);
    let x = jwk.get("x").and_then(Value::as_str);
    match (kty, crv, x) {
        (Some("OKP"), Some(crv @ ("Ed25519" | "X25519")), Some(x)) => {
            let bytes = b64_decode(x).map_err(KeyDecodeError::Base64)?;
            if crv == "Ed25519" {
                VerKey::from_bytes(&bytes)
                    .map(PublicKey::Ed25519)
                    .map_err(KeyDecodeError::Ed25519)
            } else {
                x25519_bytes(&bytes).map(PublicKey::X25519)
            }
        }
        _ => Err(KeyDecodeError::UnsupportedJwk),
    }
}

/// The most entries a document may have in any list (verification methods, services, keys of
/// a service, endpoints...). Real DIDComm documents have a handful; the bound keeps the work
/// on a hostile document linear in a small number.
pub const MAX_DOC_ENTRIES: usize = 256;

fn cap(len: usize, field: &'static str) -> Result<(), DidError> {
    if len > MAX_DOC_ENTRIES {
        Err(DidError::TooManyEntries {
            field,
            max: MAX_DOC_ENTRIES,
        })
    } else {
        Ok(())
    }
}

/// An optional string member.
fn str_field<'a>(
    obj: &'a Map<String, Value>,
    context: &'static str,
    field: &'static str,
) -> Result<Option<&'a str>, DidError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(DidError::WrongType {
            context,
            field,
            expected: "a string",
        }),
    }
}

/// An optional array of strings (absent = empty).
fn str_array(
    obj: &Map<String, Value>,
    context: &'static str,
    field: &'static str,
) -> Result<Vec<String>, DidError> {
    let wrong = || DidError::WrongType {
        context,
        field,
        expected: "an array of strings",
    };
    match obj.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => cap(items.len(), field).and_then(|()| {
            items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(wrong))
                .collect()
        }),
        Some(_) => Err(wrong()),
    }
}

/// An optional array (absent = empty).
fn obj_array<'a>(
    obj: &'a Map<String, Value>,
    context: &'static str,
    field: &'static str,
) -> Result<&'a [Value], DidError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => cap(items.len(), field).map(|()| &items[..]),
        Some(_) => Err(DidError::WrongType {
            context,
            field,
            expected: "an array",
        }),
    }
}
