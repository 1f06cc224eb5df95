//! Ed25519 keys as DIDComm v1 uses them.
//!
//! A DIDComm v1 "verkey" is an Ed25519 public key written in base58; newer messages (RFC 0360) write
//! the same key as `did:key:z6Mk…` (multicodec `ed25519-pub`, multibase base58btc). [`VerKey`]
//! reads both and writes both, so that one key is one value everywhere. Encryption uses the X25519
//! form of the same key (birational map), computed here and cached in [`KeyPair`].
//!
//! This module never stores or logs secret bytes: `Debug` of a [`KeyPair`] shows only its verkey.

use std::{fmt, str::FromStr};

use askar_crypto::{
    alg::{ed25519::Ed25519KeyPair, x25519::X25519KeyPair},
    repr::{KeyGen, KeyPublicBytes, KeySecretBytes},
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::error::KeyError;

/// Length of an Ed25519 public key.
pub const VERKEY_LENGTH: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LENGTH: usize = 64;

const DID_KEY_PREFIX: &str = "did:key:";
/// Multicodec varint for `ed25519-pub` (0xed).
const ED25519_MULTICODEC: [u8; 2] = [0xed, 0x01];

/// An Ed25519 public key, validated to be a point on the curve.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VerKey([u8; VERKEY_LENGTH]);

impl VerKey {
    /// Takes 32 bytes that must be a valid compressed Edwards point.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; VERKEY_LENGTH] = bytes.try_into().map_err(|_| KeyError::Length {
            expected: VERKEY_LENGTH,
            actual: bytes.len(),
        })?;
        // askar validates the point (decompression) here; a VerKey is therefore always usable for
        // the X25519 conversion, which would otherwise panic on an invalid point.
        Ed25519KeyPair::from_public_bytes(&arr).map_err(|_| KeyError::NotOnCurve)?;
        Ok(Self(arr))
    }

    /// Reads a base58 verkey (the DIDComm v1 form).
    pub fn from_base58(text: impl AsRef<[u8]>) -> Result<Self, KeyError> {
        let text = text.as_ref();
        let mut buf = [0u8; VERKEY_LENGTH];
        let len = bs58::decode(text).onto(&mut buf[..]).map_err(|e| match e {
            // More bytes than a key has: report the length, which is the helpful part.
            bs58::decode::Error::BufferTooSmall => KeyError::Length {
                expected: VERKEY_LENGTH,
                actual: bs58::decode(text).into_vec().map(|v| v.len()).unwrap_or(0),
            },
            other => KeyError::Base58(other),
        })?;
        Self::from_bytes(&buf[..len])
    }

    /// Reads a `did:key` (an optional `#fragment`, as in a verification method id, is ignored).
    pub fn from_did_key(did: &str) -> Result<Self, KeyError> {
        let body = did
            .strip_prefix(DID_KEY_PREFIX)
            .ok_or_else(|| KeyError::NotDidKey(did.to_owned()))?;
        let body = body.split_once('#').map_or(body, |(b, _)| b);
        let encoded = body
            .strip_prefix('z')
            .ok_or_else(|| KeyError::NotDidKey(did.to_owned()))?;
        let decoded = bs58::decode(encoded).into_vec()?;
        let key = decoded
            .strip_prefix(&ED25519_MULTICODEC[..])
            .ok_or(KeyError::WrongMulticodec)?;
        Self::from_bytes(key)
    }

    /// Reads either form: `did:key:…` or base58.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text.starts_with(DID_KEY_PREFIX) {
            Self::from_did_key(text)
        } else {
            Self::from_base58(text)
        }
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; VERKEY_LENGTH] {
        &self.0
    }

    /// The base58 form (what RFC 0019 envelopes and Forward `to` carry).
    pub fn to_base58(&self) -> String {
        bs58::encode(&self.0).into_string()
    }

    /// The `did:key` form (`did:key:z6Mk…`).
    pub fn to_did_key(&self) -> String {
        let mut bytes = [0u8; 2 + VERKEY_LENGTH];
        bytes[..2].copy_from_slice(&ED25519_MULTICODEC);
        bytes[2..].copy_from_slice(&self.0);
        let mut out = String::with_capacity(DID_KEY_PREFIX.len() + 1 + 48);
        out.push_str(DID_KEY_PREFIX);
        out.push('z');
        bs58::encode(&bytes[..]).onto(&mut out).unwrap_or_default();
        out
    }

    /// The `did:key` with its key fragment (`did:key:z6Mk…#z6Mk…`), the form of a verification
    /// method id and of JWS `kid`s.
    pub fn to_did_key_url(&self) -> String {
        let did = self.to_did_key();
        let fragment = did[DID_KEY_PREFIX.len()..].to_owned();
        format!("{did}#{fragment}")
    }

    /// Verifies an Ed25519 signature (strict verification: no malleable signatures).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.ed25519()
            .is_ok_and(|k| k.verify_signature(message, signature))
    }

    fn ed25519(&self) -> Result<Ed25519KeyPair, KeyError> {
        Ed25519KeyPair::from_public_bytes(&self.0).map_err(|_| KeyError::NotOnCurve)
    }

    /// The X25519 public key for encryption to this key.
    pub(crate) fn to_x25519(self) -> Result<X25519KeyPair, KeyError> {
        // `from_bytes` validated the point, so the conversion (which would panic on a point that
        // does not decompress) is safe.
        Ok(self.ed25519()?.to_x25519_keypair())
    }

    /// The 32 bytes of the X25519 public key of this key, as DID documents list it for key
    /// agreement (`X25519KeyAgreementKey2019`, `did:key:z6LS…`).
    pub fn to_x25519_public(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        // A VerKey is a validated point, so the conversion cannot fail.
        if let Ok(x) = self.to_x25519() {
            x.with_public_bytes(|b| out.copy_from_slice(b));
        }
        out
    }
}

