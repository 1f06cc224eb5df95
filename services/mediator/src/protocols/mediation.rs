//! Coordinate Mediation 1.0 (Aries RFC 0211), mediator side: grant or deny, keylist updates
//! with per-key results, keylist queries with paging.
//!
//! A base58 verkey and its did:key are one key everywhere (the stores index `VerKey`s). Keys in
//! our messages follow the client's style: did:key unless the client speaks the legacy
//! `did:sov:…;spec/` doc URI, where base58 is what it expects.

use didcomm_envelope::VerKey;
use didcomm_message::{DocUri, ProblemReport, WhoRetries};
use mediator_store::{
    unix_ms_now, KeylistAction, KeylistResult, KeylistUpdate, MediationRecord, MediationState,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use super::basic::reply_recipient as recipient;
use crate::{
    error::InboundError,
    mediator::{Inbound, Mediator, Outgoing},
    stats::Limit,
};

const PROTOCOL: &str = "coordinate-mediation";
const VERSION: (u16, u16) = (1, 0);
/// Largest keylist page returned, whatever the client asks.
const MAX_PAGE: usize = 1000;

fn key_text(inbound: &Inbound<'_>, key: &VerKey) -> String {
    match inbound.msg.ty.doc_uri() {
        DocUri::DidSov => key.to_base58(),
        _ => key.to_did_key(),
    }
}

/// `mediate-request` -> `mediate-grant` (endpoint, routing key) or `mediate-deny`.
pub async fn request(m: &Mediator, inbound: &Inbound<'_>) -> Result<Vec<Outgoing>, InboundError> {
    let conn = inbound.connection()?;
    let now = unix_ms_now();
    let routing_key = *m.keys().routing_key().verkey();
    let grant = m.config().mediation.grant;
    let previous = m.stores().mediation.get(&conn.id).await?;
    let record = MediationRecord {
        connection_id: conn.id.clone(),
        state: if grant {
            MediationState::Granted
        } else {
            MediationState::Denied
        },
        routing_keys: vec![routing_key],
        endpoint: Some(m.config().public_http_endpoint.clone()),
        created_at_ms: previous.map_or(now, |p| p.created_at_ms),
        updated_at_ms: now,
    };
    m.stores().mediation.save(&record).await?;
    info!(connection = %conn.id, granted = grant, "mediation request answered");
    let msg = if grant {
        inbound
            .msg
            .reply_to(inbound.reply_type(PROTOCOL, VERSION, "mediate-grant"))
            .with_body(&json!({
                "endpoint": m.config().public_http_endpoint,
                "routing_keys": [key_text(inbound, &routing_key)],
            }))?
    } else {
        inbound
            .msg
            .reply_to(inbound.reply_type(PROTOCOL, VERSION, "mediate-deny"))
    };
    Ok(vec![Outgoing {
        msg,
        to: recipient(m, inbound)?,
    }])
}

#[derive(Deserialize)]
struct KeylistUpdateBody {
    updates: Vec<UpdateItem>,
}

#[derive(Deserialize)]
struct UpdateItem {
    recipient_key: String,
    action: String,
}

async fn require_grant(
    m: &Mediator,
    inbound: &Inbound<'_>,
) -> Result<Option<Outgoing>, InboundError> {
    let conn = inbound.connection()?;
    let granted = m
        .stores()
        .mediation
        .get(&conn.id)
        .await?
        .is_some_and(|r| r.state == MediationState::Granted);
    if granted {
        return Ok(None);
    }
    let msg = ProblemReport::new("mediation-not-granted")
        .with_text("request mediation (and have it granted) before managing keys")
        .with_who_retries(WhoRetries::None)
        .builder()
        .in_thread_of(&inbound.msg)
        .build();
    Ok(Some(Outgoing {
        msg,
        to: recipient(m, inbound)?,
    }))
}

/// `keylist-update` -> `keylist-update-response` with a result per key.
pub async fn keylist_update(
    m: &Mediator,
    inbound: &Inbound<'_>,
) -> Result<Vec<Outgoing>, InboundError> {
    if let Some(report) = require_grant(m, inbound).await? {
        return Ok(vec![report]);
    }
    let conn = inbound.connection()?;
    let body: KeylistUpdateBody = inbound.msg.decode()?;
    let limits = &m.config().mediation;
    if body.updates.len() > limits.max_keylist_update {
        return Err(m.refuse(
            Limit::KeylistUpdate,
            format!(
                "a keylist-update may carry at most {} updates (this one has {})",
                limits.max_keylist_update,
                body.updates.len()
            ),
        ));
    }
    // Room left in the keylist: adds past it are answered `client_error`. Checked before the
    // batch is applied, so concurrent updates may pass the cap by at most one batch.
    let mut room = limits
        .max_keys_per_connection
        .saturating_sub(m.stores().mediation.keylist(&conn.id, 0, 0).await?.total);
    let mut over_cap = false;
    // Items that do not parse are answered `client_error` without touching the store; the rest
    // are applied as one batch.
    let mut results = vec![KeylistResult::ClientError; body.updates.len()];
    let mut valid = Vec::with_capacity(body.updates.len());
    let mut updates = Vec::with_capacity(body.updates.len());
    for (i, item) in body.updates.iter().enumerate() {
        let action = match item.action.as_str() {
            "add" => KeylistAction::Add,
            "remove" => KeylistAction::Remove,
            _ => continue,
        };
        if action == KeylistAction::Add {
            if room == 0 {
                over_cap = true;
                continue;
            }
            room -= 1;
        }
        if let Ok(key) = VerKey::parse(&item.recipient_key) {
            valid.push(i);
            updates.push(KeylistUpdate { key, action });
        }
    }
    if over_cap {
        m.stats().refused(Limit::KeylistSize);
        info!(connection = %conn.id, max = limits.max_keys_per_connection, "keylist full: adds refused");
    }
    let outcomes = m
        .stores()
        .mediation
        .update_keylist(&conn.id, &updates)
        .await?;
    let removed: Vec<VerKey> = updates
        .iter()
        .filter(|u| u.action == KeylistAction::Remove)
        .map(|u| u.key)
        .collect();
    if !removed.is_empty() {
        // Every instance's Forwards must stop finding this connection by these keys.
        m.key_routes().forget(&removed);
        m.cluster().announce_keys_removed(&removed).await;
    }
    for (i, outcome) in valid.into_iter().zip(outcomes) {
        results[i] = outcome.result;
    }
    let updated: Vec<Value> = body
        .updates
        .iter()
        .zip(results)
        .map(|(item, result)| {
            json!({
                "recipient_key": item.recipient_key,
                "action": item.action,
                "result": result_text(result),
            })
        })
        .collect();
    info!(connection = %conn.id, updates = updated.len(), "keylist updated");
    let msg = inbound
        .msg
        .reply_to(inbound.reply_type(PROTOCOL, VERSION, "keylist-update-response"))
        .with_body(&json!({ "updated": updated }))?;
    Ok(vec![Outgoing {
        msg,
        to: recipient(m, inbound)?,
    }])
}

fn result_text(result: KeylistResult) -> &'static str {
    match result {
        KeylistResult::Success => "success",
        KeylistResult::NoChange => "no_change",
        KeylistResult::ClientError => "client_error",
        KeylistResult::ServerError => "server_error",
    }
}

