//! Trip segmentation: where a trip starts and ends.
//!
//! The rule is the drivetag reference rule of `../shared/data/README.md`, applied as a stream:
//!
//! 1. A data gap longer than `max_gap_s`, an ignition off, or the end of the input ends a
//!    *piece*; nothing joins two pieces.
//! 2. Within a piece, a *stop* is a run of fixes that stay within `stop_radius_m` of the run's
//!    first fix (the anchor) for at least `stop_dwell_s`. When a fix leaves the radius, the
//!    next run starts at it.
//! 3. A trip is a maximal run of fixes in no stop, extended by the last fix of the stop before
//!    it and the first fix of the stop after it (departure to arrival).
//!
//! Parked GPS drift stays inside the radius, so it never becomes a trip. Samples wait in a
//! buffer until their run is decided, which holds at most `stop_dwell_s` of input.

use std::collections::VecDeque;

use super::at_least_m;
use crate::config::TripRules;
use crate::sample::{Fix, Millis, Sample};

/// What the segmenter says about the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// This sample belongs to the current trip (the first one opens a trip).
    Trip(Sample),
    /// The current trip has ended.
    End,
}

/// The segmentation state machine.
#[derive(Debug, Clone)]
pub struct Segmenter {
    radius_m: f64,
    dwell_ms: Millis,
    max_gap_ms: Millis,
    anchor: Option<Fix>,
    /// Cosine of the anchor's latitude, for [`super::at_least_m`].
    anchor_cos_lat: f64,
    last_fix: Option<Fix>,
    pending: VecDeque<Sample>,
    in_stop: bool,
    trip_open: bool,
}

impl Segmenter {
    /// A segmenter under `rules`.
    pub fn new(rules: &TripRules) -> Self {
        Segmenter {
            radius_m: rules.stop_radius_m,
            dwell_ms: (rules.stop_dwell_s * 1000.0) as Millis,
            max_gap_ms: (rules.max_gap_s * 1000.0) as Millis,
            anchor: None,
            anchor_cos_lat: 1.0,
            last_fix: None,
            pending: VecDeque::new(),
            in_stop: false,
            trip_open: false,
        }
    }

    /// Takes new thresholds without forgetting the run under way.
    pub fn set_rules(&mut self, rules: &TripRules) {
        let fresh = Segmenter::new(rules);
        self.radius_m = fresh.radius_m;
        self.dwell_ms = fresh.dwell_ms;
        self.max_gap_ms = fresh.max_gap_ms;
    }

    /// Whether a trip is under way.
    pub fn trip_open(&self) -> bool {
        self.trip_open
    }

    /// Feeds one cleaned sample.
    pub fn push(&mut self, sample: Sample, out: &mut impl FnMut(Segment)) {
        match sample {
            Sample::Fix(fix) => self.fix(fix, out),
            Sample::Signal(signal) => {
                if signal.ignition == Some(false) {
                    self.end_piece(out);
                } else if !self.in_stop && self.anchor.is_some() {
                    self.pending.push_back(sample);
                } else if self.trip_open {
                    out(Segment::Trip(sample));
                }
            }
        }
    }

    fn fix(&mut self, fix: Fix, out: &mut impl FnMut(Segment)) {
        if self
            .last_fix
            .is_some_and(|last| fix.t_ms - last.t_ms > self.max_gap_ms)
        {
            self.end_piece(out);
        }
        let Some(anchor) = self.anchor else {
            self.set_anchor(fix);
            self.pending.push_back(Sample::Fix(fix));
            self.last_fix = Some(fix);
            return;
        };
        if at_least_m(&anchor, self.anchor_cos_lat, &fix, self.radius_m) {
            if self.in_stop {
                // The stop ended at the last fix, which is where the next trip departs.
                if let Some(last) = self.last_fix {
                    out(Segment::Trip(Sample::Fix(last)));
                }
                self.in_stop = false;
            } else {
                self.flush(out);
            }
            self.trip_open = true;
            self.set_anchor(fix);
            self.pending.clear();
            self.pending.push_back(Sample::Fix(fix));
        } else if !self.in_stop {
            self.pending.push_back(Sample::Fix(fix));
            if fix.t_ms - anchor.t_ms >= self.dwell_ms {
                // This run is a stop, however it ends: the trip arrived at the anchor.
                self.in_stop = true;
                if self.trip_open {
                    // The run's samples start with its anchor.
                    if let Some(anchor) = self.pending.pop_front() {
                        out(Segment::Trip(anchor));
                    }
                    out(Segment::End);
                    self.trip_open = false;
                }
                self.pending.clear();
            }
        }
        self.last_fix = Some(fix);
    }

    fn set_anchor(&mut self, fix: Fix) {
        self.anchor = Some(fix);
        self.anchor_cos_lat = fix.lat.to_radians().cos();
    }

    /// Hands every undecided sample to the trip.
    fn flush(&mut self, out: &mut impl FnMut(Segment)) {
        for sample in self.pending.drain(..) {
            out(Segment::Trip(sample));
        }
        self.trip_open = true;
    }

