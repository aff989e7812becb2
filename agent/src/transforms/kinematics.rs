//! From a speed series to accelerations, harsh events and their distribution.
//!
//! Speed is smoothed with a three-point median (it removes single-sample spikes without
//! blunting real steps), then differentiated with a central difference, which averages two
//! adjacent slopes. At 1 Hz GNSS this sees sustained braking, not the peak an IMU would;
//! hence separate thresholds per source, and percentiles, which survive that smoothing better
//! than event counts do.

use crate::sample::Millis;

/// Differences across intervals longer than this (ms) are not accelerations but gaps.
pub const MAX_DIFF_INTERVAL_MS: Millis = 5_000;
/// No car accelerates or brakes harder than about 1 g, where tyres lose grip; a larger value
/// is receiver noise and is left out of events and percentiles, m/s².
pub const MAX_PLAUSIBLE_ACCEL_MPS2: f64 = 10.0;
/// Runs over a threshold closer than this (ms) are one event (an older telematics SDK merges
/// events across gaps up to 3 s).
pub const MERGE_GAP_MS: Millis = 3_000;

/// A fixed-bin histogram, for percentiles in constant memory.
#[derive(Debug, Clone)]
pub struct Histogram {
    low: f64,
    bin: f64,
    counts: Vec<u32>,
    total: u64,
}

impl Histogram {
    /// Bins of `bin` from `low` to `high`; values outside land in the end bins.
    pub fn new(low: f64, high: f64, bin: f64) -> Self {
        let bins = ((high - low) / bin).ceil().max(1.0) as usize;
        Histogram {
            low,
            bin,
            counts: vec![0; bins],
            total: 0,
        }
    }

    /// Counts one value.
    pub fn add(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        let last = self.counts.len() - 1;
        let index = ((value - self.low) / self.bin)
            .floor()
            .clamp(0.0, last as f64) as usize;
        self.counts[index] += 1;
        self.total += 1;
    }

    /// Values counted.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The value below which a share `p` (0–1) of the values lie, as the centre of its bin;
    /// `None` when empty.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((p.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (index, count) in self.counts.iter().enumerate() {
            seen += u64::from(*count);
            if seen >= rank {
                return Some(self.low + (index as f64 + 0.5) * self.bin);
            }
        }
        Some(self.low + (self.counts.len() as f64 - 0.5) * self.bin)
    }
}

/// Counts runs of samples over a threshold that last long enough.
#[derive(Debug, Clone)]
pub struct EventRuns {
    min_duration_ms: Millis,
    run: Option<(Millis, Millis)>,
    run_support_ms: Millis,
    events: u32,
}

impl EventRuns {
    /// Runs must last at least `min_duration_ms`.
    pub fn new(min_duration_ms: Millis) -> Self {
        EventRuns {
            min_duration_ms,
            run: None,
            run_support_ms: 0,
            events: 0,
        }
    }

    /// A sample at `t_ms` over the threshold, standing for `support_ms` of time.
    pub fn over(&mut self, t_ms: Millis, support_ms: Millis) {
        match &mut self.run {
            Some((_, last)) if t_ms - *last <= MERGE_GAP_MS => {
                *last = t_ms;
                self.run_support_ms += support_ms;
            }
            _ => {
                self.close();
                self.run = Some((t_ms, t_ms));
                self.run_support_ms = support_ms;
            }
        }
    }

    fn close(&mut self) {
        if self.run.take().is_some() && self.run_support_ms >= self.min_duration_ms {
            self.events += 1;
        }
        self.run_support_ms = 0;
    }

    /// Closes the open run and returns the events counted.
    pub fn finish(&mut self) -> u32 {
        self.close();
        self.events
    }
}

/// One sample of a speed series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeedSample {
    /// When.
    pub t_ms: Millis,
    /// Speed, m/s.
    pub speed_mps: f64,
}

