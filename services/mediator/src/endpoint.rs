//! POSTing messages to clients' own endpoints (ACA-Py and other agents with an HTTP endpoint),
//! with the limits an internet-facing service needs: the endpoint is named by the client, so
//! the mediator must not become anybody's free HTTP client.
//!
//! - Endpoints in loopback, private, link-local, unspecified (and other non-public) ranges are
//!   refused, by address and after name resolution (every address a name resolves to is checked;
//!   redirects are not followed), unless `delivery.allow_private_endpoints`.
//! - A delivery is tried at most `delivery.max_attempts` times (a handshake reply, whose
//!   requester has no connection yet, `delivery.max_handshake_attempts`) and for at most
//!   `delivery.max_age_ms`; then a queued message waits in its queue for pickup, a reply on a
//!   connection is queued for it, a handshake reply is dropped. Counted either way.
//! - What waits for a retry is bounded in bytes per endpoint and in all, and in count.
//!
//! Only connections whose handshake completed are pushed their queued messages (see
//! [`crate::protocols::routing`]).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use didcomm_envelope::VerKey;
use mediator_store::{ConnectionId, MessageId};
use tracing::{debug, info, warn};

use crate::{config::DeliveryConfig, stats::Limit, Mediator};

/// What a delivery carries, which decides what happens when it is given up.
#[derive(Debug)]
pub enum Purpose {
    /// A queued message: removed from its queue once delivered; left there when given up.
    Queued(ConnectionId, MessageId),
    /// A reply on a completed connection: queued for the connection (`direct`, the message packed
    /// for its keys) when given up.
    Reply {
        /// The connection.
        connection: ConnectionId,
        /// Its keys (the queue's recipient keys).
        keys: Vec<VerKey>,
        /// The reply packed for the connection itself (no routing wrappers).
        direct: Bytes,
    },
    /// A reply to a handshake request (no connection yet): dropped when given up.
    Handshake,
}

/// Why an endpoint is not tried.
#[derive(Debug, thiserror::Error)]
pub enum EndpointRefusal {
    /// Not an http(s) URL.
    #[error("endpoint is not an http or https URL")]
    NotHttp,
    /// In a non-public address range.
    #[error("endpoint address {0} is not public")]
    Private(IpAddr),
}

/// The HTTP client for clients' endpoints and the backlog of deliveries waiting for a retry.
#[derive(Debug)]
pub struct Endpoints {
    http: reqwest::Client,
    allow_private: bool,
    backlog: Arc<Backlog>,
}

impl Endpoints {
    /// A client with the delivery settings (timeouts, no redirects, the public-only resolver).
    pub fn new(config: &DeliveryConfig) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.http_timeout_ms))
            // A redirect could lead anywhere (an IP literal skips the resolver's check).
            .redirect(reqwest::redirect::Policy::none());
        if !config.allow_private_endpoints {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(Self {
            http: builder.build()?,
            allow_private: config.allow_private_endpoints,
            backlog: Arc::new(Backlog {
                state: Mutex::default(),
                max_bytes: config.max_backlog_bytes,
                max_bytes_per_endpoint: config.max_backlog_bytes_per_endpoint,
                max_messages: config.max_backlog_messages,
            }),
        })
    }

    /// Checks an endpoint before anything is sent: http(s), and not a non-public address
    /// literal (names are checked when they are resolved). Returns the key of its backlog
    /// (scheme, host, port: paths do not make an endpoint a different one).
    pub fn check(&self, endpoint: &str) -> Result<String, EndpointRefusal> {
        let url = reqwest::Url::parse(endpoint).map_err(|_| EndpointRefusal::NotHttp)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EndpointRefusal::NotHttp);
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
            Some(url::Host::Domain(_)) => None,
            None => return Err(EndpointRefusal::NotHttp),
        };
        if let Some(ip) = ip.filter(|ip| !self.allow_private && !is_public(*ip)) {
            return Err(EndpointRefusal::Private(ip));
        }
        Ok(url.origin().ascii_serialization())
    }
}

/// Resolves names to their public addresses only: a name that resolves to none fails (a
/// [`PrivateAddress`] error, which gives the delivery up at once).
#[derive(Debug)]
struct PublicOnly;

/// A name resolved to no public address.
#[derive(Debug, thiserror::Error)]
#[error("the endpoint's name resolves to no public address")]
struct PrivateAddress;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = found.filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(PrivateAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether `ip` is a public unicast address (not loopback, private, shared, link-local,
/// unspecified, documentation, benchmarking, multicast, broadcast or reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => is_public_v4(a),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(a),
        },
    }
}

