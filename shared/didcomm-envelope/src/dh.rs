//! libsodium's boxes with AWS-LC's X25519.
//!
//! Every X25519 Diffie-Hellman of this crate's own making (opening a sealed box, the key of a
//! `crypto_box` pair) runs in AWS-LC (aws-lc-rs), twice as fast as curve25519-dalek here (see
//! `benches/x25519.rs`); the rest of the construction is RustCrypto's, as in askar-crypto:
//! - `crypto_box` key: HSalsa20(shared secret, 0¹⁶), then XSalsa20-Poly1305, tag first;
//! - `crypto_box_seal`: an ephemeral public key, then a box from it with the nonce
//!   Blake2b-192(ephemeral public key ‖ recipient public key).
//!
//! A shared secret of all zeros (a low-order public key) is refused by AWS-LC, as by libsodium.

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use blake2::{digest::consts::U24, Blake2b, Digest};
use crypto_secretbox::{
    aead::{generic_array::GenericArray, AeadInPlace, KeyInit},
    XSalsa20Poly1305,
};
use zeroize::Zeroizing;

use crate::error::{BoxError, EnvelopeError};

const PUBLIC_LENGTH: usize = 32;
const TAG_LENGTH: usize = 16;
/// Length of a box nonce.
pub(crate) const NONCE_LENGTH: usize = 24;

/// Our X25519 private key, loaded into AWS-LC once (with its public key, for sealed-box nonces).
pub(crate) struct Agreement {
    private: PrivateKey,
    public: [u8; PUBLIC_LENGTH],
}

impl Agreement {
    /// Loads the X25519 private key `secret` whose public key is `public`.
    pub(crate) fn new(secret: &[u8], public: [u8; PUBLIC_LENGTH]) -> Option<Self> {
        let private = PrivateKey::from_private_key(&X25519, secret).ok()?;
        Some(Self { private, public })
    }

    /// The `crypto_box` (XSalsa20-Poly1305 keyed by HSalsa20 of the shared secret) of this key
    /// and `their_public`: libsodium's `crypto_box_beforenm`.
    pub(crate) fn box_key(
        &self,
        their_public: &[u8; PUBLIC_LENGTH],
    ) -> Result<XSalsa20Poly1305, EnvelopeError> {
        let key = agreement::agree(
            &self.private,
            UnparsedPublicKey::new(&X25519, their_public),
            EnvelopeError::KeyUnwrap(BoxError),
            |shared| {
                let shared = GenericArray::from_slice(shared);
                Ok(Zeroizing::new(salsa20::hsalsa::<
                    salsa20::cipher::consts::U10,
                >(
                    shared, &GenericArray::default()
                )))
            },
        )?;
        Ok(XSalsa20Poly1305::new(&key))
    }

    /// Opens a sealed box (`crypto_box_seal_open`): one Diffie-Hellman with its ephemeral key.
    // Hot path: the anoncrypt envelope of every Forward.
    pub(crate) fn seal_open(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        if sealed.len() < PUBLIC_LENGTH + TAG_LENGTH {
            return Err(EnvelopeError::KeyUnwrap(BoxError));
        }
        let (ephemeral, boxed) = sealed.split_at(PUBLIC_LENGTH);
        let mut ephemeral_public = [0u8; PUBLIC_LENGTH];
        ephemeral_public.copy_from_slice(ephemeral);
        let cipher = self.box_key(&ephemeral_public)?;
        let mut hasher = Blake2b::<U24>::new();
        hasher.update(ephemeral);
        hasher.update(self.public);
        let nonce = hasher.finalize();
        let mut plain = Zeroizing::new(boxed[TAG_LENGTH..].to_vec());
        open_detached(&cipher, &nonce, &boxed[..TAG_LENGTH], &mut plain)?;
        Ok(plain)
    }
}

/// Decrypts `buffer` in place with `cipher` (the tag given apart).
pub(crate) fn open_detached(
    cipher: &XSalsa20Poly1305,
    nonce: &[u8],
    tag: &[u8],
    buffer: &mut [u8],
) -> Result<(), EnvelopeError> {
    if nonce.len() != NONCE_LENGTH || tag.len() != TAG_LENGTH {
        return Err(EnvelopeError::KeyUnwrap(BoxError));
    }
    cipher
        .decrypt_in_place_detached(
            GenericArray::from_slice(nonce),
            b"",
            buffer,
            GenericArray::from_slice(tag),
        )
        .map_err(|_| EnvelopeError::KeyUnwrap(BoxError))
}

/// Encrypts `buffer` in place with `cipher`; returns the tag.
pub(crate) fn seal_detached(
    cipher: &XSalsa20Poly1305,
    nonce: &[u8; NONCE_LENGTH],
    buffer: &mut [u8],
) -> Result<[u8; TAG_LENGTH], EnvelopeError> {
    let tag = cipher
        .encrypt_in_place_detached(GenericArray::from_slice(nonce), b"", buffer)
        .map_err(|_| EnvelopeError::BoxFailed)?;
    Ok(tag.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::KeyPair;
    use askar_crypto::encrypt::crypto_box::{crypto_box, crypto_box_seal};

    #[test]
    fn opens_what_askar_seals_and_boxes() {
        let ours = KeyPair::generate().unwrap();
        let theirs = KeyPair::generate().unwrap();
        // A sealed box made by askar-crypto (libsodium-compatible), opened here.
        let sealed = crypto_box_seal(ours.x25519(), b"the content key").unwrap();
        assert_eq!(
            &ours.agreement().seal_open(sealed.as_ref()).unwrap()[..],
            b"the content key"
        );
        // A crypto_box made by askar-crypto, opened with our box key.
        let mut boxed = b"secret".to_vec();
        let nonce = [7u8; NONCE_LENGTH];
        crypto_box(ours.x25519(), theirs.x25519(), &mut boxed, &nonce).unwrap();
        let their_public = theirs.verkey().to_x25519_public();
        let cipher = ours.agreement().box_key(&their_public).unwrap();
        let (tag, body) = boxed.split_at_mut(TAG_LENGTH);
        open_detached(&cipher, &nonce, tag, body).unwrap();
        assert_eq!(body, b"secret");
        // Tampering is refused.
        let mut sealed = sealed.as_ref().to_vec();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(ours.agreement().seal_open(&sealed).is_err());
        // A low-order public key (all zeros) gives no box.
        assert!(ours.agreement().box_key(&[0u8; 32]).is_err());
    }
}
