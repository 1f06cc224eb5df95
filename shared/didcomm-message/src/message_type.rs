//! Message type URIs (`@type`) and protocol URIs, per Aries RFC 0003 and RFC 0348.
//!
//! A message type has the form `<doc-uri><protocol>/<major>.<minor>/<name>`, a protocol
//! URI (PIURI) the form `<doc-uri><protocol>/<major>.<minor>`. Peers use two doc URIs for
//! the same protocols: `https://didcomm.org/` and the legacy
//! `did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/` (RFC 0348). Which one a peer used is kept so that
//! replies can be written the way that peer understands.
//!
//! Any other `https://<host>/...` prefix is accepted as [`DocUri::Other`]: it holds the whole
//! prefix up to and including the `/` before the protocol name, so the last two (or, for a
//! message type, three) path segments are the protocol, version and name, and whatever comes
//! before them belongs to the doc URI. Other schemes (including other `did:` prefixes) are
//! rejected.
//!
//! Dispatch should match on protocol, major version and name, and ignore the minor version
//! and doc URI: RFC 0003 says a different minor version of a known protocol is still
//! understood. For example:
//!
//! ```
//! use didcomm_message::MessageType;
//!
//! let ty: MessageType = "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/routing/1.0/forward".parse().unwrap();
//! match (ty.protocol(), ty.major(), ty.name()) {
//!     ("routing", 1, "forward") => {}
//!     _ => unreachable!(),
//! }
//! assert!(ty.is("routing", 1, "forward"));
//! ```

use std::fmt;
use std::num::ParseIntError;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const DIDCOMM_ORG: &str = "https://didcomm.org/";
const DID_SOV: &str = "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/";
const HTTPS: &str = "https://";

/// The prefix in front of the protocol name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum DocUri {
    /// `https://didcomm.org/`
    #[default]
    DidcommOrg,
    /// `did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/`, the pre-RFC 0348 prefix.
    DidSov,
    /// Any other `https://` prefix, stored verbatim and ending in `/`.
    ///
    /// Values built by hand must end in `/`, or the [`Display`](fmt::Display) form of types
    /// using them will not parse back.
    Other(String),
}

impl DocUri {
    /// The prefix as it appears in front of the protocol name, trailing `/` included.
    pub fn as_str(&self) -> &str {
        match self {
            DocUri::DidcommOrg => DIDCOMM_ORG,
            DocUri::DidSov => DID_SOV,
            DocUri::Other(s) => s,
        }
    }
}

impl fmt::Display for DocUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a message type or protocol URI could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageTypeError {
    /// The string is empty.
    #[error("message type is empty")]
    Empty,
    /// Whitespace or control characters are never part of a type URI.
    #[error("message type contains whitespace or control character {ch:?}")]
    InvalidCharacter {
        /// The first offending character.
        ch: char,
    },
    /// The prefix is neither of the known doc URIs nor an `https://<host>/` URI.
    #[error(
        "unknown doc URI: expected `{DIDCOMM_ORG}`, `{DID_SOV}` or another `https://<host>/` prefix"
    )]
    UnknownDocUri,
    /// The protocol name segment is empty.
    #[error("protocol name is empty")]
    EmptyProtocol,
    /// There is no version segment, or it is empty.
    #[error("version is missing")]
    MissingVersion,
    /// The version is not `<major>.<minor>` with both parts made of ASCII digits.
    #[error("malformed version {version:?}: expected <major>.<minor>")]
    MalformedVersion {
        /// The version segment as received.
        version: String,
    },
    /// A version number does not fit in a `u16`.
    #[error("version {version:?} is out of range")]
    VersionOutOfRange {
        /// The version segment as received.
        version: String,
        /// The integer parse failure.
        source: ParseIntError,
    },
    /// The message name segment is absent (the string looks like a protocol URI).
    #[error("message name is missing")]
    MissingName,
    /// The message name segment is empty (a trailing `/`).
    #[error("message name is empty")]
    EmptyName,
    /// There are more path segments after a known doc URI than the form allows.
    #[error("expected {expected} path segments after the doc URI, found {found}")]
    TooManySegments {
        /// 3 for a message type, 2 for a protocol URI.
        expected: usize,
        /// How many there were.
        found: usize,
    },
}

