//! The fuzz harness of the protocol handlers (the `dispatch` target in `services/mediator/fuzz`).
//!
//! [`Harness::new`] builds an in-memory mediator and makes one client connection the way a real
//! client does, through [`Mediator::receive`] with packed messages: a DID Exchange request and
//! `complete`, a granted mediation request, a keylist update registering one key, and Forwards
//! to that key that wait in the connection's queue. [`Harness::dispatch`] then hands any
//! plaintext to [`protocols::dispatch`] on that connection, as if it had arrived authcrypted by
//! the connection's key, once over HTTP and once on a WebSocket session (the Live Mode and
//! implicit pickup paths), and packs every reply.
//!
//! Only the envelope is skipped: envelopes have their own fuzz target
//! (`shared/didcomm-envelope/fuzz`), and encrypting every input would spend the fuzzer's time in
//! cryptography instead of the handlers. Nothing in the service calls this module, and it must
//! never change what a handler does: it only calls the handlers' public entry point.

use std::sync::{atomic::Ordering, Arc};

use bytes::Bytes;
use didcomm_did::OwnDid;
use didcomm_envelope::{pack, ContentEnc, KeyPair, VerKey};
use didcomm_message::Message;
use mediator_store::{
    ConnectionRecord, ConnectionState, KeylistAction, KeylistUpdate, MediationState, MessageId,
    Stores,
};
use serde_json::{json, Value};

use crate::{
    config::{Config, ConfigError},
    error::InboundError,
    mediator::{Inbound, Mediator, SetupError, Target, Via},
    protocols,
    sessions::SessionHandle,
};

/// The client's key: fixed, so every run of the harness starts from the same state.
const CLIENT_SEED: [u8; 32] = [1; 32];
/// The key the client registers for mediation, which the queued messages are for.
const RECIPIENT_SEED: [u8; 32] = [2; 32];
/// How many messages wait in the connection's queue before each execution.
const QUEUED: usize = 3;
/// The keylist cap of the harness: an input adds at most this many keys (the default allows
/// 10,000), so restoring the keylist after it stays cheap.
const MAX_KEYS: usize = 64;
/// How often the harness lets tasks the handlers spawned (implicit pickup) run on the
/// WebSocket session before closing it.
const SPAWNED_STEPS: usize = 4;

