//! The Forwards: what each message says (its sequence number, so the receiver knows which one it
//! got), how it is packed, and the pool of envelopes built before the timed phase.
//!
//! Message `seq` is for recipient `seq % recipients`. Every message is packed on its own (two
//! anoncrypts: the inner message to the recipient key, the Forward to the routing key), so no two
//! envelopes are alike even when prebuilt.

use std::sync::Arc;

use bytes::Bytes;
use didcomm_envelope::{pack, ContentEnc, VerKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, value::RawValue};

use crate::LoadError;

/// The keys a Forward for one recipient is packed with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keys {
    /// The recipient key (`to`; the inner message is anoncrypted to it).
    pub recipient: VerKey,
    /// The mediator's routing key from the grant (the Forward is anoncrypted to it).
    pub routing: VerKey,
}

/// The inner plaintext: a basic message that says which one it is.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Plain {
    #[serde(rename = "@type")]
    pub ty: String,
    #[serde(rename = "@id")]
    pub id: String,
    /// Which message of the run.
    pub seq: u64,
    /// The run it belongs to: a message of another run is not counted.
    pub run: String,
    /// Filler, `payload_bytes` long.
    pub content: String,
}

/// Builds the packed Forward of message `seq`.
pub(crate) fn build(
    seq: u64,
    keys: &[Keys],
    run: &str,
    payload_bytes: usize,
) -> Result<Bytes, LoadError> {
    let k = keys[(seq % keys.len() as u64) as usize];
    let plain = Plain {
        ty: "https://didcomm.org/basicmessage/1.0/message".to_owned(),
        id: uuid::Uuid::new_v4().to_string(),
        seq,
        run: run.to_owned(),
        content: "x".repeat(payload_bytes),
    };
    let inner = pack(
        &serde_json::to_vec(&plain)?,
        &[k.recipient],
        None,
        ContentEnc::C20P,
    )?;
    // The envelope goes into `msg` as it is: no parse and re-serialise.
    let inner: Box<RawValue> = serde_json::from_slice(&inner)?;
    let forward = json!({
        "@type": "https://didcomm.org/routing/1.0/forward",
        "@id": uuid::Uuid::new_v4().to_string(),
        "to": k.recipient.to_base58(),
        "msg": inner,
    });
    Ok(Bytes::from(pack(
        &serde_json::to_vec(&forward)?,
        &[k.routing],
        None,
        ContentEnc::C20P,
    )?))
}

/// Where the senders get the envelope of message `seq`.
#[derive(Debug)]
pub(crate) enum Pool {
    /// Built before the run, indexed by `seq`.
    Prebuilt(Vec<Bytes>),
    /// Built by the sender just before it posts.
    OnTheFly {
        keys: Arc<Vec<Keys>>,
        run: String,
        payload_bytes: usize,
    },
}

impl Pool {
    /// Builds `count` envelopes on every core (blocking threads: the runtime's workers keep
    /// answering the recipients' sockets meanwhile).
    pub async fn prebuilt(
        count: u64,
        keys: Arc<Vec<Keys>>,
        run: &str,
        payload_bytes: usize,
    ) -> Result<Self, LoadError> {
        let workers = std::thread::available_parallelism().map_or(2, usize::from) as u64;
        let chunk = count.div_ceil(workers).max(1);
        let mut tasks = Vec::new();
        let mut start = 0;
        while start < count {
            let end = (start + chunk).min(count);
            let (keys, run) = (keys.clone(), run.to_owned());
            tasks.push(tokio::task::spawn_blocking(move || {
                (start..end)
                    .map(|seq| build(seq, &keys, &run, payload_bytes))
                    .collect::<Result<Vec<_>, _>>()
            }));
            start = end;
        }
        let mut all = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for task in tasks {
            all.extend(task.await??);
        }
        Ok(Self::Prebuilt(all))
    }

    /// No pool: each envelope is packed when it is sent.
    pub fn on_the_fly(keys: Arc<Vec<Keys>>, run: &str, payload_bytes: usize) -> Self {
        Self::OnTheFly {
            keys,
            run: run.to_owned(),
            payload_bytes,
        }
    }

    /// The envelope of message `seq`.
    pub fn get(&self, seq: u64) -> Result<Bytes, LoadError> {
        match self {
            Self::Prebuilt(all) => usize::try_from(seq)
                .ok()
                .and_then(|i| all.get(i))
                .cloned()
                .ok_or_else(|| LoadError::Config(format!("message {seq} was not prebuilt"))),
            Self::OnTheFly {
                keys,
                run,
                payload_bytes,
            } => build(seq, keys, run, *payload_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use didcomm_envelope::{unpack, KeyPair};
    use serde_json::Value;

    use super::*;

    #[test]
    fn a_forward_opens_to_the_numbered_message_for_its_recipient() {
        let routing = KeyPair::generate().unwrap();
        let a = KeyPair::generate().unwrap();
        let b = KeyPair::generate().unwrap();
        let keys = [
            Keys {
                recipient: *a.verkey(),
                routing: *routing.verkey(),
            },
            Keys {
                recipient: *b.verkey(),
                routing: *routing.verkey(),
            },
        ];
        let env = build(3, &keys, "run-1", 10).unwrap();
        let fwd = unpack(&env, |_| Some(&routing)).unwrap();
        let fwd: Value = serde_json::from_slice(&fwd.message).unwrap();
        assert_eq!(fwd["to"], b.verkey_base58());
        let inner = serde_json::to_vec(&fwd["msg"]).unwrap();
        let plain = unpack(&inner, |kid| (kid == b.verkey_base58()).then_some(&b)).unwrap();
        let plain: Plain = serde_json::from_slice(&plain.message).unwrap();
        assert_eq!((plain.seq, plain.run.as_str()), (3, "run-1"));
        assert_eq!(plain.content.len(), 10);
        assert_ne!(
            env,
            build(3, &keys, "run-1", 10).unwrap(),
            "every pack unique"
        );
    }
}
