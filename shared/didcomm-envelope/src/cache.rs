//! The envelope work that does not change between messages to and from the same peer, done once.
//!
//! Authcrypt costs three Curve25519 operations per recipient when done from scratch: the sealed
//! sender (an ephemeral key and a Diffie-Hellman) and the `crypto_box` of the content key (a
//! Diffie-Hellman of our key and theirs), plus the Ed25519→X25519 conversion of their key. For a
//! peer we write to again and again (a live session), none of it changes:
//! - [`Channel`] keeps, per recipient, the `crypto_box` key of the pair (libsodium's
//!   `crypto_box_beforenm`: an XSalsa20-Poly1305 keyed once) and the sealed sender field, so
//!   packing costs symmetric cryptography only. The content key and both nonces stay fresh per
//!   message; only the sealed sender (the same plaintext, our verkey, to the same key) repeats,
//!   which tells an observer what the socket carrying it already does: who talks to whom.
//! - [`OpenCache`] remembers, for envelopes we open, the sender a sealed sender field named
//!   (a field seen again opens to the same sender, so the ephemeral Diffie-Hellman is skipped)
//!   and the `crypto_box` key of each (our key, sender) pair. Bounded (S3-FIFO eviction).
//!
//! The anoncrypt envelope of a Forward still needs one Diffie-Hellman with the sender's fresh
//! ephemeral key: that one cannot be avoided.

use std::sync::Arc;

use askar_crypto::{encrypt::crypto_box::crypto_box_seal, random::fill_random};
use crypto_secretbox::XSalsa20Poly1305;
use quick_cache::sync::Cache;
use zeroize::Zeroizing;

use crate::{
    b64,
    dh::{seal_detached, NONCE_LENGTH},
    envelope::{
        finish_pack, open_sender, Alg, ContentEnc, RecipientHeaderOut, RecipientOut, CEK_LENGTH,
    },
    error::EnvelopeError,
    keys::{KeyPair, VerKey},
};

const CBOX_TAG_LENGTH: usize = 16;

/// The `crypto_box` of our key pair and their public key (one Diffie-Hellman).
fn box_key(ours: &KeyPair, theirs: &VerKey) -> Result<XSalsa20Poly1305, EnvelopeError> {
    ours.agreement().box_key(&theirs.to_x25519_public())
}

struct ChannelRecipient {
    kid: String,
    sealed_sender: String,
    cbox: XSalsa20Poly1305,
}

