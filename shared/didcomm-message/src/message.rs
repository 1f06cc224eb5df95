//! The generic plaintext message: `@id`, `@type`, the decorators a mediator acts on, and a
//! body that handlers decode into their own typed structs.
//!
//! Parsing checks only what every message must have, so that a handler for an unknown or
//! newer message type still gets the id and thread to report a problem against.

use serde::de::DeserializeOwned;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::decorators::{ReturnRoute, Thread, Timing, Transport};
use crate::message_type::{MessageType, MessageTypeError};

const ID: &str = "@id";
const TYPE: &str = "@type";
const THREAD: &str = "~thread";
const TRANSPORT: &str = "~transport";
const TIMING: &str = "~timing";
const RESERVED: [&str; 5] = [ID, TYPE, THREAD, TRANSPORT, TIMING];

/// Why bytes could not be read as a message, or a body could not be decoded or set.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The bytes are not JSON.
    #[error("message is not valid JSON")]
    NotJson(#[source] serde_json::Error),
    /// The JSON is not an object.
    #[error("message is not a JSON object")]
    NotObject,
    /// There is no `@type`.
    #[error("message has no @type")]
    MissingType,
    /// `@type` is not a string.
    #[error("message @type is not a string")]
    TypeNotString,
    /// `@type` is a string but not a valid message type.
    #[error("message @type {value:?} is malformed")]
    InvalidType {
        /// The `@type` as received.
        value: String,
        /// What was wrong with it.
        source: MessageTypeError,
    },
    /// There is no `@id`, or it is empty.
    #[error("message has no @id")]
    MissingId,
    /// `@id` is not a string.
    #[error("message @id is not a string")]
    IdNotString,
    /// A decorator this crate types (`~thread`, `~transport`, `~timing`) is malformed.
    #[error("message {decorator} decorator is malformed")]
    InvalidDecorator {
        /// The decorator's key.
        decorator: &'static str,
        /// What was wrong with it.
        source: serde_json::Error,
    },
    /// The body does not have the shape the handler expects.
    #[error("body of {ty} message does not have the expected shape")]
    InvalidBody {
        /// The message's type, for the log line.
        ty: MessageType,
        /// What was wrong with it.
        source: serde_json::Error,
    },
    /// A body to set could not be serialised.
    #[error("message body could not be serialised")]
    SerializeBody(#[source] serde_json::Error),
    /// A body to set did not serialise to a JSON object.
    #[error("message body must serialise to a JSON object")]
    BodyNotObject,
}

/// A DIDComm v1 plaintext message.
///
/// `body` holds every field other than `@id`, `@type` and the typed decorators, including
/// other decorators such as `~attach` or `~please_ack`. When serialising, `@id` and `@type`
/// come first, and body keys that would collide with them or the typed decorators are skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `@id`.
    pub id: String,
    /// `@type`.
    pub ty: MessageType,
    /// `~thread`.
    pub thread: Option<Thread>,
    /// `~transport`.
    pub transport: Option<Transport>,
    /// `~timing`.
    pub timing: Option<Timing>,
    /// All other fields.
    pub body: Map<String, Value>,
}

