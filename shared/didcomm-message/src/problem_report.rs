//! Problem reports, Aries RFC 0035.
//!
//! The RFC names the protocol `report-problem/1.0`; ACA-Py and credo-ts send
//! `notification/1.0/problem-report`, which is the default here. Protocols may adopt the
//! message under their own type (`didexchange/1.0/problem_report`, with an underscore, in RFC
//! 0023), so the caller can choose the type.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::decorators::Thread;
use crate::message::Message;
use crate::message_type::{DocUri, MessageType};

/// The body of a `problem-report` message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemReport {
    /// What went wrong; only `description.code` is required.
    pub description: Description,
    /// Parameters of the problem, each a `{ "name": "value" }` pair.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problem_items: Vec<BTreeMap<String, String>>,
    /// Who should retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub who_retries: Option<WhoRetries>,
    /// How to fix this instance of the problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_hint: Option<FixHint>,
    /// How much of the interaction the problem affects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<Impact>,
    /// Where the problem happened, e.g. `me - agency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#where: Option<String>,
    /// When the problem was noticed (ISO 8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noticed_time: Option<String>,
    /// Where the status of the problem can be tracked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_uri: Option<String>,
    /// Where to get help with the problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_uri: Option<String>,
}

/// `description`: a locale-independent code and an optional English text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Description {
    /// English text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub en: Option<String>,
    /// Symbolic name of the problem, e.g. `message-parse-failure`.
    pub code: String,
}

impl<'de> Deserialize<'de> for Description {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The RFC 0035 sample and RFC 0685 send `description` as a bare string; read it as
        // English text with an empty code rather than drop the report.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Text(String),
            Object { en: Option<String>, code: String },
        }
        Ok(match Wire::deserialize(deserializer)? {
            Wire::Text(en) => Description {
                en: Some(en),
                code: String::new(),
            },
            Wire::Object { en, code } => Description { en, code },
        })
    }
}

/// `fix_hint`: localized advice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixHint {
    /// English text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub en: Option<String>,
}

/// `who_retries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhoRetries {
    /// The sender of the report will retry.
    Me,
    /// The recipient of the report should retry.
    You,
    /// Either party may retry.
    Both,
    /// The problem is permanent.
    None,
}

/// `impact`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Impact {
    /// Only the one message is affected.
    Message,
    /// The whole thread is affected.
    Thread,
    /// The whole connection is affected.
    Connection,
}

impl ProblemReport {
    /// A report with only `description.code` set.
    pub fn new(code: impl Into<String>) -> Self {
        Self {
            description: Description {
                en: None,
                code: code.into(),
            },
            ..Self::default()
        }
    }

    /// Sets `description.en`.
    pub fn with_text(mut self, en: impl Into<String>) -> Self {
        self.description.en = Some(en.into());
        self
    }

    /// Appends a `{ name: value }` problem item.
    pub fn with_item(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.problem_items
            .push(BTreeMap::from([(name.into(), value.into())]));
        self
    }

    /// Sets `who_retries`.
    pub fn with_who_retries(mut self, who: WhoRetries) -> Self {
        self.who_retries = Some(who);
        self
    }

    /// Sets `fix_hint.en`.
    pub fn with_fix_hint(mut self, en: impl Into<String>) -> Self {
        self.fix_hint = Some(FixHint {
            en: Some(en.into()),
        });
        self
    }

    /// Sets `impact`.
    pub fn with_impact(mut self, impact: Impact) -> Self {
        self.impact = Some(impact);
        self
    }

    /// Sets `where`.
    pub fn with_where(mut self, location: impl Into<String>) -> Self {
        self.r#where = Some(location.into());
        self
    }

    /// Sets `noticed_time`.
    pub fn with_noticed_time(mut self, time: impl Into<String>) -> Self {
        self.noticed_time = Some(time.into());
        self
    }

    /// Starts building the message that carries this report.
    pub fn builder(self) -> ProblemReportBuilder {
        ProblemReportBuilder {
            report: self,
            ty: None,
            doc_uri: DocUri::default(),
            thread: None,
        }
    }