#[derive(Deserialize, Default)]
struct KeylistQueryBody {
    #[serde(default)]
    paginate: Option<Paginate>,
}

#[derive(Deserialize)]
struct Paginate {
    limit: Option<usize>,
    offset: Option<usize>,
}

/// `keylist-query` -> `keylist`, paged.
pub async fn keylist_query(
    m: &Mediator,
    inbound: &Inbound<'_>,
) -> Result<Vec<Outgoing>, InboundError> {
    if let Some(report) = require_grant(m, inbound).await? {
        return Ok(vec![report]);
    }
    let conn = inbound.connection()?;
    let body: KeylistQueryBody = inbound.msg.decode().unwrap_or_default();
    let (limit, offset) = body.paginate.map_or((MAX_PAGE, 0), |p| {
        (
            p.limit.unwrap_or(MAX_PAGE).min(MAX_PAGE),
            p.offset.unwrap_or(0),
        )
    });
    let page = m
        .stores()
        .mediation
        .keylist(&conn.id, offset, limit)
        .await?;
    let keys: Vec<Value> = page
        .keys
        .iter()
        .map(|k| json!({ "recipient_key": key_text(inbound, k) }))
        .collect();
    let remaining = page.total.saturating_sub(offset + page.keys.len());
    let msg = inbound
        .msg
        .reply_to(inbound.reply_type(PROTOCOL, VERSION, "keylist"))
        .with_body(&json!({
            "keys": keys,
            "pagination": { "count": page.keys.len(), "offset": offset, "remaining": remaining },
        }))?;
    Ok(vec![Outgoing {
        msg,
        to: recipient(m, inbound)?,
    }])
}
