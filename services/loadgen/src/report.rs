//! The report of one run: counts, rates and latencies, as JSON (`--report FILE`) and as the
//! summary the binary prints ([`std::fmt::Display`]).
//!
//! Everything is computed once, after the run, from the tracker's slots; nothing here runs while
//! messages are in flight.

use std::{collections::BTreeMap, fmt, sync::atomic::Ordering::Relaxed};

use serde::Serialize;
use tokio::time::Instant;

use crate::{
    receiver::Outcome,
    tracker::{Tracker, NOT_SENT, TRANSPORT_ERROR},
    Config,
};

/// Percentiles of a latency, milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    /// How many values.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// Percentiles (nearest rank) of `ns`, in ms; `None` when empty.
    pub fn of(mut ns: Vec<u64>) -> Option<Self> {
        if ns.is_empty() {
            return None;
        }
        ns.sort_unstable();
        let ms = |v: u64| v as f64 / 1e6;
        let rank = |p: f64| {
            let i = ((p / 100.0) * ns.len() as f64).ceil() as usize;
            ms(ns[i.clamp(1, ns.len()) - 1])
        };
        let sum: u128 = ns.iter().map(|&v| u128::from(v)).sum();
        Some(Self {
            count: ns.len() as u64,
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            p999: rank(99.9),
            max: ms(ns[ns.len() - 1]),
            mean: sum as f64 / ns.len() as f64 / 1e6,
        })
    }
}

/// One instance's share.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceReport {
    /// Its base URL.
    pub url: String,
    /// Recipients connected to it (and live on its WebSocket).
    pub recipients: u64,
    /// Forwards it answered 202.
    pub accepted: u64,
    /// Forwards it answered with another status.
    pub refused: u64,
    /// Forward POSTs to it that got no status.
    pub post_errors: u64,
    /// Deliveries read on the sockets of its recipients (duplicates included).
    pub delivered: u64,
}

/// An error and how often it happened.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorCount {
    /// What went wrong.
    pub error: String,
    /// How often.
    pub count: u64,
}

/// The result of one run. Times are measured in this process on one monotonic clock.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Id of the run (in every message it sent).
    pub run_id: String,
    /// The instances.
    pub mediators: Vec<String>,
    /// Recipients (real clients, each live on a WebSocket).
    pub recipients: usize,
    /// Sender tasks.
    pub senders: usize,
    /// Target rate, Forwards/s (0 = as fast as possible).
    pub target_rate: f64,
    /// Messages planned (and tracked).
    pub planned: u64,
    /// Whether the Forwards were built before the timed phase.
    pub prebuilt: bool,
    /// Sending stopped because every planned message was used before the duration ended.
    pub pool_exhausted: bool,
    /// Set-up time (handshakes, mediation, sockets live), s.
    pub setup_secs: f64,
    /// Time spent building the Forwards before sending, s.
    pub prebuild_secs: f64,
    /// Forward POSTs that got an answer or failed.
    pub sent: u64,
    /// Forwards answered 202.
    pub accepted: u64,
    /// Forwards answered with another status, by status code.
    pub refused: BTreeMap<u16, u64>,
    /// Forward POSTs that got no status (connection error, timeout).
    pub post_errors: u64,
    /// Messages that arrived at their recipient at least once.
    pub delivered: u64,
    /// Accepted messages that had not arrived when the drain timeout ended (including `late`).
    pub lost: u64,
    /// Accepted messages that arrived only after the drain timeout (while the recipients said
    /// goodbye): counted in `lost` and in `delivered`.
    pub late: u64,
    /// Arrivals of a message that had already arrived.
    pub duplicates: u64,
    /// Messages that arrived although their POST got no 202 (timeout after the mediator took
    /// it, for instance): not lost, not counted as accepted.
    pub delivered_unaccepted: u64,
    /// Messages that arrived before their sender read the 202 (the mediator pushes live before
    /// it answers); their `latency_ms` counts as 0.
    pub delivered_before_accepted: u64,
    /// Arrivals that were no message of this run for that recipient.
    pub foreign: u64,
    /// Messages still waiting in the recipients' queues at the end, by the mediator's `status`
    /// (`message_count`; in-flight messages are not in it). `None` if some recipient got no
    /// answer.
    pub still_queued: Option<u64>,
    /// New sockets opened after one closed (each then fetched the queue with delivery-request).
    pub reconnects: u64,
    /// `messages-received` sent.
    pub acks_sent: u64,
    /// Length of the send phase: first POST to last answer, s.
    pub send_secs: f64,
    /// From the end of sending until everything accepted arrived (or the drain timeout), s.
    pub drain_secs: f64,
    /// Accepted Forwards per second of the send phase.
    pub accepted_per_sec: f64,
    /// Messages delivered per second, from the start of sending to the last first arrival.
    pub delivered_per_sec: f64,
    /// Arrival on the recipient's socket, opened, minus the time the POST returned 202.
    pub latency_ms: Option<Latency>,
    /// Arrival minus the start of the POST (includes the Forward's own round trip).
    pub latency_from_post_ms: Option<Latency>,
    /// `latency_ms` of messages posted to the recipient's own instance.
    pub latency_same_instance_ms: Option<Latency>,
    /// `latency_ms` of messages posted to another instance than the recipient's (the cluster
    /// hop).
    pub latency_cross_instance_ms: Option<Latency>,
    /// Round trip of the Forward POSTs that got 202.
    pub post_ms: Option<Latency>,
    /// Per instance.
    pub instances: Vec<InstanceReport>,
    /// The first lost sequence numbers (at most 20), to look for in the mediator's logs.
    pub lost_sample: Vec<u64>,
    /// What went wrong, by description, with counts.
    pub errors: Vec<ErrorCount>,
}

