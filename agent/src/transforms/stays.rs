//! Stay points: where the car stood still for a while.
//!
//! This is trackintel's sliding rule (`generate_staypoints(method="sliding")`, trackintel 1.4):
//! the first fix of a run is its anchor; while fixes stay within `stay_radius_m` of it the run
//! grows; when a fix leaves the radius, the run is a stay if that fix came at least
//! `stay_min_s` after the anchor, and the fix anchors the next run. A gap longer than
//! `stay_max_gap_s` discards the run.
//!
//! drivetag departs from trackintel in two ways when [`PlaceRules::bridge_gaps`] is on (the
//! default): a gap that starts and ends within the radius of the anchor is part of the stay —
//! a head unit's receiver sleeps with the ignition, so a night at home is a gap, not fixes —
//! and a run that lasted long enough before a gap or the end of the input is still a stay.
//! With it off, the results are trackintel's, which the cross-check script relies on.

use super::at_least_m;
use crate::config::PlaceRules;
use crate::sample::{Fix, Millis};

/// One stay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stay {
    /// Arrival: the anchor fix, UTC ms.
    pub start_ms: Millis,
    /// Departure: the first fix outside the radius (or the last fix inside it), UTC ms.
    pub end_ms: Millis,
    /// Mean latitude of the fixes inside the radius, degrees.
    pub lat: f64,
    /// Mean longitude of the fixes inside the radius, degrees.
    pub lon: f64,
    /// Fixes inside the radius.
    pub fixes: u32,
    /// Whether the stay spans a data gap.
    pub bridged: bool,
}

impl Stay {
    /// Duration, seconds.
    pub fn duration_s(&self) -> f64 {
        (self.end_ms - self.start_ms) as f64 / 1000.0
    }
}

/// The stay-point state machine.
#[derive(Debug, Clone)]
pub struct StayDetector {
    radius_m: f64,
    min_ms: Millis,
    max_gap_ms: Millis,
    bridge_gaps: bool,
    anchor: Option<Fix>,
    /// Cosine of the anchor's latitude, for [`super::at_least_m`].
    anchor_cos_lat: f64,
    last: Option<Fix>,
    sum: (f64, f64),
    count: u32,
    bridged: bool,
}

impl StayDetector {
    /// A detector under `rules`.
    pub fn new(rules: &PlaceRules) -> Self {
        StayDetector {
            radius_m: rules.stay_radius_m,
            min_ms: (rules.stay_min_s * 1000.0) as Millis,
            max_gap_ms: (rules.stay_max_gap_s * 1000.0) as Millis,
            bridge_gaps: rules.bridge_gaps,
            anchor: None,
            anchor_cos_lat: 1.0,
            last: None,
            sum: (0.0, 0.0),
            count: 0,
            bridged: false,
        }
    }

    /// Takes new thresholds without forgetting the stay under way.
    pub fn set_rules(&mut self, rules: &PlaceRules) {
        let fresh = StayDetector::new(rules);
        self.radius_m = fresh.radius_m;
        self.min_ms = fresh.min_ms;
        self.max_gap_ms = fresh.max_gap_ms;
        self.bridge_gaps = fresh.bridge_gaps;
    }

    /// Feeds one cleaned fix; returns a stay that has just ended.
    pub fn push(&mut self, fix: Fix) -> Option<Stay> {
        let (Some(anchor), Some(last)) = (self.anchor, self.last) else {
            self.restart(fix);
            return None;
        };
        let inside = !at_least_m(&anchor, self.anchor_cos_lat, &fix, self.radius_m);
        if fix.t_ms - last.t_ms > self.max_gap_ms {
            if self.bridge_gaps && inside {
                self.bridged = true;
                self.add(fix);
                return None;
            }
            let stay = self
                .bridge_gaps
                .then(|| self.open_stay(last.t_ms))
                .flatten();
            self.restart(fix);
            return stay;
        }
        if inside {
            self.add(fix);
            return None;
        }
        let stay = self.open_stay(fix.t_ms);
        self.restart(fix);
        stay
    }

    /// The open run, if it is a stay by the end of the input. Only with gap bridging on:
    /// trackintel's default (`include_last=False`) drops it.
    pub fn finish(&mut self) -> Option<Stay> {
        let stay = self
            .bridge_gaps
            .then(|| self.last.and_then(|last| self.open_stay(last.t_ms)))
            .flatten();
        self.anchor = None;
        self.last = None;
        stay
    }

    fn open_stay(&self, end_ms: Millis) -> Option<Stay> {
        let anchor = self.anchor?;
        (end_ms - anchor.t_ms >= self.min_ms && self.count > 0).then(|| Stay {
            start_ms: anchor.t_ms,
            end_ms,
            lat: self.sum.0 / f64::from(self.count),
            lon: self.sum.1 / f64::from(self.count),
            fixes: self.count,
            bridged: self.bridged,
        })
    }

    fn restart(&mut self, fix: Fix) {
        self.anchor = Some(fix);
        self.anchor_cos_lat = fix.lat.to_radians().cos();
        self.sum = (0.0, 0.0);
        self.count = 0;
        self.bridged = false;
        self.add(fix);
    }

    fn add(&mut self, fix: Fix) {
        self.sum.0 += fix.lat;
        self.sum.1 += fix.lon;
        self.count += 1;
        self.last = Some(fix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn east(t_s: i64, metres: f64) -> Fix {
        Fix::at(t_s * 1000, 48.0, 11.0 + metres / 74_403.0)
    }

    fn stays(rules: &PlaceRules, fixes: &[Fix]) -> Vec<Stay> {
        let mut detector = StayDetector::new(rules);
        let mut found: Vec<Stay> = fixes.iter().filter_map(|f| detector.push(*f)).collect();
        found.extend(detector.finish());
        found
    }

    #[test]
    fn a_ten_minute_halt_is_a_stay_ending_at_the_first_fix_outside() {
        let mut fixes: Vec<Fix> = (0..600).map(|t| east(t, (t % 7) as f64)).collect();
        fixes.extend((600..700).map(|t| east(t, (t - 599) as f64 * 15.0)));
        let found = stays(&PlaceRules::default(), &fixes);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].start_ms, 0);
        // The first fix at 100 m or more: t = 606 s (7 × 15 = 105 m).
        assert_eq!(found[0].end_ms, 606_000);
        assert_eq!(found[0].fixes, 606);
    }

    #[test]
    fn a_night_without_fixes_at_home_is_one_stay_unless_trackintel_rules_apply() {
        let mut fixes: Vec<Fix> = (0..60).map(|t| east(t, 0.0)).collect();
        fixes.extend((40_000..40_060).map(|t| east(t, 20.0)));
        fixes.extend((40_060..40_200).map(|t| east(t, (t - 40_059) as f64 * 15.0)));
        let bridged = stays(&PlaceRules::default(), &fixes);
        assert_eq!(bridged.len(), 1);
        assert!(bridged[0].bridged);
        assert!(bridged[0].duration_s() > 39_000.0);
        let trackintel = PlaceRules {
            bridge_gaps: false,
            ..PlaceRules::default()
        };
        assert_eq!(stays(&trackintel, &fixes), []);
    }

    #[test]
    fn moving_is_never_a_stay() {
        let fixes: Vec<Fix> = (0..3_600).map(|t| east(t, t as f64 * 12.0)).collect();
        assert_eq!(stays(&PlaceRules::default(), &fixes), []);
    }
}