/// A parsed `@type`, such as `https://didcomm.org/messagepickup/2.0/status-request`.
///
/// Equality compares every part, including doc URI and minor version; use [`MessageType::is`]
/// or [`MessageType::protocol_matches`] for dispatch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageType {
    doc_uri: DocUri,
    protocol: String,
    major: u16,
    minor: u16,
    name: String,
}

impl MessageType {
    /// Builds a type from its parts, e.g. a reply in the doc URI the peer used.
    ///
    /// The parts are not checked: `protocol` and `name` must be non-empty and free of `/` and
    /// whitespace for the result to parse back. Parse the string form to validate untrusted
    /// parts.
    pub fn new(
        doc_uri: DocUri,
        protocol: impl Into<String>,
        major: u16,
        minor: u16,
        name: impl Into<String>,
    ) -> Self {
        Self {
            doc_uri,
            protocol: protocol.into(),
            major,
            minor,
            name: name.into(),
        }
    }

    /// The doc URI the type was written with.
    pub fn doc_uri(&self) -> &DocUri {
        &self.doc_uri
    }

    /// The protocol name, e.g. `messagepickup`.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// The major version.
    pub fn major(&self) -> u16 {
        self.major
    }

    /// The minor version.
    pub fn minor(&self) -> u16 {
        self.minor
    }

    /// The message name, e.g. `status-request`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is message `name` of `protocol` major version `major`, in any minor
    /// version and under any doc URI.
    pub fn is(&self, protocol: &str, major: u16, name: &str) -> bool {
        self.protocol_matches(protocol, major) && self.name == name
    }

    /// Whether this type belongs to `protocol` major version `major`, in any minor version and
    /// under any doc URI (the RFC 0003 semver rule).
    pub fn protocol_matches(&self, protocol: &str, major: u16) -> bool {
        self.protocol == protocol && self.major == major
    }

    /// Another message of the same protocol, version and doc URI, e.g. the reply `status` to a
    /// `status-request`.
    pub fn with_name(&self, name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..self.clone()
        }
    }

    /// The protocol this message belongs to, e.g. `https://didcomm.org/messagepickup/2.0`.
    pub fn protocol_uri(&self) -> ProtocolUri {
        ProtocolUri::new(
            self.doc_uri.clone(),
            self.protocol.clone(),
            self.major,
            self.minor,
        )
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}/{}.{}/{}",
            self.doc_uri, self.protocol, self.major, self.minor, self.name
        )
    }
}

impl FromStr for MessageType {
    type Err = MessageTypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (doc_uri, path) = split_doc_uri(s, 3)?;
        let [protocol, version, name] = segments::<3>(path)?;
        let protocol = protocol.unwrap_or_default();
        if protocol.is_empty() {
            return Err(MessageTypeError::EmptyProtocol);
        }
        let (major, minor) = parse_version(version)?;
        match name {
            None => Err(MessageTypeError::MissingName),
            Some("") => Err(MessageTypeError::EmptyName),
            Some(name) => Ok(Self {
                doc_uri,
                protocol: protocol.to_owned(),
                major,
                minor,
                name: name.to_owned(),
            }),
        }
    }
}

/// A protocol URI (PIURI) such as `https://didcomm.org/messagepickup/2.0`, as used by
/// discover-features and out-of-band `handshake_protocols`.
///
/// A trailing `/` is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProtocolUri {
    doc_uri: DocUri,
    protocol: String,
    major: u16,
    minor: u16,
}

impl ProtocolUri {
    /// Builds a protocol URI from its parts; like [`MessageType::new`], nothing is checked.
    pub fn new(doc_uri: DocUri, protocol: impl Into<String>, major: u16, minor: u16) -> Self {
        Self {
            doc_uri,
            protocol: protocol.into(),
            major,
            minor,
        }
    }

