//! Key names: the one place that knows the layout (listed in the crate docs).
//!
//! Every key of a store starts with the store's hash tag, `{<prefix><letter>}`, so that all of
//! them hash to one Redis Cluster slot and a script may take any of them in KEYS. This module
//! builds names only; it must not talk to Redis.

use didcomm_envelope::VerKey;
use mediator_store::ConnectionId;

/// The key names of one store: every name begins with the store's hash tag and a colon.
#[derive(Debug, Clone)]
pub(crate) struct KeySpace {
    /// `{<escaped prefix><letter>}:`
    base: String,
}

impl KeySpace {
    /// The key space of the store `letter` (`c` connections, `m` mediation) under `prefix`.
    pub(crate) fn new(prefix: &str, letter: char) -> Self {
        Self {
            base: format!("{{{}{letter}}}:", escape_prefix(prefix)),
        }
    }

    /// The key `name` of this store.
    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}{name}", self.base)
    }
}

/// The prefix as it goes inside the hash tag. A `}` in it would end the tag early (an empty tag,
/// `{}`, makes Redis hash the whole key, scattering the store over slots), so braces are
/// percent-encoded, and `%` too so that two different prefixes never give the same tag.
fn escape_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
}

/// The keys of the connection store.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionKeys {
    /// Hash: connection id -> record JSON.
    pub(crate) records: String,
    /// Hash: `my_verkey` (base58) -> connection id.
    pub(crate) by_my_verkey: String,
    /// Hash: handshake thread id -> connection id.
    pub(crate) by_thread: String,
    /// Sorted set, every score 0: `"<their key base58> <connection id>"`, read by lex range.
    pub(crate) by_their_verkey: String,
    /// Sorted set: id of each record that expires -> its expiry (unix ms).
    pub(crate) expiring: String,
}

impl ConnectionKeys {
    pub(crate) fn new(prefix: &str) -> Self {
        let space = KeySpace::new(prefix, 'c');
        Self {
            records: space.key("records"),
            by_my_verkey: space.key("by-my-verkey"),
            by_thread: space.key("by-thread"),
            by_their_verkey: space.key("by-their-verkey"),
            expiring: space.key("expiring"),
        }
    }
}

/// The keys of the mediation store.
#[derive(Debug, Clone)]
pub(crate) struct MediationKeys {
    space: KeySpace,
    /// Hash: connection id -> mediation record JSON.
    pub(crate) records: String,
    /// Hash: recipient key (base58) -> the connection that registered it (the Forward routing).
    pub(crate) key_owner: String,
}

impl MediationKeys {
    pub(crate) fn new(prefix: &str) -> Self {
        let space = KeySpace::new(prefix, 'm');
        Self {
            records: space.key("records"),
            key_owner: space.key("key-owner"),
            space,
        }
    }

    /// Sorted set: the connection's recipient keys (base58) scored by registration sequence.
    pub(crate) fn keylist(&self, connection_id: &ConnectionId) -> String {
        self.space.key(&format!("keylist:{connection_id}"))
    }
}

/// The keys of one connection's message queue, all under that connection's own hash tag
/// `{<prefix>q:<connection id>}` (the layout is described in `lua/queue_common.lua`).
#[derive(Debug, Clone)]
pub(crate) struct QueueKeys {
    base: String,
}

impl QueueKeys {
    pub(crate) fn new(prefix: &str, connection_id: &ConnectionId) -> Self {
        Self {
            base: format!(
                "{{{}q:{}}}:",
                escape_prefix(prefix),
                escape_prefix(connection_id.as_str())
            ),
        }
    }

    /// The six keys, in the order the scripts take them in KEYS.
    pub(crate) fn all(&self) -> [String; 6] {
        ["order", "msg", "meta", "lease", "bytes", "seq"].map(|name| format!("{}{name}", self.base))
    }

    /// Set of the connection ids whose queue may hold messages (read only by the expiry sweep).
    pub(crate) fn index(prefix: &str) -> String {
        KeySpace::new(prefix, 'x').key("queues")
    }
}

/// The set of the message ids a connection sent lately (the replay window), under that
/// connection's own hash tag `{<prefix>s:<connection id>}`.
#[derive(Debug)]
pub(crate) struct SeenKeys;

impl SeenKeys {
    pub(crate) fn of(prefix: &str, connection_id: &ConnectionId) -> String {
        format!(
            "{{{}s:{}}}:seen",
            escape_prefix(prefix),
            escape_prefix(connection_id.as_str())
        )
    }
}

/// The keys of one connection's push registration, both under that connection's own hash tag
/// `{<prefix>d:<connection id>}` (so a script may take both, and registrations spread over a
/// cluster's masters by connection).
#[derive(Debug, Clone)]
pub(crate) struct DeviceKeys {
    /// String: the device info (JSON).
    pub(crate) device: String,
    /// String `1` with the claim's expiry (`SET NX PX`): present while a notification claim
    /// holds.
    pub(crate) claim: String,
}

