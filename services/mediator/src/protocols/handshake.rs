//! Connection handshakes, responder side: DID Exchange 1.0 and 1.1 (RFC 0023), Connections 1.0
//! (RFC 0160), and Out-of-Band handshake reuse (RFC 0434).
//!
//! The mediator answers with a DID of the kind the requester used (did:peer:1 with a signed
//! `did_doc~attach`; did:peer:2 and did:peer:4 with `did_rotate~attach` signed by the invitation
//! key, which credo-ts requires for any response DID that is not did:peer:1; an unqualified DID
//! with its legacy DIDDoc). Each connection gets its own key, derived from the master secret and
//! the new connection id, so nothing secret is stored.

use didcomm_did::{
    resolve, resolve_attached, sign_attachment, sign_connection, verify_attachment,
    verify_connection_sig, DidCommService, DidDoc, DidError, OwnDid,
};
use didcomm_envelope::KeyPair;
use didcomm_message::{Attachment, Message, ProblemReport, Thread, WhoRetries};
use mediator_store::{
    unix_ms_now, ConnectionId, ConnectionRecord, ConnectionState, HandshakeProtocol,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{info, warn};

use super::basic::reply_recipient;
use crate::{
    error::InboundError,
    mediator::{Inbound, Mediator, Outgoing, Recipient, Target},
    stats::Limit,
};

/// Which kind of DID the requester used, which our response mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DidKind {
    Peer1,
    Peer2,
    Peer4,
    Unqualified,
}

impl DidKind {
    fn of(did: &str) -> Self {
        if did.starts_with("did:peer:2") {
            Self::Peer2
        } else if did.starts_with("did:peer:4") {
            Self::Peer4
        } else if did.starts_with("did:peer:") || did.starts_with("did:key:") {
            Self::Peer1
        } else {
            Self::Unqualified
        }
    }
}

#[derive(Deserialize)]
struct DidExchangeRequest {
    label: Option<String>,
    did: String,
    #[serde(rename = "did_doc~attach")]
    did_doc_attach: Option<Attachment>,
}

/// A failed handshake is answered with a problem report to the requester's keys when we know
/// them; otherwise the transport gets the error.
fn handshake_problem(
    m: &Mediator,
    inbound: &Inbound<'_>,
    service: Option<&DidCommService>,
    code: &str,
    text: String,
) -> Result<Vec<Outgoing>, InboundError> {
    warn!(code, %text, "handshake refused");
    let Some(service) = service else {
        return Err(InboundError::BadField(text));
    };
    let msg = ProblemReport::new(code)
        .with_text(text)
        .with_who_retries(WhoRetries::None)
        .builder()
        .in_thread_of(&inbound.msg)
        .build();
    Ok(vec![Outgoing {
        msg,
        to: Recipient {
            connection: None,
            keys: service.recipient_keys.clone(),
            routing_keys: service.routing_keys.clone(),
            endpoint: endpoint_of(service),
            from: m.keys().invitation_key().clone(),
            established: false,
        },
    }])
}

fn endpoint_of(service: &DidCommService) -> Option<String> {
    (!service.is_queue_endpoint()).then(|| service.endpoint.clone())
}

/// The preferred DIDComm service of a resolved document.
fn first_service(doc: &DidDoc) -> Result<DidCommService, String> {
    doc.didcomm_services()
        .map_err(|e| format!("their DID document has no usable DIDComm service: {e}"))?
        .into_iter()
        .next()
        .ok_or_else(|| "their DID document has no DIDComm service".to_owned())
}

