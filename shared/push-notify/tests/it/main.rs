//! One integration test binary (one link): the senders against local stand-in servers, the retry
//! helper, the router, and redaction.

mod apns;
mod common;
mod fcm;
mod redaction;
mod retry;
mod router;
mod webhook;
