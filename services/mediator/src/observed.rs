//! The stores as the mediator uses them: every operation of every store trait runs in a span
//! (`store <operation>`, with `db.system` and `db.operation`, a child of the request's span, so a
//! trace shows each Redis round trip) and is measured: its duration goes into the
//! `mediator.store.operation.duration` histogram and a failure into `mediator.store.errors`, both
//! by backend and operation.
//!
//! A decorator over the traits rather than code in each backend: one place, the same figures for
//! the memory and the Redis backends, and the backends stay free of telemetry.

use std::{future::Future, sync::Arc, time::Instant};

use async_trait::async_trait;
use bytes::Bytes;
use didcomm_envelope::VerKey;
use mediator_store::{
    ConnectionId, ConnectionRecord, ConnectionStore, DeviceInfo, DeviceStore, KeylistPage,
    KeylistUpdate, KeylistUpdateOutcome, LiveHolder, LiveSessionRegistry, MediationRecord,
    MediationStore, MessageId, MessageQueue, QueueStatus, QueueTotals, QueuedMessage, Result,
    SeenMessages, Stores,
};
use opentelemetry::{
    metrics::{Counter, Histogram, Meter},
    KeyValue,
};
use tracing::Instrument;

/// Duration buckets, seconds: a Redis round trip on a LAN is ~0.1-1 ms.
const DURATION_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Every operation name the probes use (the `operation` attribute).
const OPERATIONS: [&str; 41] = [
    "connections.delete",
    "connections.find_by_my_verkey",
    "connections.find_by_their_verkey",
    "connections.find_by_thread",
    "connections.get",
    "connections.insert",
    "connections.sweep_expired",
    "connections.list_ids",
    "connections.update",
    "devices.claim_notification",
    "devices.clear",
    "devices.clear_if_token",
    "devices.get",
    "devices.list",
    "devices.set",
    "mediation.connection_for_key",
    "mediation.delete",
    "mediation.get",
    "mediation.keylist",
    "mediation.save",
    "mediation.update_keylist",
    "queue.add",
    "queue.add_leased",
    "queue.get",
    "queue.lease",
    "queue.lease_ids",
    "queue.release",
    "queue.remove",
    "queue.status",
    "queue.sweep_expired",
    "queue.take",
    "queue.totals",
    "queue.restore",
    "queue.list_queues",
    "queue.unlease",
    "registry.all",
    "registry.close",
    "registry.holder",
    "registry.open",
    "registry.refresh",
    "seen.first_sighting",
];

/// Wraps every store of `stores` (backend `backend`, `memory` or `redis`) in the instrumentation.
pub fn observe(stores: Stores, backend: &'static str, meter: &Meter) -> Stores {
    let probe = Probe {
        backend,
        duration: meter
            .f64_histogram("mediator.store.operation.duration")
            .with_unit("s")
            .with_description("Duration of store operations (one Redis round trip each on Redis)")
            .with_boundaries(DURATION_BUCKETS.to_vec())
            .build(),
        errors: meter
            .u64_counter("mediator.store.errors")
            .with_description("Store operations that failed")
            .build(),
    };
    // Every error series exists from the start (0, not "no data", on a dashboard).
    for operation in OPERATIONS {
        probe.errors.add(
            0,
            &[
                KeyValue::new("backend", backend),
                KeyValue::new("operation", operation),
            ],
        );
    }
    Stores {
        connections: Arc::new(Observed {
            inner: stores.connections,
            probe: probe.clone(),
        }),
        mediation: Arc::new(Observed {
            inner: stores.mediation,
            probe: probe.clone(),
        }),
        queue: Arc::new(Observed {
            inner: stores.queue,
            probe: probe.clone(),
        }),
        registry: Arc::new(Observed {
            inner: stores.registry,
            probe: probe.clone(),
        }),
        seen: Arc::new(Observed {
            inner: stores.seen,
            probe: probe.clone(),
        }),
        devices: Arc::new(Observed {
            inner: stores.devices,
            probe,
        }),
    }
}

#[derive(Debug, Clone)]
struct Probe {
    backend: &'static str,
    duration: Histogram<f64>,
    errors: Counter<u64>,
}

impl Probe {
    // Hot path: wraps every store call of a Forward (key lookup, enqueue). A span (cheap when
    // nothing records it), one clock read each side, one histogram record; no allocation but
    // the attribute array.
    async fn run<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let span = crate::hot_span!(
            "store",
            otel.name = operation,
            db.system = self.backend,
            db.operation = operation,
        );
        debug_assert!(
            OPERATIONS.contains(&operation),
            "{operation} is not in OPERATIONS"
        );
        let started = Instant::now();
        let result = call.instrument(span).await;
        let attributes = [
            KeyValue::new("backend", self.backend),
            KeyValue::new("operation", operation),
        ];
        self.duration
            .record(started.elapsed().as_secs_f64(), &attributes);
        if result.is_err() {
            self.errors.add(1, &attributes);
        }
        result
    }
}

/// One store, instrumented.
#[derive(Debug)]
struct Observed<T: ?Sized> {
    inner: Arc<T>,
    probe: Probe,
}