/// Authcrypt from one sender to fixed recipients (a live session's client keys), with the
/// per-pair work done once (see the module docs). Build one per session, or keep them in a cache.
pub struct Channel {
    recipients: Vec<ChannelRecipient>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field(
                "recipients",
                &self.recipients.iter().map(|r| &r.kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Channel {
    /// Prepares authcrypt from `sender` to `recipients` (three Curve25519 operations each).
    pub fn new(sender: &KeyPair, recipients: &[VerKey]) -> Result<Self, EnvelopeError> {
        if recipients.is_empty() {
            return Err(EnvelopeError::PackNoRecipients);
        }
        let recipients = recipients
            .iter()
            .map(|recipient| {
                let target_x =
                    recipient
                        .to_x25519()
                        .map_err(|source| EnvelopeError::BadRecipientKid {
                            kid: recipient.to_base58(),
                            source,
                        })?;
                let sealed = crypto_box_seal(&target_x, sender.verkey_base58().as_bytes())
                    .map_err(EnvelopeError::Encrypt)?;
                Ok(ChannelRecipient {
                    kid: recipient.to_base58(),
                    sealed_sender: b64::encode(sealed.as_ref()),
                    cbox: box_key(sender, recipient)?,
                })
            })
            .collect::<Result<Vec<_>, EnvelopeError>>()?;
        Ok(Self { recipients })
    }

    /// Packs `message` (authcrypt): the same envelope [`crate::pack`] makes with this sender and
    /// these recipients, for symmetric cryptography only.
    // Hot path: one call per live delivery.
    pub fn pack(&self, message: &[u8], enc: ContentEnc) -> Result<Vec<u8>, EnvelopeError> {
        let mut cek = Zeroizing::new([0u8; CEK_LENGTH]);
        fill_random(&mut cek[..]);
        let mut entries = Vec::with_capacity(self.recipients.len());
        for r in &self.recipients {
            let mut nonce = [0u8; NONCE_LENGTH];
            fill_random(&mut nonce);
            // libsodium's crypto_box_easy layout: the tag, then the ciphertext.
            let mut boxed = vec![0u8; CBOX_TAG_LENGTH + CEK_LENGTH];
            boxed[CBOX_TAG_LENGTH..].copy_from_slice(&cek[..]);
            let tag = seal_detached(&r.cbox, &nonce, &mut boxed[CBOX_TAG_LENGTH..])?;
            boxed[..CBOX_TAG_LENGTH].copy_from_slice(&tag);
            entries.push(RecipientOut {
                encrypted_key: b64::encode(&boxed),
                header: RecipientHeaderOut {
                    kid: r.kid.clone(),
                    sender: Some(r.sealed_sender.clone()),
                    iv: Some(b64::encode(&nonce)),
                },
            });
        }
        finish_pack(message, entries, Alg::Authcrypt, enc, &cek[..])
    }
}

/// A borrowed `(our key, sealed sender)` key of [`OpenCache`]'s senders: it hashes as the owned
/// tuple does (a tuple hashes its fields in order; a `String` as its `str`).
#[derive(Hash)]
struct SenderQuery<'a>(&'a VerKey, &'a str);

impl quick_cache::Equivalent<(VerKey, String)> for SenderQuery<'_> {
    fn equivalent(&self, key: &(VerKey, String)) -> bool {
        *self.0 == key.0 && self.1 == key.1
    }
}

/// What opening authcrypt envelopes from the same senders can remember (see the module docs).
/// Share one per process; it is bounded and safe to use from many threads.
pub struct OpenCache {
    /// (our key, sealed sender field) -> the sender it names.
    senders: Cache<(VerKey, String), VerKey>,
    /// (our key, sender) -> their `crypto_box`.
    boxes: Cache<(VerKey, VerKey), Arc<XSalsa20Poly1305>>,
}

impl std::fmt::Debug for OpenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenCache")
            .field("senders", &self.senders.len())
            .field("boxes", &self.boxes.len())
            .finish()
    }
}

