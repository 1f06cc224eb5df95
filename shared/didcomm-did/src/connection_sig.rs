//! The `connection~sig` of a Connections 1.0 response (Aries RFC 0160, signature decorator
//! RFC 0234 `ed25519Sha512_single`).
//!
//! `sig_data` is base64url of an 8-byte big-endian timestamp followed by the JSON of the
//! `connection` object (`{"DID", "DIDDoc"}`); `signature` is the Ed25519 signature of those
//! bytes by `signer` (base58), the invitation key. The timestamp is not checked: credo writes
//! milliseconds, ACA-Py seconds, and neither reads it.

use std::time::{SystemTime, UNIX_EPOCH};

use didcomm_envelope::{KeyPair, VerKey};
use serde_json::{json, Value};

use crate::{
    encoding::{b64_decode, b64url},
    error::DidError,
};

/// The `@type` credo-ts and ACA-Py write.
pub const SIGNATURE_TYPE: &str = "https://didcomm.org/signature/1.0/ed25519Sha512_single";
/// The same type under the legacy prefix, still accepted by both.
pub const SIGNATURE_TYPE_SOV: &str =
    "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/signature/1.0/ed25519Sha512_single";

/// Signs a `connection` object for `connection~sig`, timestamped now (unix seconds, as RFC 0234
/// and ACA-Py write it).
pub fn sign_connection(connection: &Value, key: &KeyPair) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    sign_connection_at(connection, key, now)
}

/// Signs a `connection` object for `connection~sig` with the given timestamp.
pub fn sign_connection_at(connection: &Value, key: &KeyPair, timestamp: u64) -> Value {
    let mut data = timestamp.to_be_bytes().to_vec();
    // A `Value` always serialises (its map keys are strings).
    data.extend_from_slice(&serde_json::to_vec(connection).unwrap_or_default());
    json!({
        "@type": SIGNATURE_TYPE,
        "signature": b64url(&key.sign(&data)),
        "sig_data": b64url(&data),
        "signer": key.verkey_base58(),
    })
}

/// Checks a `connection~sig` and returns the signed `connection` object and the signer.
///
/// The caller must still check that the signer is the key of the invitation it answered.
pub fn verify_connection_sig(sig: &Value) -> Result<(Value, VerKey), DidError> {
    let obj = sig.as_object().ok_or(DidError::SigNotObject)?;
    let string = |field: &'static str| {
        obj.get(field)
            .and_then(Value::as_str)
            .ok_or(DidError::SigMissingField(field))
    };
    let sig_type = string("@type")?;
    if sig_type != SIGNATURE_TYPE && sig_type != SIGNATURE_TYPE_SOV {
        return Err(DidError::SigUnsupportedType(sig_type.to_owned()));
    }
    let signer = VerKey::parse(string("signer")?).map_err(DidError::SigSigner)?;
    let data = b64_decode(string("sig_data")?).map_err(|source| DidError::SigBase64 {
        field: "sig_data",
        source,
    })?;
    let signature = b64_decode(string("signature")?).map_err(|source| DidError::SigBase64 {
        field: "signature",
        source,
    })?;
    let connection = data.get(8..).ok_or(DidError::SigDataTooShort(data.len()))?;
    if !signer.verify(&data, &signature) {
        return Err(DidError::SigInvalid(signer));
    }
    let connection = serde_json::from_slice(connection).map_err(DidError::SigConnectionJson)?;
    Ok((connection, signer))
}
