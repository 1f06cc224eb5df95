//! A real mediator instance on loopback, and a minimal DIDComm client that speaks to it the way
//! agents do (DID exchange, mediation, forward, pickup), for the protocol tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod cluster;
pub mod gated;
pub mod process;
pub mod raw;
pub mod stream;

use std::sync::Arc;

use didcomm_did::{resolve, verify_attachment, OwnDid};
use didcomm_envelope::{pack, unpack, ContentEnc, KeyPair, VerKey};
use didcomm_message::Attachment;
use mediator::{Config, Mediator};
use serde_json::{json, Value};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

pub struct Instance {
    pub base: String,
    pub mediator: Mediator,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Instance {
    pub async fn start(max_message_bytes: Option<usize>) -> Self {
        Self::start_with(max_message_bytes, &[]).await
    }

    pub async fn start_with(max_message_bytes: Option<usize>, extra: &[(&str, &str)]) -> Self {
        Self::start_wrapping(max_message_bytes, extra, |_| {}).await
    }

    /// [`Instance::start_with`], with its stores changed by `wrap` before the mediator is built
    /// on them (a test decorates one).
    pub async fn start_wrapping(
        max_message_bytes: Option<usize>,
        extra: &[(&str, &str)],
        wrap: impl FnOnce(&mut mediator_store::Stores),
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Every client of a test comes from 127.0.0.1, and some tests send hundreds of messages
        // a second: per-address rate limits are off here unless `extra` sets them (a later
        // duplicate wins in `Config::load`). Test clients' endpoints are on loopback (a private
        // address): allowed unless `extra` says otherwise.
        let mut env: Vec<(String, String)> = mediator::config::RATE_LIMITS_OFF
            .iter()
            .chain(&[
                ("MEDIATOR_DELIVERY__ALLOW_PRIVATE_ENDPOINTS", "true"),
                // In memory unless `extra` says otherwise (the default, embedded, is on disk).
                ("MEDIATOR_STORAGE__BACKEND", "memory"),
            ])
            .chain(extra)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        env.extend([
            (
                "MEDIATOR_PUBLIC_HTTP_ENDPOINT".to_owned(),
                format!("http://{addr}"),
            ),
            (
                "MEDIATOR_PUBLIC_WS_ENDPOINT".to_owned(),
                format!("ws://{addr}"),
            ),
        ]);
        if let Some(max) = max_message_bytes {
            env.push((
                "MEDIATOR_LIMITS__MAX_MESSAGE_BYTES".to_owned(),
                max.to_string(),
            ));
        }
        let config = Arc::new(Config::load(None, env).unwrap());
        let mut backend = mediator::storage::open(&config).await.unwrap();
        wrap(&mut backend.stores);
        let mediator = Mediator::from_backend(config, backend).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let server = mediator.clone();
        let task = tokio::spawn(async move {
            mediator::serve(server, listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            base: format!("http://{addr}"),
            mediator,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let res = reqwest::Client::new()
            .post(&self.base)
            .header("content-type", "application/didcomm-envelope-enc")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A client agent with no endpoint of its own (like a credo mobile wallet).
pub struct Client {
    pub key: KeyPair,
    pub mediator_key: VerKey,
    pub did: String,
    base: String,
    http: reqwest::Client,
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Client {
    /// Runs DID Exchange 1.1 with a did:peer:2 against the instance's invitation and completes it.
    pub async fn connect(i: &Instance) -> Self {
        Self::connect_with_endpoint(i, "didcomm:transport/queue").await
    }

    /// Like [`Client::connect`], advertising `endpoint` as the client's own endpoint.
    pub async fn connect_with_endpoint(i: &Instance, endpoint: &str) -> Self {
        Self::connect_base(&i.base, endpoint).await
    }

    /// DID Exchange with the mediator at `base` (any instance, in process or not).
    pub async fn connect_base(base: &str, endpoint: &str) -> Self {
        Self::connect_on_thread(base, endpoint, &new_id()).await
    }

    /// Like [`Client::connect_base`], with the request's `@id` (the handshake's thread id).
    pub async fn connect_on_thread(base: &str, endpoint: &str, request_id: &str) -> Self {
        let (inv, invitation_key) = invitation(base).await;
        let key = KeyPair::generate().unwrap();
        let did = OwnDid::new(*key.verkey(), [endpoint], []).peer2();
        let request = json!({
            "@type": "https://didcomm.org/didexchange/1.1/request",
            "@id": request_id,
            "~thread": {"pthid": inv["@id"]},
            "label": "test-client",
            "did": did,
            "~transport": {"return_route": "all"},
        });
        let mut client = Self {
            key,
            mediator_key: invitation_key,
            did,
            base: base.to_owned(),
            http: reqwest::Client::new(),
        };
        let response = client
            .call(&request)
            .await
            .expect("DID exchange response on the return route");
        assert_eq!(
            response["@type"], "https://didcomm.org/didexchange/1.1/response",
            "{response}"
        );
        assert_eq!(response["~thread"]["thid"], request_id);
        let rotate: Attachment =
            serde_json::from_value(response["did_rotate~attach"].clone()).unwrap();
        let (signed, signer) = verify_attachment(&rotate).unwrap();
        assert_eq!(
            signer, invitation_key,
            "did_rotate signed by the invitation key"
        );
        let their_did = response["did"].as_str().unwrap();
        assert_eq!(signed, their_did.as_bytes());
        let doc = resolve(their_did, None).unwrap();
        client.mediator_key = doc.didcomm_services().unwrap()[0].recipient_keys[0];
        let complete = json!({
            "@type": "https://didcomm.org/didexchange/1.1/complete",
            "@id": new_id(),
            "~thread": {"thid": request_id, "pthid": inv["@id"]},
        });
        assert!(client.call(&complete).await.is_none());
        client
    }

    /// Sends a message (authcrypt to the mediator's key for us) and returns the return-routed
    /// reply, if any.
    pub async fn call(&self, msg: &Value) -> Option<Value> {
        let (status, body) = self.post_raw(msg).await;
        assert!(
            status == 200 || status == 202,
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
        if body.is_empty() {
            return None;
        }
        let out = unpack(&body, |kid| {
            (kid == self.key.verkey_base58()).then_some(&self.key)
        })
        .unwrap();
        Some(serde_json::from_slice(&out.message).unwrap())
    }

    /// Packs a message for the mediator, authcrypted from this client.
    pub fn pack(&self, msg: &Value) -> Vec<u8> {
        pack(
            &serde_json::to_vec(msg).unwrap(),
            &[self.mediator_key],
            Some(&self.key),
            ContentEnc::C20P,
        )
        .unwrap()
    }

    /// Opens an envelope addressed to this client.
    pub fn open(&self, bytes: &[u8]) -> Value {
        let out = unpack(bytes, |kid| {
            (kid == self.key.verkey_base58()).then_some(&self.key)
        })
        .unwrap();
        serde_json::from_slice(&out.message).unwrap()
    }

    pub async fn post_raw(&self, msg: &Value) -> (u16, Vec<u8>) {
        let packed = pack(
            &serde_json::to_vec(msg).unwrap(),
            &[self.mediator_key],
            Some(&self.key),
            ContentEnc::C20P,
        )
        .unwrap();
        post_envelope_with(&self.http, &self.base, packed).await
    }

    /// A message with a return route.
    pub fn msg(ty: &str, body: Value) -> Value {
        let mut m = body;
        m["@type"] = Value::from(format!("https://didcomm.org/{ty}"));
        m["@id"] = Value::from(new_id());
        m["~transport"] = json!({"return_route": "all"});
        m
    }

    /// Requests mediation; returns the grant.
    pub async fn mediate(&self) -> Value {
        self.call(&Self::msg(
            "coordinate-mediation/1.0/mediate-request",
            json!({}),
        ))
        .await
        .unwrap()
    }

    /// Adds keys to the keylist; returns the response.
    pub async fn add_keys(&self, keys: &[&str]) -> Value {
        let updates: Vec<Value> = keys
            .iter()
            .map(|k| json!({"recipient_key": k, "action": "add"}))
            .collect();
        self.call(&Self::msg(
            "coordinate-mediation/1.0/keylist-update",
            json!({"updates": updates}),
        ))
        .await
        .unwrap()
    }
}

/// The invitation of the mediator at `base`, and its recipient key (the invitation key).
pub async fn invitation(base: &str) -> (Value, VerKey) {
    let inv: Value = reqwest::get(format!("{base}/invitation"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = VerKey::parse(inv["services"][0]["recipientKeys"][0].as_str().unwrap()).unwrap();
    (inv, key)
}

/// POSTs an envelope to `base`; the status and the body.
pub async fn post_envelope(base: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    post_envelope_with(&reqwest::Client::new(), base, body).await
}

async fn post_envelope_with(http: &reqwest::Client, base: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let res = http
        .post(base)
        .header("content-type", "application/didcomm-envelope-enc")
        .body(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.bytes().await.unwrap().to_vec())
}

/// Packs `inner` for `recipient` (anoncrypt) and wraps it in a Forward to the routing key.
pub fn forward_for(routing_key: &VerKey, recipient: &VerKey, inner: &[u8]) -> (Vec<u8>, Value) {
    let inner_env = pack(inner, &[*recipient], None, ContentEnc::C20P).unwrap();
    let inner_json: Value = serde_json::from_slice(&inner_env).unwrap();
    let forward = json!({
        "@type": "https://didcomm.org/routing/1.0/forward",
        "@id": new_id(),
        "to": recipient.to_base58(),
        "msg": inner_json,
    });
    (
        pack(
            &serde_json::to_vec(&forward).unwrap(),
            &[*routing_key],
            None,
            ContentEnc::C20P,
        )
        .unwrap(),
        inner_json,
    )
}

/// A WebSocket to the instance, used by one [`Client`].
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to the instance.
pub async fn open_ws(i: &Instance) -> Ws {
    let url = i.base.replacen("http://", "ws://", 1);
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The next data frame (pings are answered by the library while reading), within 10 s.
pub async fn next_frame(ws: &mut Ws) -> Vec<u8> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("socket open")
            .unwrap();
        match frame {
            WsMessage::Binary(b) => return b.to_vec(),
            WsMessage::Text(t) => return t.as_bytes().to_vec(),
            WsMessage::Close(c) => panic!("socket closed by the mediator: {c:?}"),
            _ => continue,
        }
    }
}

impl Client {
    /// Sends `msg` on `ws`, authcrypted from this client.
    pub async fn ws_send(&self, ws: &mut Ws, msg: &Value) {
        use futures_util::SinkExt;
        ws.send(tokio_tungstenite::tungstenite::Message::Binary(
            self.pack(msg).into(),
        ))
        .await
        .unwrap();
    }

    /// The next message on `ws`, opened.
    pub async fn ws_next(&self, ws: &mut Ws) -> Value {
        let frame = next_frame(ws).await;
        self.open(&frame)
    }

    /// Mediation and one fresh recipient key registered; returns (routing key, recipient key).
    pub async fn mediation_with_key(&self) -> (VerKey, KeyPair) {
        let grant = self.mediate().await;
        let routing = VerKey::parse(grant["routing_keys"][0].as_str().unwrap()).unwrap();
        let recipient = KeyPair::generate().unwrap();
        let r = self.add_keys(&[&recipient.verkey().to_did_key()]).await;
        assert_eq!(r["updated"][0]["result"], "success", "{r}");
        (routing, recipient)
    }

    /// Sends later requests to the instance at `base`.
    pub fn use_base(&mut self, base: &str) {
        self.base = base.to_owned();
    }

    /// Mediation, one fresh recipient key registered; returns (routing key, recipient key pair,
    /// the connection id on the mediator).
    pub async fn mediated_key(
        &self,
        i: &Instance,
    ) -> (VerKey, KeyPair, mediator_store::ConnectionId) {
        let (routing, recipient) = self.mediation_with_key().await;
        let conn = i
            .mediator
            .stores()
            .mediation
            .connection_for_key(recipient.verkey())
            .await
            .unwrap()
            .expect("the key routes to a connection");
        (routing, recipient, conn)
    }
}
