//! The pipeline: cleaned samples in, summaries out. Pure: no I/O, no clock reads.
//!
//! ```
//! use drivetag_agent::config::PipelineConfig;
//! use drivetag_agent::pipeline::{Output, Pipeline};
//! use drivetag_agent::sample::{Fix, Sample};
//!
//! let mut pipeline = Pipeline::new(PipelineConfig::default()).unwrap();
//! // Ten minutes parked with a few metres of drift: no trip.
//! for t in 0..600 {
//!     let drift = (t % 5) as f64 * 1e-5;
//!     pipeline.push(Sample::Fix(Fix::at(1_700_000_000_000 + t * 1000, 48.0 + drift, 11.0)));
//! }
//! pipeline.finish();
//! let trips = pipeline.drain().filter(|o| matches!(o, Output::Trip(_))).count();
//! assert_eq!(trips, 0);
//! ```

use drivetag_shared::wire::{self, SignalSource};
use drivetag_shared::{Cell, CellSize};

use crate::config::{PipelineConfig, SpeedSource};
use crate::sample::{Millis, Sample};
use crate::transforms::clean::{CleanStats, Cleaner};
use crate::transforms::days::{Day, DayBook};
use crate::transforms::local_time::{LocalClock, UnknownZone};
use crate::transforms::places::{PlaceModel, Places, Role};
use crate::transforms::score::{Score, StyleTotals};
use crate::transforms::segment::{Segment, Segmenter};
use crate::transforms::stays::{Stay, StayDetector};
use crate::transforms::trip::{Trip, TripBuilder};

/// A fix the cleaner holds back is released after this much silence, ms.
const HELD_FIX_TIMEOUT_MS: Millis = 10_000;

/// Driving style over one period.
#[derive(Debug, Clone, PartialEq)]
pub struct Style {
    /// First local day of the period.
    pub from_local_day: i32,
    /// Days in the period.
    pub days: u16,
    /// Where acceleration was measured.
    pub source: SignalSource,
    /// The period's trips, combined.
    pub totals: StyleTotals,
}

impl Style {
    /// The distance-weighted score of the period's trips.
    pub fn score(&self) -> Option<Score> {
        self.totals.score()
    }
}

/// What the pipeline produces.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A trip has ended.
    Trip(Box<Trip>),
    /// A local day is over.
    Day(Box<Day>),
    /// A period is over: its places.
    Places(Box<Places>),
    /// A period is over: its driving style.
    Style(Box<Style>),
    /// A stay has ended (not sent: places carry what the server needs).
    Stay(Stay),
}

/// The whole agent pipeline as one state machine.
#[derive(Debug)]
pub struct Pipeline {
    config: PipelineConfig,
    clock: LocalClock,
    cleaner: Cleaner,
    segmenter: Segmenter,
    trip: Option<TripBuilder>,
    stays: StayDetector,
    places: PlaceModel,
    days: DayBook,
    period: Option<(i32, StyleTotals)>,
    segments: Vec<Segment>,
    outputs: Vec<Output>,
    last_signal_ms: Millis,
}

