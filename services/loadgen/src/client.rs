//! One recipient: a minimal DIDComm v1 client with no endpoint of its own (like a mobile wallet),
//! set up the way agents do it: DID Exchange 1.1 with a did:peer:2, mediation, one recipient key,
//! then a WebSocket in Pickup 2.0 Live Mode.
//!
//! Handshake messages go over HTTP POST with return route `all`; the reply is the response body.
//! Only set-up lives here; reading the socket is [`crate::receiver`].

use std::time::Duration;

use didcomm_did::{resolve, verify_attachment, OwnDid};
use didcomm_envelope::{unpack, Channel, ContentEnc, Envelope, KeyPair, OpenCache, VerKey};
use didcomm_message::Attachment;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::{error::shorten, forward::Keys, Config, LoadError};

/// The socket a recipient reads its deliveries on.
pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Doc URI of every message we send; the mediator answers in the one we use.
const DOC_URI: &str = "https://didcomm.org/";

/// How long set-up waits for the `status` that confirms live mode.
const LIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A fresh message id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A message of type `ty` (`protocol/version/name`) with `body`, asking for return route `all`.
pub fn message(ty: &str, body: Value) -> Value {
    let mut m = body;
    m["@type"] = Value::from(format!("{DOC_URI}{ty}"));
    m["@id"] = Value::from(new_id());
    m["~transport"] = json!({"return_route": "all"});
    m
}

/// Whether `msg` is of type `ty` (`protocol/version/name`), in either doc URI.
pub fn is_type(msg: &Value, ty: &str) -> bool {
    msg["@type"].as_str().is_some_and(|t| {
        t.strip_suffix(ty)
            .is_some_and(|prefix| prefix.ends_with('/'))
    })
}

/// A connected, mediated recipient.
#[derive(Debug)]
pub struct Recipient {
    /// Which recipient (messages `seq` with `seq % recipients == index` are for it).
    pub index: usize,
    /// Index of its instance in [`Config::mediators`].
    pub instance: usize,
    /// The instance's HTTP base URL.
    pub base: String,
    /// Our connection key (the did:peer:2's); deliveries are authcrypted to it.
    pub key: KeyPair,
    /// The mediator's key for this connection.
    pub mediator_key: VerKey,
    /// The key registered in the keylist; inner messages are anoncrypted to it.
    pub recipient_key: KeyPair,
    /// The grant's routing key; Forwards are anoncrypted to it.
    pub routing_key: VerKey,
    /// Per-peer crypto, as the mediator keeps it (the driver must not be the bottleneck): the
    /// channel to the mediator's current key, and what opening its deliveries can remember.
    channel: std::sync::Mutex<Option<(VerKey, std::sync::Arc<Channel>)>>,
    opener: OpenCache,
    /// The WebSocket endpoint the invitation lists (credo-ts listens on a port of its own);
    /// `None`: the instance's URL with ws://.
    ws_endpoint: Option<String>,
}

impl Recipient {
    /// Connects to the instance at `base`, gets mediation and registers a fresh key.
    pub async fn set_up(
        index: usize,
        instance: usize,
        base: &str,
        http: &reqwest::Client,
        invitation: Option<&Value>,
    ) -> Result<Self, LoadError> {
        Self::try_set_up(index, instance, base, http, invitation)
            .await
            .map_err(|source| LoadError::Recipient {
                index,
                url: base.to_owned(),
                source: Box::new(source),
            })
    }