/// Smoothing and differentiation of a speed series: a running median of three (it removes
/// single-sample spikes without blunting real steps), then a Hanning filter (¼, ½, ¼; it
/// damps the sample-to-sample jitter of Doppler speed), then a central difference.
///
/// Feed raw samples with [`Differentiator::push`]; it yields, three samples late, the smoothed
/// speed at each sample and, where both neighbouring intervals are short enough, the
/// acceleration there.
#[derive(Debug, Clone, Default)]
pub struct Differentiator {
    raw: [Option<SpeedSample>; 3],
    median: [Option<SpeedSample>; 3],
    smooth: [Option<SpeedSample>; 3],
}

/// What the differentiator says about one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Derived {
    /// The smoothed sample.
    pub sample: SpeedSample,
    /// Longitudinal acceleration there, m/s², when defined.
    pub accel_mps2: Option<f64>,
    /// Time this sample stands for: half of each neighbouring interval, ms.
    pub support_ms: Millis,
}

/// One three-point stage: shifts `sample` in and returns the filtered middle, if any. At the
/// ends of a series, and across gaps, the middle passes unfiltered.
fn stage(
    window: &mut [Option<SpeedSample>; 3],
    sample: Option<SpeedSample>,
    filter: fn(f64, f64, f64) -> f64,
) -> Option<SpeedSample> {
    *window = [window[1], window[2], sample];
    match *window {
        [Some(a), Some(b), Some(c)]
            if b.t_ms - a.t_ms <= MAX_DIFF_INTERVAL_MS
                && c.t_ms - b.t_ms <= MAX_DIFF_INTERVAL_MS =>
        {
            Some(SpeedSample {
                t_ms: b.t_ms,
                speed_mps: filter(a.speed_mps, b.speed_mps, c.speed_mps),
            })
        }
        [_, Some(b), _] => Some(b),
        _ => None,
    }
}

fn hanning(a: f64, b: f64, c: f64) -> f64 {
    0.25 * a + 0.5 * b + 0.25 * c
}

impl Differentiator {
    /// Pushes a raw sample and returns the derived value of the sample three places back.
    pub fn push(&mut self, sample: SpeedSample) -> Option<Derived> {
        self.step(Some(sample))
    }

    fn step(&mut self, sample: Option<SpeedSample>) -> Option<Derived> {
        let median = stage(&mut self.raw, sample, median3);
        let smooth = stage(&mut self.median, median, hanning);
        self.differentiate(smooth)
    }

    /// Flushes the last samples at the end of a series.
    pub fn finish(&mut self) -> Vec<Derived> {
        // Three empty steps push every held sample through all three stages.
        let out = (0..4).filter_map(|_| self.step(None)).collect();
        *self = Differentiator::default();
        out
    }

    fn differentiate(&mut self, sample: Option<SpeedSample>) -> Option<Derived> {
        self.smooth = [self.smooth[1], self.smooth[2], sample];
        let [before, Some(at), after] = self.smooth else {
            return None;
        };
        let left = before.map(|b| at.t_ms - b.t_ms);
        let right = after.map(|a| a.t_ms - at.t_ms);
        let accel = match (before, after, left, right) {
            (Some(b), Some(a), Some(l), Some(r))
                if l <= MAX_DIFF_INTERVAL_MS && r <= MAX_DIFF_INTERVAL_MS =>
            {
                Some((a.speed_mps - b.speed_mps) / ((l + r) as f64 / 1000.0))
            }
            _ => None,
        };
        let half = |interval: Option<Millis>| interval.map_or(0, |i| i.min(MAX_DIFF_INTERVAL_MS));
        Some(Derived {
            sample: at,
            accel_mps2: accel,
            support_ms: (half(left) + half(right)) / 2,
        })
    }
}

fn median3(a: f64, b: f64, c: f64) -> f64 {
    a.max(b).min(a.min(b).max(c))
}

