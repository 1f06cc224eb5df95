//! The DIDComm v1 (Aries) plaintext message model.
//!
//! - [`MessageType`] and [`ProtocolUri`]: `@type` and protocol URIs (RFC 0003, RFC 0348).
//! - [`Thread`], [`Transport`], [`Timing`]: the decorators a mediator acts on.
//! - [`Attachment`]: attachment descriptors (RFC 0017).
//! - [`Message`]: a parsed message whose body handlers decode into their own types.
//! - [`ProblemReport`]: problem reports (RFC 0035).
//!
//! Encryption and envelopes are not handled here; this crate starts from plaintext JSON.

mod attachment;
mod decorators;
mod message;
mod message_type;
mod problem_report;

pub use attachment::{Attachment, AttachmentData, AttachmentError};
pub use decorators::{ReturnRoute, Thread, Timing, Transport, UnknownReturnRoute};
pub use message::{Message, MessageError};
pub use message_type::{DocUri, MessageType, MessageTypeError, ProtocolUri};
pub use problem_report::{
    Description, FixHint, Impact, ProblemReport, ProblemReportBuilder, WhoRetries,
};