#[async_trait]
impl ConnectionStore for Observed<dyn ConnectionStore> {
    async fn insert(&self, record: &ConnectionRecord) -> Result<()> {
        self.probe
            .run("connections.insert", self.inner.insert(record))
            .await
    }

    async fn update(&self, record: &ConnectionRecord) -> Result<()> {
        self.probe
            .run("connections.update", self.inner.update(record))
            .await
    }

    async fn get(&self, id: &ConnectionId) -> Result<Option<ConnectionRecord>> {
        self.probe.run("connections.get", self.inner.get(id)).await
    }

    async fn find_by_my_verkey(&self, key: &VerKey) -> Result<Option<ConnectionRecord>> {
        self.probe
            .run(
                "connections.find_by_my_verkey",
                self.inner.find_by_my_verkey(key),
            )
            .await
    }

    async fn find_by_their_verkey(&self, key: &VerKey) -> Result<Vec<ConnectionRecord>> {
        self.probe
            .run(
                "connections.find_by_their_verkey",
                self.inner.find_by_their_verkey(key),
            )
            .await
    }

    async fn find_by_thread(&self, thread_id: &str) -> Result<Option<ConnectionRecord>> {
        self.probe
            .run(
                "connections.find_by_thread",
                self.inner.find_by_thread(thread_id),
            )
            .await
    }

    async fn delete(&self, id: &ConnectionId) -> Result<bool> {
        self.probe
            .run("connections.delete", self.inner.delete(id))
            .await
    }

    async fn sweep_expired(&self, max: usize) -> Result<u64> {
        self.probe
            .run("connections.sweep_expired", self.inner.sweep_expired(max))
            .await
    }

    async fn list_ids(
        &self,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<Vec<ConnectionId>> {
        self.probe
            .run("connections.list_ids", self.inner.list_ids(after, limit))
            .await
    }
}

#[async_trait]
impl MediationStore for Observed<dyn MediationStore> {
    async fn save(&self, record: &MediationRecord) -> Result<()> {
        self.probe
            .run("mediation.save", self.inner.save(record))
            .await
    }

    async fn get(&self, connection_id: &ConnectionId) -> Result<Option<MediationRecord>> {
        self.probe
            .run("mediation.get", self.inner.get(connection_id))
            .await
    }

    async fn delete(&self, connection_id: &ConnectionId) -> Result<bool> {
        self.probe
            .run("mediation.delete", self.inner.delete(connection_id))
            .await
    }

    async fn update_keylist(
        &self,
        connection_id: &ConnectionId,
        updates: &[KeylistUpdate],
    ) -> Result<Vec<KeylistUpdateOutcome>> {
        self.probe
            .run(
                "mediation.update_keylist",
                self.inner.update_keylist(connection_id, updates),
            )
            .await
    }

    async fn keylist(
        &self,
        connection_id: &ConnectionId,
        offset: usize,
        limit: usize,
    ) -> Result<KeylistPage> {
        self.probe
            .run(
                "mediation.keylist",
                self.inner.keylist(connection_id, offset, limit),
            )
            .await
    }

    async fn connection_for_key(&self, key: &VerKey) -> Result<Option<ConnectionId>> {
        self.probe
            .run(
                "mediation.connection_for_key",
                self.inner.connection_for_key(key),
            )
            .await
    }
}

#[async_trait]
impl MessageQueue for Observed<dyn MessageQueue> {
    async fn add(
        &self,
        connection_id: &ConnectionId,
        recipient_keys: &[VerKey],
        payload: Bytes,
    ) -> Result<MessageId> {
        self.probe
            .run(
                "queue.add",
                self.inner.add(connection_id, recipient_keys, payload),
            )
            .await
    }

    async fn add_leased(
        &self,
        connection_id: &ConnectionId,
        recipient_keys: &[VerKey],
        payload: Bytes,
        lease_ms: u64,
    ) -> Result<MessageId> {
        self.probe
            .run(
                "queue.add_leased",
                self.inner
                    .add_leased(connection_id, recipient_keys, payload, lease_ms),
            )
            .await
    }

    async fn lease(
        &self,
        connection_id: &ConnectionId,
        limit: usize,
        recipient_key: Option<&VerKey>,
        lease_ms: u64,
        max_bytes: Option<u64>,
    ) -> Result<Vec<QueuedMessage>> {
        self.probe
            .run(
                "queue.lease",
                self.inner
                    .lease(connection_id, limit, recipient_key, lease_ms, max_bytes),
            )
            .await
    }

    async fn lease_ids(
        &self,
        connection_id: &ConnectionId,
        ids: &[MessageId],
        lease_ms: u64,
    ) -> Result<Vec<QueuedMessage>> {
        self.probe
            .run(
                "queue.lease_ids",
                self.inner.lease_ids(connection_id, ids, lease_ms),
            )
            .await
    }

    async fn release(&self, connection_id: &ConnectionId, ids: &[MessageId]) -> Result<usize> {
        self.probe
            .run("queue.release", self.inner.release(connection_id, ids))
            .await
    }

