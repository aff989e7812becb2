//! Cleaning: only plausible fixes reach the features.
//!
//! A fix is dropped when its time does not advance past the last kept fix (a repeated or
//! backward timestamp), when reaching it from the last kept fix would take more than 250 km/h
//! (a multipath jump), or when it is a *spike*: one fix that leaves the track and comes straight
//! back, far faster than the track itself moves. After ten jumps in a row the filter trusts the
//! new position again, so a receiver that really moved while it had no fix is followed rather
//! than ignored for ever.
//!
//! The spike test needs the next fix, so the cleaner hands each fix on one fix late;
//! [`Cleaner::finish`] releases the last one.

use crate::sample::{Fix, Millis, distance_m};

/// Faster than this between two fixes is a jump, not driving (m/s; 250 km/h).
pub const MAX_PLAUSIBLE_MPS: f64 = 250.0 / 3.6;
/// After this many jumps in a row, the filter re-anchors on the new position.
pub const REANCHOR_AFTER: u32 = 10;
/// A spike goes out and back at least this fast, m/s (54 km/h) ...
const SPIKE_MIN_MPS: f64 = 15.0;
/// ... and faster than twice the speed of the track around it plus this, m/s.
const SPIKE_MARGIN_MPS: f64 = 10.0;
/// Spikes are judged only across intervals up to this (ms).
const MAX_NEIGHBOUR_INTERVAL_MS: Millis = 10_000;

/// What the cleaner dropped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Fixes kept.
    pub kept: u64,
    /// Fixes whose time did not advance.
    pub repeated_time: u64,
    /// Fixes that would need more than 250 km/h.
    pub jumps: u64,
    /// Single fixes off the track and back.
    pub spikes: u64,
}

/// The cleaning state machine.
#[derive(Debug, Clone, Default)]
pub struct Cleaner {
    /// The last fix handed on.
    last: Option<Fix>,
    /// The fix waiting for its successor before it is judged.
    held: Option<Fix>,
    /// The speed from `last` to `held`, m/s, as the jump test computed it when `held` came in,
    /// so the spike test does not compute it again (haversine dominates the pipeline's time).
    /// `None` when `held` was judged against another fix (a spike it replaced).
    held_speed: Option<f64>,
    jumps_in_a_row: u32,
    stats: CleanStats,
}

fn speed(a: &Fix, b: &Fix) -> f64 {
    distance_m(a, b) / ((b.t_ms - a.t_ms) as f64 / 1000.0)
}

fn near(a: &Fix, b: &Fix) -> bool {
    b.t_ms - a.t_ms <= MAX_NEIGHBOUR_INTERVAL_MS
}

impl Cleaner {
    /// A cleaner that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// What was dropped so far.
    pub fn stats(&self) -> CleanStats {
        self.stats
    }

    /// The time of the fix waiting to be judged, if any.
    pub fn held_since(&self) -> Option<Millis> {
        self.held.map(|fix| fix.t_ms)
    }

    /// Takes a fix; returns the previous one, cleaned, unless it was dropped.
    pub fn push(&mut self, fix: Fix) -> Option<Fix> {
        // The speed from the reference to this fix; the reference is `held` if there is one
        // (then `held` → `fix` is the spike test's second leg), else `last`.
        let mut incoming = None;
        if let Some(reference) = self.held.or(self.last) {
            if fix.t_ms <= reference.t_ms {
                self.stats.repeated_time += 1;
                return None;
            }
            let speed = speed(&reference, &fix);
            if speed > MAX_PLAUSIBLE_MPS && self.jumps_in_a_row < REANCHOR_AFTER {
                self.jumps_in_a_row += 1;
                self.stats.jumps += 1;
                return None;
            }
            incoming = Some(speed);
        }
        self.jumps_in_a_row = 0;
        if let (Some(before), Some(held)) = (self.last, self.held)
            && is_spike(&before, &held, &fix, self.held_speed, incoming)
        {
            self.stats.spikes += 1;
            self.held = Some(fix);
            // This fix was judged against the spike, not against `last`.
            self.held_speed = None;
            return None;
        }
        let released = self.held.take().map(|held| self.release(held));
        // `incoming` was measured from the old `held` (now `last`) or from `last` itself.
        self.held = Some(fix);
        self.held_speed = incoming;
        released
    }

