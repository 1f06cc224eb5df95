//! Why an inbound message was refused, and the HTTP status each reason maps to. The server maps
//! these at its edge; handlers return them.

use axum::http::StatusCode;
use didcomm_envelope::EnvelopeError;
use didcomm_message::MessageError;
use mediator_store::StoreError;
use thiserror::Error;

use crate::stats::Limit;

/// An inbound message the mediator refused.
#[derive(Debug, Error)]
pub enum InboundError {
    /// The HTTP content type is not one of a DIDComm envelope.
    #[error("unsupported content type {0:?}")]
    UnsupportedMediaType(String),
    /// The envelope is malformed or could not be opened.
    #[error("envelope refused: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The envelope is for no key this mediator holds (an unknown or deleted connection).
    #[error("envelope is for no key of this mediator (unknown connection): {0:?}")]
    UnknownRecipient(Vec<String>),
    /// A message on a connection that is not authcrypted by that connection's key.
    #[error("message on connection {connection} is not from that connection's key")]
    NotFromConnection {
        /// The connection the envelope was encrypted for.
        connection: String,
    },
    /// The plaintext is not a DIDComm message.
    #[error("plaintext is not a DIDComm message")]
    Message(#[from] MessageError),
    /// A Forward to a key no connection registered.
    #[error("forward to unknown recipient key {0}")]
    UnknownForwardRecipient(String),
    /// A Forward whose body is malformed.
    #[error("forward is malformed: {0}")]
    BadForward(String),
    /// A field of a message has a value that cannot be used (a recipient key that is no key).
    #[error("invalid field: {0}")]
    BadField(String),
    /// The message needs a connection and there is none.
    #[error("{0} requires an established connection")]
    NoConnection(String),
    /// Storage failed, or a queue is at its cap: nothing was acknowledged.
    #[error("storage refused: {0}")]
    Store(#[from] StoreError),
    /// A limit or a rule against abuse refused the message (counted by the one who made this).
    #[error("{reason}")]
    Refused {
        /// Which limit.
        limit: Limit,
        /// What was wrong, for the sender.
        reason: String,
    },
    /// Something of ours failed (key derivation, packing).
    #[error("internal error: {0}")]
    Internal(String),
}

impl InboundError {
    /// The HTTP status for this refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Envelope(_) | Self::Message(_) | Self::BadForward(_) | Self::BadField(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::UnknownRecipient(_) | Self::NotFromConnection { .. } | Self::NoConnection(_) => {
                StatusCode::FORBIDDEN
            }
            Self::UnknownForwardRecipient(_) => StatusCode::NOT_FOUND,
            Self::Store(e) if e.is_queue_full() => StatusCode::INSUFFICIENT_STORAGE,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Refused { limit, .. } => match limit {
                Limit::HandshakeProof => StatusCode::FORBIDDEN,
                Limit::HandshakeThread | Limit::Replay => StatusCode::CONFLICT,
                Limit::RateMessages | Limit::RateUpgrades | Limit::RateConnections => {
                    StatusCode::TOO_MANY_REQUESTS
                }
                _ => StatusCode::BAD_REQUEST,
            },
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the sender is told: what was wrong, never whose connection or keys it touched (the
    /// sender may be anyone). The log gets the full [`Display`](std::fmt::Display) text.
    pub fn public_message(&self) -> String {
        match self {
            Self::UnknownRecipient(_) => {
                "envelope is for no key of this mediator (unknown connection)".into()
            }
            Self::NotFromConnection { .. } => {
                "message is not authcrypted by the key of the connection it is for".into()
            }
            Self::UnknownForwardRecipient(_) => "forward to a key no connection registered".into(),
            Self::Store(StoreError::QueueFull { cap, .. }) => {
                format!("the recipient's queue is full ({cap})")
            }
            Self::Store(_) => "storage unavailable; nothing was accepted, retry later".into(),
            Self::Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }

    /// A stable machine-readable code, for logs and the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Envelope(_) => "bad_envelope",
            Self::UnknownRecipient(_) => "unknown_recipient",
            Self::NotFromConnection { .. } => "not_from_connection",
            Self::Message(_) => "bad_message",
            Self::UnknownForwardRecipient(_) => "unknown_forward_recipient",
            Self::BadForward(_) => "bad_forward",
            Self::BadField(_) => "bad_field",
            Self::NoConnection(_) => "no_connection",
            Self::Store(e) if e.is_queue_full() => "queue_full",
            Self::Store(_) => "storage_unavailable",
            Self::Refused { limit, .. } => limit.name(),
            Self::Internal(_) => "internal",
        }
    }
}

/// A request the transport edge refused before (or instead of) reading its message: a limit of
/// the listener, not a judgement of the content.
#[derive(Debug, Error)]
pub enum Refusal {
    /// This client is over a rate limit (`rate_limit.*`); retry after this many seconds.
    #[error("too many requests from this address: retry after {0} s")]
    RateLimited(u64),
    /// The request body did not arrive within `transport.body_timeout_ms`.
    #[error("request body not received within {0} ms")]
    BodyTimeout(u64),
    /// The request body is larger than `limits.max_message_bytes`.
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// The body could not be read (the client went away mid-body).
    #[error("request body could not be read")]
    BodyRead(#[source] axum::Error),
    /// The instance is at a cap (connections, WebSockets) or shutting down; retry (elsewhere).
    #[error("{0}")]
    Busy(&'static str),
}

impl Refusal {
    /// The HTTP status for this refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyRead(_) => StatusCode::BAD_REQUEST,
            Self::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            Self::RateLimited(_) => "rate_limited",
            Self::BodyTimeout(_) => "body_timeout",
            Self::TooLarge(_) => "too_large",
            Self::BodyRead(_) => "bad_body",
            Self::Busy(_) => "unavailable",
        }
    }

    /// Seconds for a `Retry-After` header, if the client should retry.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited(s) => Some(*s),
            Self::Busy(_) => Some(1),
            _ => None,
        }
    }
}
