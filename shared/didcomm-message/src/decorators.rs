//! The decorators a mediator acts on: `~thread` (RFC 0008), `~transport` (RFC 0092) and
//! `~timing` (RFC 0032).
//!
//! Times are kept as the strings the peer sent (ISO 8601 per RFC 0032): this crate only carries
//! them, and peers disagree on the exact format.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The `~thread` decorator (Aries RFC 0008).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    /// Thread id; absent on the first message of a thread, whose `@id` is the thread id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thid: Option<String>,
    /// Parent thread id, for a thread spawned from another one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pthid: Option<String>,
    /// How many messages the sender has sent in this thread before this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_order: Option<u64>,
    /// The highest `sender_order` seen from each other party, keyed by their DID.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub received_orders: BTreeMap<String, u64>,
}

/// Which messages the recipient may send back on the connection that carried this one
/// (`~transport.return_route`, Aries RFC 0092).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ReturnRoute {
    /// No return route: replies go to the sender's endpoint. This is the default.
    #[default]
    None,
    /// Only messages of the thread named by `return_route_thread`.
    Thread,
    /// Any message for the sender.
    All,
}

impl ReturnRoute {
    /// The wire form: `none`, `thread` or `all`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReturnRoute::None => "none",
            ReturnRoute::Thread => "thread",
            ReturnRoute::All => "all",
        }
    }
}

/// A `return_route` value other than `none`, `thread` or `all`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown return_route {0:?}: expected \"none\", \"thread\" or \"all\"")]
pub struct UnknownReturnRoute(pub String);

impl FromStr for ReturnRoute {
    type Err = UnknownReturnRoute;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(ReturnRoute::None),
            "thread" => Ok(ReturnRoute::Thread),
            "all" => Ok(ReturnRoute::All),
            other => Err(UnknownReturnRoute(other.to_owned())),
        }
    }
}

impl fmt::Display for ReturnRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ReturnRoute {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ReturnRoute {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The `~transport` decorator (Aries RFC 0092).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transport {
    /// Requested return route; absent means [`ReturnRoute::None`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_route: Option<ReturnRoute>,
    /// The thread whose messages may be returned when `return_route` is `thread`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_route_thread: Option<String>,
}

/// The `~timing` decorator (Aries RFC 0032).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// When the sender received the message in this thread that this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_time: Option<String>,
    /// When the message was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_time: Option<String>,
    /// The message should be processed by this time; after it the message may matter less.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_time: Option<String>,
    /// After this time the message should not be acted upon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_time: Option<String>,
    /// Wait at least this many milliseconds before processing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_milli: Option<u64>,
    /// Do not process before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_until_time: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn return_route_values() {
        for (s, rr) in [
            ("none", ReturnRoute::None),
            ("thread", ReturnRoute::Thread),
            ("all", ReturnRoute::All),
        ] {
            assert_eq!(s.parse::<ReturnRoute>().unwrap(), rr);
            assert_eq!(rr.to_string(), s);
            let t: Transport = serde_json::from_value(json!({ "return_route": s })).unwrap();
            assert_eq!(t.return_route, Some(rr));
            assert_eq!(
                serde_json::to_value(&t).unwrap(),
                json!({ "return_route": s })
            );
        }
        assert_eq!(ReturnRoute::default(), ReturnRoute::None);
    }

    #[test]
    fn unknown_return_route_is_rejected() {
        assert_eq!(
            "All".parse::<ReturnRoute>().unwrap_err(),
            UnknownReturnRoute("All".into())
        );
        let err = serde_json::from_value::<Transport>(json!({ "return_route": "sometimes" }))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown return_route \"sometimes\""),
            "{err}"
        );
        assert!(serde_json::from_value::<Transport>(json!({ "return_route": 1 })).is_err());
    }

    #[test]
    fn transport_thread() {
        let t: Transport = serde_json::from_value(
            json!({ "return_route": "thread", "return_route_thread": "t-1" }),
        )
        .unwrap();
        assert_eq!(t.return_route, Some(ReturnRoute::Thread));
        assert_eq!(t.return_route_thread.as_deref(), Some("t-1"));
        let empty: Transport = serde_json::from_value(json!({})).unwrap();
        assert_eq!(empty, Transport::default());
    }

    #[test]
    fn thread_round_trip_omits_empty_fields() {
        let value = json!({
            "thid": "t",
            "pthid": "p",
            "sender_order": 3,
            "received_orders": { "did:sov:abc": 1 }
        });
        let thread: Thread = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(thread.received_orders.get("did:sov:abc"), Some(&1));
        assert_eq!(serde_json::to_value(&thread).unwrap(), value);
        assert_eq!(serde_json::to_value(Thread::default()).unwrap(), json!({}));
    }

    #[test]
    fn timing_round_trip() {
        let value = json!({
            "out_time": "2019-01-23 18:03:27.123Z",
            "expires_time": "2019-01-23 23:00:00Z",
            "delay_milli": 500
        });
        let timing: Timing = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(timing.delay_milli, Some(500));
        assert_eq!(timing.in_time, None);
        assert_eq!(serde_json::to_value(&timing).unwrap(), value);
    }
}