impl DeviceKeys {
    pub(crate) fn new(prefix: &str, connection_id: &ConnectionId) -> Self {
        let base = format!(
            "{{{}d:{}}}:",
            escape_prefix(prefix),
            escape_prefix(connection_id.as_str())
        );
        Self {
            device: format!("{base}device"),
            claim: format!("{base}claim"),
        }
    }

    /// Sorted set, every score 0: the connection ids that may have a registration, read by lex
    /// range (only `list`, offline, reads it). On the index slot `{<prefix>x}`, beside the
    /// queues' index.
    pub(crate) fn index(prefix: &str) -> String {
        KeySpace::new(prefix, 'x').key("devices")
    }
}

/// The keys of the live-session registry, all under the hash tag `{<prefix>live}`.
#[derive(Debug, Clone)]
pub(crate) struct RegistryKeys {
    space: KeySpace,
    /// Hash: connection id -> `<instance> <session> <lease end ms>`.
    pub(crate) sessions: String,
}

impl RegistryKeys {
    pub(crate) fn new(prefix: &str) -> Self {
        let space = KeySpace::new(prefix, 'l');
        Self {
            sessions: space.key("live-sessions"),
            space,
        }
    }

    /// Set: the connections whose live session `instance` holds.
    pub(crate) fn instance(&self, instance: &str) -> String {
        self.space.key(&format!("instance:{instance}"))
    }
}

/// A key as it is stored: the canonical base58 form, whatever form it arrived in.
pub(crate) fn stored_key(key: &VerKey) -> String {
    key.to_base58()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash tag Redis Cluster hashes: the text between the first `{` and the first `}` after
    /// it, when that text is not empty; otherwise the whole key.
    fn hash_tag(key: &str) -> &str {
        if let Some(open) = key.find('{') {
            if let Some(len) = key[open + 1..].find('}') {
                if len > 0 {
                    return &key[open + 1..open + 1 + len];
                }
            }
        }
        key
    }

    #[test]
    fn every_key_of_a_store_has_its_tag() {
        for prefix in ["", "mediator:", "t}{x", "}", "%7D", "{}"] {
            let c = ConnectionKeys::new(prefix);
            let m = MediationKeys::new(prefix);
            let conn_tags = [
                &c.records,
                &c.by_my_verkey,
                &c.by_thread,
                &c.by_their_verkey,
                &c.expiring,
            ]
            .map(|k| hash_tag(k).to_owned());
            let keylist = m.keylist(&ConnectionId::from("a}b{c"));
            let med_tags = [&m.records, &m.key_owner, &keylist].map(|k| hash_tag(k).to_owned());
            assert!(
                conn_tags
                    .iter()
                    .all(|t| *t == format!("{}c", escape_prefix(prefix))),
                "connection keys of prefix {prefix:?} not under one tag: {conn_tags:?}"
            );
            assert!(
                med_tags
                    .iter()
                    .all(|t| *t == format!("{}m", escape_prefix(prefix))),
                "mediation keys of prefix {prefix:?} not under one tag: {med_tags:?}"
            );
        }
    }

    #[test]
    fn different_prefixes_never_share_a_tag() {
        let prefixes = ["", "a", "a}", "a%7D", "a%", "a{", "ac", "am"];
        let mut tags: Vec<String> = prefixes
            .iter()
            .flat_map(|p| {
                [
                    hash_tag(&ConnectionKeys::new(p).records).to_owned(),
                    hash_tag(&MediationKeys::new(p).records).to_owned(),
                ]
            })
            .collect();
        let all = tags.len();
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), all, "two stores share a hash tag: {tags:?}");
    }

    #[test]
    fn the_keys_of_a_registration_share_the_connections_tag() {
        for (prefix, connection) in [("", "c-1"), ("mediator:", "a}b{c"), ("{}", "%7D")] {
            let keys = DeviceKeys::new(prefix, &ConnectionId::from(connection));
            let tag = format!("{}d:{}", escape_prefix(prefix), escape_prefix(connection));
            assert_eq!(hash_tag(&keys.device), tag, "{keys:?}");
            assert_eq!(hash_tag(&keys.claim), tag, "{keys:?}");
        }
        let keys = DeviceKeys::new("mediator:", &ConnectionId::from("c-1"));
        assert_eq!(keys.device, "{mediator:d:c-1}:device");
        assert_eq!(keys.claim, "{mediator:d:c-1}:claim");
        assert_eq!(DeviceKeys::index("mediator:"), "{mediator:x}:devices");
    }

    #[test]
    fn layout_is_as_documented() {
        let c = ConnectionKeys::new("mediator:");
        assert_eq!(c.records, "{mediator:c}:records");
        assert_eq!(c.by_their_verkey, "{mediator:c}:by-their-verkey");
        assert_eq!(c.expiring, "{mediator:c}:expiring");
        let m = MediationKeys::new("mediator:");
        assert_eq!(m.key_owner, "{mediator:m}:key-owner");
        assert_eq!(
            m.keylist(&ConnectionId::from("c-1")),
            "{mediator:m}:keylist:c-1"
        );
    }
}