impl Message {
    /// A message of type `ty` with a fresh UUID v4 `@id`, no decorators and an empty body.
    pub fn new(ty: MessageType) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            ty,
            thread: None,
            transport: None,
            timing: None,
            body: Map::new(),
        }
    }

    /// Parses a plaintext message from JSON bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, MessageError> {
        let value: Value = serde_json::from_slice(bytes).map_err(MessageError::NotJson)?;
        Self::from_value(value)
    }

    /// Reads a message from an already parsed JSON value.
    pub fn from_value(value: Value) -> Result<Self, MessageError> {
        match value {
            Value::Object(map) => Self::from_map(map),
            _ => Err(MessageError::NotObject),
        }
    }

    fn from_map(mut body: Map<String, Value>) -> Result<Self, MessageError> {
        let ty = match body.remove(TYPE) {
            None => return Err(MessageError::MissingType),
            Some(Value::String(s)) => s
                .parse()
                .map_err(|source| MessageError::InvalidType { value: s, source })?,
            Some(_) => return Err(MessageError::TypeNotString),
        };
        let id = match body.remove(ID) {
            Some(Value::String(s)) if !s.is_empty() => s,
            None | Some(Value::String(_)) => return Err(MessageError::MissingId),
            Some(_) => return Err(MessageError::IdNotString),
        };
        Ok(Self {
            id,
            ty,
            thread: take_decorator(&mut body, THREAD)?,
            transport: take_decorator(&mut body, TRANSPORT)?,
            timing: take_decorator(&mut body, TIMING)?,
            body,
        })
    }

    /// Decodes the body (every field but `@id`, `@type` and the typed decorators) into `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, MessageError> {
        T::deserialize(&self.body).map_err(|source| MessageError::InvalidBody {
            ty: self.ty.clone(),
            source,
        })
    }

    /// Adds the fields of `body` (which must serialise to a JSON object) to the body,
    /// replacing fields of the same name.
    pub fn with_body<T: Serialize>(mut self, body: &T) -> Result<Self, MessageError> {
        match serde_json::to_value(body).map_err(MessageError::SerializeBody)? {
            Value::Object(fields) => {
                self.body.extend(fields);
                Ok(self)
            }
            _ => Err(MessageError::BodyNotObject),
        }
    }

    /// Sets `~thread`.
    pub fn with_thread(mut self, thread: Thread) -> Self {
        self.thread = Some(thread);
        self
    }

    /// Sets `~transport.return_route`, keeping any `return_route_thread`.
    pub fn with_return_route(mut self, return_route: ReturnRoute) -> Self {
        self.transport
            .get_or_insert_with(Transport::default)
            .return_route = Some(return_route);
        self
    }

    /// The thread this message belongs to: `~thread.thid`, or else `@id`, which starts a
    /// thread (RFC 0008). An empty `thid` counts as absent.
    pub fn thread_id(&self) -> &str {
        self.thread
            .as_ref()
            .and_then(|t| t.thid.as_deref())
            .filter(|thid| !thid.is_empty())
            .unwrap_or(&self.id)
    }

    /// `~thread.pthid`, if any.
    pub fn parent_thread_id(&self) -> Option<&str> {
        self.thread.as_ref().and_then(|t| t.pthid.as_deref())
    }

    /// `~transport.return_route`, defaulting to [`ReturnRoute::None`].
    pub fn return_route(&self) -> ReturnRoute {
        self.transport
            .as_ref()
            .and_then(|t| t.return_route)
            .unwrap_or_default()
    }

    /// A new message of type `ty` in this message's thread: fresh `@id`, `~thread.thid` set to
    /// [`thread_id`](Self::thread_id), and `~thread.pthid` copied if this message has one.
    pub fn reply_to(&self, ty: MessageType) -> Message {
        Message::new(ty).with_thread(Thread {
            thid: Some(self.thread_id().to_owned()),
            pthid: self.parent_thread_id().map(str::to_owned),
            ..Thread::default()
        })
    }
}