fn is_public_v4(a: Ipv4Addr) -> bool {
    let [b0, b1, b2, _] = a.octets();
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_broadcast()
        || a.is_documentation()
        || a.is_multicast()
        || b0 == 0
        || (b0 == 100 && (64..128).contains(&b1)) // shared address space (CGNAT)
        || (b0 == 192 && b1 == 0 && b2 == 0) // IETF protocol assignments
        || (b0 == 198 && (18..20).contains(&b1)) // benchmarking
        || b0 >= 240) // reserved
}

fn is_public_v6(a: Ipv6Addr) -> bool {
    let s = a.segments();
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 (an IPv4 address inside)
        || s[..6] == [0; 6]) // IPv4-compatible and other reserved low addresses
}

/// Bytes and deliveries waiting for a retry.
#[derive(Debug)]
struct Backlog {
    state: Mutex<BacklogState>,
    max_bytes: u64,
    max_bytes_per_endpoint: u64,
    max_messages: usize,
}

#[derive(Debug, Default)]
struct BacklogState {
    bytes: u64,
    messages: usize,
    per_endpoint: HashMap<String, u64>,
}

/// A delivery's place in the backlog, given back when it ends.
#[derive(Debug)]
struct Reservation {
    backlog: Arc<Backlog>,
    origin: String,
    bytes: u64,
}

impl Backlog {
    fn reserve(self: &Arc<Self>, origin: String, bytes: u64) -> Option<Reservation> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let here = state.per_endpoint.get(&origin).copied().unwrap_or(0);
        if state.messages >= self.max_messages
            || state.bytes.saturating_add(bytes) > self.max_bytes
            || here.saturating_add(bytes) > self.max_bytes_per_endpoint
        {
            return None;
        }
        state.bytes += bytes;
        state.messages += 1;
        state.per_endpoint.insert(origin.clone(), here + bytes);
        Some(Reservation {
            backlog: self.clone(),
            origin,
            bytes,
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut state = self.backlog.state.lock().unwrap_or_else(|p| p.into_inner());
        state.bytes = state.bytes.saturating_sub(self.bytes);
        state.messages = state.messages.saturating_sub(1);
        if let Some(here) = state.per_endpoint.get_mut(&self.origin) {
            *here = here.saturating_sub(self.bytes);
            if *here == 0 {
                state.per_endpoint.remove(&self.origin);
            }
        }
    }
}

/// One attempt's failure.
enum Failure {
    /// Worth another attempt.
    Retry(String),
    /// The endpoint's name resolves to no public address: never worth another.
    Private,
}

impl Mediator {
    /// Delivers `payload` to `endpoint` (HTTP POST) in the background, retrying with exponential
    /// backoff within the attempt and age caps; see [`Purpose`] for what happens after success
    /// and when it is given up. Refused at once (counted) when the endpoint is not public or the
    /// backlog is full.
    pub fn deliver_to_endpoint(&self, endpoint: &str, payload: Bytes, purpose: Purpose) {
        let endpoints = self.endpoints();
        let origin = match endpoints.check(endpoint) {
            Ok(origin) => origin,
            Err(refusal) => {
                self.stats().refused(Limit::PrivateEndpoint);
                info!(%endpoint, reason = %refusal, "endpoint refused: not delivered there");
                return self.give_up(purpose, false);
            }
        };
        let extra = match &purpose {
            Purpose::Reply { direct, .. } => direct.len(),
            _ => 0,
        };
        let Some(reservation) = endpoints
            .backlog
            .reserve(origin, (payload.len() + extra) as u64)
        else {
            self.stats().refused(Limit::OutboundBacklog);
            info!(%endpoint, "outbound backlog full: not delivered now");
            return self.give_up(purpose, false);
        };
        let this = self.clone();
        let endpoint = endpoint.to_owned();
        tokio::spawn(async move {
            let _reservation = reservation;
            this.retry_delivery(&endpoint, payload, purpose).await;
        });
    }