/// What [`build`] needs.
pub(crate) struct Inputs<'a> {
    pub config: &'a Config,
    pub run_id: String,
    pub tracker: &'a Tracker,
    pub outcomes: &'a [Outcome],
    pub setup_secs: f64,
    pub prebuild_secs: f64,
    pub send_start: Instant,
    pub send_end: Instant,
    pub drain_end: Instant,
}

/// Computes the report from the slots.
pub(crate) fn build(i: Inputs<'_>) -> Report {
    let t = i.tracker;
    let instances = t.instances.len();
    let mut refused = BTreeMap::new();
    let (mut lost, mut lost_sample, mut unaccepted, mut early) = (0u64, Vec::new(), 0u64, 0u64);
    let mut late = 0u64;
    let drain_end = t.at(i.drain_end);
    let (mut latency, mut from_post, mut same, mut cross, mut post) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut last_post_answer = 0;
    let mut last_delivery = 0;
    for (seq, slot) in t.slots.iter().enumerate() {
        let status = slot.status.load(Relaxed);
        let (posted, accepted, delivered) = (
            slot.posted.load(Relaxed),
            slot.accepted.load(Relaxed),
            slot.delivered.load(Relaxed),
        );
        last_delivery = last_delivery.max(delivered);
        match status {
            NOT_SENT => continue,
            202 => {}
            TRANSPORT_ERROR => {}
            code => *refused.entry(code as u16).or_insert(0) += 1,
        }
        if accepted == 0 {
            if delivered != 0 {
                unaccepted += 1;
            }
            continue;
        }
        last_post_answer = last_post_answer.max(accepted);
        post.push(accepted.saturating_sub(posted));
        if !i.config.live {
            // Queue only: nothing is delivered, so nothing can be lost here.
            continue;
        }
        if delivered == 0 || delivered > drain_end {
            lost += 1;
            if lost_sample.len() < 20 {
                lost_sample.push(seq as u64);
            }
            if delivered == 0 {
                continue;
            }
            late += 1;
        }
        if delivered < accepted {
            early += 1;
        }
        let l = delivered.saturating_sub(accepted);
        latency.push(l);
        from_post.push(delivered.saturating_sub(posted));
        let recipient_instance = (seq % t.recipients) % instances;
        if slot.instance.load(Relaxed) as usize == recipient_instance {
            same.push(l);
        } else {
            cross.push(l);
        }
    }
    let send_start = t.at(i.send_start);
    let send_secs = secs(t.at(i.send_end).max(last_post_answer), send_start);
    let accepted = t.accepted.load(Relaxed);
    let delivered = t.delivered.load(Relaxed);
    let delivered_secs = secs(last_delivery, send_start);

    let mut per_instance: Vec<InstanceReport> = i
        .config
        .mediators
        .iter()
        .zip(&t.instances)
        .map(|(url, c)| InstanceReport {
            url: url.clone(),
            recipients: 0,
            accepted: c.accepted.load(Relaxed),
            refused: c.refused.load(Relaxed),
            post_errors: c.post_errors.load(Relaxed),
            delivered: c.delivered.load(Relaxed),
        })
        .collect();
    for r in 0..t.recipients {
        per_instance[r % instances].recipients += 1;
    }
    let still_queued = i
        .outcomes
        .iter()
        .map(|o| o.still_queued)
        .sum::<Option<u64>>();

    Report {
        run_id: i.run_id,
        mediators: i.config.mediators.clone(),
        recipients: i.config.recipients,
        senders: i.config.senders,
        target_rate: i.config.rate,
        planned: t.slots.len() as u64,
        prebuilt: i.config.prebuild,
        pool_exhausted: t.pool_exhausted.load(Relaxed) != 0,
        setup_secs: i.setup_secs,
        prebuild_secs: i.prebuild_secs,
        sent: t.sent.load(Relaxed),
        accepted,
        refused,
        post_errors: t
            .instances
            .iter()
            .map(|c| c.post_errors.load(Relaxed))
            .sum(),
        delivered,
        lost,
        late,
        duplicates: t.duplicates.load(Relaxed),
        delivered_unaccepted: unaccepted,
        delivered_before_accepted: early,
        foreign: t.foreign.load(Relaxed),
        still_queued,
        reconnects: i.outcomes.iter().map(|o| o.reconnects).sum(),
        acks_sent: i.outcomes.iter().map(|o| o.acks_sent).sum(),
        send_secs,
        drain_secs: i
            .drain_end
            .saturating_duration_since(i.send_end)
            .as_secs_f64(),
        accepted_per_sec: rate(accepted, send_secs),
        delivered_per_sec: rate(delivered, delivered_secs),
        latency_ms: Latency::of(latency),
        latency_from_post_ms: Latency::of(from_post),
        latency_same_instance_ms: Latency::of(same),
        latency_cross_instance_ms: Latency::of(cross),
        post_ms: Latency::of(post),
        instances: per_instance,
        lost_sample,
        errors: t
            .errors()
            .into_iter()
            .map(|(error, count)| ErrorCount { error, count })
            .collect(),
    }
}

