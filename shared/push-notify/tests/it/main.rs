//! One integration test binary (one link): the senders against local stand-in servers, the
//! stand-ins of `push_notify::testing::Providers` proven with the senders, the retry helper, the
//! router, and redaction.

mod apns;
mod common;
mod fcm;
mod providers;
mod redaction;
mod retry;
mod router;
mod webhook;