    async fn retry_delivery(&self, endpoint: &str, payload: Bytes, purpose: Purpose) {
        let config = &self.config().delivery;
        let queued_at_ms = mediator_store::unix_ms_now();
        let max_attempts = match purpose {
            Purpose::Handshake => config.max_handshake_attempts,
            _ => config.max_attempts,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(config.max_age_ms);
        let mut delay = Duration::from_millis(config.retry_initial_ms);
        let max_delay = Duration::from_millis(config.retry_max_ms);
        let mut attempt = 1u32;
        loop {
            match self.post(endpoint, payload.clone()).await {
                Ok(()) => {
                    debug!(%endpoint, attempt, "delivered");
                    return self.delivered_to_endpoint(purpose, queued_at_ms).await;
                }
                Err(Failure::Private) => {
                    self.stats().refused(Limit::PrivateEndpoint);
                    info!(%endpoint, "endpoint resolves to no public address: not delivered there");
                    return self.give_up(purpose, false);
                }
                Err(Failure::Retry(err)) => {
                    if attempt >= max_attempts || tokio::time::Instant::now() + delay > deadline {
                        info!(%endpoint, attempt, error = %err, "delivery given up");
                        return self.give_up(purpose, true);
                    }
                    info!(%endpoint, attempt, error = %err, retry_in_ms = delay.as_millis() as u64, "delivery failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(max_delay);
                    attempt += 1;
                }
            }
        }
    }

    async fn delivered_to_endpoint(&self, purpose: Purpose, queued_at_ms: u64) {
        let Purpose::Queued(conn, id) = purpose else {
            return;
        };
        self.stats()
            .delivered(crate::stats::DeliveryMode::Push, [queued_at_ms]);
        match self
            .stores()
            .queue
            .remove(&conn, std::slice::from_ref(&id))
            .await
        {
            Ok(n) => self.stats().acknowledged(n),
            Err(err) => {
                warn!(error = %err, "delivered message could not be removed from the queue; it may be delivered again")
            }
        }
    }

    /// The end of a delivery that did not happen: a queued message stays queued, a reply is
    /// queued for its connection, a handshake reply is dropped. `counted`: count it as given up
    /// (a refusal was counted by its own limit already).
    fn give_up(&self, purpose: Purpose, counted: bool) {
        if counted {
            self.stats().refused(Limit::OutboundGaveUp);
        }
        if let Purpose::Reply {
            connection,
            keys,
            direct,
        } = purpose
        {
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(err) = this.stores().queue.add(&connection, &keys, direct).await {
                    warn!(error = %err, connection = %connection, "undeliverable reply could not be queued; dropped");
                }
            });
        }
    }

    async fn post(&self, endpoint: &str, payload: Bytes) -> Result<(), Failure> {
        let sent = self
            .endpoints()
            .http
            .post(endpoint)
            .header("content-type", "application/didcomm-envelope-enc")
            .body(payload)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) if caused_by_private_address(&err) => return Err(Failure::Private),
            Err(err) => return Err(Failure::Retry(err.to_string())),
        };
        if response.status().is_success() {
            Ok(())
        } else {
            Err(Failure::Retry(format!("HTTP {}", response.status())))
        }
    }
}

fn caused_by_private_address(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<PrivateAddress>() {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn endpoints(allow_private: bool) -> Endpoints {
        let mut config = crate::Config::defaults().unwrap().delivery;
        config.allow_private_endpoints = allow_private;
        Endpoints::new(&config).unwrap()
    }

    #[test]
    fn non_public_address_literals_are_refused() {
        let e = endpoints(false);
        for bad in [
            "http://127.0.0.1:8080/internal/admin",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://0.0.0.0/",
            "http://100.64.0.1/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::]/",
        ] {
            assert!(
                matches!(e.check(bad), Err(EndpointRefusal::Private(_))),
                "{bad} accepted"
            );
        }
        assert!(matches!(
            e.check("ftp://example.com/"),
            Err(EndpointRefusal::NotHttp)
        ));
        assert_eq!(
            e.check("https://agent.example.com:8443/a/b").unwrap(),
            "https://agent.example.com:8443"
        );
        assert_eq!(
            e.check("http://93.184.216.34/x").unwrap(),
            "http://93.184.216.34"
        );
        assert!(endpoints(true).check("http://127.0.0.1:8080/").is_ok());
    }

    #[test]
    fn backlog_is_bounded_per_endpoint_in_all_and_released() {
        let backlog = Arc::new(Backlog {
            state: Mutex::default(),
            max_bytes: 100,
            max_bytes_per_endpoint: 60,
            max_messages: 3,
        });
        let a = backlog.reserve("a".into(), 50).unwrap();
        assert!(backlog.reserve("a".into(), 20).is_none(), "per endpoint");
        let b = backlog.reserve("b".into(), 45).unwrap();
        assert!(backlog.reserve("c".into(), 10).is_none(), "in all");
        drop(a);
        let _c = backlog.reserve("c".into(), 10).unwrap();
        let _d = backlog.reserve("a".into(), 10).unwrap();
        assert!(backlog.reserve("e".into(), 1).is_none(), "count");
        drop(b);
        assert!(backlog.reserve("e".into(), 1).is_some());
    }
}