fn take_decorator<T: DeserializeOwned>(
    body: &mut Map<String, Value>,
    decorator: &'static str,
) -> Result<Option<T>, MessageError> {
    body.remove(decorator)
        .map(|value| serde_json::from_value(value))
        .transpose()
        .map_err(|source| MessageError::InvalidDecorator { decorator, source })
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(ID, &self.id)?;
        map.serialize_entry(TYPE, &self.ty)?;
        if let Some(thread) = &self.thread {
            map.serialize_entry(THREAD, thread)?;
        }
        if let Some(transport) = &self.transport {
            map.serialize_entry(TRANSPORT, transport)?;
        }
        if let Some(timing) = &self.timing {
            map.serialize_entry(TIMING, timing)?;
        }
        for (key, value) in &self.body {
            if !RESERVED.contains(&key.as_str()) {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = Map::<String, Value>::deserialize(deserializer)?;
        // serde errors carry only text, so the source chain is flattened into it here.
        Self::from_map(map).map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            serde::de::Error::custom(text)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::message_type::DocUri;
    use serde_json::json;

    fn msg(value: Value) -> Result<Message, MessageError> {
        Message::from_slice(&serde_json::to_vec(&value).unwrap())
    }

    #[test]
    fn parses_a_full_message() {
        let m = msg(json!({
            "@id": "123",
            "@type": "https://didcomm.org/messagepickup/2.0/delivery-request",
            "~thread": { "thid": "t-1" },
            "~transport": { "return_route": "all" },
            "~timing": { "out_time": "2024-01-01T00:00:00Z" },
            "limit": 10,
            "recipient_key": "key",
            "~please_ack": {}
        }))
        .unwrap();
        assert_eq!(m.id, "123");
        assert!(m.ty.is("messagepickup", 2, "delivery-request"));
        assert_eq!(m.thread_id(), "t-1");
        assert_eq!(m.return_route(), ReturnRoute::All);
        assert_eq!(
            m.timing.as_ref().unwrap().out_time.as_deref(),
            Some("2024-01-01T00:00:00Z")
        );
        let keys: Vec<&str> = m.body.keys().map(String::as_str).collect();
        assert_eq!(keys, ["limit", "recipient_key", "~please_ack"]);

        #[derive(Deserialize)]
        struct DeliveryRequest {
            limit: u32,
            recipient_key: Option<String>,
        }
        let body: DeliveryRequest = m.decode().unwrap();
        assert_eq!(body.limit, 10);
        assert_eq!(body.recipient_key.as_deref(), Some("key"));
    }

    #[test]
    fn parse_errors() {
        assert!(matches!(
            Message::from_slice(b"{not json"),
            Err(MessageError::NotJson(_))
        ));
        assert!(matches!(
            Message::from_slice(b"[1]"),
            Err(MessageError::NotObject)
        ));
        assert!(matches!(
            msg(json!({ "@id": "1" })),
            Err(MessageError::MissingType)
        ));
        assert!(matches!(
            msg(json!({ "@id": "1", "@type": 5 })),
            Err(MessageError::TypeNotString)
        ));
        assert!(matches!(
            msg(json!({ "@type": "https://didcomm.org/trust_ping/1.0/ping" })),
            Err(MessageError::MissingId)
        ));
        assert!(matches!(
            msg(json!({ "@id": "", "@type": "https://didcomm.org/trust_ping/1.0/ping" })),
            Err(MessageError::MissingId)
        ));
        assert!(matches!(
            msg(json!({ "@id": 7, "@type": "https://didcomm.org/trust_ping/1.0/ping" })),
            Err(MessageError::IdNotString)
        ));
        let err = msg(json!({
            "@id": "1",
            "@type": "https://didcomm.org/trust_ping/1.0/ping",
            "~transport": { "return_route": "sometimes" }
        }))
        .unwrap_err();
        assert!(
            matches!(
                err,
                MessageError::InvalidDecorator {
                    decorator: "~transport",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(matches!(
            msg(
                json!({ "@id": "1", "@type": "https://didcomm.org/trust_ping/1.0/ping", "~thread": "t" })
            ),
            Err(MessageError::InvalidDecorator {
                decorator: "~thread",
                ..
            })
        ));
    }

    #[test]
    fn malformed_type_keeps_source() {
        let err =
            msg(json!({ "@id": "1", "@type": "https://didcomm.org/routing/1.0" })).unwrap_err();
        match &err {
            MessageError::InvalidType { value, source } => {
                assert_eq!(value, "https://didcomm.org/routing/1.0");
                assert_eq!(source, &MessageTypeError::MissingName);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn decode_error_names_the_type() {
        let m = msg(json!({ "@id": "1", "@type": "https://didcomm.org/messagepickup/2.0/delivery-request", "limit": "ten" })).unwrap();
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct DeliveryRequest {
            limit: u32,
        }
        let err = m.decode::<DeliveryRequest>().unwrap_err();
        assert!(matches!(err, MessageError::InvalidBody { .. }));
        assert!(err.to_string().contains("delivery-request"), "{err}");
    }

    #[test]
    fn thread_id_defaults_to_id() {
        let m = msg(json!({ "@id": "abc", "@type": "https://didcomm.org/trust_ping/1.0/ping" }))
            .unwrap();
        assert_eq!(m.thread_id(), "abc");
        assert_eq!(m.return_route(), ReturnRoute::None);
        let m = m.with_thread(Thread {
            pthid: Some("p".into()),
            ..Thread::default()
        });
        assert_eq!(m.thread_id(), "abc");
    }

    #[test]
    fn new_has_fresh_uuid() {
        let ty: MessageType = "https://didcomm.org/trust_ping/1.0/ping".parse().unwrap();
        let a = Message::new(ty.clone());
        let b = Message::new(ty);
        assert_ne!(a.id, b.id);
        assert!(uuid::Uuid::parse_str(&a.id).is_ok());
    }

    #[test]
    fn reply_threading() {
        let req = msg(json!({
            "@id": "req-1",
            "@type": "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/messagepickup/2.0/status-request"
        }))
        .unwrap();
        let reply = req.reply_to(req.ty.with_name("status"));
        assert_ne!(reply.id, req.id);
        assert_eq!(reply.ty.doc_uri(), &DocUri::DidSov);
        let thread = reply.thread.as_ref().unwrap();
        assert_eq!(thread.thid.as_deref(), Some("req-1"));
        assert_eq!(thread.pthid, None);
        assert_eq!(reply.thread_id(), "req-1");

        let req = msg(json!({
            "@id": "req-2",
            "@type": "https://didcomm.org/didexchange/1.1/request",
            "~thread": { "thid": "t-9", "pthid": "oob-1" }
        }))
        .unwrap();
        let reply = req.reply_to(req.ty.with_name("response"));
        let thread = reply.thread.unwrap();
        assert_eq!(thread.thid.as_deref(), Some("t-9"));
        assert_eq!(thread.pthid.as_deref(), Some("oob-1"));
    }

    #[test]
    fn serialises_with_id_and_type_first() {
        let ty: MessageType = "https://didcomm.org/messagepickup/2.0/status"
            .parse()
            .unwrap();
        let mut m = Message::new(ty)
            .with_body(&json!({ "message_count": 0, "live_delivery": false }))
            .unwrap()
            .with_return_route(ReturnRoute::All);
        m.id = "id-1".into();
        // A reserved key smuggled into the body must not produce a duplicate key.
        m.body.insert("@id".into(), json!("evil"));
        let text = serde_json::to_string(&m).unwrap();
        assert!(
            text.starts_with(r#"{"@id":"id-1","@type":"https://didcomm.org/messagepickup/2.0/status","~transport":{"return_route":"all"}"#),
            "{text}"
        );
        assert_eq!(text.matches("@id").count(), 1);
        m.body.remove("@id");
        let back = Message::from_slice(text.as_bytes()).unwrap();
        assert_eq!(back, m);
        let via_serde: Message = serde_json::from_str(&text).unwrap();
        assert_eq!(via_serde, m);
    }

    #[test]
    fn with_body_rejects_non_objects() {
        let ty: MessageType = "https://didcomm.org/trust_ping/1.0/ping".parse().unwrap();
        assert!(matches!(
            Message::new(ty).with_body(&[1, 2]),
            Err(MessageError::BodyNotObject)
        ));
    }

    #[test]
    fn serde_deserialize_reports_the_cause() {
        let err = serde_json::from_value::<Message>(json!({ "@id": "1", "@type": "x/1.0/y" }))
            .unwrap_err();
        assert!(err.to_string().contains("unknown doc URI"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = Message::from_slice(&bytes);
        }
    }
}
