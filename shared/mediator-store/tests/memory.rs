//! Runs every contract check against the in-memory backends, one test per check.

mod connection_store {
    use std::sync::Arc;

    use mediator_store::memory::MemoryConnectionStore;

    mediator_store::connection_store_contract_tests!(|| async {
        Arc::new(MemoryConnectionStore::new())
    });
}

mod mediation_store {
    use std::sync::Arc;

    use mediator_store::memory::MemoryMediationStore;

    mediator_store::mediation_store_contract_tests!(|| async {
        Arc::new(MemoryMediationStore::new())
    });
}

mod message_queue {
    use std::sync::Arc;

    use mediator_store::memory::MemoryMessageQueue;

    mediator_store::message_queue_contract_tests!(|limits| async move {
        Arc::new(MemoryMessageQueue::with_limits(limits))
    });
}

mod live_session_registry {
    use std::sync::Arc;

    use mediator_store::memory::MemoryLiveSessionRegistry;

    mediator_store::live_session_registry_contract_tests!(|| async {
        Arc::new(MemoryLiveSessionRegistry::new())
    });
}

mod seen_messages {
    use std::sync::Arc;

    use mediator_store::memory::MemorySeenMessages;

    mediator_store::seen_messages_contract_tests!(|cap| async move {
        Arc::new(MemorySeenMessages::new(cap))
    });
}

mod device_store {
    use std::sync::Arc;

    use mediator_store::memory::MemoryDeviceStore;

    mediator_store::device_store_contract_tests!(|| async { Arc::new(MemoryDeviceStore::new()) });
}

/// The suite functions (what a backend crate can call in one go) run every check too.
mod suites {
    use std::sync::Arc;

    use mediator_store::{
        contract, memory, ConnectionStore, DeviceStore, MediationStore, MessageQueue, SeenMessages,
        Stores,
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn all_suites_pass_on_memory_backends() {
        contract::connection_store(|| async {
            Arc::new(memory::MemoryConnectionStore::new()) as Arc<dyn ConnectionStore>
        })
        .await;
        contract::mediation_store(|| async {
            Arc::new(memory::MemoryMediationStore::new()) as Arc<dyn MediationStore>
        })
        .await;
        contract::message_queue(|limits| async move {
            Arc::new(memory::MemoryMessageQueue::with_limits(limits)) as Arc<dyn MessageQueue>
        })
        .await;
        contract::seen_messages(|cap| async move {
            Arc::new(memory::MemorySeenMessages::new(cap)) as Arc<dyn SeenMessages>
        })
        .await;
        contract::device_store(|| async {
            Arc::new(memory::MemoryDeviceStore::new()) as Arc<dyn DeviceStore>
        })
        .await;
    }

    #[tokio::test]
    async fn clones_of_a_memory_store_share_state() {
        let stores = Stores::memory();
        let queue = stores.queue.clone();
        let conn = mediator_store::ConnectionId::generate();
        let id = queue
            .add(&conn, &[], bytes::Bytes::from_static(b"x"))
            .await
            .expect("add failed");
        assert!(
            stores
                .queue
                .get(&conn, &id)
                .await
                .expect("get failed")
                .is_some(),
            "a clone of the store handle does not see a message added through another"
        );
        let info = contract::devices::sample(mediator_store::PushPlatform::Apns);
        stores
            .devices
            .clone()
            .set(&conn, &info)
            .await
            .expect("set failed");
        assert_eq!(
            stores.devices.get(&conn).await.expect("get failed"),
            Some(info),
            "a clone of the device store handle does not see a registration set through another"
        );
    }
}
