//! Why a load test could not run: configuration and set-up failures.
//!
//! Failures while sending and receiving are not errors of the run: they are what it measures, and
//! are counted in the report instead.

use didcomm_did::DidError;
use didcomm_envelope::EnvelopeError;
use tokio_tungstenite::tungstenite;

/// A load test could not be set up or run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The HTTP client could not be built.
    #[error("HTTP client could not be built")]
    HttpClient {
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// An HTTP request failed (connection, timeout, body).
    #[error("HTTP request to {url} failed")]
    Http {
        /// The URL.
        url: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// The mediator answered with a status other than the one the step needs.
    #[error("{step}: HTTP {status} from {url}: {body}")]
    Status {
        /// What was being done.
        step: &'static str,
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// A WebSocket could not be opened or written.
    #[error("WebSocket {url} failed")]
    WebSocket {
        /// The URL.
        url: String,
        /// tungstenite's error (boxed: it is large, and every Result here carries its size).
        #[source]
        source: Box<tungstenite::Error>,
    },
    /// The WebSocket closed during set-up.
    #[error("WebSocket {url} closed during set-up")]
    WebSocketClosed {
        /// The URL.
        url: String,
    },
    /// An envelope could not be packed or opened.
    #[error("envelope could not be packed or opened")]
    Envelope(#[from] EnvelopeError),
    /// A key in a message did not parse.
    #[error("bad key in {field}")]
    Key {
        /// Where the key was.
        field: &'static str,
        /// The envelope crate's error.
        #[source]
        source: didcomm_envelope::KeyError,
    },
    /// The mediator's DID, document or signed attachment was not acceptable.
    #[error("mediator DID or signed attachment not acceptable")]
    Did(#[from] DidError),
    /// A message was not the JSON expected.
    #[error("message is not the expected JSON")]
    Json(#[from] serde_json::Error),
    /// The mediator answered, but not what the protocol step needs.
    #[error("{step}: unexpected answer: {got}")]
    Protocol {
        /// What was being done.
        step: &'static str,
        /// What came back (shortened).
        got: String,
    },
    /// No answer in time.
    #[error("{step}: no answer within {secs} s")]
    Timeout {
        /// What was being done.
        step: &'static str,
        /// The time waited.
        secs: u64,
    },
    /// Set-up of one recipient failed.
    #[error("setting up recipient {index} on {url}")]
    Recipient {
        /// Which recipient.
        index: usize,
        /// Its instance.
        url: String,
        /// Why.
        #[source]
        source: Box<LoadError>,
    },
    /// A task of the run panicked or was cancelled.
    #[error("a load-test task failed")]
    Task(#[from] tokio::task::JoinError),
}

impl LoadError {
    /// A [`LoadError::Protocol`] with the answer shortened to something printable.
    pub(crate) fn protocol(step: &'static str, got: &impl std::fmt::Display) -> Self {
        Self::Protocol {
            step,
            got: shorten(&got.to_string()),
        }
    }
}

/// The first 300 characters of `text`: enough to see what a mediator answered.
pub(crate) fn shorten(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
