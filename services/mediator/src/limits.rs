//! Protocol-level limits against abuse: what a message may ask of us (recipients looked at,
//! handshake fields stored, discover-features queries answered), and the one way a refusal is
//! made, logged and counted. The transport's limits (timeouts, connection caps, rate limits) are
//! in the transport; the outbound ones in [`crate::endpoint`].

use tracing::info;

use crate::{error::InboundError, stats::Limit, Mediator};

impl Mediator {
    /// A refusal by `limit`: counted (`mediator_limits_refused_total{limit}`), logged, and
    /// returned for the handler to give back (an HTTP status or a problem report).
    pub(crate) fn refuse(&self, limit: Limit, reason: impl Into<String>) -> InboundError {
        let reason = reason.into();
        self.stats().refused(limit);
        info!(limit = limit.name(), %reason, "refused by a limit");
        InboundError::Refused { limit, reason }
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
