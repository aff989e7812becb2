//! The driving-style score: 0–100, higher is smoother and safer.
//!
//! # Formula
//!
//! Four sub-scores, each `100 / (1 + penalty)`, so every extra bit of harshness lowers the
//! score and none ever falls below 0:
//!
//! | sub-score | penalty |
//! |---|---|
//! | acceleration | `2 × max(0, p99(a) / T_accel − 0.5) + harsh accelerations per 100 km / 10` |
//! | braking | `2 × max(0, −p01(a) / T_brake − 0.5) + harsh brakings per 100 km / 10` |
//! | cornering | `2 × max(0, p99(lat) / T_corner − 0.5) + harsh cornerings per 100 km / 10` |
//! | speed | `10 × share of moving time above the limit + 3 × max(0, rms(a) / T_accel − 0.25)` |
//!
//! `a` is longitudinal acceleration above the event speed gate, `lat` lateral acceleration
//! above the cornering gate, `T_*` the harsh-event thresholds of the signal source (so GNSS and
//! CAN inputs are judged against their own scales), `rms(a)` the root mean square of `a`: how
//! much the driver keeps changing speed. Rates use at least 5 km of exposure, so one event on a
//! 500 m trip is not 200 per 100 km.
//!
//! The percentile terms start at half the harsh threshold: 1 % of driving time at that level is
//! ordinary traffic; the rate terms start at the first event. The overall score is the weighted
//! mean: braking 35 %, speed 30 %, acceleration 20 %, cornering 15 % — braking and speeding
//! weigh most in crash risk and in brake and tyre wear. Days, periods and the `summarize`
//! summary combine trips by their distance.

use drivetag_shared::wire::SignalSource;

use crate::config::HarshRules;

/// Exposure below this counts as this much when turning events into rates, km.
pub const MIN_EXPOSURE_KM: f64 = 5.0;

/// What a score is computed from, for a trip or a period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StyleInputs {
    /// Where acceleration was measured.
    pub source: SignalSource,
    /// Distance, metres.
    pub distance_m: f64,
    /// Time moving, seconds.
    pub moving_s: f64,
    /// Harsh accelerations.
    pub harsh_accel: u32,
    /// Harsh braking events.
    pub harsh_brake: u32,
    /// Harsh cornering events.
    pub harsh_corner: u32,
    /// Time above the speed limit, seconds.
    pub overspeed_s: f64,
    /// 1st percentile of longitudinal acceleration, m/s².
    pub accel_p01_mps2: f64,
    /// 99th percentile of longitudinal acceleration, m/s².
    pub accel_p99_mps2: f64,
    /// 99th percentile of lateral acceleration, m/s².
    pub lateral_p99_mps2: f64,
    /// Root mean square of longitudinal acceleration, m/s².
    pub accel_rms_mps2: f64,
    /// Coefficient of variation of moving speed.
    pub speed_cv: f64,
}

/// A score and its terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Acceleration sub-score, 0–100.
    pub accel: f64,
    /// Braking sub-score, 0–100.
    pub brake: f64,
    /// Cornering sub-score, 0–100.
    pub corner: f64,
    /// Speed sub-score, 0–100.
    pub speed: f64,
    /// Overall, 0–100.
    pub total: f64,
}

/// Weights of the sub-scores in the total: acceleration, braking, cornering, speed.
pub const WEIGHTS: [f64; 4] = [0.20, 0.35, 0.15, 0.30];

impl StyleInputs {
    /// Events per 100 km.
    fn rate(&self, events: u32) -> f64 {
        f64::from(events) * 100.0 / (self.distance_m / 1000.0).max(MIN_EXPOSURE_KM)
    }

    /// The score under the thresholds `rules`.
    pub fn score(&self, rules: &HarshRules) -> Score {
        let excess = |value: f64, threshold: f64, start: f64| (value / threshold - start).max(0.0);
        let accel = 2.0 * excess(self.accel_p99_mps2, rules.accel_mps2, 0.5)
            + self.rate(self.harsh_accel) / 10.0;
        let brake = 2.0 * excess(-self.accel_p01_mps2, rules.brake_mps2, 0.5)
            + self.rate(self.harsh_brake) / 10.0;
        let corner = 2.0 * excess(self.lateral_p99_mps2, rules.corner_mps2, 0.5)
            + self.rate(self.harsh_corner) / 10.0;
        let overspeed_share = if self.moving_s > 0.0 {
            (self.overspeed_s / self.moving_s).min(1.0)
        } else {
            0.0
        };
        let speed =
            10.0 * overspeed_share + 3.0 * excess(self.accel_rms_mps2, rules.accel_mps2, 0.25);
        let sub = |penalty: f64| 100.0 / (1.0 + penalty);
        let parts = [sub(accel), sub(brake), sub(corner), sub(speed)];
        Score {
            accel: parts[0],
            brake: parts[1],
            corner: parts[2],
            speed: parts[3],
            total: parts.iter().zip(WEIGHTS).map(|(s, w)| s * w).sum(),
        }
    }
}

/// Distance-weighted combination of trips' style inputs and scores.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StyleTotals {
    /// Trips combined.
    pub trips: u32,
    /// Distance, metres.
    pub distance_m: f64,
    /// Time moving, seconds.
    pub moving_s: f64,
    /// Harsh accelerations.
    pub harsh_accel: u32,
    /// Harsh braking events.
    pub harsh_brake: u32,
    /// Harsh cornering events.
    pub harsh_corner: u32,
    /// Time above the speed limit, seconds.
    pub overspeed_s: f64,
    weighted: [f64; 10],
}

