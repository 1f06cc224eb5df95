//! Per-peer cryptography, remembered: every envelope this instance packs goes through a cached
//! [`Channel`] (precomputed box keys and sealed senders per (our key, their keys)), and every
//! envelope it opens through one [`OpenCache`]. Both are bounded by `limits.peer_crypto_cache`.
//! See didcomm-envelope's `cache` module for what is cached and why it is safe.

use std::sync::Arc;

use didcomm_envelope::{Channel, ContentEnc, EnvelopeError, KeyPair, OpenCache, Unpacked, VerKey};
use quick_cache::sync::Cache;

/// A borrowed `(our key, their keys)` key of the channels: it hashes as the owned tuple does (a
/// tuple hashes its fields in order; a `Vec` as its slice).
#[derive(Hash)]
struct ChannelQuery<'a>(&'a VerKey, &'a [VerKey]);

impl quick_cache::Equivalent<(VerKey, Vec<VerKey>)> for ChannelQuery<'_> {
    fn equivalent(&self, key: &(VerKey, Vec<VerKey>)) -> bool {
        *self.0 == key.0 && self.1 == key.1.as_slice()
    }
}

/// The caches (one per instance, inside the mediator).
pub struct PeerCrypto {
    channels: Cache<(VerKey, Vec<VerKey>), Arc<Channel>>,
    open: OpenCache,
}

impl std::fmt::Debug for PeerCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerCrypto")
            .field("channels", &self.channels.len())
            .field("open", &self.open)
            .finish()
    }
}

impl PeerCrypto {
    /// Caches of at most `capacity` peers each.
    pub fn new(capacity: usize) -> Self {
        Self {
            channels: Cache::new(capacity.max(1)),
            open: OpenCache::new(capacity),
        }
    }

    /// Packs `plaintext` from `ours` to `theirs` (authcrypt, ChaCha20-Poly1305).
    // Hot path: every live delivery and every reply.
    pub fn pack(
        &self,
        plaintext: &[u8],
        theirs: &[VerKey],
        ours: &KeyPair,
    ) -> Result<Vec<u8>, EnvelopeError> {
        // A hit allocates nothing (the key is looked up borrowed).
        let channel = match self.channels.get(&ChannelQuery(ours.verkey(), theirs)) {
            Some(channel) => channel,
            None => {
                let channel = Arc::new(Channel::new(ours, theirs)?);
                self.channels
                    .insert((*ours.verkey(), theirs.to_vec()), Arc::clone(&channel));
                channel
            }
        };
        channel.pack(plaintext, ContentEnc::C20P)
    }

    /// Opens an envelope with `key`.
    // Hot path: every inbound message.
    pub fn open(
        &self,
        envelope: didcomm_envelope::Envelope,
        key: &KeyPair,
    ) -> Result<Unpacked, EnvelopeError> {
        envelope.open_cached(key, &self.open)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_packed_peers_channel_is_found_by_the_borrowed_key() {
        let crypto = PeerCrypto::new(4);
        let ours = KeyPair::generate().unwrap();
        let theirs = [*KeyPair::generate().unwrap().verkey()];
        crypto.pack(b"{}", &theirs, &ours).unwrap();
        assert!(crypto
            .channels
            .get(&ChannelQuery(ours.verkey(), &theirs))
            .is_some());
    }
}