    /// Releases the fix still waiting, at the end of the input or after a silence.
    pub fn finish(&mut self) -> Option<Fix> {
        let held = self.held.take()?;
        self.held_speed = None;
        Some(self.release(held))
    }

    fn release(&mut self, fix: Fix) -> Fix {
        self.stats.kept += 1;
        self.last = Some(fix);
        fix
    }
}

/// Whether `b` leaves the track between `a` and `c` and comes straight back. `ab` and `bc`
/// are the speeds `a` → `b` and `b` → `c` when already known.
fn is_spike(a: &Fix, b: &Fix, c: &Fix, ab: Option<f64>, bc: Option<f64>) -> bool {
    if !(near(a, b) && near(b, c)) {
        return false;
    }
    let ab = ab.unwrap_or_else(|| speed(a, b));
    let bc = bc.unwrap_or_else(|| speed(b, c));
    let out_and_back = ab.min(bc);
    out_and_back > SPIKE_MIN_MPS && out_and_back > 2.0 * speed(a, c) + SPIKE_MARGIN_MPS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A point `metres` north of 48°N.
    fn north(t_s: i64, metres: f64) -> Fix {
        Fix::at(t_s * 1000, 48.0 + metres / 111_195.0, 11.0)
    }

    fn clean(fixes: &[Fix]) -> (Vec<Fix>, CleanStats) {
        let mut cleaner = Cleaner::new();
        let mut out: Vec<Fix> = fixes.iter().filter_map(|f| cleaner.push(*f)).collect();
        out.extend(cleaner.finish());
        (out, cleaner.stats())
    }

    #[test]
    fn repeated_and_backward_times_are_dropped() {
        let (kept, stats) = clean(&[
            north(10, 0.0),
            north(10, 5.0),
            north(9, 5.0),
            north(11, 10.0),
        ]);
        assert_eq!(kept.len(), 2);
        assert_eq!(stats.repeated_time, 2);
    }

    #[test]
    fn a_teleport_is_dropped() {
        let (kept, stats) = clean(&[
            north(0, 0.0),
            north(1, 1000.0),
            north(2, 40.0),
            north(3, 60.0),
        ]);
        assert_eq!(stats.jumps, 1);
        assert_eq!(kept.len(), 3);
    }

    #[test]
    fn a_single_fix_off_the_track_and_back_is_a_spike() {
        // Parked, one fix 56 m away for a second (204 km/h out and back), parked again.
        let (kept, stats) = clean(&[
            north(0, 0.0),
            north(1, 1.0),
            north(2, 57.0),
            north(3, 1.5),
            north(4, 1.0),
        ]);
        assert_eq!(stats.spikes, 1);
        assert_eq!(kept.len(), 4);
        assert!(kept.iter().all(|f| distance_m(&kept[0], f) < 2.0));
    }

    #[test]
    fn fast_driving_is_not_a_spike() {
        let fixes: Vec<Fix> = (0..20).map(|t| north(t, t as f64 * 33.0)).collect();
        let (kept, stats) = clean(&fixes);
        assert_eq!((kept.len(), stats.spikes), (20, 0));
    }

    #[test]
    fn the_filter_follows_a_receiver_that_really_moved() {
        let mut fixes = vec![north(0, 0.0)];
        // The receiver comes back 50 km away: 10 fixes are refused, the 11th is trusted.
        fixes.extend((1..=12).map(|t| north(t, 50_000.0 + t as f64 * 20.0)));
        let (kept, stats) = clean(&fixes);
        assert_eq!(stats.jumps, 10);
        assert_eq!(kept.len(), 3);
    }
}