    /// The doc URI the protocol URI was written with.
    pub fn doc_uri(&self) -> &DocUri {
        &self.doc_uri
    }

    /// The protocol name.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// The major version.
    pub fn major(&self) -> u16 {
        self.major
    }

    /// The minor version.
    pub fn minor(&self) -> u16 {
        self.minor
    }

    /// Whether this is `protocol` major version `major`, in any minor version and doc URI.
    pub fn matches(&self, protocol: &str, major: u16) -> bool {
        self.protocol == protocol && self.major == major
    }

    /// The type of message `name` in this protocol.
    pub fn message_type(&self, name: impl Into<String>) -> MessageType {
        MessageType::new(
            self.doc_uri.clone(),
            self.protocol.clone(),
            self.major,
            self.minor,
            name,
        )
    }
}

impl fmt::Display for ProtocolUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}/{}.{}",
            self.doc_uri, self.protocol, self.major, self.minor
        )
    }
}

impl FromStr for ProtocolUri {
    type Err = MessageTypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (doc_uri, path) = split_doc_uri(s, 2)?;
        let [protocol, version] = segments::<2>(path)?;
        let protocol = protocol.unwrap_or_default();
        if protocol.is_empty() {
            return Err(MessageTypeError::EmptyProtocol);
        }
        let (major, minor) = parse_version(version)?;
        Ok(Self {
            doc_uri,
            protocol: protocol.to_owned(),
            major,
            minor,
        })
    }
}

/// Splits off the doc URI; `segments` is how many path segments the caller expects after it,
/// which decides where an [`DocUri::Other`] prefix ends.
fn split_doc_uri(s: &str, segments: usize) -> Result<(DocUri, &str), MessageTypeError> {
    if s.is_empty() {
        return Err(MessageTypeError::Empty);
    }
    if let Some(ch) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(MessageTypeError::InvalidCharacter { ch });
    }
    if let Some(path) = s.strip_prefix(DIDCOMM_ORG) {
        return Ok((DocUri::DidcommOrg, path));
    }
    if let Some(path) = s.strip_prefix(DID_SOV) {
        return Ok((DocUri::DidSov, path));
    }
    let rest = s
        .strip_prefix(HTTPS)
        .ok_or(MessageTypeError::UnknownDocUri)?;
    let authority_len = match rest.find('/') {
        Some(0) | None => return Err(MessageTypeError::UnknownDocUri),
        Some(i) => i,
    };
    let path_start = HTTPS.len() + authority_len + 1;
    let path = s.get(path_start..).unwrap_or_default();
    // Everything before the last `segments` path segments is part of the doc URI.
    let split = path
        .rmatch_indices('/')
        .nth(segments - 1)
        .map_or(path_start, |(i, _)| path_start + i + 1);
    let (prefix, path) = s.split_at(split);
    Ok((DocUri::Other(prefix.to_owned()), path))
}

/// The `N` `/`-separated segments of `path`; the first is always present and missing later
/// ones are `None`, so that each caller can say which part is missing.
fn segments<const N: usize>(path: &str) -> Result<[Option<&str>; N], MessageTypeError> {
    let mut out = [None; N];
    let mut found = 0;
    for segment in path.split('/') {
        if let Some(slot) = out.get_mut(found) {
            *slot = Some(segment);
        }
        found += 1;
    }
    if found > N {
        return Err(MessageTypeError::TooManySegments { expected: N, found });
    }
    Ok(out)
}

fn parse_version(version: Option<&str>) -> Result<(u16, u16), MessageTypeError> {
    let version = match version {
        None | Some("") => return Err(MessageTypeError::MissingVersion),
        Some(v) => v,
    };
    let malformed = || MessageTypeError::MalformedVersion {
        version: version.to_owned(),
    };
    let (major, minor) = version.split_once('.').ok_or_else(malformed)?;
    let number = |part: &str| {
        // `u16::from_str` also takes a leading `+`, which is not valid here.
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        part.parse::<u16>()
            .map_err(|source| MessageTypeError::VersionOutOfRange {
                version: version.to_owned(),
                source,
            })
    };
    Ok((number(major)?, number(minor)?))
}

