//! Test support (feature `test-support`): local stand-ins for the push providers, for this
//! crate's tests and for end-to-end tests of whatever sends push notifications (the mediator).
//!
//! - [`Providers`]: FCM (OAuth token endpoint and send API), APNs (HTTP/2, h2c) and a webhook
//!   receiver, started together, each verifying every request as the real service would (JWT
//!   signatures against generated keys, claims, headers, paths, the webhook's HMAC), recording
//!   the notifications it accepted and the checks that failed, answering per device token as a
//!   test scripts it ([`Reply`]: success, token gone, 503, or no answer at all). It writes the
//!   key files and the environment variables a mediator needs to reach it ([`Providers::env`]).
//!   Waiting for what should arrive ([`Providers::wait_for`]) is woken by each request, with a
//!   deadline: no sleeping and hoping.
//! - The pieces under it: [`serve`] (a server over HTTP/1 or h2c that runs a checking handler
//!   on every request and records it), [`silent_server`] (accepts, never answers),
//!   [`closed_port`], throwaway keys ([`rsa_key`], [`ec_key`]), [`verify_jws`] and
//!   [`webhook_signature_valid`].
//!
//! Every server binds 127.0.0.1 on a free port and stops when its last handle is dropped (or
//! the runtime ends). The keys are generated per start and never leave the test.
//!
//! This module is for tests only: a service must not use it (nothing here is hardened, and it
//! panics where a test would rather stop than go on).

mod keys;
mod providers;
mod server;

pub use keys::{
    check, ec_key, now_unix, pem, rsa_key, verify_jws, webhook_signature_valid, Alg, EcKey, RsaKey,
    BAD_SIGNATURE,
};
pub use providers::{Notification, Provider, Providers, Reply, WaitTimedOut, ENV_PREFIX};
pub use server::{
    closed_port, serve, silent_server, Proto, Received, Response, Script, Server, Silent,
};