/// DID Exchange `request` -> `response`.
pub async fn didexchange_request(
    m: &Mediator,
    inbound: &Inbound<'_>,
) -> Result<Vec<Outgoing>, InboundError> {
    if !matches!(inbound.target, Target::Invitation) {
        return Err(InboundError::NoConnection(
            "a DID Exchange request must be sent to the invitation key".into(),
        ));
    }
    let msg = &inbound.msg;
    let req: DidExchangeRequest = msg.decode()?;
    let thid = msg.thread_id().to_owned();
    let caps = &m.config().handshake;
    m.cap_handshake_field("did", req.did.len(), caps.max_did_bytes)?;
    if let Some(attach) = &req.did_doc_attach {
        let len = serde_json::to_vec(attach).map_or(usize::MAX, |v| v.len());
        m.cap_handshake_field("did_doc~attach", len, caps.max_did_doc_bytes)?;
    }
    check_sizes(m, &thid, req.label.as_deref())?;

    // Resolve their DID (with the signed attached document where the method needs one).
    // The attached document is kept as received; self-resolving DIDs (did:peer:2/4) need none.
    let mut doc_json: Option<Value> = None;
    let resolved = match &req.did_doc_attach {
        Some(attach) => verify_attachment(attach).and_then(|(bytes, _signer)| {
            doc_json = serde_json::from_slice(&bytes).ok();
            resolve_attached(&req.did, &bytes)
        }),
        None => resolve(&req.did, None),
    };
    let (doc, service) = match usable(resolved) {
        Ok(found) => found,
        Err(text) => return handshake_problem(m, inbound, None, "request_not_accepted", text),
    };
    prove_possession(m, inbound, &service, &doc.authentication_keys())?;
    if let Some(pthid) = msg.parent_thread_id() {
        if !m.is_our_invitation(pthid) {
            info!(pthid, "request answers an invitation that is not ours; accepted anyway (multi-use, public)");
        }
    }

    // A retransmission (same thread, same requester) gets the same connection and answer.
    let Some((existing, id, my_key, own)) = prepare(m, &thid, &req.did, &service).await? else {
        return thread_in_use(m, inbound, &service);
    };
    let minor = msg.ty.minor();
    let mut body = serde_json::Map::new();
    let invitation_key = m.keys().invitation_key();
    let my_did = match DidKind::of(&req.did) {
        DidKind::Peer1 => {
            let peer = own.peer1();
            let attach = sign_attachment(
                &uuid::Uuid::new_v4().to_string(),
                Some("application/json"),
                peer.doc_json.as_bytes(),
                invitation_key,
            );
            body.insert("did_doc~attach".into(), to_value(&attach)?);
            peer.did
        }
        DidKind::Peer2 | DidKind::Peer4 => {
            let did = if DidKind::of(&req.did) == DidKind::Peer2 {
                own.peer2()
            } else {
                own.peer4().long
            };
            let attach = sign_attachment(
                &uuid::Uuid::new_v4().to_string(),
                Some("text/string"),
                did.as_bytes(),
                invitation_key,
            );
            body.insert("did_rotate~attach".into(), to_value(&attach)?);
            did
        }
        DidKind::Unqualified => {
            let unq = own.unqualified();
            // ACA-Py checks that a legacy document's id is `did:sov:<did>`: the sov form.
            let attach = sign_attachment(
                &uuid::Uuid::new_v4().to_string(),
                Some("application/json"),
                unq.sov_doc.to_string().as_bytes(),
                invitation_key,
            );
            body.insert("did_doc~attach".into(), to_value(&attach)?);
            unq.did
        }
    };
    body.insert("did".into(), Value::from(my_did.as_str()));

    let now = unix_ms_now();
    let record = ConnectionRecord {
        id: id.clone(),
        state: ConnectionState::ResponseSent,
        protocol: HandshakeProtocol::DidExchange {
            minor: u8::try_from(minor).unwrap_or(1),
        },
        thread_id: thid.clone(),
        invitation_id: msg.parent_thread_id().map(str::to_owned),
        their_label: req.label.clone(),
        their_did: req.did.clone(),
        their_did_doc: doc_json,
        their_keys: service.recipient_keys.clone(),
        their_routing_keys: service.routing_keys.clone(),
        their_endpoint: endpoint_of(&service),
        my_did,
        my_verkey: *my_key.verkey(),
        created_at_ms: existing.as_ref().map_or(now, |c| c.created_at_ms),
        updated_at_ms: now,
        // Unfinished handshakes do not stay: completion makes the record permanent.
        expires_at_ms: Some(now + m.config().handshake.pending_ttl_secs.saturating_mul(1000)),
    };
    save(m, &record, existing.is_some()).await?;
    info!(connection = %id, label = ?req.label, their_did = %short(&req.did), "DID exchange request accepted");

    let response = Message::new(inbound.reply_type("didexchange", (1, minor), "response"))
        .with_thread(Thread {
            thid: Some(thid),
            ..Thread::default()
        })
        .with_body(&Value::Object(body))?;
    Ok(vec![Outgoing {
        msg: response,
        to: Recipient::of(&record, my_key),
    }])
}

