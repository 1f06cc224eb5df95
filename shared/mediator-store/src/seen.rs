//! The replay window: which message ids each connection sent lately, so that a message replayed
//! within a window is recognised and refused by the handlers.
//!
//! Message ids are chosen by the client, so the store bounds what it keeps: at most
//! `max_per_connection` ids per connection (given to a backend when it is made), each forgotten
//! when its window has passed, and ids longer than [`MAX_STORED_ID_LEN`] bytes kept as a fixed-size
//! digest (see [`stored_message_id`]), so a huge id costs no more than a short one. This module
//! decides nothing about which messages must be unique: that is the handlers' business.

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::{error::Result, ids::ConnectionId};

/// Ids longer than this many bytes are stored as their SHA-256 digest.
pub const MAX_STORED_ID_LEN: usize = 128;

/// The longest window a backend honours, ms (one year): a longer one counts as this, so that
/// expiry times stay far from any overflow.
pub const MAX_WINDOW_MS: u64 = 365 * 24 * 60 * 60 * 1000;

/// The message ids each connection sent within a recent window. Used as `Arc<dyn SeenMessages>`.
///
/// Connections never see each other's ids: the same id sent on two connections is a first
/// sighting on each.
#[async_trait]
pub trait SeenMessages: Send + Sync + std::fmt::Debug {
    /// Whether `message_id` is new on `connection_id`: `true` when it was not recorded for this
    /// connection within the last `window_ms` (by the store's clock: the process's for the memory
    /// backend, the Redis server's for Redis), and then it is recorded, remembered for `window_ms`
    /// from now; `false` for a repeat within that window (a repeat records nothing and does not
    /// extend the window, which runs from the first sighting). One atomic step: of concurrent
    /// calls with the same id, exactly one gets `true`.
    ///
    /// Bounded: when a connection would remember more than the backend's `max_per_connection`
    /// ids, those that expire soonest are forgotten first (the oldest, as the mediator uses one
    /// window for every call). A replay of a forgotten id is then accepted as a first sighting:
    /// the cap trades that for bounded memory under a flood of distinct ids. A `window_ms` of 0
    /// remembers nothing (every call is a first sighting); one longer than [`MAX_WINDOW_MS`]
    /// counts as that. Ids of any length are accepted; see [`stored_message_id`].
    async fn first_sighting(
        &self,
        connection_id: &ConnectionId,
        message_id: &str,
        window_ms: u64,
    ) -> Result<bool>;
}

/// The form in which a backend keeps `message_id`: `=` and the id itself when it is at most
/// [`MAX_STORED_ID_LEN`] bytes long, otherwise `#` and the lower-case hex SHA-256 of the id (65
/// bytes). The two forms never coincide, so a client cannot make a short id collide with the
/// digest of a long one.
pub fn stored_message_id(message_id: &str) -> String {
    if message_id.len() <= MAX_STORED_ID_LEN {
        format!("={message_id}")
    } else {
        format!("#{}", sha256_hex(message_id.as_bytes()))
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(2 * digest.len());
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_are_kept_and_long_ids_digested() {
        assert_eq!(stored_message_id("abc"), "=abc");
        let edge = "x".repeat(MAX_STORED_ID_LEN);
        assert_eq!(stored_message_id(&edge), format!("={edge}"));
        let long = "x".repeat(MAX_STORED_ID_LEN + 1);
        let stored = stored_message_id(&long);
        assert_eq!(stored, format!("#{}", sha256_hex(long.as_bytes())));
        assert_eq!(stored.len(), 65);
        assert_ne!(
            stored,
            stored_message_id(&"x".repeat(MAX_STORED_ID_LEN + 2))
        );
    }

    #[test]
    fn digest_is_sha256_in_lower_case_hex() {
        // FIPS 180-2 test vector.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
