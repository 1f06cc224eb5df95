//! Per-client-address token buckets for three classes: messages (HTTP POSTs of envelopes and
//! WebSocket data frames), WebSocket upgrades, and new TCP connections.
//!
//! Who the client is: the TCP peer, or, when the peer is a trusted proxy
//! (`rate_limit.trusted_proxies`), the last address of `X-Forwarded-For` that is not itself a
//! trusted proxy. IPv6 clients are bucketed by their /64 (one host usually has a whole /64).
//!
//! Memory is bounded: at most `rate_limit.max_tracked_addresses` buckets per class. Buckets that
//! have refilled completely are pruned (a full bucket is the same as no bucket); when the table is
//! still full, new addresses share one overflow bucket per class until room frees up.
//!
//! This module decides; it does no I/O and counts nothing (the callers answer 429 and count the
//! refusal in [`crate::stats::Limit`]).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::config::RateLimitConfig;

/// What is being limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// HTTP POSTs of envelopes and WebSocket data frames.
    Messages,
    /// WebSocket upgrades.
    Upgrades,
    /// New TCP connections.
    Connections,
}

impl Class {
    fn index(self) -> usize {
        match self {
            Class::Messages => 0,
            Class::Upgrades => 1,
            Class::Connections => 2,
        }
    }
}

/// A client as the limiter sees it: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The key of `ip` (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

/// Refused: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds for a `Retry-After` header (at least 1).
    pub fn seconds(self) -> u64 {
        self.0.as_secs_f64().ceil().max(1.0) as u64
    }
}

#[derive(Debug, Clone, Copy)]
struct Rule {
    per_second: f64,
    burst: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(rule: Rule, now: Instant) -> Self {
        Self {
            tokens: rule.burst,
            updated: now,
        }
    }

    fn refill(&mut self, rule: Rule, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rule.per_second).min(rule.burst);
        self.updated = now;
    }

    fn take(&mut self, rule: Rule, now: Instant) -> Result<(), RetryAfter> {
        self.refill(rule, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / rule.per_second;
            Err(RetryAfter(Duration::from_secs_f64(wait)))
        }
    }

    /// Full again by `now`: forgetting it changes nothing.
    fn is_full(&self, rule: Rule, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * rule.per_second >= rule.burst
    }
}

#[derive(Debug)]
struct Table {
    rule: Rule,
    buckets: HashMap<ClientKey, Bucket>,
    /// Shared by new addresses while the table is full.
    overflow: Bucket,
    last_prune: Instant,
}

/// How often the tables drop refilled buckets when they are not full.
const PRUNE_EVERY: Duration = Duration::from_secs(10);
/// How often a full table may be scanned for refilled buckets (a scan is O(table)).
const PRUNE_FULL_EVERY: Duration = Duration::from_secs(1);

impl Table {
    fn check(&mut self, key: ClientKey, max: usize, now: Instant) -> Result<(), RetryAfter> {
        let rule = self.rule;
        let since_prune = now.saturating_duration_since(self.last_prune);
        if since_prune >= PRUNE_EVERY
            || (self.buckets.len() >= max && since_prune >= PRUNE_FULL_EVERY)
        {
            self.buckets.retain(|_, b| !b.is_full(rule, now));
            self.last_prune = now;
        }
        if let Some(bucket) = self.buckets.get_mut(&key) {
            return bucket.take(rule, now);
        }
        if self.buckets.len() >= max {
            return self.overflow.take(rule, now);
        }
        let mut bucket = Bucket::full(rule, now);
        let taken = bucket.take(rule, now);
        self.buckets.insert(key, bucket);
        taken
    }
}

