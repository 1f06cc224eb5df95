//! Fuzzes the protocol handlers: any plaintext dispatched on an established connection (mediation
//! granted, a key registered, messages queued), over HTTP and on a WebSocket session, every reply
//! packed (see `mediator::fuzzing`). Start from the seed corpus, one message per handler path:
//! `cargo +nightly fuzz run dispatch fuzz/corpus/dispatch fuzz/seeds/dispatch`. Any panic is a
//! bug.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mediator::fuzzing::Harness;

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| Harness::new().expect("the harness sets up its connection"))
}

fuzz_target!(|data: &[u8]| {
    if let Some(outcome) = harness().dispatch(data) {
        // The refusals are rendered as they would be for a problem report or a log line.
        for refused in [outcome.http.err(), outcome.websocket.err()]
            .into_iter()
            .flatten()
        {
            let _ = refused.to_string();
        }
    }
});
