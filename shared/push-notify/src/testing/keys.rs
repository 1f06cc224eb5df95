//! Throwaway keys, and the verification of what the senders sign: compact JWS (RS256, ES256) and
//! the webhook's HMAC-SHA256 (by the `hmac` crate, an implementation other than the sender's).

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::{
    encoding::AsDer,
    rand::SystemRandom,
    rsa::{KeyPair as RsaKeyPair, KeySize},
    signature::{
        EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
        ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_2048_8192_SHA256,
    },
};
use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine,
};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// `der` as a PEM block labelled `label`, 64 characters a line.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A throwaway RSA-2048 key (what a service account's `private_key` holds).
pub struct RsaKey {
    /// The private key, PKCS#8 PEM.
    pub pem: String,
    /// The public key (PKCS#1 `RSAPublicKey` DER), for [`verify_jws`].
    pub public: Vec<u8>,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKey").finish_non_exhaustive()
    }
}

/// Generates an RSA-2048 key.
///
/// # Panics
///
/// If the crypto library cannot generate one.
pub fn rsa_key() -> RsaKey {
    let key = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key");
    let der = key.as_der().expect("PKCS#8");
    RsaKey {
        pem: pem("PRIVATE KEY", der.as_ref()),
        public: key.public_key().as_ref().to_vec(),
    }
}

/// A throwaway P-256 key (what an APNs `.p8` holds).
pub struct EcKey {
    /// The private key, PKCS#8 PEM.
    pub pem: String,
    /// The public point (uncompressed), for [`verify_jws`].
    pub public: Vec<u8>,
}

impl std::fmt::Debug for EcKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcKey").finish_non_exhaustive()
    }
}

/// Generates a P-256 key.
///
/// # Panics
///
/// If the crypto library cannot generate one.
pub fn ec_key() -> EcKey {
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .expect("P-256 key");
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).expect("parse");
    EcKey {
        pem: pem("PRIVATE KEY", doc.as_ref()),
        public: key.public_key().as_ref().to_vec(),
    }
}

/// A JWS signature algorithm [`verify_jws`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (the FCM assertion).
    Rs256,
    /// ECDSA P-256 with SHA-256, `r || s` (the APNs provider token).
    Es256,
}

/// What [`verify_jws`] says when the signature itself does not verify.
pub const BAD_SIGNATURE: &str = "bad signature";

/// Verifies a compact JWS with `public` and returns its header and claims. `Err` says what
/// failed: [`BAD_SIGNATURE`] when the signature does not verify, other text when the token is
/// malformed. The header's `alg` is not checked here (the caller compares it).
pub fn verify_jws(jws: &str, alg: Alg, public: &[u8]) -> Result<(Value, Value), String> {
    let parts: Vec<&str> = jws.split('.').collect();
    let [header, claims, sig] = parts[..] else {
        return Err(format!("a JWS has 3 parts, this one {}", parts.len()));
    };
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|e| format!("signature base64url: {e}"))?;
    let signed = format!("{header}.{claims}");
    let checked = match alg {
        Alg::Rs256 => UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public)
            .verify(signed.as_bytes(), &sig),
        Alg::Es256 => {
            if sig.len() != 64 {
                return Err(format!(
                    "an ES256 signature is r||s, 64 bytes, not {}",
                    sig.len()
                ));
            }
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public).verify(signed.as_bytes(), &sig)
        }
    };
    checked.map_err(|_| BAD_SIGNATURE.to_owned())?;
    let decode = |part: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|e| format!("base64url: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("JSON: {e}"))
    };
    Ok((decode(header)?, decode(claims)?))
}

/// True when `signature` is `sha256=<hex>` and the hex is the HMAC-SHA256 of `body` under
/// `secret` (compared in constant time).
pub fn webhook_signature_valid(secret: &[u8], body: &[u8], signature: Option<&str>) -> bool {
    let Some(tag) = signature
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(hex_decode)
    else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

fn hex_decode(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `Err(what())` unless `cond`: one line of a request check.
pub fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_signatures() {
        // The widely published HMAC-SHA256 example.
        let body = b"The quick brown fox jumps over the lazy dog";
        let good = "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8";
        assert!(webhook_signature_valid(b"key", body, Some(good)));
        assert!(!webhook_signature_valid(b"other", body, Some(good)));
        assert!(!webhook_signature_valid(
            b"key",
            b"another body",
            Some(good)
        ));
        assert!(!webhook_signature_valid(b"key", body, Some(&good[7..])));
        assert!(!webhook_signature_valid(b"key", body, Some("sha256=zz")));
        assert!(!webhook_signature_valid(b"key", body, None));
    }
}
