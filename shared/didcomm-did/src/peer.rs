//! Resolving did:peer (numalgo 0, 1, 2, 4) and did:key into documents, the way credo-ts 0.5
//! resolves them (key ids `#key-1`…, service ids `<did>#<type>-<n>`, the X25519 form of an
//! Ed25519 did:key for key agreement).

use serde_json::{Map, Value};

use crate::{
    doc::{DidDoc, PublicKey, VerificationMethod, VerificationMethodType},
    encoding::{
        b64_decode, decode_multibase, decode_multikey, read_varint, sha256_multihash,
        x25519_multikey, MULTICODEC_JSON,
    },
    error::{DidError, KeyDecodeError},
};

const PEER_PREFIX: &str = "did:peer:";

/// Resolves a `did:peer:…` DID; `attached` is the document that came with it, needed for
/// numalgo 1 and short-form numalgo 4.
pub(crate) fn resolve_peer(did: &str, attached: Option<&Value>) -> Result<DidDoc, DidError> {
    let body = did.strip_prefix(PEER_PREFIX).unwrap_or_default();
    let mut chars = body.chars();
    let numalgo = chars.next();
    let rest = chars.as_str();
    match numalgo {
        Some('0') => key_doc(did, rest),
        Some('1') => resolve_peer1(did, attached),
        Some('2') => resolve_peer2(did),
        Some('4') => resolve_peer4(did, attached),
        _ => Err(DidError::UnsupportedPeerNumalgo(
            numalgo.map(String::from).unwrap_or_default(),
        )),
    }
}

/// The document of a single key (did:key, did:peer:0), as credo builds it: the key with its
/// fingerprint as fragment, and for Ed25519 its X25519 form for key agreement.
pub(crate) fn key_doc(did: &str, fingerprint: &str) -> Result<DidDoc, DidError> {
    let key = decode_multikey(fingerprint).map_err(|source| DidError::DidKey {
        key: fingerprint.to_owned(),
        source,
    })?;
    let mut doc = DidDoc::empty(did);
    let id = format!("{did}#{fingerprint}");
    match key {
        PublicKey::Ed25519(verkey) => {
            doc.verification_methods.push(VerificationMethod {
                id: id.clone(),
                method_type: VerificationMethodType::Ed25519VerificationKey2018,
                controller: did.to_owned(),
                key,
            });
            doc.authentication.push(id);
            let x25519 = verkey.to_x25519_public();
            let x_id = format!("{did}#{}", x25519_multikey(&x25519));
            doc.verification_methods.push(VerificationMethod {
                id: x_id.clone(),
                method_type: VerificationMethodType::X25519KeyAgreementKey2019,
                controller: did.to_owned(),
                key: PublicKey::X25519(x25519),
            });
            doc.key_agreement.push(x_id);
        }
        PublicKey::X25519(_) | PublicKey::Unsupported => {
            doc.verification_methods.push(VerificationMethod {
                id: id.clone(),
                method_type: VerificationMethodType::X25519KeyAgreementKey2019,
                controller: did.to_owned(),
                key,
            });
            doc.key_agreement.push(id);
        }
    }
    Ok(doc)
}

/// did:peer:1: the document is the attached one; its id must be the DID. (The hash is checked
/// by [`check_peer1_hash`] when the attachment's bytes are at hand.)
fn resolve_peer1(did: &str, attached: Option<&Value>) -> Result<DidDoc, DidError> {
    let value = attached.ok_or_else(|| DidError::MissingDocument {
        did: did.to_owned(),
    })?;
    let doc = DidDoc::from_json(value)?;
    if doc.id != did {
        return Err(DidError::DocumentIdMismatch {
            did: did.to_owned(),
            doc_id: doc.id,
        });
    }
    Ok(doc)
}

/// Checks that a did:peer:1 is the hash of its document, computed as credo-ts does:
/// multibase(multihash(sha2-256(JSON of the document without `id`))).
///
/// The JSON is the sender's own serialisation, so the check works on the attachment's bytes:
/// the top-level `id` member is cut out of the text and whitespace outside strings removed
/// (credo's `JSON.stringify` is compact and keeps member order, which a parsed `Value` does
/// not). A document hashed in sorted-key order is accepted too.
pub(crate) fn check_peer1_hash(did: &str, raw: &[u8], value: &Value) -> Result<(), DidError> {
    let expected = did.strip_prefix("did:peer:1").unwrap_or_default();
    let mismatch = || DidError::Peer1HashMismatch {
        did: did.to_owned(),
    };
    if let Some(text) = std::str::from_utf8(raw).ok().and_then(without_top_level_id) {
        if sha256_multihash(text.as_bytes()) == expected {
            return Ok(());
        }
    }
    let mut obj = value.as_object().cloned().ok_or_else(mismatch)?;
    obj.remove("id");
    let sorted = serde_json::to_vec(&obj).map_err(|_| mismatch())?;
    if sha256_multihash(&sorted) == expected {
        return Ok(());
    }
    Err(mismatch())
}

