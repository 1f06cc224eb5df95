//! Protocol-level limits against abuse: what a message may ask of us (recipients looked at,
//! handshake fields stored, discover-features queries answered), and the one way a refusal is
//! made, logged and counted. The transport's limits (timeouts, connection caps, rate limits) are
//! in the transport; the outbound ones in [`crate::endpoint`].

use tracing::info;

use didcomm_message::MessageType;

use crate::{
    error::InboundError,
    mediator::{Inbound, Target},
    stats::Limit,
    Mediator,
};

/// Messages that change state, whose replay (the same envelope played again, by anyone who
/// captured it) must not work: the pickup requests that lease or move deliveries, mediation
/// requests and keylist updates, handshake completion and reuse. Not the idempotent ones (status,
/// queries, pings, `messages-received`: removing what is gone changes nothing), nor Forwards
/// (anonymous; their duplicates are the sender's to avoid).
fn changes_state(ty: &MessageType) -> bool {
    matches!(
        (ty.protocol(), ty.major(), ty.name()),
        (
            "messagepickup",
            2,
            "delivery-request" | "live-delivery-change"
        ) | ("messagepickup", 1, "batch-pickup" | "noop")
            | (
                "coordinate-mediation",
                1,
                "mediate-request" | "keylist-update"
            )
            | ("didexchange", 1, "complete")
            | ("out-of-band", 1, "handshake-reuse")
    )
}

impl Mediator {
    /// A refusal by `limit`: counted (`mediator_limits_refused_total{limit}`), logged, and
    /// returned for the handler to give back (an HTTP status or a problem report).
    pub(crate) fn refuse(&self, limit: Limit, reason: impl Into<String>) -> InboundError {
        let reason = reason.into();
        self.stats().refused(limit);
        info!(limit = limit.name(), %reason, "refused by a limit");
        InboundError::Refused { limit, reason }
    }

    /// Refuses a replay: a state-changing message (see [`changes_state`]) whose `@id` its
    /// connection sent within `replay.window_secs`. One store round trip, for those messages
    /// only (never a Forward or an acknowledgement).
    pub(crate) async fn refuse_replay(&self, inbound: &Inbound<'_>) -> Result<(), InboundError> {
        let window_ms = self.config().replay.window_secs.saturating_mul(1000);
        let Target::Connection(conn) = &inbound.target else {
            return Ok(());
        };
        if window_ms == 0 || !changes_state(&inbound.msg.ty) {
            return Ok(());
        }
        let first = self
            .stores()
            .seen
            .first_sighting(&conn.id, &inbound.msg.id, window_ms)
            .await?;
        if first {
            Ok(())
        } else {
            Err(self.refuse(
                Limit::Replay,
                format!("message {} was received before (a replay)", inbound.msg.id),
            ))
        }
    }

    /// Refuses a value of a handshake field longer than `max` bytes.
    pub(crate) fn cap_handshake_field(
        &self,
        field: &str,
        len: usize,
        max: usize,
    ) -> Result<(), InboundError> {
        if len > max {
            return Err(self.refuse(
                Limit::HandshakeSize,
                format!("{field} is {len} bytes; at most {max} are accepted"),
            ));
        }
        Ok(())
    }
}