    async fn try_set_up(
        index: usize,
        instance: usize,
        base: &str,
        http: &reqwest::Client,
        invitation: Option<&Value>,
    ) -> Result<Self, LoadError> {
        let url = format!("{base}/invitation");
        let inv: Value = if let Some(inv) = invitation {
            inv.clone()
        } else {
            http.get(&url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|source| LoadError::Http {
                    url: url.clone(),
                    source,
                })?
                .json()
                .await
                .map_err(|source| LoadError::Http { url, source })?
        };
        let invitation_key = inv["services"][0]["recipientKeys"][0]
            .as_str()
            .ok_or_else(|| LoadError::protocol("invitation", &inv))?;
        let invitation_key = VerKey::parse(invitation_key).map_err(|source| LoadError::Key {
            field: "invitation recipientKeys",
            source,
        })?;
        let key = KeyPair::generate().map_err(|source| LoadError::Key {
            field: "our connection key",
            source,
        })?;
        let did = OwnDid::new(*key.verkey(), ["didcomm:transport/queue"], []).peer2();
        let mut me = Self {
            index,
            instance,
            base: base.to_owned(),
            key,
            mediator_key: invitation_key,
            recipient_key: KeyPair::generate().map_err(|source| LoadError::Key {
                field: "recipient key",
                source,
            })?,
            // Replaced by the grant's below.
            routing_key: invitation_key,
            channel: std::sync::Mutex::new(None),
            opener: OpenCache::new(4),
            ws_endpoint: inv["services"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["serviceEndpoint"].as_str())
                .find(|e| e.starts_with("ws://") || e.starts_with("wss://"))
                .map(str::to_owned),
        };

        // DID Exchange 1.1: request, response (signed did_rotate), complete.
        let request_id = new_id();
        let request = json!({
            "@type": format!("{DOC_URI}didexchange/1.1/request"),
            "@id": request_id,
            "~thread": {"pthid": inv["@id"]},
            "label": format!("loadgen-{index}"),
            "did": did,
            "~transport": {"return_route": "all"},
        });
        let response = me
            .call(http, &request, "didexchange request")
            .await?
            .ok_or_else(|| LoadError::protocol("didexchange request", &"no response"))?;
        if !is_type(&response, "didexchange/1.1/response")
            || response["~thread"]["thid"] != request_id.as_str()
        {
            return Err(LoadError::protocol("didexchange request", &response));
        }
        let rotate: Attachment = serde_json::from_value(response["did_rotate~attach"].clone())?;
        let (signed, signer) = verify_attachment(&rotate)?;
        let their_did = response["did"]
            .as_str()
            .ok_or_else(|| LoadError::protocol("didexchange response", &response))?;
        if signer != invitation_key || signed != their_did.as_bytes() {
            return Err(LoadError::protocol(
                "didexchange response",
                &"did_rotate~attach is not the response DID signed by the invitation key",
            ));
        }
        let doc = resolve(their_did, None)?;
        me.mediator_key = *doc
            .didcomm_services()?
            .first()
            .and_then(|s| s.recipient_keys.first())
            .ok_or_else(|| LoadError::protocol("didexchange response", &"no DIDComm service"))?;
        let complete = json!({
            "@type": format!("{DOC_URI}didexchange/1.1/complete"),
            "@id": new_id(),
            "~thread": {"thid": request_id, "pthid": inv["@id"]},
        });
        if let Some(reply) = me.call(http, &complete, "didexchange complete").await? {
            return Err(LoadError::protocol("didexchange complete", &reply));
        }

        // Mediation, then our recipient key in the keylist.
        let grant = me
            .call(
                http,
                &message("coordinate-mediation/1.0/mediate-request", json!({})),
                "mediate-request",
            )
            .await?
            .ok_or_else(|| LoadError::protocol("mediate-request", &"no answer"))?;
        let routing = grant["routing_keys"][0]
            .as_str()
            .filter(|_| is_type(&grant, "coordinate-mediation/1.0/mediate-grant"))
            .ok_or_else(|| LoadError::protocol("mediate-request", &grant))?;
        me.routing_key = VerKey::parse(routing).map_err(|source| LoadError::Key {
            field: "mediate-grant routing_keys",
            source,
        })?;
        let update = message(
            "coordinate-mediation/1.0/keylist-update",
            json!({"updates": [{
                "recipient_key": me.recipient_key.verkey().to_did_key(),
                "action": "add",
            }]}),
        );
        let answer = me
            .call(http, &update, "keylist-update")
            .await?
            .ok_or_else(|| LoadError::protocol("keylist-update", &"no answer"))?;
        if answer["updated"][0]["result"] != "success" {
            return Err(LoadError::protocol("keylist-update", &answer));
        }
        Ok(me)
    }

    /// The keys a Forward for this recipient is built with.
    pub(crate) fn keys(&self) -> Keys {
        Keys {
            recipient: *self.recipient_key.verkey(),
            routing: self.routing_key,
        }
    }

    /// Posts `msg` (authcrypted to the mediator) and opens the return-routed reply, if any.
    async fn call(
        &self,
        http: &reqwest::Client,
        msg: &Value,
        step: &'static str,
    ) -> Result<Option<Value>, LoadError> {
        let res = http
            .post(&self.base)
            .header("content-type", "application/didcomm-envelope-enc")
            .body(self.pack(msg)?)
            .send()
            .await
            .map_err(|source| LoadError::Http {
                url: self.base.clone(),
                source,
            })?;
        let status = res.status().as_u16();
        let body = res.bytes().await.map_err(|source| LoadError::Http {
            url: self.base.clone(),
            source,
        })?;
        if status != 200 && status != 202 {
            return Err(LoadError::Status {
                step,
                url: self.base.clone(),
                status,
                body: shorten(&String::from_utf8_lossy(&body)),
            });
        }
        if body.is_empty() {
            return Ok(None);
        }
        self.open(&body).map(Some)
    }