/// The compact text of a JSON object without its top-level `"id"` member, keeping member order
/// and string contents byte for byte. `None` if the text is not an object.
fn without_top_level_id(text: &str) -> Option<String> {
    let inner = text
        .trim_matches(json_whitespace)
        .strip_prefix('{')?
        .strip_suffix('}')?;
    let mut members = Vec::new();
    let (mut depth, mut in_string, mut escaped, mut start) = (0i64, false, false, 0usize);
    for (i, c) in inner.char_indices() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            ',' if depth == 0 => {
                members.push(inner.get(start..i)?);
                start = i + 1;
            }
            _ => {}
        }
    }
    members.push(inner.get(start..)?);
    let kept: Vec<String> = members
        .into_iter()
        .map(compact)
        .filter(|m| !m.is_empty() && !m.starts_with("\"id\":"))
        .collect();
    Some(format!("{{{}}}", kept.join(",")))
}

fn json_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Removes whitespace outside strings.
fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !json_whitespace(c) {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}

/// did:peer:2: keys and services are in the DID. Keys are numbered `#key-1`, `#key-2`… in the
/// order they appear (whatever their purpose), services `<did>#<type in lower case>-<n>`, as
/// credo-ts numbers them.
fn resolve_peer2(did: &str) -> Result<DidDoc, DidError> {
    let body = did
        .strip_prefix("did:peer:2.")
        .ok_or(DidError::Peer2Malformed)?;
    let mut doc = DidDoc::empty(did);
    let (mut key_index, mut service_index) = (1usize, 0usize);
    for element in body.split('.') {
        let mut chars = element.chars();
        let purpose = chars.next().ok_or(DidError::Peer2EmptyElement)?;
        let content = chars.as_str();
        match purpose {
            'S' => {
                let bytes = b64_decode(content).map_err(DidError::Peer2ServiceBase64)?;
                let value: Value =
                    serde_json::from_slice(&bytes).map_err(DidError::Peer2ServiceJson)?;
                let services = match value {
                    Value::Array(items) => items,
                    object @ Value::Object(_) => vec![object],
                    _ => return Err(DidError::Peer2ServiceShape),
                };
                for service in services {
                    let Value::Object(object) = expand_abbreviations(service) else {
                        return Err(DidError::Peer2ServiceShape);
                    };
                    let kind = object
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("service")
                        .to_lowercase();
                    let mut object = object;
                    object.insert(
                        "id".to_owned(),
                        Value::String(format!("{did}#{kind}-{service_index}")),
                    );
                    doc.parse_service(&Value::Object(object), service_index)?;
                    service_index += 1;
                }
            }
            'A' | 'E' | 'V' | 'I' | 'D' => {
                let key = decode_multikey(content).map_err(|source| DidError::DidKey {
                    key: content.to_owned(),
                    source,
                })?;
                let id = format!("{did}#key-{key_index}");
                key_index += 1;
                let method_type = match key {
                    PublicKey::Ed25519(_) => VerificationMethodType::Ed25519VerificationKey2018,
                    _ => VerificationMethodType::X25519KeyAgreementKey2019,
                };
                match purpose {
                    'V' => doc.authentication.push(id.clone()),
                    'E' => doc.key_agreement.push(id.clone()),
                    _ => {}
                }
                doc.verification_methods.push(VerificationMethod {
                    id,
                    method_type,
                    controller: did.to_owned(),
                    key,
                });
            }
            other => return Err(DidError::Peer2UnknownPurpose(other)),
        }
    }
    Ok(doc)
}