/// The smallest signed difference from heading `a` to heading `b`, degrees in (−180, 180].
pub fn heading_change_deg(a: f64, b: f64) -> f64 {
    let d = (b - a).rem_euclid(360.0);
    if d > 180.0 { d - 360.0 } else { d }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(speeds: &[f64]) -> Vec<Derived> {
        let mut diff = Differentiator::default();
        let mut out: Vec<Derived> = speeds
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                diff.push(SpeedSample {
                    t_ms: i as Millis * 1000,
                    speed_mps: *v,
                })
            })
            .collect();
        out.extend(diff.finish());
        out
    }

    #[test]
    fn every_sample_comes_out_once_in_order() {
        let out = series(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let times: Vec<Millis> = out.iter().map(|d| d.sample.t_ms).collect();
        assert_eq!(times, [0, 1000, 2000, 3000, 4000, 5000]);
        let support: Millis = out.iter().map(|d| d.support_ms).sum();
        assert_eq!(support, 5000);
    }

    #[test]
    fn a_steady_ramp_has_its_slope() {
        let out = series(&[10.0, 12.0, 14.0, 16.0, 18.0, 20.0]);
        let accels: Vec<f64> = out.iter().filter_map(|d| d.accel_mps2).collect();
        assert_eq!(accels.len(), 4);
        for a in accels {
            assert!((a - 2.0).abs() < 1e-9, "{a}");
        }
    }

    #[test]
    fn a_single_spike_is_smoothed_away() {
        let out = series(&[20.0, 20.0, 20.0, 35.0, 20.0, 20.0, 20.0]);
        assert!(out.iter().all(|d| (d.sample.speed_mps - 20.0).abs() < 1e-9));
        assert!(
            out.iter()
                .filter_map(|d| d.accel_mps2)
                .all(|a| a.abs() < 1e-9)
        );
    }

    #[test]
    fn no_acceleration_across_a_gap() {
        let mut diff = Differentiator::default();
        let mut out = Vec::new();
        for (t, v) in [
            (0, 10.0),
            (1, 11.0),
            (2, 12.0),
            (60, 0.0),
            (61, 0.0),
            (62, 0.0),
        ] {
            out.extend(diff.push(SpeedSample {
                t_ms: t * 1000,
                speed_mps: v,
            }));
        }
        out.extend(diff.finish());
        let around_gap: Vec<_> = out
            .iter()
            .filter(|d| [2000, 60_000].contains(&d.sample.t_ms))
            .collect();
        assert!(around_gap.iter().all(|d| d.accel_mps2.is_none()));
    }

    #[test]
    fn runs_count_when_long_enough_and_merge_across_short_gaps() {
        let mut runs = EventRuns::new(1000);
        runs.over(0, 500); // alone: 500 ms, too short
        runs.over(10_000, 1000); // 1 s: an event
        runs.over(20_000, 1000);
        runs.over(22_000, 1000); // 2 s later: same event
        assert_eq!(runs.finish(), 2);
    }

    #[test]
    fn percentiles_from_bins() {
        let mut histogram = Histogram::new(-15.0, 15.0, 0.05);
        for i in 0..100 {
            histogram.add(f64::from(i) / 10.0 - 5.0); // -5.0 .. 4.9
        }
        let p01 = histogram.percentile(0.01).unwrap();
        let p99 = histogram.percentile(0.99).unwrap();
        assert!((p01 - -4.975).abs() < 1e-9, "{p01}");
        assert!((p99 - 4.825).abs() < 1e-9, "{p99}");
        histogram.add(100.0);
        assert!(histogram.percentile(1.0).unwrap() < 15.0);
        assert_eq!(Histogram::new(0.0, 1.0, 0.1).percentile(0.5), None);
    }

    #[test]
    fn headings_wrap() {
        assert_eq!(heading_change_deg(350.0, 10.0), 20.0);
        assert_eq!(heading_change_deg(10.0, 350.0), -20.0);
        assert_eq!(heading_change_deg(0.0, 180.0), 180.0);
    }
}
