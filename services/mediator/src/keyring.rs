//! The mediator's keys, all derived from one master secret.
//!
//! Why derive instead of store: every instance of the cluster must hold the same invitation and
//! routing keys, and any instance must be able to open a message for any connection. Deriving
//! each private key with HKDF-SHA256 from the master secret (info = what the key is for, with the
//! connection id) gives every instance every key, while the shared store (Redis) never holds a
//! private key: only public verkeys and connection ids. Rotating the master secret invalidates
//! every connection, which is the right blast radius for a leaked secret.

use didcomm_envelope::KeyPair;
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::config::Secret;

const SALT: &[u8] = b"didcomm-mediator/v1 key derivation";

/// The mediator's key material.
pub struct KeyRing {
    hkdf: Hkdf<Sha256>,
    invitation: KeyPair,
    routing: KeyPair,
    ephemeral: bool,
    /// Connection keys derived lately (an Ed25519 key generation and its X25519 conversion each:
    /// per connection, not per message).
    derived: quick_cache::sync::Cache<String, KeyPair>,
}

/// Connection keys remembered (about 300 bytes each).
const DERIVED_CACHE: usize = 10_000;

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("invitation", &self.invitation.verkey_base58())
            .field("routing", &self.routing.verkey_base58())
            .field("ephemeral", &self.ephemeral)
            .finish()
    }
}

/// A derivation failed (cannot happen with HKDF-SHA256 and 32-byte outputs; typed anyway).
#[derive(Debug, thiserror::Error)]
#[error("key derivation failed")]
pub struct DeriveError;

impl KeyRing {
    /// Derives the key ring from `secret`; an empty secret gets a random one (keys then live only
    /// as long as this process).
    pub fn new(secret: &Secret) -> Result<Self, DeriveError> {
        let (master, ephemeral) = if secret.is_empty() {
            let mut random = Zeroizing::new(vec![0u8; 32]);
            let key = KeyPair::generate().map_err(|_| DeriveError)?;
            random.copy_from_slice(&key.secret_bytes()[..]);
            (random, true)
        } else {
            (Zeroizing::new(secret.expose().to_vec()), false)
        };
        let hkdf = Hkdf::<Sha256>::new(Some(SALT), &master);
        let invitation = derive(&hkdf, b"invitation")?;
        let routing = derive(&hkdf, b"routing")?;
        Ok(Self {
            hkdf,
            invitation,
            routing,
            ephemeral,
            derived: quick_cache::sync::Cache::new(DERIVED_CACHE),
        })
    }

    /// True when the master secret was generated for this process.
    pub fn is_ephemeral(&self) -> bool {
        self.ephemeral
    }

    /// The key of the mediator's invitation (handshake requests are encrypted to it).
    pub fn invitation_key(&self) -> &KeyPair {
        &self.invitation
    }

    /// The routing key given in mediation grants (Forwards are encrypted to it).
    pub fn routing_key(&self) -> &KeyPair {
        &self.routing
    }

    /// The mediator's key for one connection.
    // Hot path: every message of a connection (its key opens it and packs the reply).
    pub fn connection_key(&self, connection_id: &str) -> Result<KeyPair, DeriveError> {
        if let Some(key) = self.derived.get(connection_id) {
            return Ok(key);
        }
        let mut info = Vec::with_capacity(11 + connection_id.len());
        info.extend_from_slice(b"connection:");
        info.extend_from_slice(connection_id.as_bytes());
        let key = derive(&self.hkdf, &info)?;
        self.derived.insert(connection_id.to_owned(), key.clone());
        Ok(key)
    }

    /// A stable identifier derived from the secret (the invitation's `@id`, so that every
    /// instance and every restart advertises the same multi-use invitation).
    pub fn stable_uuid(&self, purpose: &str) -> Result<String, DeriveError> {
        let mut b = [0u8; 16];
        self.hkdf
            .expand(purpose.as_bytes(), &mut b)
            .map_err(|_| DeriveError)?;
        b[6] = (b[6] & 0x0f) | 0x40; // version 4 layout
        b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        Ok(format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        ))
    }
}

fn derive(hkdf: &Hkdf<Sha256>, info: &[u8]) -> Result<KeyPair, DeriveError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    hkdf.expand(info, &mut seed[..]).map_err(|_| DeriveError)?;
    KeyPair::from_seed(&seed).map_err(|_| DeriveError)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SECRET: &str = "a-master-secret-of-at-least-32-characters";

    #[test]
    fn same_secret_same_keys_on_every_instance() {
        let a = KeyRing::new(&Secret::new(SECRET)).unwrap();
        let b = KeyRing::new(&Secret::new(SECRET)).unwrap();
        assert_eq!(a.invitation_key().verkey(), b.invitation_key().verkey());
        assert_eq!(a.routing_key().verkey(), b.routing_key().verkey());
        assert_eq!(
            a.connection_key("c1").unwrap().verkey(),
            b.connection_key("c1").unwrap().verkey()
        );
        assert_eq!(a.stable_uuid("x").unwrap(), b.stable_uuid("x").unwrap());
        assert!(!a.is_ephemeral());
    }

    #[test]
    fn keys_differ_by_purpose_and_connection_and_secret() {
        let a = KeyRing::new(&Secret::new(SECRET)).unwrap();
        let other = KeyRing::new(&Secret::new(format!("{SECRET}!"))).unwrap();
        let c1 = a.connection_key("c1").unwrap();
        let c2 = a.connection_key("c2").unwrap();
        assert_ne!(c1.verkey(), c2.verkey());
        assert_ne!(a.invitation_key().verkey(), a.routing_key().verkey());
        assert_ne!(a.invitation_key().verkey(), other.invitation_key().verkey());
    }

    #[test]
    fn empty_secret_is_random_per_process() {
        let a = KeyRing::new(&Secret::default()).unwrap();
        let b = KeyRing::new(&Secret::default()).unwrap();
        assert!(a.is_ephemeral());
        assert_ne!(a.invitation_key().verkey(), b.invitation_key().verkey());
    }
}