    /// Ends the piece: the open run is a stop if it lasted, otherwise part of the trip.
    pub fn end_piece(&mut self, out: &mut impl FnMut(Segment)) {
        if self.anchor.is_some() && !self.in_stop {
            self.flush(out);
        }
        if self.trip_open {
            out(Segment::End);
        }
        self.anchor = None;
        self.last_fix = None;
        self.pending.clear();
        self.in_stop = false;
        self.trip_open = false;
    }

    /// Ends the piece if nothing has arrived for longer than the gap limit: a receiver that
    /// died must not keep a trip open (traccar/traccar#4301).
    pub fn tick(&mut self, now_ms: Millis, out: &mut impl FnMut(Segment)) {
        if self
            .last_fix
            .is_some_and(|last| now_ms - last.t_ms > self.max_gap_ms)
        {
            self.end_piece(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Signal;

    /// A fix `metres` east of 48°N 11°E at `t_s` seconds.
    fn east(t_s: i64, metres: f64) -> Sample {
        Sample::Fix(Fix::at(t_s * 1000, 48.0, 11.0 + metres / 74_403.0))
    }

    /// The trips as (first fix time, last fix time), in seconds.
    fn trips(samples: &[Sample]) -> Vec<(i64, i64)> {
        let mut segmenter = Segmenter::new(&TripRules::default());
        let mut trips = Vec::new();
        let mut current: Option<(i64, i64)> = None;
        let mut record = |segment: Segment| match segment {
            Segment::Trip(Sample::Fix(fix)) => {
                let t = fix.t_ms / 1000;
                let trip = current.get_or_insert((t, t));
                assert!(t >= trip.1, "samples must come in order");
                trip.1 = t;
            }
            Segment::Trip(_) => {}
            Segment::End => trips.extend(current.take()),
        };
        for sample in samples {
            segmenter.push(*sample, &mut record);
        }
        segmenter.end_piece(&mut record);
        trips
    }

    /// Parked for `from..to` seconds with a few metres of drift.
    fn parked(from: i64, to: i64, at_m: f64) -> Vec<Sample> {
        (from..to)
            .map(|t| east(t, at_m + ((t * 7919) % 23) as f64 - 11.0))
            .collect()
    }

    /// Driving at 10 m/s from `from` to `to` seconds, starting at `at_m`.
    fn drive(from: i64, to: i64, at_m: f64) -> Vec<Sample> {
        (from..to)
            .map(|t| east(t, at_m + (t - from) as f64 * 10.0))
            .collect()
    }

    #[test]
    fn parked_drift_is_not_a_trip() {
        assert_eq!(trips(&parked(0, 3_600, 0.0)), []);
    }

    #[test]
    fn a_drive_between_two_stops_runs_from_departure_to_arrival() {
        let mut samples = parked(0, 600, 0.0);
        samples.extend(drive(600, 1_200, 0.0));
        samples.extend(parked(1_200, 1_800, 6_000.0));
        let found = trips(&samples);
        assert_eq!(found.len(), 1);
        let (start, end) = found[0];
        // Departure: the last fix of the first stop (its anchor is at 0 s, radius 150 m).
        assert!((599..=615).contains(&start), "departed at {start}");
        // Arrival: the anchor of the second stop.
        assert!((1_195..=1_215).contains(&end), "arrived at {end}");
    }

    #[test]
    fn a_gap_splits_two_trips_that_would_otherwise_join() {
        let mut samples = drive(0, 600, 0.0);
        // Nine hours without data, then driving on from the same place.
        samples.extend(drive(600 + 9 * 3_600, 600 + 9 * 3_600 + 600, 6_000.0));
        assert_eq!(trips(&samples).len(), 2);
    }

    #[test]
    fn ignition_off_ends_a_trip() {
        let mut samples = drive(0, 300, 0.0);
        samples.push(Sample::Signal(Signal {
            t_ms: 300_000,
            ignition: Some(false),
            ..Signal::default()
        }));
        samples.extend(drive(301, 600, 3_000.0));
        assert_eq!(trips(&samples), [(0, 299), (301, 599)]);
    }

    #[test]
    fn a_traffic_light_does_not_end_a_trip() {
        let mut samples = drive(0, 300, 0.0);
        samples.extend(parked(300, 390, 3_000.0));
        samples.extend(drive(390, 700, 3_000.0));
        assert_eq!(trips(&samples).len(), 1);
    }

    #[test]
    fn tick_closes_a_trip_whose_receiver_died() {
        let mut segmenter = Segmenter::new(&TripRules::default());
        let mut ends = 0;
        for sample in drive(0, 300, 0.0) {
            segmenter.push(sample, &mut |s| ends += usize::from(s == Segment::End));
        }
        segmenter.tick(400_000, &mut |s| ends += usize::from(s == Segment::End));
        assert_eq!(ends, 0);
        segmenter.tick(700_000, &mut |s| ends += usize::from(s == Segment::End));
        assert_eq!(ends, 1);
        assert!(!segmenter.trip_open());
    }
}
