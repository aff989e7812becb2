//! Per-trip features, accumulated one sample at a time.

use std::collections::VecDeque;

use drivetag_shared::wire::SignalSource;

use super::kinematics::{
    Derived, Differentiator, EventRuns, Histogram, MAX_DIFF_INTERVAL_MS, MAX_PLAUSIBLE_ACCEL_MPS2,
    SpeedSample, heading_change_deg,
};
use super::local_time::{LocalClock, LocalTime};
use super::score::{Score, StyleInputs};
use crate::config::{HarshRules, PipelineConfig, SpeedSource};
use crate::sample::{Fix, Millis, Sample, bearing_deg, distance_m};

/// Below this speed a car is standing, m/s (GNSS speed noise at rest stays under it).
pub const MOVING_MPS: f64 = 1.0;
/// The upper bounds of the speed bands, km/h, as on the wire.
pub const SPEED_BANDS_KMH: [f64; 4] = [30.0, 60.0, 90.0, 120.0];
/// Course over ground is trusted from this speed, m/s; below it the receiver's heading wanders.
const COURSE_MIN_MPS: f64 = 2.0;
/// A bearing from positions needs at least this much movement, metres.
const BEARING_MIN_M: f64 = 5.0;
/// Speed and heading at a fix look this many fixes either side.
const WINDOW_HALF: usize = 2;

/// One finished trip, in full precision. Exact positions stay in the car: only
/// [`crate::pipeline`] turns this into the coarse wire summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Trip {
    /// Departure, UTC ms.
    pub start_ms: Millis,
    /// Arrival, UTC ms.
    pub end_ms: Millis,
    /// Departure in local time.
    pub start_local: LocalTime,
    /// Where the trip started, degrees.
    pub start: (f64, f64),
    /// Where the trip ended, degrees.
    pub end: (f64, f64),
    /// Length of the track, metres.
    pub distance_m: f64,
    /// Time moving, seconds.
    pub moving_s: f64,
    /// Highest smoothed speed, m/s.
    pub max_speed_mps: f64,
    /// Moving time in each speed band (below 30, 30–60, 60–90, 90–120, from 120 km/h), seconds.
    pub speed_band_s: [f64; 5],
    /// Time between 22 h and 6 h local, seconds.
    pub night_s: f64,
    /// Driving time per local hour of the day, seconds.
    pub driving_s_by_local_hour: [f64; 24],
    /// Time above the speed limit, seconds.
    pub overspeed_s: f64,
    /// The driving-style inputs and score.
    pub style: StyleInputs,
    /// The score computed from `style`.
    pub score: Score,
    /// GPS fixes in the trip.
    pub fixes: u32,
    /// Vehicle odometer at the end, metres, when known.
    pub odometer_end_m: Option<f64>,
}

impl Trip {
    /// Arrival minus departure, seconds.
    pub fn duration_s(&self) -> f64 {
        (self.end_ms - self.start_ms) as f64 / 1000.0
    }

    /// Distance from where the trip started to where it ended, metres.
    pub fn net_displacement_m(&self) -> f64 {
        crate::sample::distance_deg_m(self.start, self.end)
    }
}

/// Accumulates one trip.
#[derive(Debug, Clone)]
pub struct TripBuilder {
    rules: HarshRules,
    speed_source: SpeedSource,
    speed_limit_mps: f64,
    first: Option<Fix>,
    last: Option<Fix>,
    /// The last fixes, for speed and lateral acceleration at the fix in the middle.
    window: VecDeque<Fix>,
    /// How many fixes at the front of `window` have been processed.
    window_done: usize,
    distance_m: f64,
    reach_m: f64,
    fixes: u32,
    last_signal_ms: Millis,
    odometer_end_m: Option<f64>,
    speed: Differentiator,
    previous_speed: Option<SpeedSample>,
    moving_s: f64,
    max_speed_mps: f64,
    speed_band_s: [f64; 5],
    night_s: f64,
    hours_s: [f64; 24],
    overspeed_s: f64,
    speed_sum: f64,
    speed_sq_sum: f64,
    speed_weight: f64,
    accel_sq_sum: f64,
    accel_count: u64,
    longitudinal: Histogram,
    lateral: Histogram,
    harsh_accel: EventRuns,
    harsh_brake: EventRuns,
    harsh_corner: EventRuns,
}

impl TripBuilder {
    /// Starts a trip under `config`.
    pub fn new(config: &PipelineConfig) -> Self {
        let rules = config.harsh().clone();
        let min_ms = (rules.min_duration_s * 1000.0).round() as Millis;
        TripBuilder {
            speed_source: config.speed_source,
            speed_limit_mps: config.trips.speed_limit_kmh / 3.6,
            rules,
            first: None,
            last: None,
            window: VecDeque::with_capacity(2 * WINDOW_HALF + 2),
            window_done: 0,
            distance_m: 0.0,
            reach_m: 0.0,
            fixes: 0,
            last_signal_ms: Millis::MIN,
            odometer_end_m: None,
            speed: Differentiator::default(),
            previous_speed: None,
            moving_s: 0.0,
            max_speed_mps: 0.0,
            speed_band_s: [0.0; 5],
            night_s: 0.0,
            hours_s: [0.0; 24],
            overspeed_s: 0.0,
            speed_sum: 0.0,
            speed_sq_sum: 0.0,
            speed_weight: 0.0,
            accel_sq_sum: 0.0,
            accel_count: 0,
            longitudinal: Histogram::new(-15.0, 15.0, 0.05),
            lateral: Histogram::new(0.0, 15.0, 0.05),
            harsh_accel: EventRuns::new(min_ms),
            harsh_brake: EventRuns::new(min_ms),
            harsh_corner: EventRuns::new(min_ms),
        }
    }

