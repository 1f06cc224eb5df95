//! The one entry point from "a DID a peer sent, maybe with a document" to a [`DidDoc`].
//!
//! | DID | document from |
//! |---|---|
//! | `did:peer:0…`, `did:key:…` | the key in the DID |
//! | `did:peer:1…` | the attached document (its `id` must be the DID) |
//! | `did:peer:2…` | the DID itself |
//! | `did:peer:4<hash>:<doc>` | the DID itself (hash checked) |
//! | `did:peer:4<hash>` | the attached document |
//! | unqualified (Connections 1.0, DID Exchange 1.0), `did:sov:…` | the attached legacy DIDDoc |
//!
//! Nothing is fetched: DIDs that need a ledger or the web are refused.

use serde_json::Value;

use crate::{
    doc::DidDoc,
    error::DidError,
    peer::{check_peer1_hash, key_doc, resolve_peer},
};

/// The longest DID accepted. Long-form did:peer:4 and did:peer:2 of real agents are a few
/// hundred to two thousand characters; the bound keeps base58 decoding (quadratic) cheap on
/// hostile input.
pub const MAX_DID_LEN: usize = 8192;

/// Resolves a DID into its document, using `attached_doc` (the JSON of a `did_doc~attach` or a
/// Connections 1.0 `DIDDoc`) where the DID method needs one; for self-resolving DIDs
/// (did:peer:2, long did:peer:4, did:key) an attached document is ignored, as credo ignores it.
///
/// A did:peer:1 is checked against the attached document's `id` only: its hash is over the
/// sender's JSON text, which a parsed `Value` no longer has. Use [`resolve_attached`] with the
/// attachment's bytes to check the hash too.
pub fn resolve(did: &str, attached_doc: Option<&Value>) -> Result<DidDoc, DidError> {
    if did.len() > MAX_DID_LEN {
        return Err(DidError::TooLong {
            len: did.len(),
            max: MAX_DID_LEN,
        });
    }
    // DID URLs (path, query, fragment) and whitespace are not DIDs.
    if did.is_empty()
        || did
            .chars()
            .any(|c| matches!(c, '#' | '?' | '/') || c.is_whitespace() || c.is_control())
    {
        return Err(DidError::NotADid(did.to_owned()));
    }
    if let Some(rest) = did.strip_prefix("did:") {
        let (method, specific) = rest
            .split_once(':')
            .ok_or_else(|| DidError::NotADid(did.to_owned()))?;
        if specific.is_empty() {
            return Err(DidError::NotADid(did.to_owned()));
        }
        match method {
            "peer" => resolve_peer(did, attached_doc),
            "key" => key_doc(did, specific),
            "sov" => resolve_legacy(did, attached_doc),
            other => Err(DidError::UnsupportedMethod(other.to_owned())),
        }
    } else if is_unqualified(did) {
        resolve_legacy(did, attached_doc)
    } else {
        Err(DidError::NotADid(did.to_owned()))
    }
}

/// Resolves a DID with the bytes of its attached document (the decoded `data.base64` of a
/// `did_doc~attach`, as [`crate::verify_attachment`] returns them). Like [`resolve`], and for a
/// did:peer:1 also checks that the DID is the hash of the document.
pub fn resolve_attached(did: &str, doc_bytes: &[u8]) -> Result<DidDoc, DidError> {
    let value: Value = serde_json::from_slice(doc_bytes).map_err(DidError::DocumentJson)?;
    let doc = resolve(did, Some(&value))?;
    if did.starts_with("did:peer:1") {
        check_peer1_hash(did, doc_bytes, &value)?;
    }
    Ok(doc)
}

/// An unqualified DID: base58 of 16 bytes (the Indy convention) or, from older agents, of a
/// whole 32-byte verkey.
fn is_unqualified(did: &str) -> bool {
    did.len() <= 50
        && bs58::decode(did)
            .into_vec()
            .is_ok_and(|b| (16..=32).contains(&b.len()))
}

/// Unqualified and did:sov DIDs: the attached legacy DIDDoc, whose id may carry `did:sov:` or
/// not (ACA-Py qualifies it, credo does not).
fn resolve_legacy(did: &str, attached: Option<&Value>) -> Result<DidDoc, DidError> {
    let value = attached.ok_or_else(|| DidError::MissingDocument {
        did: did.to_owned(),
    })?;
    let doc = DidDoc::from_json(value)?;
    let unsov = |s: &str| s.strip_prefix("did:sov:").unwrap_or(s).to_owned();
    if doc.id != did && unsov(&doc.id) != unsov(did) {
        return Err(DidError::DocumentIdMismatch {
            did: did.to_owned(),
            doc_id: doc.id,
        });
    }
    Ok(doc)
}
