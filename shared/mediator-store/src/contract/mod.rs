//! The contract of each storage trait, as executable checks that every backend must pass.
//!
//! One suite per trait ([`connections`], [`mediation`], [`queue`], [`registry`], [`seen`],
//! [`devices`]); each check is a public async
//! function taking a fresh, empty store, named after the behaviour it checks, and panicking with
//! a message that says what broke. Checks use random keys and connection ids, so they do not
//! collide even if a backend's factory hands out stores that share data.
//!
//! Two ways to run them against a backend:
//! - one `#[tokio::test]` per check (failures visible one by one), with
//!   [`connection_store_contract_tests!`](crate::connection_store_contract_tests),
//!   [`mediation_store_contract_tests!`](crate::mediation_store_contract_tests),
//!   [`message_queue_contract_tests!`](crate::message_queue_contract_tests) (and likewise
//!   [`live_session_registry_contract_tests!`](crate::live_session_registry_contract_tests),
//!   [`seen_messages_contract_tests!`](crate::seen_messages_contract_tests) and
//!   [`device_store_contract_tests!`](crate::device_store_contract_tests)):
//!
//!   ```ignore
//!   mod connection_store {
//!       use std::sync::Arc;
//!       mediator_store::connection_store_contract_tests!(|| async {
//!           Arc::new(my_backend::RedisConnectionStore::new(test_redis(), unique_prefix()))
//!       });
//!   }
//!   mod message_queue {
//!       use std::sync::Arc;
//!       // The queue's factory takes the limits the check needs (`QueueLimits`).
//!       mediator_store::message_queue_contract_tests!(|limits| async move {
//!           Arc::new(my_backend::RedisMessageQueue::new(test_redis(), unique_prefix(), limits))
//!       });
//!   }
//!   ```
//!   The factory is called once per check (and must give an empty store); its future must be
//!   `Send + 'static`. The calling crate needs `tokio` (with `macros` and `rt-multi-thread`).
//! - all checks of a suite in one call: [`connection_store`], [`mediation_store`],
//!   [`message_queue`], [`live_session_registry`], [`seen_messages`], [`device_store`].
//!
//! The list of checks of each suite is written once, in the hidden `__*_checks!` macros below,
//! and both ways use it, so a new check runs everywhere. This module must not depend on any
//! backend: it sees only the traits.

pub mod connections;
pub mod devices;
pub mod mediation;
pub mod queue;
pub mod registry;
pub mod seen;

use std::{future::Future, sync::Arc};

use didcomm_envelope::{KeyPair, VerKey};

use crate::{
    ConnectionStore, DeviceStore, LiveSessionRegistry, MediationStore, MessageQueue, QueueLimits,
    SeenMessages,
};

/// A fresh random verkey.
pub(crate) fn random_key() -> VerKey {
    *KeyPair::generate()
        .expect("contract setup: generating a random Ed25519 key failed")
        .verkey()
}

/// Runs every [`connections`] check, each on a fresh store from `make`.
pub async fn connection_store<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn ConnectionStore>>,
{
    crate::__connection_store_checks!(__contract_run, make);
}

/// Runs every [`mediation`] check, each on a fresh store from `make`.
pub async fn mediation_store<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn MediationStore>>,
{
    crate::__mediation_store_checks!(__contract_run, make);
}

/// Runs every [`registry`] check, each on a fresh registry from `make`.
pub async fn live_session_registry<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn LiveSessionRegistry>>,
{
    crate::__live_session_registry_checks!(__contract_run, make);
}

/// Runs every [`queue`] check, each on a fresh store from `make` (given the limits the check
/// needs; checks of unlimited behaviour get [`QueueLimits::UNLIMITED`]).
pub async fn message_queue<F, Fut>(make: F)
where
    F: Fn(QueueLimits) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Arc<dyn MessageQueue>> + Send + 'static,
{
    let make = Arc::new(make);
    let factory = move |limits: QueueLimits| -> queue::QueueFuture {
        let make = make.clone();
        Box::pin(async move { make(limits).await })
    };
    let unlimited = || factory(QueueLimits::UNLIMITED);
    crate::__message_queue_checks!(__contract_run, unlimited);
    crate::__message_queue_limit_checks!(__queue_limit_run, factory);
}

/// The checks of the [`ConnectionStore`] suite (the one list both ways of running use).
#[doc(hidden)]
#[macro_export]
macro_rules! __connection_store_checks {
    ($then:ident, $($args:tt)*) => {
        $crate::$then! {
            connections,
            ConnectionStore,
            [
                insert_then_get,
                insert_conflicts_on_id,
                insert_conflicts_on_my_verkey,
                insert_conflicts_on_thread,
                update_replaces_record,
                update_of_missing_record_is_not_found,
                conflicting_update_changes_nothing,
                find_by_my_verkey,
                find_by_their_verkey,
                find_by_thread,
                update_moves_index_entries,
                delete_drops_index_entries,
                their_key_shared_by_two_connections,
                base58_and_did_key_are_one_key,
                expiring_record_exists_until_its_expiry,
                insert_takes_identities_of_expired_records,
                update_and_expired_records,
                update_without_expiry_makes_record_permanent,
                sweep_removes_expired_records_up_to_max,
                list_ids_pages_every_record_in_order,
            ],
            $($args)*
        }
    };
}