impl fmt::Display for VerKey {
    /// Writes the base58 form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base58())
    }
}

impl fmt::Debug for VerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerKey({})", self.to_base58())
    }
}

impl FromStr for VerKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for VerKey {
    /// Serialises as base58; use [`VerKey::to_did_key`] where a message wants did:key.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base58())
    }
}

impl<'de> Deserialize<'de> for VerKey {
    /// Accepts base58 or did:key.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 key pair with its X25519 form precomputed, ready to sign and to open envelopes.
#[derive(Clone)]
pub struct KeyPair {
    ed25519: Ed25519KeyPair,
    x25519: X25519KeyPair,
    /// The X25519 private key loaded into AWS-LC (see `dh`).
    agreement: std::sync::Arc<crate::dh::Agreement>,
    verkey: VerKey,
    verkey_b58: String,
}

impl KeyPair {
    /// A fresh random key pair.
    pub fn generate() -> Result<Self, KeyError> {
        let ed = Ed25519KeyPair::random().map_err(KeyError::Crypto)?;
        Self::from_ed25519(ed)
    }

    /// The key pair whose Ed25519 secret key (RFC 8032 seed) is `seed`. Deterministic: the same
    /// seed always gives the same keys (used to derive per-connection keys from a master secret).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, KeyError> {
        let ed = Ed25519KeyPair::from_secret_bytes(seed).map_err(KeyError::Crypto)?;
        Self::from_ed25519(ed)
    }

    fn from_ed25519(ed25519: Ed25519KeyPair) -> Result<Self, KeyError> {
        let mut public = [0u8; VERKEY_LENGTH];
        ed25519.with_public_bytes(|b| public.copy_from_slice(b));
        let verkey = VerKey::from_bytes(&public)?;
        let x25519 = ed25519.to_x25519_keypair();
        let mut x_public = [0u8; 32];
        x25519.with_public_bytes(|b| x_public.copy_from_slice(b));
        let agreement = x25519
            .with_secret_bytes(|secret| {
                secret.and_then(|secret| crate::dh::Agreement::new(secret, x_public))
            })
            .ok_or(KeyError::Agreement)?;
        Ok(Self {
            verkey_b58: verkey.to_base58(),
            ed25519,
            x25519,
            agreement: std::sync::Arc::new(agreement),
            verkey,
        })
    }

    /// The public key.
    pub fn verkey(&self) -> &VerKey {
        &self.verkey
    }

    /// The public key in base58, computed once (envelope `kid`s are matched against it).
    pub fn verkey_base58(&self) -> &str {
        &self.verkey_b58
    }