impl Pipeline {
    /// A pipeline under `config`. Fails only for an unknown time zone.
    pub fn new(config: PipelineConfig) -> Result<Self, UnknownZone> {
        Ok(Pipeline {
            clock: LocalClock::new(&config.time_zone)?,
            cleaner: Cleaner::new(),
            segmenter: Segmenter::new(&config.trips),
            trip: None,
            stays: StayDetector::new(&config.places),
            places: PlaceModel::new(config.places.cluster_eps_m),
            days: DayBook::new(),
            period: None,
            segments: Vec::new(),
            outputs: Vec::new(),
            last_signal_ms: Millis::MIN,
            config,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// Applies a new configuration without losing the trip, stay or day under way: thresholds
    /// take effect from the next trip and stay. Fails only for an unknown time zone.
    pub fn reconfigure(&mut self, config: PipelineConfig) -> Result<(), UnknownZone> {
        if config.time_zone != self.config.time_zone {
            self.clock = LocalClock::new(&config.time_zone)?;
        }
        // New thresholds apply in place: the run under way is judged by them from now on, and
        // no trip is cut in two by a configuration arriving in the middle of it.
        self.segmenter.set_rules(&config.trips);
        self.stays.set_rules(&config.places);
        self.config = config;
        Ok(())
    }

    /// What the cleaner dropped so far.
    pub fn clean_stats(&self) -> CleanStats {
        self.cleaner.stats()
    }

    /// Feeds one sample.
    pub fn push(&mut self, sample: Sample) {
        match sample {
            Sample::Fix(fix) => {
                if let Some(fix) = self.cleaner.push(fix) {
                    self.accept(Sample::Fix(fix));
                }
            }
            Sample::Signal(signal) => {
                if signal.t_ms <= self.last_signal_ms {
                    return;
                }
                self.last_signal_ms = signal.t_ms;
                // The cleaner holds one fix back. Other signals may overtake it by that one
                // fix interval, but an ignition off ends the trip after it.
                if signal.ignition == Some(false)
                    && self
                        .cleaner
                        .held_since()
                        .is_some_and(|held| held <= signal.t_ms)
                    && let Some(fix) = self.cleaner.finish()
                {
                    self.accept(Sample::Fix(fix));
                }
                self.accept(Sample::Signal(signal));
            }
        }
    }

    fn accept(&mut self, sample: Sample) {
        let local = self.clock.at(sample.t_ms());
        self.roll_period(local.day);
        match &sample {
            Sample::Fix(fix) => {
                self.days.touch(&local);
                if let Some(stay) = self.stays.push(*fix) {
                    self.stay(stay);
                }
            }
            Sample::Signal(signal) => self.days.add_signal(signal, &local),
        }
        let mut segments = std::mem::take(&mut self.segments);
        self.segmenter
            .push(sample, &mut |segment| segments.push(segment));
        self.segments = segments;
        self.handle_segments();
        if !self.segmenter.trip_open() {
            self.close_days_before(local.day);
        }
    }

    /// Tells the pipeline the time, so a trip whose receiver went silent ends.
    pub fn tick(&mut self, now_ms: Millis) {
        if self
            .cleaner
            .held_since()
            .is_some_and(|held| now_ms - held > HELD_FIX_TIMEOUT_MS)
            && let Some(fix) = self.cleaner.finish()
        {
            self.accept(Sample::Fix(fix));
        }
        let mut segments = std::mem::take(&mut self.segments);
        self.segmenter
            .tick(now_ms, &mut |segment| segments.push(segment));
        self.segments = segments;
        self.handle_segments();
    }

    /// Ends the input: closes the trip, stay, days and period under way.
    pub fn finish(&mut self) {
        if let Some(fix) = self.cleaner.finish() {
            self.accept(Sample::Fix(fix));
        }
        let mut segments = std::mem::take(&mut self.segments);
        self.segmenter
            .end_piece(&mut |segment| segments.push(segment));
        self.segments = segments;
        self.handle_segments();
        if let Some(stay) = self.stays.finish() {
            self.stay(stay);
        }
        let mut outputs = std::mem::take(&mut self.outputs);
        self.days
            .close_all(&mut |day| outputs.push(Output::Day(Box::new(day))));
        self.outputs = outputs;
        self.close_period();
    }

    /// Takes the summaries produced so far.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Output> {
        self.outputs.drain(..)
    }

    fn stay(&mut self, stay: Stay) {
        self.places.add(stay, &mut self.clock);
        self.outputs.push(Output::Stay(stay));
    }

    fn handle_segments(&mut self) {
        for segment in std::mem::take(&mut self.segments) {
            match segment {
                Segment::Trip(sample) => self
                    .trip
                    .get_or_insert_with(|| TripBuilder::new(&self.config))
                    .push(&sample, &mut self.clock),
                Segment::End => {
                    let Some(builder) = self.trip.take() else {
                        continue;
                    };
                    if let Some(trip) = builder.finish(&self.config, &mut self.clock) {
                        let commute = self.places.is_commute(trip.start, trip.end);
                        self.days.add_trip(&trip, commute);
                        let (_, totals) = self
                            .period
                            .get_or_insert((trip.start_local.day, StyleTotals::default()));
                        totals.add(&trip.style, &trip.score);
                        self.outputs.push(Output::Trip(Box::new(trip)));
                    }
                }
            }
        }
    }

    fn close_days_before(&mut self, day: i32) {
        let mut outputs = std::mem::take(&mut self.outputs);
        self.days
            .close_before(day, &mut |day| outputs.push(Output::Day(Box::new(day))));
        self.outputs = outputs;
    }

    /// Starts the first period, or closes the current one once `day` lies past its end and no
    /// trip is under way.
    fn roll_period(&mut self, day: i32) {
        let length = i32::from(self.config.upload.period_days.max(1));
        let Some((first, _)) = self.period else {
            self.period = Some((day, StyleTotals::default()));
            return;
        };
        if day >= first + length && !self.segmenter.trip_open() {
            self.close_period();
            let next = first + (day - first) / length * length;
            self.period = Some((next, StyleTotals::default()));
        }
    }

    fn close_period(&mut self) {
        let Some((first, totals)) = self.period.take() else {
            return;
        };
        let days = self.config.upload.period_days;
        let places = self.places.close_period(&self.config, first, days);
        self.outputs.push(Output::Places(Box::new(places)));
        self.outputs.push(Output::Style(Box::new(Style {
            from_local_day: first,
            days,
            source: match self.config.speed_source {
                SpeedSource::Gnss => SignalSource::Gnss,
                SpeedSource::Vehicle => SignalSource::Imu,
            },
            totals,
        })));
    }
}

/// The coarse cell of a position, as it may leave the car.
fn cell(position: (f64, f64), size: CellSize) -> Cell {
    // Positions reaching here passed validation; a failure would be a bug, not bad input.
    Cell::containing(position.0, position.1, size)
        .or_else(|_| Cell::new(size, 0, 0))
        .expect("cell 0,0 exists at every size")
}

fn sat_u8(value: f64) -> u8 {
    value.round().clamp(0.0, f64::from(u8::MAX)) as u8
}

fn sat_u16(value: f64) -> u16 {
    value.round().clamp(0.0, f64::from(u16::MAX)) as u16
}

fn sat_u32(value: f64) -> u32 {
    value.round().clamp(0.0, f64::from(u32::MAX)) as u32
}

fn sat_i16(value: f64) -> i16 {
    value
        .round()
        .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
}

fn pct(part: f64, whole: f64) -> u8 {
    if whole > 0.0 {
        sat_u8(part / whole * 100.0)
    } else {
        0
    }
}

impl Trip {
    /// The trip as it leaves the car: integers, and coarse cells of `size`.
    pub fn to_wire(&self, size: CellSize) -> wire::TripSummary {
        let moving = self.moving_s;
        let start = self.start_local;
        wire::TripSummary {
            start_s: (self.start_ms.div_euclid(1000)).max(0) as u64,
            start_local_hour_of_week: start.weekday * 24 + start.hour,
            duration_s: sat_u32(self.duration_s()),
            distance_m: sat_u32(self.distance_m),
            moving_s: sat_u32(moving),
            max_speed_cms: sat_u16(self.max_speed_mps * 100.0),
            speed_band_pct: self.speed_band_s.map(|s| pct(s, moving)),
            night_pct: pct(self.night_s, self.duration_s()),
            harsh_accel: sat_u16(f64::from(self.style.harsh_accel)),
            harsh_brake: sat_u16(f64::from(self.style.harsh_brake)),
            harsh_corner: sat_u16(f64::from(self.style.harsh_corner)),
            accel_p01_cms2: sat_i16(self.style.accel_p01_mps2 * 100.0),
            accel_p99_cms2: sat_i16(self.style.accel_p99_mps2 * 100.0),
            lateral_p99_cms2: sat_i16(self.style.lateral_p99_mps2 * 100.0),
            speed_cv_pct: sat_u8(self.style.speed_cv * 100.0),
            overspeed_s: sat_u32(self.overspeed_s),
            score: sat_u8(self.score.total),
            start_cell: cell(self.start, size),
            end_cell: cell(self.end, size),
        }
    }
}

impl Day {
    /// The day as it leaves the car.
    pub fn to_wire(&self) -> wire::DaySummary {
        let style = &self.style;
        wire::DaySummary {
            local_day: self.local_day.max(0) as u32,
            utc_offset_min: self.utc_offset_min,
            distance_m: sat_u32(self.distance_m),
            trips: sat_u16(f64::from(self.trips)),
            long_trips: sat_u16(f64::from(self.long_trips)),
            driving_s: sat_u32(self.driving_s),
            moving_s: sat_u32(self.moving_s),
            night_pct: pct(self.night_s, self.driving_s),
            driving_min_by_local_hour: self
                .driving_s_by_local_hour
                .map(|s| sat_u8((s / 60.0).min(60.0))),
            commute_trips: sat_u16(f64::from(self.commute_trips)),
            max_speed_cms: sat_u16(self.max_speed_mps * 100.0),
            harsh_accel: sat_u16(f64::from(style.harsh_accel)),
            harsh_brake: sat_u16(f64::from(style.harsh_brake)),
            harsh_corner: sat_u16(f64::from(style.harsh_corner)),
            overspeed_s: sat_u32(style.overspeed_s),
            score: self.score().map_or(100, |score| sat_u8(score.total)),
            odometer_m: self.odometer_m.map(sat_u32),
            energy: (self.fuel_used_l.is_some() || self.soc_used_pct.is_some()).then(|| {
                wire::EnergyUse {
                    fuel_ml: sat_u32(self.fuel_used_l.unwrap_or(0.0) * 1000.0),
                    soc_used_permille: sat_u32(self.soc_used_pct.unwrap_or(0.0) * 10.0),
                }
            }),
        }
    }
}

impl Places {
    /// The places as they leave the car: cells of `size`, never positions.
    pub fn to_wire(&self, size: CellSize) -> wire::PlaceSummary {
        wire::PlaceSummary {
            from_local_day: self.from_local_day.max(0) as u32,
            days: self.days,
            places: self
                .places
                .iter()
                .map(|place| wire::Place {
                    cell: cell((place.lat, place.lon), size),
                    role: match place.role {
                        Role::Home => wire::PlaceRole::Home,
                        Role::Work => wire::PlaceRole::Work,
                        Role::Other => wire::PlaceRole::Other,
                    },
                    visits: sat_u16(f64::from(place.visits)),
                    dwell_s: sat_u32(place.dwell_s),
                    dwell_pct_by_local_hour: place.dwell_by_hour_s.map(|s| pct(s, place.dwell_s)),
                })
                .collect(),
            stores: self
                .store_distances_m
                .iter()
                .map(|(id, metres)| wire::StoreDistance {
                    store_id: *id,
                    home_distance_m: sat_u32(*metres),
                })
                .collect(),
            poi_visits: self
                .visits
                .iter()
                .map(|visit| wire::PoiVisit {
                    poi_id: visit.id,
                    kind: visit.kind,
                    visits: sat_u16(f64::from(visit.visits)),
                    dwell_s: sat_u32(visit.dwell_s),
                    last_local_day: visit.last_local_day.max(0) as u32,
                })
                .collect(),
        }
    }
}

impl Style {
    /// The period's style as it leaves the car.
    pub fn to_wire(&self) -> wire::StyleSummary {
        let inputs = self.totals.inputs(self.source);
        let score = self.score().unwrap_or(Score {
            accel: 100.0,
            brake: 100.0,
            corner: 100.0,
            speed: 100.0,
            total: 100.0,
        });
        wire::StyleSummary {
            from_local_day: self.from_local_day.max(0) as u32,
            days: self.days,
            source: self.source,
            trips: sat_u16(f64::from(self.totals.trips)),
            distance_m: sat_u32(inputs.distance_m),
            moving_s: sat_u32(inputs.moving_s),
            harsh_accel: sat_u16(f64::from(inputs.harsh_accel)),
            harsh_brake: sat_u16(f64::from(inputs.harsh_brake)),
            harsh_corner: sat_u16(f64::from(inputs.harsh_corner)),
            overspeed_s: sat_u32(inputs.overspeed_s),
            accel_p01_cms2: sat_i16(inputs.accel_p01_mps2 * 100.0),
            accel_p99_cms2: sat_i16(inputs.accel_p99_mps2 * 100.0),
            lateral_p99_cms2: sat_i16(inputs.lateral_p99_mps2 * 100.0),
            speed_cv_pct: sat_u8(inputs.speed_cv * 100.0),
            accel_score: sat_u8(score.accel),
            brake_score: sat_u8(score.brake),
            corner_score: sat_u8(score.corner),
            speed_score: sat_u8(score.speed),
            score: sat_u8(score.total),
        }
    }
}
