//! The progress bar: sent of planned, accepted, delivered, duplicates and the current rates,
//! redrawn a few times a second from the tracker's counters. Off unless asked for.

use std::{
    sync::{atomic::Ordering::Relaxed, Arc},
    time::Duration,
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::{task::JoinHandle, time::Instant};

use crate::tracker::Tracker;

const REDRAW: Duration = Duration::from_millis(250);

/// A running progress bar (or nothing).
#[derive(Debug)]
pub(crate) struct Progress(Option<(ProgressBar, JoinHandle<()>)>);

impl Progress {
    /// Starts drawing on stderr if `enabled`.
    pub fn start(enabled: bool, planned: u64, tracker: Arc<Tracker>) -> Self {
        if !enabled {
            return Self(None);
        }
        let bar = ProgressBar::with_draw_target(Some(planned), ProgressDrawTarget::stderr());
        let style =
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} sent | {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        let drawn = bar.clone();
        let task = tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64, 0u64);
            loop {
                tokio::time::sleep(REDRAW).await;
                let sent = tracker.sent.load(Relaxed);
                let accepted = tracker.accepted.load(Relaxed);
                let delivered = tracker.delivered.load(Relaxed);
                let secs = last.0.elapsed().as_secs_f64().max(1e-3);
                let accept_rate = (accepted - last.1) as f64 / secs;
                let deliver_rate = (delivered - last.2) as f64 / secs;
                last = (Instant::now(), accepted, delivered);
                drawn.set_position(sent);
                drawn.set_message(format!(
                    "accepted {accepted} delivered {delivered} dup {} | {accept_rate:.0} acc/s {deliver_rate:.0} del/s",
                    tracker.duplicates.load(Relaxed),
                ));
            }
        });
        Self(Some((bar, task)))
    }

    /// Stops drawing and clears the bar.
    pub fn finish(self) {
        if let Some((bar, task)) = self.0 {
            task.abort();
            bar.finish_and_clear();
        }
    }
}