#[derive(Deserialize)]
struct ConnectionsRequest {
    label: Option<String>,
    connection: ConnectionBody,
}

#[derive(Deserialize)]
struct ConnectionBody {
    #[serde(rename = "DID")]
    did: String,
    #[serde(rename = "DIDDoc")]
    did_doc: Option<Value>,
}

/// Connections 1.0 `request` -> `response` with `connection~sig`.
pub async fn connections_request(
    m: &Mediator,
    inbound: &Inbound<'_>,
) -> Result<Vec<Outgoing>, InboundError> {
    if !matches!(inbound.target, Target::Invitation) {
        return Err(InboundError::NoConnection(
            "a Connections request must be sent to the invitation key".into(),
        ));
    }
    let msg = &inbound.msg;
    let req: ConnectionsRequest = msg.decode()?;
    let thid = msg.thread_id().to_owned();
    let caps = &m.config().handshake;
    m.cap_handshake_field("DID", req.connection.did.len(), caps.max_did_bytes)?;
    if let Some(doc) = &req.connection.did_doc {
        let len = serde_json::to_vec(doc).map_or(usize::MAX, |v| v.len());
        m.cap_handshake_field("DIDDoc", len, caps.max_did_doc_bytes)?;
    }
    check_sizes(m, &thid, req.label.as_deref())?;
    let (doc, service) = match usable(resolve(
        &req.connection.did,
        req.connection.did_doc.as_ref(),
    )) {
        Ok(found) => found,
        Err(text) => return handshake_problem(m, inbound, None, "request_not_accepted", text),
    };
    prove_possession(m, inbound, &service, &doc.authentication_keys())?;

    let Some((existing, id, my_key, own)) =
        prepare(m, &thid, &req.connection.did, &service).await?
    else {
        return thread_in_use(m, inbound, &service);
    };
    let unq = own.unqualified();
    // The legacy DIDDoc exactly as credo writes its own (checked against its traces).
    let connection = json!({ "DID": unq.did, "DIDDoc": unq.doc });
    let sig = sign_connection(&connection, m.keys().invitation_key());
    debug_assert!(verify_connection_sig(&sig).is_ok());

    let now = unix_ms_now();
    let record = ConnectionRecord {
        id: id.clone(),
        state: ConnectionState::ResponseSent,
        protocol: HandshakeProtocol::Connections10,
        thread_id: thid.clone(),
        invitation_id: msg.parent_thread_id().map(str::to_owned),
        their_label: req.label.clone(),
        their_did: req.connection.did.clone(),
        their_did_doc: req.connection.did_doc.clone(),
        their_keys: service.recipient_keys.clone(),
        their_routing_keys: service.routing_keys.clone(),
        their_endpoint: endpoint_of(&service),
        my_did: unq.did.clone(),
        my_verkey: *my_key.verkey(),
        created_at_ms: existing.as_ref().map_or(now, |c| c.created_at_ms),
        updated_at_ms: now,
        // Unfinished handshakes do not stay: completion makes the record permanent.
        expires_at_ms: Some(now + m.config().handshake.pending_ttl_secs.saturating_mul(1000)),
    };
    save(m, &record, existing.is_some()).await?;
    info!(connection = %id, label = ?req.label, "connections request accepted");

    let response = Message::new(inbound.reply_type("connections", (1, 0), "response"))
        .with_thread(Thread {
            thid: Some(thid),
            ..Thread::default()
        })
        .with_body(&json!({ "connection~sig": sig }))?;
    Ok(vec![Outgoing {
        msg: response,
        to: Recipient::of(&record, my_key),
    }])
}

/// DID Exchange `complete`: the connection is usable.
pub async fn didexchange_complete(
    m: &Mediator,
    inbound: &Inbound<'_>,
) -> Result<Vec<Outgoing>, InboundError> {
    m.complete_connection(inbound.connection()?).await?;
    Ok(Vec::new())
}

/// OOB `handshake-reuse` on an existing connection -> `handshake-reuse-accepted`.
pub async fn reuse(m: &Mediator, inbound: &Inbound<'_>) -> Result<Vec<Outgoing>, InboundError> {
    let conn = inbound.connection()?;
    m.complete_connection(conn).await?;
    let msg = Message::new(inbound.reply_type("out-of-band", (1, 1), "handshake-reuse-accepted"))
        .with_thread(Thread {
            thid: Some(inbound.msg.id.clone()),
            pthid: inbound.msg.parent_thread_id().map(str::to_owned),
            ..Thread::default()
        });
    Ok(vec![Outgoing {
        msg,
        to: reply_recipient(m, inbound)?,
    }])
}