/// Expands the did:peer:2 service abbreviations (`t`, `s`, `r`, `a` as member names at any
/// depth, `dm` as the value of `type`).
fn expand_abbreviations(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let key = match key.as_str() {
                        "t" => "type".to_owned(),
                        "s" => "serviceEndpoint".to_owned(),
                        "r" => "routingKeys".to_owned(),
                        "a" => "accept".to_owned(),
                        _ => key,
                    };
                    let value = match (key.as_str(), value) {
                        ("type", Value::String(t)) if t == "dm" => {
                            Value::String("DIDCommMessaging".to_owned())
                        }
                        (_, value) => expand_abbreviations(value),
                    };
                    (key, value)
                })
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(expand_abbreviations).collect()),
        other => other,
    }
}

/// did:peer:4: the long form carries the document (`did:peer:4<hash>:<encoded doc>`, the hash
/// being that of the encoded text); the short form (`did:peer:4<hash>`) needs the document
/// attached.
fn resolve_peer4(did: &str, attached: Option<&Value>) -> Result<DidDoc, DidError> {
    let malformed = || DidError::Peer4Malformed(did.to_owned());
    let body = did.strip_prefix("did:peer:4").unwrap_or_default();
    match body.split_once(':') {
        Some((hash, encoded)) => {
            if !hash.starts_with('z') || !encoded.starts_with('z') {
                return Err(malformed());
            }
            if sha256_multihash(encoded.as_bytes()) != hash {
                return Err(DidError::Peer4HashMismatch);
            }
            let bytes = decode_multibase(encoded).map_err(DidError::Peer4Encoding)?;
            let (code, json) =
                read_varint(&bytes).ok_or(DidError::Peer4Encoding(KeyDecodeError::Varint))?;
            if code != MULTICODEC_JSON {
                return Err(DidError::Peer4NotJson(code));
            }
            let mut value: Value = serde_json::from_slice(json).map_err(DidError::Peer4DocJson)?;
            let object = value.as_object_mut().ok_or(DidError::DocumentNotObject)?;
            // As credo does: the long form is the id, the short form an alias; methods without
            // a controller are controlled by the DID (the parser defaults them to the id).
            object.insert("id".to_owned(), Value::String(did.to_owned()));
            object.insert(
                "alsoKnownAs".to_owned(),
                Value::Array(vec![Value::String(format!("did:peer:4{hash}"))]),
            );
            DidDoc::from_json(&value)
        }
        None => {
            if !body.starts_with('z') {
                return Err(malformed());
            }
            let value = attached.ok_or_else(|| DidError::MissingDocument {
                did: did.to_owned(),
            })?;
            let doc = DidDoc::from_json(value)?;
            // A document naming the long form can be checked against its hash.
            if let Some((hash, _)) = doc
                .id
                .strip_prefix("did:peer:4")
                .and_then(|b| b.split_once(':'))
            {
                if hash == body {
                    return resolve_peer4(&doc.id, None);
                }
            }
            if doc.id == did || doc.also_known_as.iter().any(|a| a == did) {
                Ok(doc)
            } else {
                Err(DidError::DocumentIdMismatch {
                    did: did.to_owned(),
                    doc_id: doc.id,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn id_member_is_cut_from_compact_and_pretty_text() {
        let compact =
            r##"{"@context":["x"],"id":"did:peer:1zQm","service":[{"id":"#a","s":"a,b}"}],"n":1}"##;
        assert_eq!(
            without_top_level_id(compact).unwrap(),
            r##"{"@context":["x"],"service":[{"id":"#a","s":"a,b}"}],"n":1}"##
        );
        let pretty = "{\n  \"a\": \"x y\",\n  \"id\": \"d\"\n}\n";
        assert_eq!(without_top_level_id(pretty).unwrap(), r#"{"a":"x y"}"#);
        let escaped = r#"{"a":"q\"id\":","id":"d"}"#;
        assert_eq!(
            without_top_level_id(escaped).unwrap(),
            r#"{"a":"q\"id\":"}"#
        );
        assert_eq!(without_top_level_id("{}").unwrap(), "{}");
        assert!(without_top_level_id("[]").is_none());
    }

    #[test]
    fn abbreviations_expand_at_any_depth() {
        let v = serde_json::json!({"t": "dm", "s": {"uri": "u", "a": ["didcomm/v2"], "r": ["k"]}});
        assert_eq!(
            expand_abbreviations(v),
            serde_json::json!({"type": "DIDCommMessaging", "serviceEndpoint": {"uri": "u", "accept": ["didcomm/v2"], "routingKeys": ["k"]}})
        );
    }
}