impl OpenCache {
    /// A cache of at most `capacity` senders and as many boxes (about 200 bytes each).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            senders: Cache::new(capacity),
            boxes: Cache::new(capacity),
        }
    }

    /// The sender a sealed sender field (base64 text, as in the envelope) names.
    // Hot path: every authcrypted message we open; a hit allocates nothing.
    pub(crate) fn sender(&self, key: &KeyPair, sealed_b64: &str) -> Result<VerKey, EnvelopeError> {
        if let Some(sender) = self.senders.get(&SenderQuery(key.verkey(), sealed_b64)) {
            return Ok(sender);
        }
        let sender = open_sender(key, sealed_b64)?;
        self.senders
            .insert((*key.verkey(), sealed_b64.to_owned()), sender);
        Ok(sender)
    }

    /// The `crypto_box` of `key` and `sender`.
    pub(crate) fn box_key(
        &self,
        key: &KeyPair,
        sender: &VerKey,
    ) -> Result<Arc<XSalsa20Poly1305>, EnvelopeError> {
        let id = (*key.verkey(), *sender);
        if let Some(cbox) = self.boxes.get(&id) {
            return Ok(cbox);
        }
        let cbox = Arc::new(box_key(key, sender)?);
        self.boxes.insert(id, Arc::clone(&cbox));
        Ok(cbox)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{pack, unpack, Envelope};

    #[test]
    fn a_channel_packs_what_anyone_unpacks_and_the_cache_opens_the_same() {
        let sender = KeyPair::generate().unwrap();
        let a = KeyPair::generate().unwrap();
        let b = KeyPair::generate().unwrap();
        let channel = Channel::new(&sender, &[*a.verkey(), *b.verkey()]).unwrap();
        let cache = OpenCache::new(16);
        for enc in [ContentEnc::C20P, ContentEnc::XC20P] {
            for n in 0..3 {
                let msg = format!("{{\"n\":{n}}}");
                let packed = channel.pack(msg.as_bytes(), enc).unwrap();
                for key in [&a, &b] {
                    // Uncached (askar's crypto_box) ...
                    let opened =
                        unpack(&packed, |kid| (kid == key.verkey_base58()).then_some(key)).unwrap();
                    assert_eq!(opened.message, msg.as_bytes());
                    assert_eq!(opened.sender, Some(*sender.verkey()));
                    // ... and through the cache.
                    let opened = Envelope::parse(&packed)
                        .unwrap()
                        .open_cached(key, &cache)
                        .unwrap();
                    assert_eq!(opened.message, msg.as_bytes());
                    assert_eq!(opened.sender, Some(*sender.verkey()));
                }
            }
        }
        // The sealed sender repeats per recipient, the content key's box does not.
        let one = Envelope::parse(&channel.pack(b"{}", ContentEnc::C20P).unwrap()).unwrap();
        let two = Envelope::parse(&channel.pack(b"{}", ContentEnc::C20P).unwrap()).unwrap();
        assert_eq!(one.recipients()[0].sender(), two.recipients()[0].sender());
        assert_ne!(
            one.recipients()[0].encrypted_key(),
            two.recipients()[0].encrypted_key()
        );
    }

    #[test]
    fn the_cache_opens_envelopes_packed_from_scratch_and_refuses_tampering() {
        let sender = KeyPair::generate().unwrap();
        let ours = KeyPair::generate().unwrap();
        let cache = OpenCache::new(16);
        for _ in 0..3 {
            let packed = pack(
                b"{\"x\":1}",
                &[*ours.verkey()],
                Some(&sender),
                ContentEnc::C20P,
            )
            .unwrap();
            let opened = Envelope::parse(&packed)
                .unwrap()
                .open_cached(&ours, &cache)
                .unwrap();
            assert_eq!(opened.sender, Some(*sender.verkey()));
            // The borrowed lookup finds what was remembered under the owned key.
            let sealed = Envelope::parse(&packed).unwrap().recipients()[0]
                .sender()
                .unwrap()
                .to_owned();
            assert_eq!(
                cache.senders.get(&SenderQuery(ours.verkey(), &sealed)),
                Some(*sender.verkey())
            );
        }
        // Another sender's content key box under a cached sealed sender does not open.
        let mallory = KeyPair::generate().unwrap();
        let honest = pack(b"{}", &[*ours.verkey()], Some(&sender), ContentEnc::C20P).unwrap();
        let forged = pack(b"{}", &[*ours.verkey()], Some(&mallory), ContentEnc::C20P).unwrap();
        let honest: serde_json::Value = serde_json::from_slice(&honest).unwrap();
        let mut forged: serde_json::Value = serde_json::from_slice(&forged).unwrap();
        let header = |v: &serde_json::Value| -> serde_json::Value {
            let text = v["protected"].as_str().unwrap();
            serde_json::from_slice(&b64::decode(text, "protected").unwrap()).unwrap()
        };
        let mut forged_header = header(&forged);
        forged_header["recipients"][0]["header"]["sender"] =
            header(&honest)["recipients"][0]["header"]["sender"].clone();
        forged["protected"] = b64::encode(&serde_json::to_vec(&forged_header).unwrap()).into();
        let forged = serde_json::to_vec(&forged).unwrap();
        assert!(Envelope::parse(&forged)
            .unwrap()
            .open_cached(&ours, &cache)
            .is_err());
    }
}