    async fn unlease(&self, connection_id: &ConnectionId, ids: &[MessageId]) -> Result<usize> {
        self.probe
            .run("queue.unlease", self.inner.unlease(connection_id, ids))
            .await
    }

    async fn status(
        &self,
        connection_id: &ConnectionId,
        recipient_key: Option<&VerKey>,
    ) -> Result<QueueStatus> {
        self.probe
            .run(
                "queue.status",
                self.inner.status(connection_id, recipient_key),
            )
            .await
    }

    async fn take(
        &self,
        connection_id: &ConnectionId,
        limit: usize,
        recipient_key: Option<&VerKey>,
    ) -> Result<Vec<QueuedMessage>> {
        self.probe
            .run(
                "queue.take",
                self.inner.take(connection_id, limit, recipient_key),
            )
            .await
    }

    async fn remove(&self, connection_id: &ConnectionId, ids: &[MessageId]) -> Result<usize> {
        self.probe
            .run("queue.remove", self.inner.remove(connection_id, ids))
            .await
    }

    async fn get(
        &self,
        connection_id: &ConnectionId,
        id: &MessageId,
    ) -> Result<Option<QueuedMessage>> {
        self.probe
            .run("queue.get", self.inner.get(connection_id, id))
            .await
    }

    async fn sweep_expired(&self, max_queues: usize) -> Result<u64> {
        self.probe
            .run("queue.sweep_expired", self.inner.sweep_expired(max_queues))
            .await
    }

    fn expired_count(&self) -> u64 {
        self.inner.expired_count()
    }

    async fn totals(&self) -> Result<QueueTotals> {
        self.probe.run("queue.totals", self.inner.totals()).await
    }

    async fn restore(
        &self,
        connection_id: &ConnectionId,
        messages: &[QueuedMessage],
    ) -> Result<()> {
        self.probe
            .run("queue.restore", self.inner.restore(connection_id, messages))
            .await
    }

    async fn list_queues(
        &self,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<Vec<ConnectionId>> {
        self.probe
            .run("queue.list_queues", self.inner.list_queues(after, limit))
            .await
    }
}

#[async_trait]
impl LiveSessionRegistry for Observed<dyn LiveSessionRegistry> {
    async fn open(
        &self,
        connection_id: &ConnectionId,
        holder: &LiveHolder,
        lease_ms: u64,
    ) -> Result<Option<LiveHolder>> {
        self.probe
            .run(
                "registry.open",
                self.inner.open(connection_id, holder, lease_ms),
            )
            .await
    }

    async fn close(&self, connection_id: &ConnectionId, holder: &LiveHolder) -> Result<bool> {
        self.probe
            .run("registry.close", self.inner.close(connection_id, holder))
            .await
    }

    async fn refresh(&self, instance: &str, lease_ms: u64) -> Result<usize> {
        self.probe
            .run("registry.refresh", self.inner.refresh(instance, lease_ms))
            .await
    }

    async fn holder(&self, connection_id: &ConnectionId) -> Result<Option<LiveHolder>> {
        self.probe
            .run("registry.holder", self.inner.holder(connection_id))
            .await
    }

    async fn all(&self) -> Result<Vec<(ConnectionId, LiveHolder)>> {
        self.probe.run("registry.all", self.inner.all()).await
    }
}

#[async_trait]
impl SeenMessages for Observed<dyn SeenMessages> {
    async fn first_sighting(
        &self,
        connection_id: &ConnectionId,
        message_id: &str,
        window_ms: u64,
    ) -> Result<bool> {
        self.probe
            .run(
                "seen.first_sighting",
                self.inner
                    .first_sighting(connection_id, message_id, window_ms),
            )
            .await
    }
}

#[async_trait]
impl DeviceStore for Observed<dyn DeviceStore> {
    async fn set(&self, connection_id: &ConnectionId, info: &DeviceInfo) -> Result<()> {
        self.probe
            .run("devices.set", self.inner.set(connection_id, info))
            .await
    }

    async fn get(&self, connection_id: &ConnectionId) -> Result<Option<DeviceInfo>> {
        self.probe
            .run("devices.get", self.inner.get(connection_id))
            .await
    }

    async fn clear(&self, connection_id: &ConnectionId) -> Result<bool> {
        self.probe
            .run("devices.clear", self.inner.clear(connection_id))
            .await
    }

    async fn clear_if_token(&self, connection_id: &ConnectionId, token: &str) -> Result<bool> {
        self.probe
            .run(
                "devices.clear_if_token",
                self.inner.clear_if_token(connection_id, token),
            )
            .await
    }

    async fn claim_notification(
        &self,
        connection_id: &ConnectionId,
        interval_ms: u64,
    ) -> Result<bool> {
        self.probe
            .run(
                "devices.claim_notification",
                self.inner.claim_notification(connection_id, interval_ms),
            )
            .await
    }

    async fn list(
        &self,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<Vec<(ConnectionId, DeviceInfo)>> {
        self.probe
            .run("devices.list", self.inner.list(after, limit))
            .await
    }
}