    /// Adds the next sample of the trip, in time order.
    pub fn push(&mut self, sample: &Sample, clock: &mut LocalClock) {
        match sample {
            Sample::Fix(fix) => self.fix(fix, clock),
            Sample::Signal(signal) => {
                if let Some(odometer) = signal.odometer_m {
                    self.odometer_end_m = Some(odometer);
                }
                if self.speed_source == SpeedSource::Vehicle
                    && signal.t_ms > self.last_signal_ms
                    && let Some(speed) = signal.speed_mps
                {
                    self.last_signal_ms = signal.t_ms;
                    self.speed_sample(
                        SpeedSample {
                            t_ms: signal.t_ms,
                            speed_mps: f64::from(speed),
                        },
                        clock,
                    );
                }
            }
        }
    }

    fn fix(&mut self, fix: &Fix, clock: &mut LocalClock) {
        if let Some(last) = self.last {
            if fix.t_ms <= last.t_ms {
                return;
            }
            self.distance_m += distance_m(&last, fix);
        }
        let first = *self.first.get_or_insert(*fix);
        self.reach_m = self.reach_m.max(distance_m(&first, fix));
        self.fixes += 1;
        self.last = Some(*fix);
        self.window.push_back(*fix);
        while self.window_done + WINDOW_HALF < self.window.len() {
            self.centre(self.window_done, clock);
            self.window_done += 1;
        }
        if self.window.len() > 2 * WINDOW_HALF + 1 {
            self.window.pop_front();
            self.window_done -= 1;
        }
    }

    /// Speed and lateral acceleration at the fix `index` of the window, from its neighbours.
    ///
    /// Without a reported speed, speed is the chord from the fix two before to the fix two
    /// after over their time apart: receivers that freeze for a second and then catch up make
    /// neighbour-to-neighbour speeds swing between 0 and twice the truth.
    fn centre(&mut self, index: usize, clock: &mut LocalClock) {
        let at = self.window[index];
        let before = self.window[index.saturating_sub(WINDOW_HALF)];
        let after = self.window[(index + WINDOW_HALF).min(self.window.len() - 1)];
        let speed = match at.speed_mps {
            Some(speed) => Some(f64::from(speed)),
            None if after.t_ms > before.t_ms
                && after.t_ms - before.t_ms <= 2 * WINDOW_HALF as Millis * MAX_DIFF_INTERVAL_MS =>
            {
                Some(distance_m(&before, &after) / ((after.t_ms - before.t_ms) as f64 / 1000.0))
            }
            None => None,
        };
        if let Some(speed) = speed {
            if index >= WINDOW_HALF && index + WINDOW_HALF < self.window.len() {
                self.lateral(index, speed);
            }
            if self.speed_source == SpeedSource::Gnss {
                self.speed_sample(
                    SpeedSample {
                        t_ms: at.t_ms,
                        speed_mps: speed,
                    },
                    clock,
                );
            }
        }
    }

    /// Lateral acceleration = speed × rate of turn at the fix `index`, which has two fixes on
    /// either side in the window.
    ///
    /// The heading at a fix is the receiver's course over ground when it reports one at speed;
    /// otherwise the bearing from the fix before to the fix after, which halves the effect of
    /// position noise against a bearing between neighbours. The rate of turn is the change of
    /// heading between the fix's neighbours.
    fn lateral(&mut self, index: usize, speed: f64) {
        let w = &self.window;
        let (f0, f1, f2, f3, f4) = (
            w[index - 2],
            w[index - 1],
            w[index],
            w[index + 1],
            w[index + 2],
        );
        if f4.t_ms - f0.t_ms > 4 * MAX_DIFF_INTERVAL_MS
            || speed * 3.6 < self.rules.corner_min_speed_kmh
        {
            return;
        }
        let heading = |before: &Fix, at: &Fix, after: &Fix| match at.course_deg {
            Some(course) if at.speed_mps.is_some_and(|v| f64::from(v) >= COURSE_MIN_MPS) => {
                Some(f64::from(course))
            }
            _ => (distance_m(before, after) >= BEARING_MIN_M).then(|| bearing_deg(before, after)),
        };
        let (Some(h1), Some(h3)) = (heading(&f0, &f1, &f2), heading(&f2, &f3, &f4)) else {
            return;
        };
        let dt = (f3.t_ms - f1.t_ms) as f64 / 1000.0;
        let lateral = (speed * heading_change_deg(h1, h3).to_radians() / dt).abs();
        if lateral > MAX_PLAUSIBLE_ACCEL_MPS2 {
            return;
        }
        self.lateral.add(lateral);
        if lateral >= self.rules.corner_mps2 {
            self.harsh_corner.over(f2.t_ms, (f3.t_ms - f1.t_ms) / 2);
        }
    }

