//! The contract suites of `mediator-store` against the embedded backends, one test per check,
//! each on a fresh data directory of its own (removed when the check's store is dropped).

use mediator_store::QueueLimits;
use mediator_store_embedded::{testing, EmbeddedStores};

fn stores(limits: QueueLimits, seen_cap: usize) -> EmbeddedStores {
    testing::temporary(limits, seen_cap).expect("opening a temporary embedded store failed")
}

fn unlimited() -> EmbeddedStores {
    stores(
        QueueLimits::UNLIMITED,
        mediator_store::SEEN_IDS_PER_CONNECTION,
    )
}

mod connection_store {
    use std::sync::Arc;

    mediator_store::connection_store_contract_tests!(|| async {
        Arc::new(super::unlimited().connections)
    });
}

mod message_queue {
    use std::sync::Arc;

    mediator_store::message_queue_contract_tests!(|limits| async move {
        Arc::new(super::stores(limits, 1).queue)
    });
}

mod seen_messages {
    use std::sync::Arc;

    mediator_store::seen_messages_contract_tests!(|cap| async move {
        Arc::new(super::stores(mediator_store::QueueLimits::UNLIMITED, cap).seen)
    });
}

mod live_session_registry {
    use std::sync::Arc;

    mediator_store::live_session_registry_contract_tests!(|| async {
        Arc::new(super::unlimited().registry)
    });
}

mod mediation_store {
    use std::sync::Arc;

    mediator_store::mediation_store_contract_tests!(|| async {
        Arc::new(super::unlimited().mediation)
    });
}

mod device_store {
    use std::sync::Arc;

    mediator_store::device_store_contract_tests!(|| async { Arc::new(super::unlimited().devices) });
}