impl StyleTotals {
    /// Adds one trip.
    pub fn add(&mut self, inputs: &StyleInputs, score: &Score) {
        self.trips += 1;
        self.distance_m += inputs.distance_m;
        self.moving_s += inputs.moving_s;
        self.harsh_accel += inputs.harsh_accel;
        self.harsh_brake += inputs.harsh_brake;
        self.harsh_corner += inputs.harsh_corner;
        self.overspeed_s += inputs.overspeed_s;
        let w = inputs.distance_m;
        let values = [
            inputs.accel_p01_mps2,
            inputs.accel_p99_mps2,
            inputs.lateral_p99_mps2,
            inputs.accel_rms_mps2,
            inputs.speed_cv,
            score.accel,
            score.brake,
            score.corner,
            score.speed,
            score.total,
        ];
        for (sum, value) in self.weighted.iter_mut().zip(values) {
            *sum += value * w;
        }
    }

    fn mean(&self, index: usize) -> f64 {
        if self.distance_m > 0.0 {
            self.weighted[index] / self.distance_m
        } else {
            0.0
        }
    }

    /// Distance-weighted means of the trips' style inputs.
    pub fn inputs(&self, source: SignalSource) -> StyleInputs {
        StyleInputs {
            source,
            distance_m: self.distance_m,
            moving_s: self.moving_s,
            harsh_accel: self.harsh_accel,
            harsh_brake: self.harsh_brake,
            harsh_corner: self.harsh_corner,
            overspeed_s: self.overspeed_s,
            accel_p01_mps2: self.mean(0),
            accel_p99_mps2: self.mean(1),
            lateral_p99_mps2: self.mean(2),
            accel_rms_mps2: self.mean(3),
            speed_cv: self.mean(4),
        }
    }

    /// Distance-weighted means of the trips' scores; `None` without distance.
    pub fn score(&self) -> Option<Score> {
        (self.distance_m > 0.0).then(|| Score {
            accel: self.mean(5),
            brake: self.mean(6),
            corner: self.mean(7),
            speed: self.mean(8),
            total: self.mean(9),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EventRules;

    fn calm() -> StyleInputs {
        StyleInputs {
            source: SignalSource::Gnss,
            distance_m: 20_000.0,
            moving_s: 1_500.0,
            harsh_accel: 0,
            harsh_brake: 0,
            harsh_corner: 0,
            overspeed_s: 0.0,
            accel_p01_mps2: -1.0,
            accel_p99_mps2: 0.9,
            lateral_p99_mps2: 1.0,
            accel_rms_mps2: 0.4,
            speed_cv: 0.4,
        }
    }

    #[test]
    fn calm_driving_scores_100_and_each_term_costs() {
        let rules = EventRules::default().gnss;
        assert!((calm().score(&rules).total - 100.0).abs() < 1e-9);
        // By hand: p01 −2.7 m/s² at T_brake 2.7 → penalty 2 × 0.5 = 1 → brake 50;
        // total = 0.20 × 100 + 0.35 × 50 + 0.15 × 100 + 0.30 × 100 = 82.5.
        let braking = StyleInputs {
            accel_p01_mps2: -2.7,
            ..calm()
        };
        let score = braking.score(&rules);
        assert!((score.brake - 50.0).abs() < 1e-9);
        assert!((score.total - 82.5).abs() < 1e-9);
        // 2 harsh brakings on 20 km = 10 per 100 km → penalty 1 more → brake 33.3.
        let events = StyleInputs {
            harsh_brake: 2,
            ..braking
        };
        assert!((events.score(&rules).brake - 100.0 / 3.0).abs() < 1e-9);
        // 10 % of moving time speeding → penalty 1 → speed 50.
        let speeding = StyleInputs {
            overspeed_s: 150.0,
            ..calm()
        };
        assert!((speeding.score(&rules).speed - 50.0).abs() < 1e-9);
    }

    #[test]
    fn short_trips_use_a_minimum_exposure() {
        let rules = EventRules::default().gnss;
        let short = StyleInputs {
            distance_m: 500.0,
            harsh_accel: 1,
            ..calm()
        };
        // 1 event over max(0.5, 5) km = 20 per 100 km → penalty 2 → accel 33.3.
        assert!((short.score(&rules).accel - 100.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn totals_weight_trips_by_distance() {
        let rules = EventRules::default().gnss;
        let mut totals = StyleTotals::default();
        let long = calm();
        let short = StyleInputs {
            distance_m: 5_000.0,
            accel_p01_mps2: -2.7,
            ..calm()
        };
        totals.add(&long, &long.score(&rules));
        totals.add(&short, &short.score(&rules));
        let score = totals.score().unwrap();
        assert!((score.total - (100.0 * 20.0 + 82.5 * 5.0) / 25.0).abs() < 1e-9);
        // (−1.0 × 20 + −2.7 × 5) / 25 = −1.34.
        assert!((totals.inputs(SignalSource::Gnss).accel_p01_mps2 - -1.34).abs() < 1e-9);
        assert_eq!(StyleTotals::default().score(), None);
    }
}