/// A resolved document and its preferred DIDComm service, or why there is none.
fn usable(resolved: Result<DidDoc, DidError>) -> Result<(DidDoc, DidCommService), String> {
    let doc = resolved.map_err(|e| format!("their DID: {e}"))?;
    let service = first_service(&doc)?;
    Ok((doc, service))
}

/// Caps on what an anonymous requester makes us store with its connection.
fn check_sizes(m: &Mediator, thid: &str, label: Option<&str>) -> Result<(), InboundError> {
    let caps = &m.config().handshake;
    m.cap_handshake_field("thread id", thid.len(), caps.max_thread_id_bytes)?;
    m.cap_handshake_field("label", label.map_or(0, str::len), caps.max_label_bytes)
}

/// Proof of possession: the request must be authcrypted by a key of the DID it presents (its
/// service's recipient keys or its authentication keys), or anyone could open a connection in the
/// name of somebody else's DID. credo-ts and ACA-Py authcrypt their requests so. Refused on the
/// transport, never with a message to the (unproven) endpoint the request names.
fn prove_possession(
    m: &Mediator,
    inbound: &Inbound<'_>,
    service: &DidCommService,
    authentication: &[didcomm_envelope::VerKey],
) -> Result<(), InboundError> {
    match inbound.sender {
        Some(sender)
            if service.recipient_keys.contains(&sender) || authentication.contains(&sender) =>
        {
            Ok(())
        }
        Some(_) => Err(m.refuse(
            Limit::HandshakeProof,
            "the request is not authcrypted by a key of the requester's DID",
        )),
        None => Err(m.refuse(
            Limit::HandshakeProof,
            "the request must be authcrypted by a key of the requester's DID (it was anoncrypted)",
        )),
    }
}

/// A request whose thread id is another requester's: refused, and nothing is changed.
fn thread_in_use(
    m: &Mediator,
    inbound: &Inbound<'_>,
    service: &DidCommService,
) -> Result<Vec<Outgoing>, InboundError> {
    m.stats().refused(Limit::HandshakeThread);
    handshake_problem(
        m,
        inbound,
        Some(service),
        "request_not_accepted",
        "the thread id of this request is already in use".into(),
    )
}

/// The connection a request makes: a new id, or for a retransmission (a request on the same
/// thread by the same requester: same DID and keys) the existing connection, whose record is
/// never changed by a request. `None` when the thread is another requester's.
async fn prepare(
    m: &Mediator,
    thid: &str,
    their_did: &str,
    service: &DidCommService,
) -> Result<Option<(Option<ConnectionRecord>, ConnectionId, KeyPair, OwnDid)>, InboundError> {
    let existing = m.stores().connections.find_by_thread(thid).await?;
    if let Some(c) = &existing {
        if c.their_did != their_did || c.their_keys != service.recipient_keys {
            return Ok(None);
        }
    }
    let id = existing
        .as_ref()
        .map_or_else(ConnectionId::generate, |c| c.id.clone());
    let my_key = connection_key(m, &id)?;
    let own = OwnDid::new(
        *my_key.verkey(),
        [
            m.config().public_http_endpoint.clone(),
            m.config().public_ws_endpoint.clone(),
        ],
        [],
    );
    Ok(Some((existing, id, my_key, own)))
}

fn connection_key(m: &Mediator, id: &ConnectionId) -> Result<KeyPair, InboundError> {
    m.keys()
        .connection_key(id.as_str())
        .map_err(|e| InboundError::Internal(e.to_string()))
}

/// Stores the connection a request made; a retransmission's connection is left as it is (a
/// request never changes an existing connection).
async fn save(m: &Mediator, record: &ConnectionRecord, exists: bool) -> Result<(), InboundError> {
    if !exists {
        m.stores().connections.insert(record).await?;
    }
    Ok(())
}

fn to_value(attach: &Attachment) -> Result<Value, InboundError> {
    serde_json::to_value(attach).map_err(|e| InboundError::Internal(e.to_string()))
}

fn short(did: &str) -> &str {
    did.get(..40).unwrap_or(did)
}