/// The limiter of one instance. Cheap to clone; clones share the buckets.
///
/// A std Mutex per class: held for one map operation, never across an await.
#[derive(Debug, Clone)]
pub struct RateLimiter(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    tables: [Option<Mutex<Table>>; 3],
    max_tracked: usize,
    trusted: Vec<IpNet>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Buckets are plain numbers: a panic elsewhere leaves them usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RateLimiter {
    /// A limiter with the configured rates.
    pub fn new(config: &RateLimitConfig) -> Self {
        let now = Instant::now();
        let table = |per_second: f64, burst: u32| {
            (per_second > 0.0).then(|| {
                let rule = Rule {
                    per_second,
                    burst: f64::from(burst.max(1)),
                };
                Mutex::new(Table {
                    rule,
                    buckets: HashMap::new(),
                    overflow: Bucket::full(rule, now),
                    last_prune: now,
                })
            })
        };
        Self(Arc::new(Inner {
            tables: [
                table(config.messages_per_second, config.messages_burst),
                table(config.upgrades_per_second, config.upgrades_burst),
                table(config.connections_per_second, config.connections_burst),
            ],
            max_tracked: config.max_tracked_addresses.max(1),
            trusted: config.trusted_proxy_nets(),
        }))
    }

    /// Takes one token of `class` for `client`; `Err` says when to retry.
    pub fn check(&self, class: Class, client: IpAddr) -> Result<(), RetryAfter> {
        self.check_at(class, client, Instant::now())
    }

    fn check_at(&self, class: Class, client: IpAddr, now: Instant) -> Result<(), RetryAfter> {
        match &self.0.tables[class.index()] {
            None => Ok(()),
            Some(table) => lock(table).check(ClientKey::of(client), self.0.max_tracked, now),
        }
    }

    /// How many addresses `class` tracks now.
    pub fn tracked(&self, class: Class) -> usize {
        self.0.tables[class.index()]
            .as_ref()
            .map_or(0, |t| lock(t).buckets.len())
    }

    /// True when `peer` is a trusted proxy.
    pub fn is_trusted(&self, peer: IpAddr) -> bool {
        let peer = ClientKey::of(peer).0;
        self.0.trusted.iter().any(|net| net.contains(&peer))
    }

    /// The client of a request from TCP peer `peer`: the peer itself, unless it is a trusted
    /// proxy; then the last `X-Forwarded-For` hop that is not trusted (the first one some proxy
    /// of ours was told by a stranger). An unparsable hop stops the walk: the hop after it (a
    /// trusted one) is the client then.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.ip();
        if !self.is_trusted(client) {
            return client;
        }
        // Several X-Forwarded-For headers form one list, in order.
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            if !self.is_trusted(ip) {
                break;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(messages: f64, burst: u32, max: usize, trusted: &[&str]) -> RateLimitConfig {
        RateLimitConfig {
            messages_per_second: messages,
            messages_burst: burst,
            upgrades_per_second: 0.0,
            upgrades_burst: 0,
            connections_per_second: 0.0,
            connections_burst: 0,
            max_tracked_addresses: max,
            trusted_proxies: trusted.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn burst_then_refill_at_the_rate() {
        let l = RateLimiter::new(&config(10.0, 5, 100, &[]));
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..5 {
            l.check_at(Class::Messages, a, t0).unwrap();
        }
        let wait = l.check_at(Class::Messages, a, t0).unwrap_err();
        assert_eq!(wait.0, Duration::from_millis(100));
        assert_eq!(wait.seconds(), 1);
        // Another address has its own bucket.
        l.check_at(Class::Messages, ip("192.0.2.2"), t0).unwrap();
        // 100 ms later one token is back, not two.
        let t1 = t0 + Duration::from_millis(100);
        l.check_at(Class::Messages, a, t1).unwrap();
        assert!(l.check_at(Class::Messages, a, t1).is_err());
        // A class that is off never refuses.
        for _ in 0..1000 {
            l.check_at(Class::Upgrades, a, t1).unwrap();
        }
    }

    #[test]
    fn ipv6_is_bucketed_by_64_and_mapped_v4_as_v4() {
        let l = RateLimiter::new(&config(1.0, 1, 100, &[]));
        let t = Instant::now();
        l.check_at(Class::Messages, ip("2001:db8:1:2::1"), t)
            .unwrap();
        assert!(l
            .check_at(Class::Messages, ip("2001:db8:1:2:ffff::9"), t)
            .is_err());
        l.check_at(Class::Messages, ip("2001:db8:1:3::1"), t)
            .unwrap();
        l.check_at(Class::Messages, ip("::ffff:192.0.2.7"), t)
            .unwrap();
        assert!(l.check_at(Class::Messages, ip("192.0.2.7"), t).is_err());
    }

    #[test]
    fn the_table_is_bounded_and_refilled_buckets_are_pruned() {
        let l = RateLimiter::new(&config(1.0, 2, 3, &[]));
        let t0 = Instant::now();
        for n in 1..=3 {
            l.check_at(Class::Messages, ip(&format!("192.0.2.{n}")), t0)
                .unwrap();
        }
        assert_eq!(l.tracked(Class::Messages), 3);
        // Full table: newcomers share the overflow bucket (2 tokens).
        l.check_at(Class::Messages, ip("198.51.100.1"), t0).unwrap();
        l.check_at(Class::Messages, ip("198.51.100.2"), t0).unwrap();
        assert!(l.check_at(Class::Messages, ip("198.51.100.3"), t0).is_err());
        assert_eq!(l.tracked(Class::Messages), 3);
        // Once the old buckets refilled (1 token in 1 s), they are dropped for the newcomer.
        let t1 = t0 + Duration::from_secs(1);
        l.check_at(Class::Messages, ip("198.51.100.3"), t1).unwrap();
        assert_eq!(l.tracked(Class::Messages), 1);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let l = RateLimiter::new(&config(1.0, 1, 100, &["10.0.0.0/8", "192.0.2.9"]));
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            "203.0.113.5, 198.51.100.7".parse().unwrap(),
        );
        h.append("x-forwarded-for", "10.1.1.1".parse().unwrap());
        let untrusted: SocketAddr = "198.51.100.1:4000".parse().unwrap();
        assert_eq!(l.client(untrusted, &h), ip("198.51.100.1"));
        // Trusted peer: walk right to left past our own proxies (10.1.1.1) to the first stranger.
        let lb: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        assert_eq!(l.client(lb, &h), ip("198.51.100.7"));
        let single: SocketAddr = "192.0.2.9:1".parse().unwrap();
        assert_eq!(l.client(single, &h), ip("198.51.100.7"));
        // No header: the peer itself.
        assert_eq!(l.client(lb, &HeaderMap::new()), ip("10.0.0.2"));
        // Garbage stops the walk at the last trusted hop.
        let mut bad = HeaderMap::new();
        bad.append("x-forwarded-for", "nonsense, 10.2.2.2".parse().unwrap());
        assert_eq!(l.client(lb, &bad), ip("10.2.2.2"));
        // Ports are tolerated.
        let mut port = HeaderMap::new();
        port.append("x-forwarded-for", "[2001:db8::1]:443".parse().unwrap());
        assert_eq!(l.client(lb, &port), ip("2001:db8::1"));
    }
}
