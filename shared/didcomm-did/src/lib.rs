//! DIDs and DID documents of DIDComm v1 connections, and the signatures that bind them.
//!
//! What a DID Exchange (1.0, 1.1) or Connections 1.0 responder needs, matched against what
//! credo-ts 0.5 and ACA-Py 1.x send and accept:
//!
//! - [`resolve`] / [`resolve_attached`]: a peer's DID (did:peer:0/1/2/4, did:key, unqualified
//!   or did:sov with a legacy DIDDoc), with its attached document where needed, into a
//!   [`DidDoc`];
//! - [`DidDoc::didcomm_services`]: where and to which keys to send, every key reference
//!   resolved ([`DidCommService`]);
//! - [`OwnDid`]: our own did:peer:1, did:peer:2, did:peer:4 and unqualified DIDs, encoded as
//!   credo encodes its own;
//! - [`sign_attachment`] / [`verify_attachment`]: JWS-signed attachments (`did_doc~attach`,
//!   `did_rotate~attach`);
//! - [`sign_connection`] / [`verify_connection_sig`]: the Connections 1.0 `connection~sig`.
//!
//! Everything read here comes from peers: parsing never panics and every fault has its own
//! [`DidError`] variant. Nothing is fetched from a network.

mod connection_sig;
mod create;
mod doc;
mod encoding;
mod error;
mod jws;
mod peer;
mod resolve;

pub use connection_sig::{
    sign_connection, sign_connection_at, verify_connection_sig, SIGNATURE_TYPE, SIGNATURE_TYPE_SOV,
};
pub use create::{OwnDid, PeerDid1, PeerDid4, UnqualifiedDid};
pub use doc::{
    DidCommService, DidDoc, PublicKey, Service, ServiceKind, VerificationMethod,
    VerificationMethodType, MAX_DOC_ENTRIES, MAX_EXTERNAL_DIDS, QUEUE_ENDPOINT,
};
pub use error::{DidError, KeyDecodeError};
pub use jws::{
    sign_attachment, sign_attachment_multi, verify_attachment, verify_attachment_signers,
};
pub use resolve::{resolve, resolve_attached, MAX_DID_LEN};