    /// Packs `msg` for the mediator, authcrypted from our connection key.
    pub fn pack(&self, msg: &Value) -> Result<Vec<u8>, LoadError> {
        let channel = {
            let mut cached = self.channel.lock().unwrap_or_else(|p| p.into_inner());
            match &*cached {
                Some((key, channel)) if *key == self.mediator_key => std::sync::Arc::clone(channel),
                _ => {
                    let channel =
                        std::sync::Arc::new(Channel::new(&self.key, &[self.mediator_key])?);
                    *cached = Some((self.mediator_key, std::sync::Arc::clone(&channel)));
                    channel
                }
            }
        };
        Ok(channel.pack(&serde_json::to_vec(msg)?, ContentEnc::C20P)?)
    }

    /// Opens an envelope for our connection key (what the mediator sends us).
    pub fn open(&self, bytes: &[u8]) -> Result<Value, LoadError> {
        let out = Envelope::parse(bytes)?.open_cached(&self.key, &self.opener)?;
        Ok(serde_json::from_slice(&out.message)?)
    }

    /// Opens an inner message (anoncrypted to our recipient key).
    pub fn open_inner(&self, bytes: &[u8]) -> Result<Vec<u8>, LoadError> {
        let key = &self.recipient_key;
        Ok(unpack(bytes, |kid| (kid == key.verkey_base58()).then_some(key))?.message)
    }

    /// The instance's WebSocket URL.
    pub fn ws_url(&self) -> String {
        self.ws_endpoint
            .clone()
            .unwrap_or_else(|| Config::ws_url(&self.base))
    }

    /// Opens a WebSocket to the instance.
    pub async fn open_ws(&self) -> Result<Ws, LoadError> {
        let url = self.ws_url();
        // TCP_NODELAY, as agents' WebSocket stacks set it (node's `ws` does): with Nagle our
        // small acknowledgements would wait for the mediator's delayed ACKs.
        let (ws, _) = tokio_tungstenite::connect_async_with_config(&url, None, true)
            .await
            .map_err(|source| LoadError::WebSocket {
                url,
                source: Box::new(source),
            })?;
        Ok(ws)
    }

    /// Sends `msg` on `ws`, authcrypted from us.
    pub async fn ws_send(&self, ws: &mut Ws, msg: &Value) -> Result<(), LoadError> {
        ws.send(WsMessage::Binary(self.pack(msg)?.into()))
            .await
            .map_err(|source| LoadError::WebSocket {
                url: self.ws_url(),
                source: Box::new(source),
            })
    }

    /// Opens a WebSocket and turns Live Mode on over it; returns once the mediator confirmed,
    /// with the messages that came before the confirmation (live deliveries may overtake it on
    /// a reconnect, when Forwards keep coming).
    pub async fn go_live(&self) -> Result<(Ws, Vec<Value>), LoadError> {
        let mut ws = self.open_ws().await?;
        let change = message(
            "messagepickup/2.0/live-delivery-change",
            json!({"live_delivery": true}),
        );
        self.ws_send(&mut ws, &change).await?;
        let mut early = Vec::new();
        let status = tokio::time::timeout(LIVE_TIMEOUT, async {
            loop {
                let msg = match ws.next().await {
                    Some(Ok(WsMessage::Binary(b))) => self.open(&b)?,
                    Some(Ok(WsMessage::Text(t))) => self.open(t.as_bytes())?,
                    Some(Ok(_)) => continue,
                    Some(Err(source)) => {
                        return Err(LoadError::WebSocket {
                            url: self.ws_url(),
                            source: Box::new(source),
                        })
                    }
                    None => return Err(LoadError::WebSocketClosed { url: self.ws_url() }),
                };
                if msg["~thread"]["thid"] == change["@id"] {
                    return Ok(msg);
                }
                early.push(msg);
            }
        })
        .await
        .map_err(|_| LoadError::Timeout {
            step: "live-delivery-change",
            secs: LIVE_TIMEOUT.as_secs(),
        })??;
        if !is_type(&status, "messagepickup/2.0/status") || status["live_delivery"] != true {
            return Err(LoadError::protocol("live-delivery-change", &status));
        }
        Ok((ws, early))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_match_in_either_doc_uri_and_not_by_prefix() {
        let t = |ty: &str| json!({ "@type": ty });
        assert!(is_type(
            &t("https://didcomm.org/messagepickup/2.0/delivery"),
            "messagepickup/2.0/delivery"
        ));
        assert!(is_type(
            &t("did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/messagepickup/2.0/delivery"),
            "messagepickup/2.0/delivery"
        ));
        assert!(!is_type(
            &t("https://didcomm.org/messagepickup/2.0/delivery-request"),
            "messagepickup/2.0/delivery"
        ));
        assert!(!is_type(
            &t("https://didcomm.org/xmessagepickup/2.0/delivery"),
            "messagepickup/2.0/delivery"
        ));
    }
}
