//! Redis backends of the storage traits of `mediator-store`: [`RedisConnectionStore`]
//! ([`ConnectionStore`](mediator_store::ConnectionStore)), [`RedisMediationStore`]
//! ([`MediationStore`](mediator_store::MediationStore)) and [`RedisMessageQueue`]
//! ([`MessageQueue`](mediator_store::MessageQueue)), [`RedisLiveSessionRegistry`],
//! [`RedisSeenMessages`] and [`RedisDeviceStore`] ([`DeviceStore`](mediator_store::DeviceStore)),
//! for mediator instances that share one Redis (or Redis Cluster).
//!
//! Each takes a [`RedisPool`] (cheap to clone: share one per process): a single-node
//! [`deadpool_redis::Pool`] or a Redis Cluster [`deadpool_redis::cluster::Pool`] (either converts
//! with `From`), and a key prefix, so that tenants and tests can share a Redis without seeing
//! each other's keys. The prefix is any text (braces in it are escaped, so it can never break
//! the hash tag). The stores run unchanged on both: the cluster client routes every command and
//! script by the hash slot of its keys (see below), and nothing here talks to a node by address.
//!
//! # Atomicity
//!
//! Every operation is one round trip. Every one that touches more than one key, or that checks
//! before it writes (insert with its conflict checks on id, `my_verkey` and thread; update moving
//! index entries; delete dropping them; a whole keylist-update batch; mediation delete), is one
//! Lua script (`EVALSHA`, loaded on `NOSCRIPT`, so a restarted Redis needs nothing from us), so
//! no other client sees part of it. Keylist pages are one `MULTI`/`EXEC` on one key. The
//! exception: the device store's `set` and `clear` also keep an offline index on another slot
//! (read only by `mediator copy`), in a second step; the registration itself changes in one
//! step, and its `clear_if_token` and `claim_notification` are one script and one `SET NX PX`
//! (see `devices.rs`).
//!
//! # Redis Cluster: one hash slot per store
//!
//! Every key a script touches is passed in `KEYS`, never built inside Lua, and all keys of a
//! store share one hash tag: `{<prefix>c}` for connections, `{<prefix>m}` for mediation. So each
//! store lives in one slot, and the indexes can be plain hashes updated atomically with their
//! records, with no cross-slot protocol. The indexes are hashes (and one sorted set) rather than
//! a key per entry because an update or delete must drop the *old* entries, which only the
//! stored record knows: inside the script they are fields of keys passed in `KEYS`, where keys
//! per entry would have to be built in Lua.
//!
//! The cost: a store is served by one node (and its replicas), whatever the cluster size. Its
//! writes are rare (handshakes, mediation requests, keylist updates), but two reads are hot,
//! `find_by_my_verkey` on every inbound envelope and `connection_for_key` on every Forward; each
//! is O(1) (an `EVALSHA` doing two `HGET`s and a `ZSCORE`, and one `HGET`), so one node takes many thousands a
//! second, but they do not spread over the cluster. Records are small, so a slot of a few
//! hundred thousand connections stays small too. The per-connection message queue, the traffic
//! that does need to spread, uses one hash tag per connection, `{<prefix>q:<connection id>}`:
//! queues spread over the cluster by connection, and each queue operation is one script on one
//! slot.
//!
//! # Key layout
//!
//! `P` is the prefix (braces and `%` percent-encoded). Keys (recipient keys, `my_verkey`,
//! `their_keys`) are stored in their canonical base58 form, so a base58 key and its `did:key`
//! are one key everywhere.
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{Pc}:records` | hash | connection id -> connection record (JSON) |
//! | `{Pc}:by-my-verkey` | hash | `my_verkey` -> connection id (unique) |
//! | `{Pc}:by-thread` | hash | handshake thread id -> connection id (unique) |
//! | `{Pc}:by-their-verkey` | sorted set | members `"<their key> <connection id>"`, score 0, read by lex range |
//! | `{Pc}:expiring` | sorted set | ids of the connection records that expire, scored by `expires_at_ms` (lookups skip the expired; the sweep reads the due ones) |
//! | `{Pm}:records` | hash | connection id -> mediation record (JSON) |
//! | `{Pm}:key-owner` | hash | recipient key -> connection id (the Forward routing) |
//! | `{Pm}:keylist:<connection id>` | sorted set | the connection's recipient keys, scored by registration order |
//! | `{Pq:<conn>}:order` | sorted set | message ids scored by arrival (FIFO): `<received ms> * 1000 + n`, or a plain counter in queues written before that scheme |
//! | `{Pq:<conn>}:msg` | hash | message id -> payload, byte for byte |
//! | `{Pq:<conn>}:meta` | hash | message id -> `<received ms>\|<deliveries>\|<recipient keys>` |
//! | `{Pq:<conn>}:lease` | sorted set | message ids in flight, scored by lease end (ms) |
//! | `{Pq:<conn>}:bytes`, `:seq` | string | payload bytes of the queue; last arrival counter (only in queues written before the received-ms scheme) |
//! | `{Pl}:live-sessions` | hash | connection id -> `<instance> <session> <lease end ms>` (live-session registry) |
//! | `{Pl}:instance:<instance>` | set | the connections whose live session that instance holds (expires with the instance) |
//! | `{Ps:<conn>}:seen` | sorted set | message ids the connection sent lately, scored by the end of their replay window (expires with its latest entry) |
//! | `{Px}:queues` | set | connection ids whose queue may hold messages (only the expiry sweep reads it, with `SSCAN`) |
//! | `{Pd:<conn>}:device` | string | the connection's push registration (`DeviceInfo` JSON) |
//! | `{Pd:<conn>}:claim` | string | `1` while a notification claim holds (`SET NX PX`: expires with the claim) |
//! | `{Px}:devices` | sorted set | connection ids that may have a registration, score 0 (only `mediator copy`'s listing reads it, by lex range) |
//!
//! Queue times, connection expiry and notification claims are the Redis server's clock (`TIME`
//! inside the scripts, `PX` expiry), so instances agree on arrival order, leases, expiry and
//! claims. An empty queue leaves no key.
//!
//! No operation uses `KEYS` or `SCAN` (the background expiry sweep uses `SSCAN` on one set). A stored value that does not decode is reported as
//! [`StoreError::Corrupt`](mediator_store::StoreError::Corrupt); a Redis or pool failure as
//! [`StoreError::Backend`](mediator_store::StoreError::Backend) with the client's error as its
//! source. Nothing here panics on what Redis returns.
//!
//! # Testing
//!
//! Feature `test-support` adds `testing::RedisServer`, a private redis-server on a free port
//! for tests, and `testing::RedisCluster`, a private Redis Cluster of such servers (this crate's
//! own tests enable it, so `cargo test --workspace` runs them).
//!
//! This crate must not hold protocol logic (the stores record and answer; handlers decide), and
//! it does not cascade between stores: deleting a connection leaves its mediation alone.

mod connections;
mod devices;
mod error;
mod group;
mod keys;
mod mediation;
mod pool;
mod queue;
mod queue_add;
mod queue_remove;
mod registry;
mod seen;

#[cfg(feature = "test-support")]
pub mod testing;

pub use connections::RedisConnectionStore;
pub use deadpool_redis;
pub use devices::RedisDeviceStore;
pub use mediation::RedisMediationStore;
pub use pool::{RedisConnection, RedisPool};
pub use queue::RedisMessageQueue;
pub use registry::RedisLiveSessionRegistry;
pub use seen::RedisSeenMessages;