/// The checks of the [`MediationStore`] suite (the one list both ways of running use).
#[doc(hidden)]
#[macro_export]
macro_rules! __mediation_store_checks {
    ($then:ident, $($args:tt)*) => {
        $crate::$then! {
            mediation,
            MediationStore,
            [
                save_then_get,
                keylist_add_outcomes,
                keylist_add_of_key_owned_by_other_connection_is_client_error,
                keylist_remove_outcomes,
                keylist_batch_applies_in_order,
                keylist_paging,
                keylists_isolated_between_connections,
                delete_releases_keys,
                base58_and_did_key_are_one_key,
                concurrent_adds_of_one_key_have_one_winner,
            ],
            $($args)*
        }
    };
}

/// The checks of the [`MessageQueue`] suite (the one list both ways of running use).
#[doc(hidden)]
#[macro_export]
macro_rules! __message_queue_checks {
    ($then:ident, $($args:tt)*) => {
        $crate::$then! {
            queue,
            MessageQueue,
            [
                add_then_get,
                payload_kept_byte_for_byte,
                fifo_order,
                take_does_not_remove,
                take_limit,
                take_filters_by_recipient_key,
                status_figures,
                status_filters_by_recipient_key,
                remove_exact_ids,
                remove_ignores_other_connections_ids,
                connections_isolated,
                concurrent_adds_all_present_once,
                concurrent_removes_count_each_message_once,
                received_time_is_unix_ms,
                lease_hands_out_each_message_once_while_in_flight,
                lease_expires,
                add_leased_is_in_flight_at_once,
                unlease_gives_back_without_counting_the_handout,
                lease_filters_and_stays_in_its_connection,
                lease_byte_budget_stops_the_batch,
                lease_hands_out_an_over_budget_first_message_alone,
                lease_without_byte_budget_counts_messages_only,
                lease_ids_hands_out_only_waiting_messages,
                concurrent_leases_never_share_a_message,
                totals_count_every_queue,
                restore_keeps_messages_as_given,
                list_queues_pages_every_queue_in_order,
            ],
            $($args)*
        }
    };
}

/// Runs every [`seen`] check, each on a fresh store from `make`, which is given the cap
/// ([`seen::CAP`]) the store must be made with.
pub async fn seen_messages<F, Fut>(make: F)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Arc<dyn SeenMessages>>,
{
    let make = || make(seen::CAP);
    crate::__seen_messages_checks!(__contract_run, make);
}

/// The checks of the [`SeenMessages`] suite.
#[doc(hidden)]
#[macro_export]
macro_rules! __seen_messages_checks {
    ($then:ident, $($args:tt)*) => {
        $crate::$then! {
            seen,
            SeenMessages,
            [
                a_repeat_within_the_window_is_not_new,
                connections_are_isolated,
                the_window_ends,
                the_cap_forgets_the_oldest,
                long_ids_are_distinct,
                concurrent_sightings_have_one_first,
            ],
            $($args)*
        }
    };
}

/// Defines one `#[tokio::test]` per [`SeenMessages`] contract check, named after the check.
///
/// The factory takes the cap (`max_per_connection`, [`contract::seen::CAP`](crate::contract::seen::CAP))
/// and gives a fresh, empty store as `Arc<T>` with `T: SeenMessages`.
#[macro_export]
macro_rules! seen_messages_contract_tests {
    ($make:expr $(,)?) => {
        $crate::__seen_messages_checks!(__contract_tests, || async {
            ($make)($crate::contract::seen::CAP).await
        });
    };
}

/// The checks of the [`LiveSessionRegistry`] suite.
#[doc(hidden)]
#[macro_export]
macro_rules! __live_session_registry_checks {
    ($then:ident, $($args:tt)*) => {
        $crate::$then! {
            registry,
            LiveSessionRegistry,
            [
                open_then_holder_all_and_close,
                late_close_from_an_old_instance_never_removes_a_newer_session,
                leases_expire_unless_their_instance_refreshes_them,
            ],
            $($args)*
        }
    };
}

/// Defines one `#[tokio::test]` per [`LiveSessionRegistry`] contract check, named after the
/// check. The factory is as for
/// [`connection_store_contract_tests!`](crate::connection_store_contract_tests).
#[macro_export]
macro_rules! live_session_registry_contract_tests {
    ($make:expr $(,)?) => {
        $crate::__live_session_registry_checks!(__contract_tests, $make);
    };
}