/// Seconds from `from` to `to` (slot units).
fn secs(to: u64, from: u64) -> f64 {
    to.saturating_sub(from) as f64 / 1e9
}

fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  mean {:.2} ms  (n={})",
            self.p50, self.p90, self.p99, self.p999, self.max, self.mean, self.count
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |l: &Option<Latency>| {
            l.as_ref()
                .map_or_else(|| "-".to_owned(), Latency::to_string)
        };
        writeln!(
            f,
            "loadgen run {}: {} recipients, {} senders, {} instance(s), target {}",
            self.run_id,
            self.recipients,
            self.senders,
            self.mediators.len(),
            if self.target_rate > 0.0 {
                format!("{} fwd/s", self.target_rate)
            } else {
                "as fast as possible".to_owned()
            }
        )?;
        writeln!(
            f,
            "  set-up {:.2} s, prebuild {:.2} s ({}), send {:.2} s, drain {:.2} s{}",
            self.setup_secs,
            self.prebuild_secs,
            if self.prebuilt {
                "prebuilt"
            } else {
                "packed while sending"
            },
            self.send_secs,
            self.drain_secs,
            if self.pool_exhausted {
                " (stopped: planned messages used up)"
            } else {
                ""
            }
        )?;
        let refused: u64 = self.refused.values().sum();
        writeln!(
            f,
            "  sent {}  accepted {}  refused {}{}  post errors {}",
            self.sent,
            self.accepted,
            refused,
            if self.refused.is_empty() {
                String::new()
            } else {
                format!(" {:?}", self.refused)
            },
            self.post_errors
        )?;
        writeln!(
            f,
            "  delivered {}  LOST {} (late {})  duplicates {}  delivered-unaccepted {}  before-202 {}  foreign {}",
            self.delivered,
            self.lost,
            self.late,
            self.duplicates,
            self.delivered_unaccepted,
            self.delivered_before_accepted,
            self.foreign
        )?;
        writeln!(
            f,
            "  still queued {}  reconnects {}  acks sent {}",
            self.still_queued
                .map_or_else(|| "?".to_owned(), |n| n.to_string()),
            self.reconnects,
            self.acks_sent
        )?;
        writeln!(
            f,
            "  throughput: {:.1} accepted fwd/s, {:.1} delivered msg/s",
            self.accepted_per_sec, self.delivered_per_sec
        )?;
        writeln!(
            f,
            "  latency (202 -> delivered):  {}",
            opt(&self.latency_ms)
        )?;
        writeln!(
            f,
            "  latency (POST -> delivered): {}",
            opt(&self.latency_from_post_ms)
        )?;
        if self.mediators.len() > 1 {
            writeln!(
                f,
                "    same instance:  {}",
                opt(&self.latency_same_instance_ms)
            )?;
            writeln!(
                f,
                "    cross instance: {}",
                opt(&self.latency_cross_instance_ms)
            )?;
        }
        writeln!(f, "  Forward POST round trip:     {}", opt(&self.post_ms))?;
        for i in &self.instances {
            writeln!(
                f,
                "  {}: {} recipients, accepted {}, refused {}, post errors {}, delivered {}",
                i.url, i.recipients, i.accepted, i.refused, i.post_errors, i.delivered
            )?;
        }
        if !self.lost_sample.is_empty() {
            writeln!(f, "  lost (first): {:?}", self.lost_sample)?;
        }
        if !self.errors.is_empty() {
            writeln!(f, "  errors:")?;
            for e in &self.errors {
                writeln!(f, "    {:>6} x {}", e.count, e.error)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_in_ms() {
        let l = Latency::of((1..=100).map(|v| v * 1_000_000).collect()).unwrap();
        assert_eq!(
            (l.count, l.p50, l.p90, l.p99, l.max),
            (100, 50.0, 90.0, 99.0, 100.0)
        );
        assert!((l.mean - 50.5).abs() < 1e-9);
        let one = Latency::of(vec![2_500_000]).unwrap();
        assert_eq!((one.p50, one.p999, one.max), (2.5, 2.5, 2.5));
        assert!(Latency::of(Vec::new()).is_none());
    }
}