    /// The 32-byte secret seed, zeroed when dropped.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        self.ed25519.with_secret_bytes(|s| {
            if let Some(s) = s {
                out.copy_from_slice(s);
            }
        });
        out
    }

    /// Signs `message` with Ed25519.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LENGTH] {
        // A KeyPair always holds its secret (every constructor takes one).
        self.ed25519
            .sign(message)
            .unwrap_or([0u8; SIGNATURE_LENGTH])
    }

    pub(crate) fn x25519(&self) -> &X25519KeyPair {
        &self.x25519
    }

    pub(crate) fn agreement(&self) -> &crate::dh::Agreement {
        &self.agreement
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("verkey", &self.verkey_b58)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    // RFC 8032 test vector 1.
    const SEED: [u8; 32] = [
        0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c,
        0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae,
        0x7f, 0x60,
    ];
    const PUBLIC_HEX: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn seed_gives_rfc8032_public_key_and_signature_verifies() {
        let kp = KeyPair::from_seed(&SEED).unwrap();
        assert_eq!(hex(kp.verkey().as_bytes()), PUBLIC_HEX);
        let sig = kp.sign(b"");
        assert_eq!(
            hex(&sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
             5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        assert!(kp.verkey().verify(b"", &sig));
        assert!(!kp.verkey().verify(b"x", &sig));
        assert!(!kp.verkey().verify(b"", &sig[..63]));
    }

    #[test]
    fn base58_and_did_key_are_the_same_key() {
        let kp = KeyPair::generate().unwrap();
        let vk = *kp.verkey();
        let b58 = vk.to_base58();
        let did = vk.to_did_key();
        assert!(did.starts_with("did:key:z6Mk"), "{did}");
        assert_eq!(VerKey::parse(&b58).unwrap(), vk);
        assert_eq!(VerKey::parse(&did).unwrap(), vk);
        assert_eq!(VerKey::parse(&vk.to_did_key_url()).unwrap(), vk);
        assert_eq!(b58, kp.verkey_base58());
    }

    #[test]
    fn known_did_key_vector() {
        // did:key spec test vector (ed25519).
        let did = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp";
        let vk = VerKey::from_did_key(did).unwrap();
        assert_eq!(vk.to_did_key(), did);
        assert_eq!(VerKey::from_base58(vk.to_base58()).unwrap(), vk);
    }

    #[test]
    fn bad_keys_have_their_own_errors() {
        assert!(matches!(
            VerKey::from_base58("0OIl"),
            Err(KeyError::Base58(_))
        ));
        assert!(matches!(
            VerKey::from_base58("abc"),
            Err(KeyError::Length { expected: 32, .. })
        ));
        let long = bs58::encode([1u8; 40]).into_string();
        assert!(matches!(
            VerKey::from_base58(&long),
            Err(KeyError::Length {
                expected: 32,
                actual: 40
            })
        ));
        assert!(matches!(
            VerKey::from_did_key("did:key:abc"),
            Err(KeyError::NotDidKey(_))
        ));
        assert!(matches!(
            VerKey::from_did_key("did:peer:z6Mk"),
            Err(KeyError::NotDidKey(_))
        ));
        // X25519 multicodec (0xec) is not an Ed25519 key.
        let mut x = vec![0xec, 0x01];
        x.extend_from_slice(&[9u8; 32]);
        let x_did = format!("did:key:z{}", bs58::encode(x).into_string());
        assert!(matches!(
            VerKey::from_did_key(&x_did),
            Err(KeyError::WrongMulticodec)
        ));
    }

    #[test]
    fn off_curve_bytes_are_refused() {
        // y = 2 does not give a point on the curve.
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        assert!(matches!(
            VerKey::from_bytes(&bytes),
            Err(KeyError::NotOnCurve)
        ));
    }

    #[test]
    fn serde_reads_both_forms_and_writes_base58() {
        let vk = *KeyPair::generate().unwrap().verkey();
        let from_did: VerKey = serde_json::from_value(vk.to_did_key().into()).unwrap();
        let from_b58: VerKey = serde_json::from_value(vk.to_base58().into()).unwrap();
        assert_eq!(from_did, vk);
        assert_eq!(from_b58, vk);
        assert_eq!(serde_json::to_value(vk).unwrap(), vk.to_base58());
    }

    #[test]
    fn debug_redacts_secret() {
        let kp = KeyPair::from_seed(&SEED).unwrap();
        let dbg = format!("{kp:?}");
        assert!(dbg.contains("redacted"));
        assert!(!dbg.contains("9d61"));
    }
}