/// Runs every [`devices`] check, each on a fresh store from `make`.
pub async fn device_store<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn DeviceStore>>,
{
    crate::__device_store_checks!(__contract_run, make);
}

/// The checks of the [`DeviceStore`] suite.
#[doc(hidden)]
#[macro_export]
macro_rules! __device_store_checks {
    ($then:ident, $($args:tt)*) => {
        $crate::$then! {
            devices,
            DeviceStore,
            [
                set_then_get,
                tokens_are_kept_as_sent,
                a_newer_set_replaces_the_older_of_either_platform,
                clear_says_whether_there_was_one,
                clear_if_token_leaves_a_newer_registration,
                connections_are_isolated,
                a_claim_holds_for_its_interval,
                a_zero_interval_claims_nothing,
                a_claim_lapses_after_its_interval,
                concurrent_claims_have_one_winner,
                list_pages_every_device_in_order,
            ],
            $($args)*
        }
    };
}

/// Defines one `#[tokio::test]` per [`DeviceStore`] contract check, named after the check.
/// The factory is as for
/// [`connection_store_contract_tests!`](crate::connection_store_contract_tests).
#[macro_export]
macro_rules! device_store_contract_tests {
    ($make:expr $(,)?) => {
        $crate::__device_store_checks!(__contract_tests, $make);
    };
}

/// The checks of the [`MessageQueue`] suite that need stores with limits (each is given a maker).
#[doc(hidden)]
#[macro_export]
macro_rules! __message_queue_limit_checks {
    ($then:ident, $($args:tt)*) => {
        $crate::$then! {
            [
                cap_on_messages_refuses_and_stores_nothing,
                cap_on_bytes_refuses_and_stores_nothing,
                expired_messages_are_removed_and_counted,
                expired_messages_hold_no_place_under_the_caps,
                restore_is_not_capped,
            ],
            $($args)*
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __queue_limit_run {
    ([$($check:ident),* $(,)?], $factory:ident) => {
        $(
            $crate::contract::queue::$check(&$factory).await;
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __queue_contract_tests {
    ($suite:ident, $trait:ident, [$($check:ident),* $(,)?], $make:expr) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let make = $make;
                let store: ::std::sync::Arc<dyn $crate::MessageQueue> =
                    make($crate::QueueLimits::UNLIMITED).await;
                $crate::contract::queue::$check(store).await;
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __queue_limit_contract_tests {
    ([$($check:ident),* $(,)?], $make:expr) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let make = ::std::sync::Arc::new($make);
                let factory = move |limits: $crate::QueueLimits| -> $crate::contract::queue::QueueFuture {
                    let make = make.clone();
                    ::std::boxed::Box::pin(async move {
                        let store: ::std::sync::Arc<dyn $crate::MessageQueue> = make(limits).await;
                        store
                    })
                };
                $crate::contract::queue::$check(&factory).await;
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_run {
    ($suite:ident, $trait:ident, [$($check:ident),* $(,)?], $make:ident) => {
        $(
            $crate::contract::$suite::$check($make().await).await;
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_tests {
    ($suite:ident, $trait:ident, [$($check:ident),* $(,)?], $make:expr) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let make = $make;
                let store: ::std::sync::Arc<dyn $crate::$trait> = make().await;
                $crate::contract::$suite::$check(store).await;
            }
        )*
    };
}

/// Defines one `#[tokio::test]` per [`ConnectionStore`] contract check, named after the check.
///
/// The argument is a factory: an expression giving something callable as `make().await` that
/// returns `Arc<T>` where `T: ConnectionStore` (or `Arc<dyn ConnectionStore>`); it is called once
/// per test and must give an empty store.
#[macro_export]
macro_rules! connection_store_contract_tests {
    ($make:expr $(,)?) => {
        $crate::__connection_store_checks!(__contract_tests, $make);
    };
}

/// Defines one `#[tokio::test]` per [`MediationStore`] contract check, named after the check.
///
/// The factory is as for [`connection_store_contract_tests!`](crate::connection_store_contract_tests).
#[macro_export]
macro_rules! mediation_store_contract_tests {
    ($make:expr $(,)?) => {
        $crate::__mediation_store_checks!(__contract_tests, $make);
    };
}

/// Defines one `#[tokio::test]` per [`MessageQueue`] contract check, named after the check.
///
/// The factory takes a [`QueueLimits`](crate::QueueLimits) (the limits the check needs; most get
/// [`QueueLimits::UNLIMITED`](crate::QueueLimits::UNLIMITED)) and gives a fresh, empty store as
/// `Arc<T>` with `T: MessageQueue`; its future must be `Send + 'static`.
#[macro_export]
macro_rules! message_queue_contract_tests {
    ($make:expr $(,)?) => {
        $crate::__message_queue_checks!(__queue_contract_tests, $make);
        $crate::__message_queue_limit_checks!(__queue_limit_contract_tests, $make);
    };
}