macro_rules! string_serde {
    ($ty:ty, $expecting:literal) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
                s.parse().map_err(|e| {
                    serde::de::Error::custom(format_args!("invalid {} {s:?}: {e}", $expecting))
                })
            }
        }
    };
}

string_serde!(MessageType, "message type");
string_serde!(ProtocolUri, "protocol URI");

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> Result<MessageType, MessageTypeError> {
        s.parse()
    }

    #[test]
    fn parses_didcomm_org() {
        let ty = parse("https://didcomm.org/messagepickup/2.0/status-request").unwrap();
        assert_eq!(ty.doc_uri(), &DocUri::DidcommOrg);
        assert_eq!(ty.protocol(), "messagepickup");
        assert_eq!((ty.major(), ty.minor()), (2, 0));
        assert_eq!(ty.name(), "status-request");
        assert_eq!(
            ty.to_string(),
            "https://didcomm.org/messagepickup/2.0/status-request"
        );
    }

    #[test]
    fn parses_did_sov() {
        let s = "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/routing/1.0/forward";
        let ty = parse(s).unwrap();
        assert_eq!(ty.doc_uri(), &DocUri::DidSov);
        assert!(ty.is("routing", 1, "forward"));
        assert_eq!(ty.to_string(), s);
    }

    #[test]
    fn parses_other_examples() {
        let ty = parse("https://didcomm.org/coordinate-mediation/1.0/mediate-request").unwrap();
        assert!(ty.is("coordinate-mediation", 1, "mediate-request"));
        let ty = parse("https://didcomm.org/didexchange/1.1/request").unwrap();
        assert!(ty.is("didexchange", 1, "request"));
        assert_eq!(ty.minor(), 1);
    }

    #[test]
    fn parses_other_https_doc_uri() {
        let ty = parse("https://example.com/protocols/v1/my-proto/3.14/hello").unwrap();
        assert_eq!(
            ty.doc_uri(),
            &DocUri::Other("https://example.com/protocols/v1/".into())
        );
        assert!(ty.is("my-proto", 3, "hello"));
        assert_eq!(ty.minor(), 14);
        assert_eq!(
            ty.to_string(),
            "https://example.com/protocols/v1/my-proto/3.14/hello"
        );

        let ty = parse("https://example.com/p/1.0/n").unwrap();
        assert_eq!(ty.doc_uri().as_str(), "https://example.com/");
    }

    #[test]
    fn other_minor_versions_match() {
        let ty = parse("https://didcomm.org/messagepickup/2.7/status").unwrap();
        assert!(ty.protocol_matches("messagepickup", 2));
        assert!(ty.is("messagepickup", 2, "status"));
        assert!(!ty.protocol_matches("messagepickup", 1));
        assert!(!ty.is("messagepickup", 2, "status-request"));
        assert!(!ty.is("pickup", 2, "status"));
    }

    #[test]
    fn equality_distinguishes_doc_uri_but_dispatch_does_not() {
        let a = parse("https://didcomm.org/routing/1.0/forward").unwrap();
        let b = parse("did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/routing/1.0/forward").unwrap();
        assert_ne!(a, b);
        assert!(a.is("routing", 1, "forward") && b.is("routing", 1, "forward"));
    }

    #[test]
    fn new_and_with_name_keep_doc_uri() {
        let req =
            parse("did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/messagepickup/2.0/status-request").unwrap();
        let reply = req.with_name("status");
        assert_eq!(
            reply.to_string(),
            "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/messagepickup/2.0/status"
        );
        let built = MessageType::new(req.doc_uri().clone(), "messagepickup", 2, 0, "status");
        assert_eq!(built, reply);
    }

    #[test]
    fn leading_zeros_are_accepted_and_canonicalised() {
        let ty = parse("https://didcomm.org/routing/01.00/forward").unwrap();
        assert_eq!(ty.to_string(), "https://didcomm.org/routing/1.0/forward");
    }

    #[test]
    fn malformed_types() {
        use MessageTypeError as E;
        let cases: &[(&str, E)] = &[
            ("", E::Empty),
            (
                "https://didcomm.org/routing/1.0/for ward",
                E::InvalidCharacter { ch: ' ' },
            ),
            (
                " https://didcomm.org/routing/1.0/forward",
                E::InvalidCharacter { ch: ' ' },
            ),
            (
                "https://didcomm.org/routing/1.0/forward\n",
                E::InvalidCharacter { ch: '\n' },
            ),
            ("routing/1.0/forward", E::UnknownDocUri),
            ("http://didcomm.org/routing/1.0/forward", E::UnknownDocUri),
            (
                "did:sov:SomeoneElse;spec/routing/1.0/forward",
                E::UnknownDocUri,
            ),
            ("https://", E::UnknownDocUri),
            ("https:///routing/1.0/forward", E::UnknownDocUri),
            ("https://example.com", E::UnknownDocUri),
            ("https://didcomm.org/", E::EmptyProtocol),
            ("https://didcomm.org//1.0/forward", E::EmptyProtocol),
            ("https://didcomm.org/routing", E::MissingVersion),
            ("https://didcomm.org/routing//forward", E::MissingVersion),
            ("https://didcomm.org/routing/1.0", E::MissingName),
            ("https://didcomm.org/routing/1.0/", E::EmptyName),
            ("https://example.com/routing/1.0/", E::EmptyName),
            (
                "https://didcomm.org/routing/forward",
                E::MalformedVersion {
                    version: "forward".into(),
                },
            ),
            (
                "https://didcomm.org/routing/1/forward",
                E::MalformedVersion {
                    version: "1".into(),
                },
            ),
            (
                "https://didcomm.org/routing/1.x/forward",
                E::MalformedVersion {
                    version: "1.x".into(),
                },
            ),
            (
                "https://didcomm.org/routing/+1.0/forward",
                E::MalformedVersion {
                    version: "+1.0".into(),
                },
            ),
            (
                "https://didcomm.org/routing/1.0.0/forward",
                E::MalformedVersion {
                    version: "1.0.0".into(),
                },
            ),
            (
                "https://didcomm.org/routing/.0/forward",
                E::MalformedVersion {
                    version: ".0".into(),
                },
            ),
            (
                "https://didcomm.org/extra/routing/1.0/forward",
                E::TooManySegments {
                    expected: 3,
                    found: 4,
                },
            ),
            (
                "https://didcomm.org/routing/1.0/forward/",
                E::TooManySegments {
                    expected: 3,
                    found: 4,
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(&parse(input).unwrap_err(), expected, "input {input:?}");
        }
    }

    #[test]
    fn version_out_of_range_keeps_source() {
        let err = parse("https://didcomm.org/routing/1.65536/forward").unwrap_err();
        match &err {
            MessageTypeError::VersionOutOfRange { version, .. } => assert_eq!(version, "1.65536"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn serde_as_string() {
        let ty = parse("https://didcomm.org/routing/1.0/forward").unwrap();
        let json = serde_json::to_string(&ty).unwrap();
        assert_eq!(json, "\"https://didcomm.org/routing/1.0/forward\"");
        let back: MessageType = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ty);
        let err = serde_json::from_str::<MessageType>("\"routing/1.0\"").unwrap_err();
        assert!(err.to_string().contains("unknown doc URI"), "{err}");
        assert!(serde_json::from_str::<MessageType>("42").is_err());
    }

    #[test]
    fn protocol_uri() {
        let p: ProtocolUri = "https://didcomm.org/messagepickup/2.0".parse().unwrap();
        assert!(p.matches("messagepickup", 2));
        assert_eq!(p.to_string(), "https://didcomm.org/messagepickup/2.0");
        assert_eq!(
            p.message_type("status").to_string(),
            "https://didcomm.org/messagepickup/2.0/status"
        );
        let p: ProtocolUri = "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/connections/1.0"
            .parse()
            .unwrap();
        assert_eq!(p.doc_uri(), &DocUri::DidSov);
        let p: ProtocolUri = "https://example.com/x/didexchange/1.1".parse().unwrap();
        assert_eq!(p.doc_uri().as_str(), "https://example.com/x/");
        assert_eq!((p.protocol(), p.major(), p.minor()), ("didexchange", 1, 1));

        let ty: MessageType = "https://didcomm.org/didexchange/1.1/request"
            .parse()
            .unwrap();
        assert_eq!(
            ty.protocol_uri().to_string(),
            "https://didcomm.org/didexchange/1.1"
        );

        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<ProtocolUri>(&json).unwrap(), p);
    }

    #[test]
    fn malformed_protocol_uris() {
        use MessageTypeError as E;
        let parse = |s: &str| s.parse::<ProtocolUri>().unwrap_err();
        assert_eq!(
            parse("https://didcomm.org/messagepickup"),
            E::MissingVersion
        );
        assert_eq!(
            parse("https://didcomm.org/messagepickup/2.0/"),
            E::TooManySegments {
                expected: 2,
                found: 3
            }
        );
        assert_eq!(
            parse("https://didcomm.org/messagepickup/2.0/status"),
            E::TooManySegments {
                expected: 2,
                found: 3
            }
        );
        assert_eq!(parse("https://didcomm.org//2.0"), E::EmptyProtocol);
        assert_eq!(
            parse("https://didcomm.org/messagepickup/two"),
            E::MalformedVersion {
                version: "two".into()
            }
        );
        assert_eq!(parse("messagepickup/2.0"), E::UnknownDocUri);
        assert_eq!(parse(""), E::Empty);
    }

    fn doc_uri() -> impl Strategy<Value = DocUri> {
        prop_oneof![
            Just(DocUri::DidcommOrg),
            Just(DocUri::DidSov),
            // `.example` keeps generated hosts away from didcomm.org, whose paths are
            // interpreted as protocol names.
            "https://[a-z]{1,10}\\.example/([a-z0-9._-]{1,6}/){0,3}".prop_map(DocUri::Other),
        ]
    }

    fn segment() -> impl Strategy<Value = String> {
        "[A-Za-z0-9][A-Za-z0-9._~-]{0,20}"
    }

    fn message_type() -> impl Strategy<Value = MessageType> {
        (doc_uri(), segment(), any::<u16>(), any::<u16>(), segment()).prop_map(
            |(doc, protocol, major, minor, name)| {
                MessageType::new(doc, protocol, major, minor, name)
            },
        )
    }

    proptest! {
        #[test]
        fn display_from_str_round_trips(ty in message_type()) {
            let s = ty.to_string();
            prop_assert_eq!(s.parse::<MessageType>(), Ok(ty.clone()));
            let p = ty.protocol_uri();
            prop_assert_eq!(p.to_string().parse::<ProtocolUri>(), Ok(p));
        }

        #[test]
        fn arbitrary_strings_never_panic(s in any::<String>()) {
            let _ = s.parse::<MessageType>();
            let _ = s.parse::<ProtocolUri>();
        }

        #[test]
        fn type_like_strings_never_panic(
            s in "(https://|did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/|https://didcomm.org/)?[a-z0-9./+ \u{e9}-]{0,30}"
        ) {
            if let Ok(ty) = s.parse::<MessageType>() {
                // Whatever parses must re-parse to the same value.
                prop_assert_eq!(ty.to_string().parse::<MessageType>(), Ok(ty));
            }
            if let Ok(p) = s.parse::<ProtocolUri>() {
                prop_assert_eq!(p.to_string().parse::<ProtocolUri>(), Ok(p));
            }
        }
    }
}
