//! Labels kept current as features arrive: every `interval_s`, the vehicles whose agents sent
//! something since the last pass are relabelled; every `full_every_h`, every vehicle is, so
//! percentile tiers are re-ranked against the whole population. When the last full pass and
//! the partial passes' progress are in the database, a restarted server goes on from them: no
//! full pass at start unless one is due or the rules changed.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::labels::engine::{Day, LastFull, Scope, relabel};
use crate::labels::rules::Rules;
use crate::store::Store;

/// Where the partial passes have got to: vehicles with data received from then on (UTC
/// seconds) are relabelled by the next one.
const SINCE_KEY: &str = "labels.since";

/// Runs until `shutdown` turns true; "today" is the date in `time_zone`.
pub async fn run(
    store: Store,
    rules: Rules,
    time_zone: String,
    interval: Duration,
    full_every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let now_s = jiff::Timestamp::now().as_second();
    let fingerprint = rules.fingerprint();
    // After a restart, a full pass is due only if the last one is old or used other rules;
    // partial passes go on from where the last one stopped.
    let mut last_full = match stored_full(&store, &fingerprint).await {
        Some(at) => {
            info!(
                age_s = at.elapsed().as_secs(),
                "Labels come from a full relabel with these rules."
            );
            Some(at)
        }
        None => {
            info!("No full relabel with these rules on record: relabelling everyone.");
            None
        }
    };
    let mut since = match store.meta(SINCE_KEY).await {
        Ok(Some(text)) => text.parse().unwrap_or(now_s),
        _ => now_s,
    };
    let mut tick = tokio::time::interval(interval.max(Duration::from_secs(1)));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let started = jiff::Timestamp::now().as_second();
        let mut full = last_full.is_none_or(|at| at.elapsed() >= full_every);
        if full && last_full.is_some() {
            // Another server on the database may have relabelled everyone since.
            if let Some(at) = stored_full(&store, &fingerprint).await
                && at.elapsed() < full_every
            {
                last_full = Some(at);
                full = false;
            }
        }
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
                if let Err(error) = store.set_meta(SINCE_KEY, &since.to_string()).await {
                    warn!(%error, "Cannot record the labeller's progress.");
                }
            }
            Err(error) => warn!(%error, "Relabelling failed; the next pass tries again."),
        }
    }
}

/// When the full relabel on record began, if it used the rules of `fingerprint` (as a point
/// on this process's clock; `None` too when that is before the clock's start).
async fn stored_full(store: &Store, fingerprint: &str) -> Option<Instant> {
    match LastFull::load(store).await {
        Ok(Some(last)) if last.rules == fingerprint => {
            let age_s = jiff::Timestamp::now().as_second().saturating_sub(last.at_s);
            Instant::now().checked_sub(Duration::from_secs(age_s.max(0) as u64))
        }
        Ok(_) => None,
        Err(error) => {
            warn!(%error, "Cannot read when labels were last computed.");
            None
        }
    }
}
