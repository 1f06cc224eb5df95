//! Typed errors for keys and envelopes.
//!
//! Every way an envelope can be wrong has its own variant, so that the mediator can log precisely
//! what a peer sent and pick the right problem-report, and so that tests can assert on the cause.

use thiserror::Error;

/// What was wrong with a key given as text or bytes.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The base58 text did not decode.
    #[error("invalid base58 in verkey")]
    Base58(#[from] bs58::decode::Error),
    /// A key of the wrong length (Ed25519 keys are 32 bytes).
    #[error("expected a {expected}-byte key, got {actual} bytes")]
    Length {
        /// The length the key must have.
        expected: usize,
        /// The length it had.
        actual: usize,
    },
    /// 32 bytes that are not a point on the Ed25519 curve.
    #[error("not a valid Ed25519 public key")]
    NotOnCurve,
    /// A `did:key` that is not `did:key:z…` (multibase base58btc).
    #[error("not a did:key with a base58btc multibase value: {0:?}")]
    NotDidKey(String),
    /// A `did:key` whose multicodec prefix is not ed25519-pub (0xed 0x01).
    #[error("did:key multicodec is not ed25519-pub")]
    WrongMulticodec,
    /// askar-crypto refused the key material.
    #[error("key material rejected by askar-crypto")]
    Crypto(#[source] askar_crypto::Error),
    /// AWS-LC refused the X25519 private key (cannot happen with a key askar made).
    #[error("X25519 private key rejected by AWS-LC")]
    Agreement,
}

/// What was wrong with an envelope on unpack (or with the inputs of pack).
#[derive(Debug, Error)]
pub enum EnvelopeError {
    /// The input ends before its JSON does (a cut-off envelope or header).
    #[error("{part} is truncated JSON")]
    Truncated {
        /// `envelope` or `protected header`.
        part: &'static str,
        /// The parser's error (its position).
        #[source]
        source: serde_json::Error,
    },
    /// The input is not JSON, or JSON of the wrong shape (a string where an object belongs...).
    #[error("{part} is not well-formed JSON of the RFC 0019 shape")]
    Malformed {
        /// `envelope` or `protected header`.
        part: &'static str,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A member the envelope must have is absent.
    #[error("{part} lacks required member `{field}`")]
    MissingField {
        /// `envelope`, `protected header` or `recipient`.
        part: &'static str,
        /// The missing member.
        field: &'static str,
    },
    /// A base64url field did not decode.
    #[error("field `{field}` is not valid base64url")]
    Base64 {
        /// The envelope member that held the bad text.
        field: &'static str,
        /// The decoder's error.
        #[source]
        source: base64::DecodeError,
    },
    /// `alg` is neither `Anoncrypt` nor `Authcrypt`.
    #[error("unsupported key wrapping algorithm `alg`: {0:?}")]
    UnsupportedAlg(String),
    /// `enc` names a content encryption we do not implement.
    #[error("unsupported content encryption `enc`: {0:?}")]
    UnsupportedEnc(String),
    /// The content nonce has a length that fits neither ChaCha20-Poly1305 (12) nor
    /// XChaCha20-Poly1305 (24), or not the one the `enc` label demands.
    #[error("content nonce of {len} bytes does not fit `enc` {enc:?}")]
    BadNonce {
        /// The `enc` label of the envelope.
        enc: String,
        /// The nonce length found.
        len: usize,
    },
    /// The authentication tag is not 16 bytes.
    #[error("authentication tag must be 16 bytes, got {0}")]
    BadTagLength(usize),
    /// The header lists no recipients.
    #[error("envelope has no recipients")]
    NoRecipients,
    /// A recipient `kid` is not a valid verkey.
    #[error("recipient kid {kid:?} is not a valid verkey")]
    BadRecipientKid {
        /// The kid as sent.
        kid: String,
        /// Why it is not a key.
        #[source]
        source: KeyError,
    },
    /// None of the recipients is a key we hold.
    #[error("none of the envelope's recipient keys is ours: {0:?}")]
    NoMatchingRecipient(Vec<String>),
    /// Authcrypt recipient entry without `sender`/`iv`, or anoncrypt with them.
    #[error("recipient header does not match `alg` {alg}: {reason}")]
    RecipientHeaderMismatch {
        /// The envelope's `alg`.
        alg: &'static str,
        /// What was missing or extra.
        reason: &'static str,
    },
    /// The content key could not be recovered for our recipient entry (wrong key, tampered
    /// `encrypted_key`, `sender` or `iv`).
    #[error("content key could not be decrypted for our recipient key")]
    KeyUnwrap(#[source] BoxError),
    /// The decrypted content key has the wrong length.
    #[error("decrypted content key has {0} bytes, expected 32")]
    BadContentKey(usize),
    /// The decrypted sender field is not a base58 verkey.
    #[error("authcrypt sender is not a valid verkey")]
    BadSender(#[source] KeyError),
    /// The ciphertext or its tag failed authentication (tampered, or for another key).
    #[error("ciphertext failed authentication")]
    Decrypt(#[source] AeadError),
    /// The protected header could not be serialised while packing.
    #[error("protected header could not be serialised")]
    HeaderEncode(#[source] serde_json::Error),
    /// Encryption failed while packing (should not happen with valid keys).
    #[error("encryption failed while packing")]
    Encrypt(#[source] askar_crypto::Error),
    /// Pack was called without recipients.
    #[error("cannot pack for zero recipients")]
    PackNoRecipients,
    /// A box could not be sealed while packing (should not happen with valid keys).
    #[error("sealing a box failed while packing")]
    BoxFailed,
}

/// The content cipher (ChaCha20-Poly1305) did not open: the ciphertext or its tag did not
/// authenticate (wrong key, tampered), or the key or nonce is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("authenticated decryption failed (wrong key, tampered, or malformed)")]
pub struct AeadError;

/// A box (libsodium `crypto_box` or sealed box) did not open: not for our key, from another
/// sender, tampered with, malformed, or made with a low-order public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("box did not open (wrong key or sender, tampered, malformed, or a low-order key)")]
pub struct BoxError;