    fn speed_sample(&mut self, sample: SpeedSample, clock: &mut LocalClock) {
        if let Some(derived) = self.speed.push(sample) {
            self.derived(derived, clock);
        }
    }

    fn derived(&mut self, derived: Derived, clock: &mut LocalClock) {
        let sample = derived.sample;
        self.max_speed_mps = self.max_speed_mps.max(sample.speed_mps);
        if let Some(previous) = self.previous_speed {
            let dt_s = (sample.t_ms - previous.t_ms) as f64 / 1000.0;
            let speed = (sample.speed_mps + previous.speed_mps) / 2.0;
            let local = clock.at(previous.t_ms);
            self.hours_s[usize::from(local.hour)] += dt_s;
            if local.is_night() {
                self.night_s += dt_s;
            }
            if speed >= MOVING_MPS {
                self.moving_s += dt_s;
                let kmh = speed * 3.6;
                let band = SPEED_BANDS_KMH.iter().take_while(|b| kmh >= **b).count();
                self.speed_band_s[band] += dt_s;
                self.speed_sum += speed * dt_s;
                self.speed_sq_sum += speed * speed * dt_s;
                self.speed_weight += dt_s;
            }
            if speed > self.speed_limit_mps {
                self.overspeed_s += dt_s;
            }
        }
        self.previous_speed = Some(sample);
        let Some(accel) = derived
            .accel_mps2
            .filter(|accel| accel.abs() <= MAX_PLAUSIBLE_ACCEL_MPS2)
        else {
            return;
        };
        if sample.speed_mps * 3.6 < self.rules.min_speed_kmh {
            return;
        }
        self.longitudinal.add(accel);
        self.accel_sq_sum += accel * accel;
        self.accel_count += 1;
        if accel >= self.rules.accel_mps2 {
            self.harsh_accel.over(sample.t_ms, derived.support_ms);
        }
        if -accel >= self.rules.brake_mps2 {
            self.harsh_brake.over(sample.t_ms, derived.support_ms);
        }
    }

    /// Whether any fix has arrived.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// Finishes the trip. `None` if it is shorter than the configured minimums, or GPS noise
    /// around a parked car (it ends near its start and never gets far from it).
    pub fn finish(mut self, config: &PipelineConfig, clock: &mut LocalClock) -> Option<Trip> {
        while self.window_done < self.window.len() {
            self.centre(self.window_done, clock);
            self.window_done += 1;
        }
        for derived in self.speed.finish() {
            self.derived(derived, clock);
        }
        let (first, last) = (self.first?, self.last?);
        let rules = &config.trips;
        let duration_s = (last.t_ms - first.t_ms) as f64 / 1000.0;
        if self.distance_m < rules.min_distance_m || duration_s < rules.min_duration_s {
            return None;
        }
        let net_m = distance_m(&first, &last);
        if net_m < rules.min_distance_m && self.reach_m < rules.noise_reach_m {
            return None;
        }
        let mean = (self.speed_weight > 0.0).then(|| self.speed_sum / self.speed_weight);
        let speed_cv = mean.filter(|mean| *mean > 0.0).map_or(0.0, |mean| {
            let variance = (self.speed_sq_sum / self.speed_weight - mean * mean).max(0.0);
            variance.sqrt() / mean
        });
        let style = StyleInputs {
            source: match self.speed_source {
                SpeedSource::Gnss => SignalSource::Gnss,
                SpeedSource::Vehicle => SignalSource::Imu,
            },
            distance_m: self.distance_m,
            moving_s: self.moving_s,
            harsh_accel: self.harsh_accel.finish(),
            harsh_brake: self.harsh_brake.finish(),
            harsh_corner: self.harsh_corner.finish(),
            overspeed_s: self.overspeed_s,
            accel_p01_mps2: self.longitudinal.percentile(0.01).unwrap_or(0.0),
            accel_p99_mps2: self.longitudinal.percentile(0.99).unwrap_or(0.0),
            lateral_p99_mps2: self.lateral.percentile(0.99).unwrap_or(0.0),
            accel_rms_mps2: if self.accel_count > 0 {
                (self.accel_sq_sum / self.accel_count as f64).sqrt()
            } else {
                0.0
            },
            speed_cv,
        };
        let score = style.score(config.harsh());
        Some(Trip {
            start_ms: first.t_ms,
            end_ms: last.t_ms,
            start_local: clock.at(first.t_ms),
            start: (first.lat, first.lon),
            end: (last.lat, last.lon),
            distance_m: self.distance_m,
            moving_s: self.moving_s,
            max_speed_mps: self.max_speed_mps,
            speed_band_s: self.speed_band_s,
            night_s: self.night_s,
            driving_s_by_local_hour: self.hours_s,
            overspeed_s: self.overspeed_s,
            style,
            score,
            fixes: self.fixes,
            odometer_end_m: self.odometer_end_m,
        })
    }
}