    fn to_body(&self) -> Map<String, Value> {
        // A struct of strings, unit enums and string-keyed maps always serialises to an
        // object, so the fallback is unreachable; it only avoids a panic path.
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

/// Builds a problem-report [`Message`], by default of type `notification/1.0/problem-report`
/// under the doc URI of the offending message (or `https://didcomm.org/` without one).
#[derive(Debug, Clone)]
pub struct ProblemReportBuilder {
    report: ProblemReport,
    ty: Option<MessageType>,
    doc_uri: DocUri,
    thread: Option<Thread>,
}

impl ProblemReportBuilder {
    /// Uses `ty` instead of the default type, e.g. a protocol's adopted problem report.
    pub fn message_type(mut self, ty: MessageType) -> Self {
        self.ty = Some(ty);
        self
    }

    /// Puts the report in the offending message's thread: `~thread.thid` is its thread id and
    /// its `pthid`, if any, is kept. Use this when the thread as a whole is affected.
    pub fn in_thread_of(mut self, offending: &Message) -> Self {
        self.doc_uri = offending.ty.doc_uri().clone();
        self.thread = Some(Thread {
            thid: Some(offending.thread_id().to_owned()),
            pthid: offending.parent_thread_id().map(str::to_owned),
            ..Thread::default()
        });
        self
    }

    /// Starts a new thread whose parent is the offending message: `~thread.pthid` is its `@id`
    /// and there is no `thid`. RFC 0035 and RFC 0685 ask for this shape.
    pub fn child_of(mut self, offending: &Message) -> Self {
        self.doc_uri = offending.ty.doc_uri().clone();
        self.thread = Some(Thread {
            pthid: Some(offending.id.clone()),
            ..Thread::default()
        });
        self
    }

    /// Sets `~thread` directly.
    pub fn thread(mut self, thread: Thread) -> Self {
        self.thread = Some(thread);
        self
    }

    /// The message, with a fresh `@id`.
    pub fn build(self) -> Message {
        let ty = self.ty.unwrap_or_else(|| {
            MessageType::new(self.doc_uri, "notification", 1, 0, "problem-report")
        });
        let mut message = Message::new(ty);
        message.thread = self.thread;
        message.body = self.report.to_body();
        message
    }
}

impl MessageType {
    /// Whether this is a problem report: `problem-report` of any protocol (RFC 0035's
    /// `report-problem/1.0`, `notification/1.0` or an adopting protocol), or the
    /// `problem_report` spelling that RFC 0023 and RFC 0160 use.
    pub fn is_problem_report(&self) -> bool {
        matches!(self.name(), "problem-report" | "problem_report")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn offending() -> Message {
        Message::from_slice(
            json!({
                "@id": "bad-1",
                "@type": "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/messagepickup/2.0/live-delivery-change",
                "~thread": { "thid": "t-1", "pthid": "p-0" },
                "live_delivery": true
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn full_report_matches_rfc_0035_shape() {
        let report = ProblemReport::new("cant-find-route")
            .with_text("Unable to find a route to the specified recipient.")
            .with_item("recipient", "did:sov:C805sNYhMrjHiqZDTUASHg")
            .with_who_retries(WhoRetries::You)
            .with_fix_hint("Check the routing keys")
            .with_impact(Impact::Message)
            .with_where("me - agency")
            .with_noticed_time("2019-05-27 18:23:06Z");
        let mut message = report.clone().builder().build();
        message.id = "7c9de639-c51c-4d60-ab95-103fa613c805".into();
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            json!({
                "@id": "7c9de639-c51c-4d60-ab95-103fa613c805",
                "@type": "https://didcomm.org/notification/1.0/problem-report",
                "description": {
                    "en": "Unable to find a route to the specified recipient.",
                    "code": "cant-find-route"
                },
                "problem_items": [ { "recipient": "did:sov:C805sNYhMrjHiqZDTUASHg" } ],
                "who_retries": "you",
                "fix_hint": { "en": "Check the routing keys" },
                "impact": "message",
                "where": "me - agency",
                "noticed_time": "2019-05-27 18:23:06Z"
            })
        );
        assert!(message.ty.is_problem_report());
        assert_eq!(message.decode::<ProblemReport>().unwrap(), report);
    }

    #[test]
    fn minimal_report_has_only_code() {
        let message = ProblemReport::new("e.x").builder().build();
        assert_eq!(
            serde_json::to_value(&message.body).unwrap(),
            json!({ "description": { "code": "e.x" } })
        );
        assert_eq!(message.thread, None);
    }

    #[test]
    fn in_thread_of_uses_thid_and_peer_doc_uri() {
        let message = ProblemReport::new("x")
            .builder()
            .in_thread_of(&offending())
            .build();
        assert_eq!(
            message.ty.to_string(),
            "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/notification/1.0/problem-report"
        );
        let thread = message.thread.unwrap();
        assert_eq!(thread.thid.as_deref(), Some("t-1"));
        assert_eq!(thread.pthid.as_deref(), Some("p-0"));
    }

    #[test]
    fn child_of_uses_pthid() {
        let message = ProblemReport::new("x")
            .builder()
            .child_of(&offending())
            .build();
        let thread = message.thread.clone().unwrap();
        assert_eq!(thread.thid, None);
        assert_eq!(thread.pthid.as_deref(), Some("bad-1"));
        assert_eq!(message.thread_id(), message.id);
    }

    #[test]
    fn caller_chooses_type() {
        let ty: MessageType = "https://didcomm.org/messagepickup/2.0/problem-report"
            .parse()
            .unwrap();
        let message = ProblemReport::new("x")
            .builder()
            .message_type(ty.clone())
            .child_of(&offending())
            .build();
        assert_eq!(message.ty, ty);
    }

    #[test]
    fn recognises_problem_report_types() {
        for s in [
            "https://didcomm.org/notification/1.0/problem-report",
            "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/report-problem/1.0/problem-report",
            "https://didcomm.org/didexchange/1.0/problem_report",
        ] {
            assert!(s.parse::<MessageType>().unwrap().is_problem_report(), "{s}");
        }
        let ty: MessageType = "https://didcomm.org/trust_ping/1.0/ping".parse().unwrap();
        assert!(!ty.is_problem_report());
    }

    #[test]
    fn decodes_bare_string_description() {
        let report: ProblemReport = serde_json::from_value(json!({
            "description": "Connection does not support Live Delivery"
        }))
        .unwrap();
        assert_eq!(
            report.description.en.as_deref(),
            Some("Connection does not support Live Delivery")
        );
        assert_eq!(report.description.code, "");
    }

    #[test]
    fn rejects_unknown_enum_values() {
        assert!(serde_json::from_value::<ProblemReport>(
            json!({ "description": { "code": "x" }, "who_retries": "them" })
        )
        .is_err());
        assert!(serde_json::from_value::<ProblemReport>(
            json!({ "description": { "code": "x" }, "impact": "universe" })
        )
        .is_err());
        for (s, who) in [
            ("me", WhoRetries::Me),
            ("you", WhoRetries::You),
            ("both", WhoRetries::Both),
            ("none", WhoRetries::None),
        ] {
            assert_eq!(serde_json::to_value(who).unwrap(), json!(s));
        }
        for (s, impact) in [
            ("message", Impact::Message),
            ("thread", Impact::Thread),
            ("connection", Impact::Connection),
        ] {
            assert_eq!(serde_json::to_value(impact).unwrap(), json!(s));
        }
    }
}
