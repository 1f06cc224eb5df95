//! Push-notification device registration: Aries RFC 0734 `push-notifications-fcm/1.0` and RFC
//! 0699 `push-notifications-apns/1.0`, as credo-ts's `@credo-ts/push-notifications` sends them.
//!
//! - `set-device-info` (`device_token`, and for FCM `device_platform`): the connection's device;
//!   a null or empty token clears it. No answer (the RFCs define none); a token that cannot be
//!   one, or a platform this mediator has no provider for, gets the protocol's
//!   `problem-report`.
//! - `get-device-info` -> `device-info` in its thread: what is registered for that platform
//!   (nulls when nothing is, or the device is of the other platform).
//!
//! One device per connection: a registration of either platform replaces the previous one. The
//! notifications themselves: [`crate::push`].

use didcomm_message::{ProblemReport, WhoRetries};
use mediator_store::{DeviceInfo, PushPlatform};
use serde::Deserialize;
use serde_json::json;
use tracing::info;

use super::basic::reply_recipient;
use crate::{
    error::InboundError,
    mediator::{Inbound, Mediator, Outgoing},
};

/// The protocol of `platform` (its message family).
fn protocol(platform: PushPlatform) -> &'static str {
    match platform {
        PushPlatform::Fcm => "push-notifications-fcm",
        PushPlatform::Apns => "push-notifications-apns",
    }
}

#[derive(Deserialize)]
struct SetDeviceInfo {
    #[serde(default)]
    device_token: Option<String>,
    #[serde(default)]
    device_platform: Option<String>,
}

/// The protocol's problem report, in the thread of `inbound`'s message.
fn problem(
    m: &Mediator,
    inbound: &Inbound<'_>,
    platform: PushPlatform,
    code: &str,
    text: &str,
) -> Result<Vec<Outgoing>, InboundError> {
    let msg = ProblemReport::new(code)
        .with_text(text)
        .with_who_retries(WhoRetries::None)
        .builder()
        .message_type(inbound.reply_type(protocol(platform), (1, 0), "problem-report"))
        .child_of(&inbound.msg)
        .build();
    Ok(vec![Outgoing {
        msg,
        to: reply_recipient(m, inbound)?,
    }])
}

/// Whether `token` can be a device token of `platform`: APNs tokens are hex; FCM registration
/// tokens are URL-safe text (letters, digits, `-_:.`).
fn plausible(platform: PushPlatform, token: &str) -> bool {
    match platform {
        PushPlatform::Apns => {
            token.len().is_multiple_of(2) && token.bytes().all(|b| b.is_ascii_hexdigit())
        }
        PushPlatform::Fcm => token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.')),
    }
}

/// `set-device-info`: registers (or, with no token, clears) the connection's device.
pub async fn set_device_info(
    m: &Mediator,
    inbound: &Inbound<'_>,
    platform: PushPlatform,
) -> Result<Vec<Outgoing>, InboundError> {
    let req: SetDeviceInfo = inbound.msg.decode()?;
    let conn = inbound.connection()?;
    let settings = &m.config().push;
    let token = req.device_token.unwrap_or_default();
    if token.is_empty() {
        let cleared = m.stores().devices.clear(&conn.id).await?;
        info!(connection = %conn.id, platform = platform_name(platform), cleared, "push: device info cleared");
        return Ok(Vec::new());
    }
    if !m.notifier().is_some_and(|n| n.supports(platform)) {
        return problem(
            m,
            inbound,
            platform,
            "push-not-supported",
            "this mediator sends no push notifications to this platform",
        );
    }
    if token.len() > settings.max_token_bytes || !plausible(platform, &token) {
        return problem(
            m,
            inbound,
            platform,
            "invalid-device-token",
            "device_token is not a device token of this platform",
        );
    }
    let device_platform = match platform {
        PushPlatform::Fcm => req.device_platform.filter(|p| !p.is_empty()),
        PushPlatform::Apns => None,
    };
    if device_platform.as_ref().is_some_and(|p| {
        p.len() > settings.max_device_platform_bytes || p.chars().any(char::is_control)
    }) {
        return problem(
            m,
            inbound,
            platform,
            "invalid-device-platform",
            "device_platform is too long or not text",
        );
    }
    let info = DeviceInfo {
        platform,
        token,
        device_platform,
        updated_at_ms: mediator_store::unix_ms_now(),
    };
    m.stores().devices.set(&conn.id, &info).await?;
    info!(connection = %conn.id, platform = platform_name(platform), device = ?info, "push: device registered");
    Ok(Vec::new())
}

fn platform_name(platform: PushPlatform) -> &'static str {
    match platform {
        PushPlatform::Fcm => "fcm",
        PushPlatform::Apns => "apns",
    }
}

/// `get-device-info` -> `device-info`.
pub async fn get_device_info(
    m: &Mediator,
    inbound: &Inbound<'_>,
    platform: PushPlatform,
) -> Result<Vec<Outgoing>, InboundError> {
    let conn = inbound.connection()?;
    let device = m
        .stores()
        .devices
        .get(&conn.id)
        .await?
        .filter(|d| d.platform == platform);
    let body = match (platform, device) {
        (PushPlatform::Fcm, Some(d)) => {
            json!({"device_token": d.token, "device_platform": d.device_platform})
        }
        (PushPlatform::Fcm, None) => json!({"device_token": null, "device_platform": null}),
        (PushPlatform::Apns, Some(d)) => json!({"device_token": d.token}),
        (PushPlatform::Apns, None) => json!({"device_token": null}),
    };
    let msg = inbound
        .msg
        .reply_to(inbound.reply_type(protocol(platform), (1, 0), "device-info"))
        .with_body(&body)?;
    Ok(vec![Outgoing {
        msg,
        to: reply_recipient(m, inbound)?,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_by_platform() {
        assert!(plausible(PushPlatform::Apns, "a1B2c3d4"));
        assert!(!plausible(PushPlatform::Apns, "a1B2c3d"));
        assert!(!plausible(PushPlatform::Apns, "../../3/device/x"));
        assert!(plausible(
            PushPlatform::Fcm,
            "dy42NkNoS-eqhGS50UDPSd:APA91bHbAgJWBHSV9wix5b5F8CPq_jgC"
        ));
        assert!(!plausible(PushPlatform::Fcm, "a b"));
        assert!(!plausible(PushPlatform::Fcm, "a\"b"));
    }
}
