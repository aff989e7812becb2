//! Labels kept current as features arrive: every `interval_s`, the vehicles whose agents sent
//! something since the last pass are relabelled; every `full_every_h`, every vehicle is, so
//! percentile tiers are re-ranked against the whole population.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::labels::engine::{Day, Scope, relabel};
use crate::labels::rules::Rules;
use crate::store::Store;

/// Runs until `shutdown` turns true; "today" is the date in `time_zone`.
pub async fn run(
    store: Store,
    rules: Rules,
    time_zone: String,
    interval: Duration,
    full_every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_full: Option<Instant> = None;
    let mut since = jiff::Timestamp::now().as_second();
    let mut tick = tokio::time::interval(interval.max(Duration::from_secs(1)));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let started = jiff::Timestamp::now().as_second();
        let full = last_full.is_none_or(|at| at.elapsed() >= full_every);
        let scope = if full {
            Scope::All
        } else {
            Scope::ReceivedSince(since)
        };
        let clock = Instant::now();
        match relabel(&store, &rules, &scope, Day::today_in(&time_zone), |_| {}).await {
            Ok(vehicles) => {
                if full || vehicles > 0 {
                    info!(
                        vehicles,
                        full,
                        seconds = clock.elapsed().as_secs_f64(),
                        "Relabelled."
                    );
                }
                if full {
                    last_full = Some(clock);
                }
                // Overlap by a second: an envelope stored during this pass is seen by the next.
                since = started - 1;
            }
            Err(error) => warn!(%error, "Relabelling failed; the next pass tries again."),
        }
    }
}
