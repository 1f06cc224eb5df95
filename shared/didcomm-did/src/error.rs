//! Typed errors for DIDs, DID documents and signatures.
//!
//! Everything this crate reads comes from peers, so every way an input can be wrong has its own
//! variant: the mediator can then log what a peer sent and choose the problem-report, and tests
//! assert on the cause rather than on a message.

use didcomm_envelope::{KeyError, VerKey};
use thiserror::Error;

/// What was wrong with an encoded public key (multibase, multicodec, base58, JWK).
#[derive(Debug, Error)]
pub enum KeyDecodeError {
    /// A multibase value that does not start with `z` (base58btc, the only base used by DIDs).
    #[error("multibase value is not base58btc (it must start with 'z')")]
    NotBase58Multibase,
    /// Invalid base58 text.
    #[error("invalid base58")]
    Base58(#[source] bs58::decode::Error),
    /// Invalid base64url text (JWK `x`).
    #[error("invalid base64url")]
    Base64(#[source] base64::DecodeError),
    /// The multicodec prefix is cut off.
    #[error("truncated multicodec varint")]
    Varint,
    /// A multicodec that is not `ed25519-pub` (0xed) or `x25519-pub` (0xec), or not the one the
    /// context requires.
    #[error("multicodec {0:#x} is not the expected public key type")]
    UnexpectedMulticodec(u64),
    /// Key bytes of the wrong length.
    #[error("expected {expected} key bytes, got {actual}")]
    Length {
        /// Length a key of that type has.
        expected: usize,
        /// Length found.
        actual: usize,
    },
    /// Not a valid Ed25519 public key (bad base58, length, not on the curve, not a did:key).
    #[error("not a valid Ed25519 public key")]
    Ed25519(#[source] KeyError),
    /// A JWK that is not an OKP key on Ed25519 or X25519.
    #[error("JWK is not an OKP key on Ed25519 or X25519")]
    UnsupportedJwk,
}

/// Everything that can go wrong resolving a DID, reading a DID document, or checking a signed
/// attachment or `connection~sig`.
#[derive(Debug, Error)]
pub enum DidError {
    // ----- DID strings -----
    /// The DID is longer than any DID this crate accepts (a guard against quadratic base58
    /// decoding of hostile input).
    #[error("DID is {len} bytes long, more than the {max} accepted")]
    TooLong {
        /// Length of the DID.
        len: usize,
        /// Largest accepted length.
        max: usize,
    },
    /// Neither `did:<method>:<id>` nor an unqualified (base58) DID.
    #[error("not a DID: {0:?}")]
    NotADid(String),
    /// A DID method this crate does not resolve.
    #[error("DID method {0:?} is not supported (did:peer, did:key, did:sov with a document, unqualified)")]
    UnsupportedMethod(String),
    /// A did:peer numalgo other than 0, 1, 2 or 4.
    #[error("did:peer numalgo {0:?} is not supported")]
    UnsupportedPeerNumalgo(String),
    /// The DID can only be resolved from an attached document, and there is none.
    #[error("{did} cannot be resolved without an attached DID document")]
    MissingDocument {
        /// The DID.
        did: String,
    },
    /// The attached document's `id` is not the DID.
    #[error("attached DID document has id {doc_id:?}, expected {did:?}")]
    DocumentIdMismatch {
        /// The DID that was sent.
        did: String,
        /// The `id` of the attached document.
        doc_id: String,
    },
    /// A did:peer:1 whose hash is not the hash of the attached document.
    #[error("did:peer:1 {did} is not the hash of its attached document")]
    Peer1HashMismatch {
        /// The DID.
        did: String,
    },
    /// A key in a did:key, did:peer:0 or did:peer:2 does not decode.
    #[error("key {key:?} in the DID does not decode")]
    DidKey {
        /// The encoded key.
        key: String,
        /// Why it does not decode.
        #[source]
        source: KeyDecodeError,
    },

    // ----- did:peer:2 -----
    /// A did:peer:2 that does not start with `did:peer:2.`.
    #[error("did:peer:2 must continue with '.' after the numalgo")]
    Peer2Malformed,
    /// Two dots in a row, or a trailing dot.
    #[error("did:peer:2 has an empty element")]
    Peer2EmptyElement,
    /// A purpose code other than A, E, V, I, D, S.
    #[error("did:peer:2 element has unknown purpose code {0:?}")]
    Peer2UnknownPurpose(char),
    /// A service element that is not base64url.
    #[error("did:peer:2 service is not valid base64url")]
    Peer2ServiceBase64(#[source] base64::DecodeError),
    /// A service element that is not JSON.
    #[error("did:peer:2 service is not JSON")]
    Peer2ServiceJson(#[source] serde_json::Error),
    /// A service element that is JSON but neither an object nor an array of objects.
    #[error("did:peer:2 service must be a JSON object or an array of objects")]
    Peer2ServiceShape,

    // ----- did:peer:4 -----
    /// Neither `did:peer:4z<hash>:z<doc>` nor `did:peer:4z<hash>`.
    #[error("did:peer:4 {0:?} is neither long form (did:peer:4<hash>:<doc>) nor short form")]
    Peer4Malformed(String),
    /// The hash part is not the multihash of the encoded document.
    #[error("did:peer:4 hash does not match its encoded document")]
    Peer4HashMismatch,
    /// The encoded document is not multibase base58btc.
    #[error("did:peer:4 encoded document does not decode")]
    Peer4Encoding(#[source] KeyDecodeError),
    /// The encoded document is not tagged with the JSON multicodec (0x0200).
    #[error("did:peer:4 encoded document has multicodec {0:#x}, not JSON (0x200)")]
    Peer4NotJson(u64),
    /// The encoded document is not JSON.
    #[error("did:peer:4 encoded document is not JSON")]
    Peer4DocJson(#[source] serde_json::Error),

    // ----- DID documents -----
    /// The document bytes are not JSON.
    #[error("DID document is not JSON")]
    DocumentJson(#[source] serde_json::Error),
    /// The document is JSON but not an object.
    #[error("DID document is not a JSON object")]
    DocumentNotObject,
    /// A member the document needs is absent.
    #[error("{context} lacks `{field}`")]
    MissingField {
        /// Where: `DID document`, `verification method`, `service`.
        context: &'static str,
        /// The missing member.
        field: &'static str,
    },
    /// A member has the wrong JSON type.
    #[error("`{field}` in {context} must be {expected}")]
    WrongType {
        /// Where: `DID document`, `verification method`, `service`.
        context: &'static str,
        /// The member.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A list in the document is longer than any real document's.
    #[error("`{field}` has more than {max} entries")]
    TooManyEntries {
        /// The list.
        field: &'static str,
        /// The limit.
        max: usize,
    },
    /// A verification method of a supported type whose key does not decode.
    #[error("verification method {id:?} has an invalid key")]
    VerificationMethodKey {
        /// The verification method id.
        id: String,
        /// Why the key does not decode.
        #[source]
        source: KeyDecodeError,
    },

    // ----- services -----
    /// A DIDComm v1 service without recipient keys.
    #[error("service {service:?} has no recipient keys")]
    NoRecipientKeys {
        /// The service id.
        service: String,
    },
    /// A key reference to a verification method the document does not have.
    #[error(
        "service {service:?} references key {reference:?}, which the document does not define"
    )]
    UnknownKeyReference {
        /// The service id.
        service: String,
        /// The reference as written.
        reference: String,
    },
    /// A key reference to another DID that cannot be resolved without a network.
    #[error(
        "service {service:?} key {reference:?} belongs to a DID that cannot be resolved offline"
    )]
    UnresolvableKeyReference {
        /// The service id.
        service: String,
        /// The reference as written.
        reference: String,
        /// Why resolving that DID failed.
        #[source]
        source: Box<DidError>,
    },
    /// The routing keys of one document name more other DIDs than are resolved for it.
    #[error("routing keys name more than {max} other DIDs")]
    TooManyExternalDids {
        /// The limit.
        max: usize,
    },
    /// A recipient or routing key that is not an Ed25519 key (DIDComm v1 encrypts to Ed25519
    /// verkeys), and no Ed25519 key of the document maps to it.
    #[error("service {service:?} key {reference:?} is not an Ed25519 key")]
    NotEd25519 {
        /// The service id.
        service: String,
        /// The reference as written.
        reference: String,
    },
    /// A recipient or routing key written inline (base58 or did:key) that does not decode.
    #[error("service {service:?} key {reference:?} is malformed")]
    ServiceKey {
        /// The service id.
        service: String,
        /// The key as written.
        reference: String,
        /// Why it does not decode.
        #[source]
        source: KeyDecodeError,
    },

    // ----- signed attachments (JWS) -----
    /// The attachment has no `data.base64` (a JWS signs the base64url of the bytes, so `json`
    /// content cannot be checked).
    #[error("signed attachment has no data.base64")]
    AttachmentNotBase64,
    /// `data.base64` does not decode.
    #[error("attachment data.base64 is not valid base64")]
    AttachmentBase64(#[source] base64::DecodeError),
    /// The attachment has no `data.jws`.
    #[error("attachment is not signed (no data.jws)")]
    AttachmentNotSigned,
    /// `data.jws`, or an entry of its `signatures`, is not a JSON object.
    #[error("JWS or JWS signature entry is not a JSON object")]
    JwsNotObject,
    /// `signatures` is present but not an array.
    #[error("JWS `signatures` is not an array")]
    JwsSignaturesNotArray,
    /// `signatures` is an empty array.
    #[error("JWS has no signatures")]
    JwsNoSignatures,
    /// A JWS member is absent or not a string.
    #[error("JWS lacks string member `{0}`")]
    JwsMissingField(&'static str),
    /// A JWS member is not base64url.
    #[error("JWS `{field}` is not valid base64url")]
    JwsBase64 {
        /// `protected` or `signature`.
        field: &'static str,
        /// The decoder's error.
        #[source]
        source: base64::DecodeError,
    },
    /// The protected header is not a JSON object.
    #[error("JWS protected header is not a JSON object")]
    JwsProtectedJson(#[source] serde_json::Error),
    /// `alg` is not `EdDSA`.
    #[error("JWS alg {0:?} is not supported (only EdDSA)")]
    JwsUnsupportedAlg(String),
    /// Neither a `jwk` nor a did:key `kid` names the signer.
    #[error("JWS names no signer key (no jwk and no did:key kid)")]
    JwsNoSignerKey,
    /// The `jwk` is not an Ed25519 OKP key.
    #[error("JWS jwk is not a usable Ed25519 key")]
    JwsJwk(#[source] KeyDecodeError),
    /// A did:key `kid` that does not decode to an Ed25519 key.
    #[error("JWS kid {kid:?} is not an Ed25519 did:key")]
    JwsKid {
        /// The kid.
        kid: String,
        /// Why it is not a key.
        #[source]
        source: KeyError,
    },
    /// `jwk` and `kid` name different keys.
    #[error("JWS jwk {jwk} and kid {kid} are different keys")]
    JwsKeyMismatch {
        /// Key of the jwk.
        jwk: VerKey,
        /// Key of the kid.
        kid: VerKey,
    },
    /// The signature does not verify.
    #[error("JWS signature by {signer} does not verify")]
    JwsBadSignature {
        /// The key it claims.
        signer: VerKey,
    },

    // ----- connection~sig -----
    /// `connection~sig` is not a JSON object.
    #[error("connection~sig is not a JSON object")]
    SigNotObject,
    /// `@type` is not `…/signature/1.0/ed25519Sha512_single`.
    #[error("connection~sig @type {0:?} is not signature/1.0/ed25519Sha512_single")]
    SigUnsupportedType(String),
    /// A member is absent or not a string.
    #[error("connection~sig lacks string member `{0}`")]
    SigMissingField(&'static str),
    /// A member is not base64url.
    #[error("connection~sig `{field}` is not valid base64url")]
    SigBase64 {
        /// `sig_data` or `signature`.
        field: &'static str,
        /// The decoder's error.
        #[source]
        source: base64::DecodeError,
    },
    /// `sig_data` is shorter than its 8-byte timestamp.
    #[error("connection~sig sig_data has {0} bytes, less than the 8-byte timestamp")]
    SigDataTooShort(usize),
    /// `signer` is not a verkey.
    #[error("connection~sig signer is not an Ed25519 verkey")]
    SigSigner(#[source] KeyError),
    /// The signature does not verify.
    #[error("connection~sig signature by {0} does not verify")]
    SigInvalid(VerKey),
    /// The signed data after the timestamp is not JSON.
    #[error("connection~sig signed data is not JSON")]
    SigConnectionJson(#[source] serde_json::Error),
}
