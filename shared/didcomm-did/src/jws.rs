//! Signed attachments (Aries RFC 0017 `data.jws`), as DID Exchange uses them for
//! `did_doc~attach` and `did_rotate~attach`.
//!
//! The JWS is detached: its payload is the base64url of the attachment bytes, which travel in
//! `data.base64` (credo writes that in the standard alphabet with padding, so the payload is
//! always recomputed from the bytes). The signer is named by a `jwk` in the protected header
//! and a did:key `kid` in the unprotected one, exactly as credo-ts writes it; ACA-Py (1.6 and
//! later) reads the same form.

use didcomm_envelope::{KeyPair, VerKey};
use didcomm_message::{Attachment, AttachmentData};
use serde_json::{json, Map, Value};

use crate::{
    doc::{okp_jwk, PublicKey},
    encoding::{b64_decode, b64url},
    error::{DidError, KeyDecodeError},
};

/// Builds an attachment carrying `data` in `data.base64`, signed by `key`.
///
/// `mime` is the `mime-type` (`application/json` for a DID document; credo gives none for the
/// DID string of `did_rotate~attach`).
pub fn sign_attachment(id: &str, mime: Option<&str>, data: &[u8], key: &KeyPair) -> Attachment {
    sign_attachment_multi(id, mime, data, &[key])
}

/// Like [`sign_attachment`] with several signers: one key gives the flattened JWS
/// (`{header, protected, signature}`), several the general form (`{signatures: [...]}`), as
/// credo builds them. With no key the attachment is unsigned.
pub fn sign_attachment_multi(
    id: &str,
    mime: Option<&str>,
    data: &[u8],
    keys: &[&KeyPair],
) -> Attachment {
    let mut attachment = Attachment::base64(id, mime.unwrap_or_default(), data);
    if mime.is_none() {
        attachment.mime_type = None;
    }
    let payload = b64url(data);
    let mut signatures: Vec<Value> = keys.iter().map(|k| jws_signature(&payload, k)).collect();
    attachment.data.jws = match signatures.len() {
        0 => None,
        1 => signatures.pop(),
        _ => Some(json!({ "signatures": signatures })),
    };
    attachment
}

/// One detached JWS signature: credo's protected header, byte for byte.
fn jws_signature(payload: &str, key: &KeyPair) -> Value {
    let x = b64url(key.verkey().as_bytes());
    let protected = b64url(
        format!(r#"{{"alg":"EdDSA","jwk":{{"kty":"OKP","crv":"Ed25519","x":"{x}"}}}}"#).as_bytes(),
    );
    let signature = key.sign(format!("{protected}.{payload}").as_bytes());
    json!({
        "protected": protected,
        "signature": b64url(&signature),
        "header": { "kid": key.verkey().to_did_key() },
    })
}

/// Checks a signed attachment and returns its bytes and signer.
///
/// Both JWS forms are read; every signature must verify. With several signatures the first
/// signer is returned (each returned key did sign); see [`verify_attachment_signers`] for all.
pub fn verify_attachment(attachment: &Attachment) -> Result<(Vec<u8>, VerKey), DidError> {
    let (data, signers) = verify_attachment_signers(attachment)?;
    let first = signers.first().copied().ok_or(DidError::JwsNoSignatures)?;
    Ok((data, first))
}

/// Checks a signed attachment and returns its bytes and all its signers, in order.
pub fn verify_attachment_signers(
    attachment: &Attachment,
) -> Result<(Vec<u8>, Vec<VerKey>), DidError> {
    verify_data(&attachment.data)
}

fn verify_data(data: &AttachmentData) -> Result<(Vec<u8>, Vec<VerKey>), DidError> {
    let encoded = data
        .base64
        .as_deref()
        .ok_or(DidError::AttachmentNotBase64)?;
    let bytes = b64_decode(encoded).map_err(DidError::AttachmentBase64)?;
    let jws_value = data.jws.as_ref().ok_or(DidError::AttachmentNotSigned)?;
    let jws = jws_value.as_object().ok_or(DidError::JwsNotObject)?;
    let entries: Vec<&Value> = match jws.get("signatures") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(_) => return Err(DidError::JwsSignaturesNotArray),
        None => vec![jws_value],
    };
    if entries.is_empty() {
        return Err(DidError::JwsNoSignatures);
    }
    // The JWS payload is the base64url of the bytes, whatever alphabet `data.base64` used.
    let payload = b64url(&bytes);
    let signers = entries
        .into_iter()
        .map(|entry| verify_signature(entry, &payload))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((bytes, signers))
}

fn verify_signature(entry: &Value, payload: &str) -> Result<VerKey, DidError> {
    let entry = entry.as_object().ok_or(DidError::JwsNotObject)?;
    let string = |field: &'static str| {
        entry
            .get(field)
            .and_then(Value::as_str)
            .ok_or(DidError::JwsMissingField(field))
    };
    let protected_b64 = string("protected")?;
    let signature_b64 = string("signature")?;
    let protected_bytes = b64_decode(protected_b64).map_err(|source| DidError::JwsBase64 {
        field: "protected",
        source,
    })?;
    let protected: Map<String, Value> =
        serde_json::from_slice(&protected_bytes).map_err(DidError::JwsProtectedJson)?;
    match protected.get("alg") {
        Some(Value::String(alg)) if alg == "EdDSA" => {}
        Some(Value::String(alg)) => return Err(DidError::JwsUnsupportedAlg(alg.clone())),
        Some(other) => return Err(DidError::JwsUnsupportedAlg(other.to_string())),
        None => return Err(DidError::JwsMissingField("alg")),
    }

    let jwk_key = match protected.get("jwk") {
        Some(jwk) => match okp_jwk(jwk).map_err(DidError::JwsJwk)? {
            PublicKey::Ed25519(key) => Some(key),
            _ => return Err(DidError::JwsJwk(KeyDecodeError::UnsupportedJwk)),
        },
        None => None,
    };
    // Kids may sit in the unprotected header (credo), the protected header, or in the jwk
    // (ACA-Py before 1.6). Only did:key kids name a key; others (DID URLs) are hints that a
    // jwk must back.
    let kids = [
        entry.get("header").and_then(|h| h.get("kid")),
        protected.get("kid"),
        protected.get("jwk").and_then(|j| j.get("kid")),
    ];
    let mut kid_key = None;
    for kid in kids.into_iter().flatten().filter_map(Value::as_str) {
        if !kid.starts_with("did:key:") {
            continue;
        }
        let key = VerKey::from_did_key(kid).map_err(|source| DidError::JwsKid {
            kid: kid.to_owned(),
            source,
        })?;
        match (jwk_key, kid_key) {
            (Some(jwk), _) if jwk != key => {
                return Err(DidError::JwsKeyMismatch { jwk, kid: key });
            }
            (None, Some(first)) if first != key => {
                return Err(DidError::JwsKeyMismatch {
                    jwk: first,
                    kid: key,
                });
            }
            _ => kid_key = Some(key),
        }
    }
    let signer = jwk_key.or(kid_key).ok_or(DidError::JwsNoSignerKey)?;

    let signature = b64_decode(signature_b64).map_err(|source| DidError::JwsBase64 {
        field: "signature",
        source,
    })?;
    // The signing input is the protected header as sent, not re-encoded.
    let signing_input = format!("{protected_b64}.{payload}");
    if signer.verify(signing_input.as_bytes(), &signature) {
        Ok(signer)
    } else {
        Err(DidError::JwsBadSignature { signer })
    }
}
