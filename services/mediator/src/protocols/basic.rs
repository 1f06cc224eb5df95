//! Trust ping 1.0, discover features 1.0 and 2.0, and the answer to unsupported types.

use didcomm_message::{ProblemReport, WhoRetries};
use serde::Deserialize;
use serde_json::{json, Value};

use super::SUPPORTED;
use crate::{
    error::InboundError,
    mediator::{Inbound, Mediator, Outgoing, Recipient},
    stats::Limit,
};

pub(crate) fn reply_recipient(
    m: &Mediator,
    inbound: &Inbound<'_>,
) -> Result<Recipient, InboundError> {
    let conn = inbound.connection()?;
    let from = m
        .keys()
        .connection_key(conn.id.as_str())
        .map_err(|e| InboundError::Internal(e.to_string()))?;
    Ok(Recipient::of(conn, from))
}

#[derive(Deserialize)]
struct Ping {
    #[serde(default = "yes")]
    response_requested: bool,
}

fn yes() -> bool {
    true
}

/// `ping` -> `ping_response` unless `response_requested` is false.
pub fn trust_ping(m: &Mediator, inbound: &Inbound<'_>) -> Result<Vec<Outgoing>, InboundError> {
    let ping: Ping = inbound.msg.decode()?;
    if !ping.response_requested {
        return Ok(Vec::new());
    }
    let msg = inbound
        .msg
        .reply_to(inbound.reply_type("trust_ping", (1, 0), "ping_response"));
    Ok(vec![Outgoing {
        msg,
        to: reply_recipient(m, inbound)?,
    }])
}

fn protocol_uris(inbound: &Inbound<'_>) -> Vec<String> {
    let base = inbound.msg.ty.doc_uri().as_str().to_owned();
    SUPPORTED
        .iter()
        .map(|(p, major, minor)| format!("{base}{p}/{major}.{minor}"))
        .collect()
}

fn without_doc_uri(s: &str) -> &str {
    s.strip_prefix("https://didcomm.org/")
        .or_else(|| s.strip_prefix("did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/"))
        .unwrap_or(s)
}

/// Matches a discover-features query: exact, or a prefix ending in `*` (RFC 0031/0557), with
/// either doc URI.
fn matches_query(uri: &str, query: &str) -> bool {
    let (uri, query) = (without_doc_uri(uri), without_doc_uri(query));
    match query.strip_suffix('*') {
        Some(prefix) => uri.starts_with(prefix),
        None => uri == query,
    }
}

/// Discover features 1.0: `query` -> `disclose`.
pub fn discover_v1(m: &Mediator, inbound: &Inbound<'_>) -> Result<Vec<Outgoing>, InboundError> {
    let query = inbound
        .msg
        .body
        .get("query")
        .and_then(Value::as_str)
        .unwrap_or("*");
    let protocols: Vec<Value> = protocol_uris(inbound)
        .into_iter()
        .filter(|u| matches_query(u, query))
        .map(|pid| json!({ "pid": pid, "roles": ["mediator"] }))
        .collect();
    let msg = inbound
        .msg
        .reply_to(inbound.reply_type("discover-features", (1, 0), "disclose"))
        .with_body(&json!({ "protocols": protocols }))?;
    Ok(vec![Outgoing {
        msg,
        to: reply_recipient(m, inbound)?,
    }])
}

/// Discover features 2.0: `queries` -> `disclosures`.
pub fn discover_v2(m: &Mediator, inbound: &Inbound<'_>) -> Result<Vec<Outgoing>, InboundError> {
    let queries = inbound
        .msg
        .body
        .get("queries")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let max = m.config().limits.max_discover_queries;
    if queries.len() > max {
        return Err(m.refuse(
            Limit::DiscoverQueries,
            format!("at most {max} discover-features queries are answered at once"),
        ));
    }
    // Each protocol is disclosed once, however many queries match it: the answer is bounded by
    // what we support, not by what was asked.
    let uris = protocol_uris(inbound);
    let mut disclosed = vec![false; uris.len()];
    for q in queries {
        if q.get("feature-type").and_then(Value::as_str) != Some("protocol") {
            continue;
        }
        let pattern = q.get("match").and_then(Value::as_str).unwrap_or("*");
        for (n, uri) in uris.iter().enumerate() {
            disclosed[n] |= matches_query(uri, pattern);
        }
    }
    let disclosures: Vec<Value> = uris
        .iter()
        .zip(disclosed)
        .filter(|(_, d)| *d)
        .map(|(uri, _)| json!({ "feature-type": "protocol", "id": uri, "roles": ["mediator"] }))
        .collect();
    let msg = inbound
        .msg
        .reply_to(inbound.reply_type("discover-features", (2, 0), "disclosures"))
        .with_body(&json!({ "disclosures": disclosures }))?;
    Ok(vec![Outgoing {
        msg,
        to: reply_recipient(m, inbound)?,
    }])
}

/// A message type we do not implement: a problem report, threaded to it.
pub fn unsupported(m: &Mediator, inbound: &Inbound<'_>) -> Result<Vec<Outgoing>, InboundError> {
    tracing::info!(r#type = %inbound.msg.ty, "unsupported message type");
    let msg = ProblemReport::new("unsupported-message-type")
        .with_text(format!(
            "message type {} is not supported by this mediator",
            inbound.msg.ty
        ))
        .with_who_retries(WhoRetries::None)
        .builder()
        .in_thread_of(&inbound.msg)
        .build();
    Ok(vec![Outgoing {
        msg,
        to: reply_recipient(m, inbound)?,
    }])
}