/// The harness could not set itself up.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The Tokio runtime could not be built.
    #[error("runtime could not be built")]
    Runtime(#[from] std::io::Error),
    /// The built-in configuration did not load.
    #[error("configuration")]
    Config(#[from] ConfigError),
    /// The mediator could not be built.
    #[error("mediator setup")]
    Setup(#[from] SetupError),
    /// A key could not be made.
    #[error("key")]
    Key(#[from] didcomm_envelope::KeyError),
    /// A set-up message could not be packed.
    #[error("packing a set-up message")]
    Envelope(#[from] didcomm_envelope::EnvelopeError),
    /// A set-up message could not be serialised.
    #[error("serialising a set-up message")]
    Json(#[from] serde_json::Error),
    /// The mediator refused a set-up message.
    #[error("the mediator refused a set-up message")]
    Inbound(#[from] InboundError),
    /// A store could not be read.
    #[error("store")]
    Store(#[from] mediator_store::StoreError),
    /// A set-up step was accepted but did not leave the state it should have.
    #[error("set-up step without effect: {0}")]
    NoEffect(&'static str),
}

/// What one input did.
#[derive(Debug)]
pub struct Outcome {
    /// The packed replies over HTTP, or why the handler refused the message.
    pub http: Result<Vec<Bytes>, InboundError>,
    /// The same on a WebSocket session.
    pub websocket: Result<Vec<Bytes>, InboundError>,
}

/// An in-memory mediator with one completed connection that has mediation granted, a registered
/// key and messages waiting, on which inputs are dispatched.
#[derive(Debug)]
pub struct Harness {
    runtime: tokio::runtime::Runtime,
    mediator: Mediator,
    /// The connection as the store holds it after set-up (completed; dispatch never changes it).
    connection: ConnectionRecord,
    client: KeyPair,
    recipient: VerKey,
    /// The payloads queued at set-up, put back when an input removed them.
    queued: Vec<Bytes>,
}

impl Harness {
    /// Builds the mediator and establishes the connection.
    pub fn new() -> Result<Self, HarnessError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut config = Config::defaults()?;
        config.mediation.max_keys_per_connection = MAX_KEYS;
        // Every input is dispatched twice (HTTP, WebSocket) and inputs repeat: the replay window
        // would make an input's outcome depend on what ran before it. Off here.
        config.replay.window_secs = 0;
        let client = KeyPair::from_seed(&CLIENT_SEED)?;
        let recipient = KeyPair::from_seed(&RECIPIENT_SEED)?;
        let (mediator, connection, queued) = runtime.block_on(async {
            let mediator = Mediator::new(Arc::new(config), Stores::memory())?;
            let (connection, queued) = establish(&mediator, &client, &recipient).await?;
            Ok::<_, HarnessError>((mediator, connection, queued))
        })?;
        Ok(Self {
            runtime,
            mediator,
            connection,
            client,
            recipient: *recipient.verkey(),
            queued,
        })
    }

    /// Parses `plaintext` as a DIDComm message and, if it is one, dispatches it on the
    /// connection over HTTP and then on a fresh WebSocket session, packing every reply. `None`
    /// when the bytes are not a message. Never panics.
    ///
    /// Each transport meets the connection as set-up left it (see [`Harness::restore`]), so an
    /// input does the same whatever ran before it: libFuzzer replays a crash from that input
    /// alone.
    pub fn dispatch(&self, plaintext: &[u8]) -> Option<Outcome> {
        let msg = Message::from_slice(plaintext).ok()?;
        Some(self.runtime.block_on(async {
            // The batch of a Pickup 1.0 request is acknowledged by the next one: within this
            // input (HTTP, then WebSocket), not by an earlier input's.
            self.mediator
                .v1_unacknowledged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.connection.id);
            self.restore().await;
            let http = self.handle(msg.clone(), Via::Http).await;
            self.restore().await;
            let id = self
                .mediator
                .next_session_id
                .fetch_add(1, Ordering::Relaxed);
            let depth = self.mediator.config().websocket.outbound_buffer;
            let (session, mut frames) = SessionHandle::new(id, depth);
            let websocket = self.handle(msg, Via::WebSocket(&session)).await;
            // What the handlers spawned (implicit pickup) runs while the socket is open; its
            // frames are read and never confirmed (as by a client that went away); then the
            // socket closes and those tasks end.
            for _ in 0..SPAWNED_STEPS {
                tokio::task::yield_now().await;
                while frames.try_recv().is_ok() {}
            }
            drop(frames);
            self.mediator.sessions().unregister(id);
            self.mediator
                .sessions()
                .clear_live(&self.connection.id, Some(id));
            drop(session);
            tokio::task::yield_now().await;
            Outcome { http, websocket }
        }))
    }

    async fn handle(&self, msg: Message, via: Via<'_>) -> Result<Vec<Bytes>, InboundError> {
        let inbound = Inbound {
            msg,
            sender: Some(*self.client.verkey()),
            target: Target::Connection(std::sync::Arc::new(self.connection.clone())),
            via,
        };
        let outgoing = protocols::dispatch(&self.mediator, &inbound).await?;
        outgoing
            .iter()
            .map(|out| self.mediator.pack_direct(out))
            .collect()
    }

    /// Brings the connection's queue and keylist back to what set-up left: the queued messages
    /// waiting (none in flight; those that inputs removed added again) and the one registered
    /// key. Bounded: the queue holds at most [`QUEUED`] messages, the keylist [`MAX_KEYS`] keys.
    async fn restore(&self) {
        let stores = self.mediator.stores();
        let id = &self.connection.id;
        if let Ok(held) = stores.queue.take(id, QUEUED, None).await {
            let ids: Vec<MessageId> = held.into_iter().map(|q| q.id).collect();
            let _ = stores.queue.release(id, &ids).await;
            for payload in self.queued.iter().skip(ids.len()) {
                let _ = stores
                    .queue
                    .add(id, &[self.recipient], payload.clone())
                    .await;
            }
        }
        if let Ok(page) = stores.mediation.keylist(id, 0, MAX_KEYS + 1).await {
            let mut updates: Vec<KeylistUpdate> = page
                .keys
                .iter()
                .filter(|k| **k != self.recipient)
                .map(|k| KeylistUpdate {
                    key: *k,
                    action: KeylistAction::Remove,
                })
                .collect();
            if !page.keys.contains(&self.recipient) {
                updates.push(KeylistUpdate {
                    key: self.recipient,
                    action: KeylistAction::Add,
                });
            }
            if !updates.is_empty() {
                let _ = stores.mediation.update_keylist(id, &updates).await;
            }
        }
    }
}

/// Packs `msg` for `to` (authcrypted by `from`, else anoncrypted) and hands it to the mediator
/// as an HTTP POST would.
async fn send(
    m: &Mediator,
    msg: &Value,
    to: &VerKey,
    from: Option<&KeyPair>,
) -> Result<Vec<Bytes>, HarnessError> {
    let packed = pack(&serde_json::to_vec(msg)?, &[*to], from, ContentEnc::C20P)?;
    Ok(m.receive(&packed, Via::Http).await?)
}

/// The client's side of a connection with mediation, as credo-ts makes one: DID Exchange 1.1
/// with a did:peer:2 and no endpoint (it picks up), `complete`, mediation, one key, and a few
/// Forwards to that key. Returns the connection record and the queued payloads.
async fn establish(
    m: &Mediator,
    client: &KeyPair,
    recipient: &KeyPair,
) -> Result<(ConnectionRecord, Vec<Bytes>), HarnessError> {
    let did = OwnDid::new(*client.verkey(), ["didcomm:transport/queue"], []).peer2();
    let thid = "fuzz-harness-handshake";
    let request = json!({
        "@type": "https://didcomm.org/didexchange/1.1/request",
        "@id": thid,
        "label": "fuzz harness",
        "did": did,
        "~transport": {"return_route": "all"},
    });
    send(
        m,
        &request,
        m.keys().invitation_key().verkey(),
        Some(client),
    )
    .await?;
    let record = m
        .stores()
        .connections
        .find_by_thread(thid)
        .await?
        .ok_or(HarnessError::NoEffect("DID Exchange request"))?;
    let ours = record.my_verkey;
    let on_connection = |ty: &str, n: usize, body: Value| {
        let mut msg = body;
        msg["@type"] = Value::from(format!("https://didcomm.org/{ty}"));
        msg["@id"] = Value::from(format!("fuzz-harness-{n}"));
        msg["~transport"] = json!({"return_route": "all"});
        msg
    };
    let complete = on_connection(
        "didexchange/1.1/complete",
        1,
        json!({"~thread": {"thid": thid}}),
    );
    send(m, &complete, &ours, Some(client)).await?;
    let mediate = on_connection("coordinate-mediation/1.0/mediate-request", 2, json!({}));
    send(m, &mediate, &ours, Some(client)).await?;
    let update = on_connection(
        "coordinate-mediation/1.0/keylist-update",
        3,
        json!({"updates": [{"recipient_key": recipient.verkey().to_did_key(), "action": "add"}]}),
    );
    send(m, &update, &ours, Some(client)).await?;

    let connection = m
        .stores()
        .connections
        .find_by_my_verkey(&ours)
        .await?
        .filter(|c| c.state == ConnectionState::Completed)
        .ok_or(HarnessError::NoEffect("DID Exchange complete"))?;
    let granted = m
        .stores()
        .mediation
        .get(&connection.id)
        .await?
        .is_some_and(|r| r.state == MediationState::Granted);
    if !granted {
        return Err(HarnessError::NoEffect("mediation request"));
    }
    if m.stores()
        .mediation
        .connection_for_key(recipient.verkey())
        .await?
        .as_ref()
        != Some(&connection.id)
    {
        return Err(HarnessError::NoEffect("keylist update"));
    }

    let routing = *m.keys().routing_key().verkey();
    for n in 0..QUEUED {
        let inner = json!({
            "@type": "https://didcomm.org/basicmessage/1.0/message",
            "@id": format!("fuzz-harness-queued-{n}"),
            "content": "waiting",
        });
        let inner = pack(
            &serde_json::to_vec(&inner)?,
            &[*recipient.verkey()],
            None,
            ContentEnc::C20P,
        )?;
        let forward = json!({
            "@type": "https://didcomm.org/routing/1.0/forward",
            "@id": format!("fuzz-harness-forward-{n}"),
            "to": recipient.verkey().to_base58(),
            "msg": serde_json::from_slice::<Value>(&inner)?,
        });
        send(m, &forward, &routing, None).await?;
    }
    let queued: Vec<Bytes> = m
        .stores()
        .queue
        .take(&connection.id, QUEUED, None)
        .await?
        .into_iter()
        .map(|q| q.payload)
        .collect();
    if queued.len() != QUEUED {
        return Err(HarnessError::NoEffect("forwards"));
    }
    Ok((connection, queued))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::{collections::BTreeMap, path::PathBuf};

    use didcomm_envelope::unpack;
    use serde_json::{json, Value};

    use super::*;

    /// What a seed must get over HTTP: a reply of this type (the end of its `@type`), no reply,
    /// or a refusal.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Expect {
        Reply(&'static str),
        Nothing,
        Refused,
    }
    use Expect::{Nothing, Refused, Reply};

    /// Every seed of the fuzz corpus and what it gets over HTTP and on a WebSocket.
    const SEEDS: &[(&str, Expect, Expect)] = &[
        (
            "trust-ping",
            Reply("trust_ping/1.0/ping_response"),
            Reply("trust_ping/1.0/ping_response"),
        ),
        (
            "trust-ping-legacy",
            Reply("trust_ping/1.0/ping_response"),
            Reply("trust_ping/1.0/ping_response"),
        ),
        ("trust-ping-response", Nothing, Nothing),
        (
            "discover-features-1",
            Reply("discover-features/1.0/disclose"),
            Reply("discover-features/1.0/disclose"),
        ),
        (
            "discover-features-2",
            Reply("discover-features/2.0/disclosures"),
            Reply("discover-features/2.0/disclosures"),
        ),
        (
            "mediate-request",
            Reply("coordinate-mediation/1.0/mediate-grant"),
            Reply("coordinate-mediation/1.0/mediate-grant"),
        ),
        (
            "keylist-update",
            Reply("coordinate-mediation/1.0/keylist-update-response"),
            Reply("coordinate-mediation/1.0/keylist-update-response"),
        ),
        (
            "keylist-query",
            Reply("coordinate-mediation/1.0/keylist"),
            Reply("coordinate-mediation/1.0/keylist"),
        ),
        (
            "pickup2-status-request",
            Reply("messagepickup/2.0/status"),
            Reply("messagepickup/2.0/status"),
        ),
        (
            "pickup2-delivery-request",
            Reply("messagepickup/2.0/delivery"),
            Reply("messagepickup/2.0/delivery"),
        ),
        (
            "pickup2-messages-received",
            Reply("messagepickup/2.0/status"),
            Reply("messagepickup/2.0/status"),
        ),
        (
            "pickup2-live-delivery-change",
            Reply("/problem-report"),
            Reply("messagepickup/2.0/status"),
        ),
        (
            "pickup1-batch-pickup",
            Reply("messagepickup/1.0/batch"),
            Reply("messagepickup/1.0/batch"),
        ),
        (
            "pickup1-status-request",
            Reply("messagepickup/1.0/status"),
            Reply("messagepickup/1.0/status"),
        ),
        ("pickup1-noop", Nothing, Nothing),
        ("didexchange-complete", Nothing, Nothing),
        ("didexchange-request", Refused, Refused),
        ("connections-request", Refused, Refused),
        (
            "handshake-reuse",
            Reply("out-of-band/1.1/handshake-reuse-accepted"),
            Reply("out-of-band/1.1/handshake-reuse-accepted"),
        ),
        ("problem-report", Nothing, Nothing),
        (
            "forward-on-connection",
            Reply("/problem-report"),
            Reply("/problem-report"),
        ),
        (
            "unknown-type",
            Reply("/problem-report"),
            Reply("/problem-report"),
        ),
    ];

    fn seeds() -> BTreeMap<String, Vec<u8>> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/dispatch");
        std::fs::read_dir(&dir)
            .expect("the seed corpus")
            .map(|entry| {
                let path = entry.unwrap().path();
                let name = path.file_stem().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).unwrap())
            })
            .collect()
    }

    fn open(h: &Harness, packed: &[u8]) -> Value {
        let out = unpack(packed, |kid| {
            (kid == h.client.verkey_base58()).then_some(&h.client)
        })
        .expect("a reply packed for the client");
        serde_json::from_slice(&out.message).unwrap()
    }

    fn check(
        h: &Harness,
        name: &str,
        transport: &str,
        got: &Result<Vec<Bytes>, InboundError>,
        expect: Expect,
    ) -> Vec<Value> {
        let replies: Vec<Value> = match (got, expect) {
            (Err(_), Refused) => return Vec::new(),
            (Ok(replies), Reply(_) | Nothing) => replies.iter().map(|r| open(h, r)).collect(),
            _ => panic!("{name} over {transport}: expected {expect:?}, got {got:?}"),
        };
        match expect {
            Reply(ty) => {
                assert_eq!(replies.len(), 1, "{name} over {transport}: {replies:?}");
                let got_ty = replies[0]["@type"].as_str().unwrap();
                assert!(got_ty.ends_with(ty), "{name} over {transport}: {got_ty}");
            }
            _ => assert!(replies.is_empty(), "{name} over {transport}: {replies:?}"),
        }
        replies
    }

    #[test]
    fn every_handler_answers_its_seed() {
        let h = Harness::new().unwrap();
        let seeds = seeds();
        let names: Vec<&str> = SEEDS.iter().map(|(n, _, _)| *n).collect();
        assert_eq!(
            seeds.keys().map(String::as_str).collect::<Vec<_>>(),
            {
                let mut sorted = names.clone();
                sorted.sort_unstable();
                sorted
            },
            "the seed files and this table name the same messages"
        );
        for (name, http, websocket) in SEEDS {
            let out = h.dispatch(&seeds[*name]).expect("a seed is a message");
            let replies = check(&h, name, "HTTP", &out.http, *http);
            let on_socket = check(&h, name, "WebSocket", &out.websocket, *websocket);
            if let Some(attached) = on_socket.first().and_then(|r| r["~attach"].as_array()) {
                assert_eq!(attached.len(), QUEUED, "{name} on a WebSocket");
            }
            if let Some(reply) = replies.first() {
                // Every queued message is handed out: the queue was set up through Forwards.
                if let Some(attached) = reply["~attach"].as_array() {
                    assert_eq!(attached.len(), QUEUED, "{name}: {reply}");
                }
                if let Some(batch) = reply["messages~attach"].as_array() {
                    assert_eq!(batch.len(), QUEUED, "{name}: {reply}");
                }
            }
        }
    }

    /// Values that handlers must refuse or ignore, never panic on.
    fn hostile() -> Vec<Value> {
        vec![
            Value::Null,
            json!(true),
            json!(0),
            json!(-1),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1e308),
            json!(-1e308),
            serde_json::from_str("18446744073709551616").unwrap(),
            json!(""),
            json!("*"),
            json!("x".repeat(10_000)),
            json!([]),
            json!({}),
            json!([null, 1, "a"]),
            json!({"": null, "limit": u64::MAX, "offset": u64::MAX}),
        ]
    }

    /// Each field of `msg` (and of the objects directly in it) replaced by each hostile value,
    /// and removed.
    fn variants(msg: &Value) -> Vec<Value> {
        let Value::Object(fields) = msg else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, value) in fields {
            let mut removed = msg.clone();
            removed.as_object_mut().unwrap().remove(key);
            out.push(removed);
            for bad in hostile() {
                let mut changed = msg.clone();
                changed[key] = bad;
                out.push(changed);
            }
            let inner = match value {
                Value::Array(items) => items.first(),
                object @ Value::Object(_) => Some(object),
                _ => None,
            };
            for nested in inner.map(variants).unwrap_or_default() {
                let mut changed = msg.clone();
                changed[key] = match value {
                    Value::Array(_) => json!([nested]),
                    _ => nested,
                };
                out.push(changed);
            }
        }
        out
    }

    #[test]
    fn malformed_messages_are_refused_without_panic() {
        let h = Harness::new().unwrap();
        let mut dispatched = 0;
        for bytes in seeds().into_values() {
            let seed: Value = serde_json::from_slice(&bytes).unwrap();
            for variant in variants(&seed) {
                let text = serde_json::to_vec(&variant).unwrap();
                if h.dispatch(&text).is_some() {
                    dispatched += 1;
                }
            }
        }
        assert!(dispatched > 500, "{dispatched} variants were messages");
        let raw: [&[u8]; 8] = [
            b"",
            b"{}",
            b"[]",
            b"null",
            b"{\"@type\":\"https://didcomm.org/trust_ping/1.0/ping\"}",
            b"{\"@type\":\"https://didcomm.org/trust_ping/1.0/ping\",\"@id\":\"\"}",
            b"{\"@type\":\"https://didcomm.org/trust_ping/1.0\",\"@id\":\"a\"}",
            &[0xff, 0xfe, b'{'],
        ];
        for bytes in raw {
            assert!(
                h.dispatch(bytes).is_none(),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(h.dispatch(deep.as_bytes()).is_none());
        // The harness (and its mediator) still serves a well-formed message.
        let ping = h
            .dispatch(br#"{"@type":"https://didcomm.org/trust_ping/1.0/ping","@id":"after"}"#)
            .unwrap();
        assert_eq!(ping.http.unwrap().len(), 1);
    }
}
