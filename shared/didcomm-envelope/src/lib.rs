//! DIDComm v1 keys and encryption envelopes (Aries RFC 0019).
//!
//! - [`keys`]: Ed25519 verkeys in base58 and `did:key` form, key pairs, signing, and their X25519
//!   form for encryption.
//! - [`envelope`]: pack and unpack, anoncrypt and authcrypt, ChaCha20-Poly1305 and
//!   XChaCha20-Poly1305 content encryption, one or many recipients.
//!
//! Cryptography is `askar-crypto`, the crate underneath Aries Askar, which ACA-Py and credo-ts
//! use: the same primitives (libsodium-compatible `crypto_box`, ChaCha20-Poly1305) as our peers;
//! the X25519 Diffie-Hellman of the boxes we open or precompute is AWS-LC's (`dh`, twice as fast).
//! This crate does no I/O; its only state is what [`cache`] remembers about peers, when asked to.
//! - [`cache`]: per-peer work done once (precomputed `crypto_box` keys, sealed senders).

mod b64;
pub mod cache;
mod dh;
pub mod envelope;
mod error;
pub mod keys;

pub use cache::{Channel, OpenCache};
pub use envelope::{pack, unpack, Alg, ContentEnc, Envelope, Recipient, Unpacked};
pub use error::{AeadError, BoxError, EnvelopeError, KeyError};
pub use keys::{KeyPair, VerKey};
