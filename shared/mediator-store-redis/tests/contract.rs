//! The contract suites of `mediator-store` against the Redis backends, one test per check, on a
//! private redis-server (one per test binary, started by the first test that needs it).

use std::sync::OnceLock;

use mediator_store_redis::{deadpool_redis::Pool, testing::RedisServer};

/// The server of this test binary. Held in a static, so never dropped: its watchdog kills it
/// when the binary exits. `KEYS` and `SCAN` are renamed away, so a backend that used either
/// would fail its checks here.
fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        RedisServer::start_with_args([
            "--rename-command",
            "KEYS",
            "",
            "--rename-command",
            "SCAN",
            "",
        ])
        .expect("starting the test redis-server failed")
    })
}

/// A pool for the calling test: every `#[tokio::test]` has its own runtime, and pooled
/// connections must not outlive theirs.
fn pool() -> Pool {
    server().pool().expect("pool for the test redis-server")
}

/// A prefix no other test uses, so each check starts from an empty store.
fn unique_prefix() -> String {
    format!("contract-{}:", uuid::Uuid::new_v4())
}

mod connection_store {
    use std::sync::Arc;

    use mediator_store_redis::RedisConnectionStore;

    mediator_store::connection_store_contract_tests!(|| async {
        Arc::new(RedisConnectionStore::new(
            super::pool(),
            &super::unique_prefix(),
        ))
    });
}

mod message_queue {
    use std::sync::Arc;

    use mediator_store_redis::RedisMessageQueue;

    mediator_store::message_queue_contract_tests!(|limits| async move {
        Arc::new(RedisMessageQueue::new(
            super::pool(),
            &super::unique_prefix(),
            limits,
        ))
    });
}

mod seen_messages {
    use std::sync::Arc;

    use mediator_store_redis::RedisSeenMessages;

    mediator_store::seen_messages_contract_tests!(|cap| async move {
        Arc::new(RedisSeenMessages::new(
            super::pool(),
            &super::unique_prefix(),
            cap,
        ))
    });
}

mod live_session_registry {
    use std::sync::Arc;

    use mediator_store_redis::RedisLiveSessionRegistry;

    mediator_store::live_session_registry_contract_tests!(|| async {
        Arc::new(RedisLiveSessionRegistry::new(
            super::pool(),
            &super::unique_prefix(),
        ))
    });
}

mod mediation_store {
    use std::sync::Arc;

    use mediator_store_redis::RedisMediationStore;

    mediator_store::mediation_store_contract_tests!(|| async {
        Arc::new(RedisMediationStore::new(
            super::pool(),
            &super::unique_prefix(),
        ))
    });
}

mod device_store {
    use std::sync::Arc;

    use mediator_store_redis::RedisDeviceStore;

    mediator_store::device_store_contract_tests!(|| async {
        Arc::new(RedisDeviceStore::new(
            super::pool(),
            &super::unique_prefix(),
        ))
    });
}
