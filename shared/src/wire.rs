//! Every message the agent and the server exchange.
//!
//! Units are SI and written in every field name (`_m`, `_s`, `_cms` for cm/s, `_cms2` for
//! cm/s²). Times are UTC seconds since the Unix epoch unless the name says `local`; local
//! fields use the agent's configured time zone. Nothing here is a float, so every value
//! survives an encode/decode round trip bit for bit.
//!
//! **Privacy invariant:** no uplink type can hold a raw position. Places travel as [`Cell`]s
//! whose size the server chooses in [`AgentConfig::precision`].
//!
//! **Compatibility:** postcard is not self-describing, so the layout of every type here is
//! frozen for a major version. A minor version may only append variants to an enum; anything
//! else needs a new major version (see [`crate::codec`]).

use serde::{Deserialize, Serialize};

use crate::{Cell, CellSize, DeviceId};

#[cfg(any(test, feature = "proptest"))]
use proptest_derive::Arbitrary;

// ---------------------------------------------------------------------------------------------
// Uplink
// ---------------------------------------------------------------------------------------------

/// One uplink summary with what the server needs to store it idempotently and in order.
///
/// The first three fields form the header, whose layout never changes across major versions,
/// so a server can read `device` and `seq` even from a body it cannot decode
/// (see [`crate::codec::peek_header`]) and tell the agent why it rejected it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct Envelope {
    /// The sending agent. Must match the device in the topic.
    pub device: DeviceId,
    /// Per-device sequence number, strictly increasing from 1, never reused, even across
    /// restarts: the agent's outbox allocates it when the summary is committed.
    pub seq: u64,
    /// When the agent created the summary, UTC seconds.
    pub created_s: u64,
    /// The summary.
    pub body: Uplink,
}

/// The uplink summaries. New kinds are appended at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub enum Uplink {
    /// What the car is; sent on start and when it changes.
    Vehicle(VehicleInfo),
    /// One trip.
    Trip(TripSummary),
    /// One local calendar day of travel.
    Day(DaySummary),
    /// Frequent places, home and work, and visits to configured points of interest.
    Places(PlaceSummary),
    /// Driving style over a period.
    Style(StyleSummary),
}

impl Uplink {
    /// The kind of summary, which names its topic.
    pub fn kind(&self) -> UpKind {
        match self {
            Uplink::Vehicle(_) => UpKind::Vehicle,
            Uplink::Trip(_) => UpKind::Trip,
            Uplink::Day(_) => UpKind::Day,
            Uplink::Places(_) => UpKind::Places,
            Uplink::Style(_) => UpKind::Style,
        }
    }
}

/// The kinds of uplink summary, one topic each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub enum UpKind {
    /// [`VehicleInfo`].
    Vehicle,
    /// [`TripSummary`].
    Trip,
    /// [`DaySummary`].
    Day,
    /// [`PlaceSummary`].
    Places,
    /// [`StyleSummary`].
    Style,
}

impl UpKind {
    /// Every kind, in wire order.
    pub const ALL: [UpKind; 5] = [
        UpKind::Vehicle,
        UpKind::Trip,
        UpKind::Day,
        UpKind::Places,
        UpKind::Style,
    ];

    /// The name used in topics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            UpKind::Vehicle => "vehicle",
            UpKind::Trip => "trip",
            UpKind::Day => "day",
            UpKind::Places => "places",
            UpKind::Style => "style",
        }
    }

    /// The kind named `name`, if any.
    pub fn from_name(name: &str) -> Option<UpKind> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// How the vehicle is powered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub enum EnergyType {
    /// Internal combustion engine.
    Ice,
    /// Hybrid electric, not plug-in.
    Hev,
    /// Plug-in hybrid electric.
    Phev,
    /// Battery electric.
    Ev,
}

impl EnergyType {
    /// The lower-case name used in configuration files, CSV and the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            EnergyType::Ice => "ice",
            EnergyType::Hev => "hev",
            EnergyType::Phev => "phev",
            EnergyType::Ev => "ev",
        }
    }
}

/// What the car is, as the head unit knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct VehicleInfo {
    /// Vehicle identification number (ISO 3779, 17 characters when known).
    pub vin: String,
    /// Manufacturer, e.g. "Volkswagen".
    pub make: String,
    /// Model, e.g. "Lavida".
    pub model: String,
    /// Model year.
    pub model_year: u16,
    /// Power train.
    pub energy: EnergyType,
    /// Odometer reading in metres.
    pub odometer_m: u32,
    /// Version of the agent software.
    pub agent_version: String,
}

/// The upper bounds of the speed bands in [`TripSummary::speed_band_pct`], in km/h; the last
/// band is open.
pub const SPEED_BANDS_KMH: [u16; 4] = [30, 60, 90, 120];

/// One trip, from departure to arrival.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct TripSummary {
    /// Departure, UTC seconds.
    pub start_s: u64,
    /// Departure in the agent's time zone as `weekday × 24 + hour` (Monday 0 h = 0, Sunday
    /// 23 h = 167).
    pub start_local_hour_of_week: u8,
    /// Arrival minus departure, seconds.
    pub duration_s: u32,
    /// Geodesic length of the cleaned track, metres.
    pub distance_m: u32,
    /// Time spent moving (the rest is idling with the engine on or stopped in traffic), seconds.
    pub moving_s: u32,
    /// Highest smoothed speed, cm/s.
    pub max_speed_cms: u16,
    /// Share of moving time in each speed band (below 30, 30–60, 60–90, 90–120, from 120 km/h),
    /// percent; the shares add up to 100 ± 2 after rounding.
    pub speed_band_pct: [u8; 5],
    /// Share of the trip's duration between 22 h and 6 h local time, percent.
    pub night_pct: u8,
    /// Harsh accelerations.
    pub harsh_accel: u16,
    /// Harsh braking events.
    pub harsh_brake: u16,
    /// Harsh cornering events.
    pub harsh_corner: u16,
    /// 1st percentile of longitudinal acceleration (the strongest braking but for outliers),
    /// cm/s², usually negative.
    pub accel_p01_cms2: i16,
    /// 99th percentile of longitudinal acceleration, cm/s².
    pub accel_p99_cms2: i16,
    /// 99th percentile of the absolute lateral acceleration, cm/s².
    pub lateral_p99_cms2: i16,
    /// Coefficient of variation of the moving speed, percent.
    pub speed_cv_pct: u8,
    /// Time above the configured speed limit, seconds.
    pub overspeed_s: u32,
    /// Driving-style score of this trip, 0–100, higher is smoother and safer.
    pub score: u8,
    /// Where the trip started, coarse.
    pub start_cell: Cell,
    /// Where the trip ended, coarse.
    pub end_cell: Cell,
}

/// One calendar day of travel in the agent's time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct DaySummary {
    /// The local day as days since 1970-01-01.
    pub local_day: u32,
    /// The zone's offset from UTC on that day, minutes.
    pub utc_offset_min: i16,
    /// Distance driven, metres.
    pub distance_m: u32,
    /// Trips that started this day.
    pub trips: u16,
    /// Trips longer than 100 km.
    pub long_trips: u16,
    /// Time in trips, seconds.
    pub driving_s: u32,
    /// Time moving, seconds.
    pub moving_s: u32,
    /// Share of driving time between 22 h and 6 h local time, percent.
    pub night_pct: u8,
    /// Minutes of driving in each local hour of the day (0–60 each).
    pub driving_min_by_local_hour: [u8; 24],
    /// Trips between the home cell and the work cell, either way.
    pub commute_trips: u16,
    /// Highest speed, cm/s.
    pub max_speed_cms: u16,
    /// Harsh accelerations.
    pub harsh_accel: u16,
    /// Harsh braking events.
    pub harsh_brake: u16,
    /// Harsh cornering events.
    pub harsh_corner: u16,
    /// Time above the configured speed limit, seconds.
    pub overspeed_s: u32,
    /// Distance-weighted driving-style score of the day's trips, 0–100.
    pub score: u8,
    /// Odometer at the end of the day, metres, when the vehicle reports one.
    pub odometer_m: Option<u32>,
    /// Energy used this day, when the vehicle reports it.
    pub energy: Option<EnergyUse>,
}

/// Energy used over a period, from the vehicle's own signals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct EnergyUse {
    /// Fuel burned, millilitres.
    pub fuel_ml: u32,
    /// Battery state of charge used, tenths of a percent (charging is not subtracted).
    pub soc_used_permille: u32,
}

/// What a frequent place is to the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub enum PlaceRole {
    /// The place with the most dwell at night.
    Home,
    /// The place with the most weekday daytime dwell, other than home.
    Work,
    /// Any other frequent place.
    Other,
}

/// A frequent place: stay points clustered together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct Place {
    /// Where, coarse.
    pub cell: Cell,
    /// Home, work or other.
    pub role: PlaceRole,
    /// Stays at the place in the period.
    pub visits: u16,
    /// Total dwell, seconds.
    pub dwell_s: u32,
    /// Share of the dwell in each local hour of the day, percent.
    pub dwell_pct_by_local_hour: [u8; 24],
}

/// The kinds of point of interest the server configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub enum PoiKind {
    /// A store of the dealer group that runs the server.
    OwnStore,
    /// Another brand's or another group's dealer.
    CompetitorDealer,
    /// An independent repair or tyre shop.
    IndependentRepair,
    /// A premium place: mall, golf club, airport lounge, marina.
    Premium,
    /// A charging station (for EV and PHEV owners).
    Charging,
    /// Anything else the dealer wants counted.
    Other,
}

impl PoiKind {
    /// The snake-case name used in configuration files and the API.
    pub const fn as_str(self) -> &'static str {
        match self {
            PoiKind::OwnStore => "own_store",
            PoiKind::CompetitorDealer => "competitor_dealer",
            PoiKind::IndependentRepair => "independent_repair",
            PoiKind::Premium => "premium",
            PoiKind::Charging => "charging",
            PoiKind::Other => "other",
        }
    }
}

/// The home's distance to one of the dealer's stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct StoreDistance {
    /// The store's id in [`AgentConfig::stores`].
    pub store_id: u32,
    /// Great-circle distance from the centre of the home cell, metres.
    pub home_distance_m: u32,
}

/// Visits to one configured point of interest. A drive past is not a visit: a visit needs
/// a stay of at least [`PlaceThresholds::visit_min_dwell_s`] within the POI's radius.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct PoiVisit {
    /// The POI's id in [`AgentConfig::pois`] (or a store's id when `kind` is `OwnStore`).
    pub poi_id: u32,
    /// Its kind, as configured.
    pub kind: PoiKind,
    /// Visits in the period.
    pub visits: u16,
    /// Total dwell, seconds.
    pub dwell_s: u32,
    /// The local day of the last visit, days since 1970-01-01.
    pub last_local_day: u32,
}

/// Where the car spends its time over a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct PlaceSummary {
    /// First local day of the period, days since 1970-01-01.
    pub from_local_day: u32,
    /// Length of the period in days.
    pub days: u16,
    /// The most visited places, most dwell first; at most the configured number.
    pub places: Vec<Place>,
    /// Distance from home to each configured store; empty while home is unknown.
    pub stores: Vec<StoreDistance>,
    /// Visits to configured stores and points of interest; POIs never visited are left out.
    pub poi_visits: Vec<PoiVisit>,
}

/// Where acceleration figures come from, which decides the thresholds that apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub enum SignalSource {
    /// Derived from GNSS speed and course, typically at 1 Hz; peaks are smoothed away.
    Gnss,
    /// Vehicle speed from the CAN bus or an inertial sensor, 10 Hz or more.
    Imu,
}

/// Driving style over a period, with the terms its score is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct StyleSummary {
    /// First local day of the period, days since 1970-01-01.
    pub from_local_day: u32,
    /// Length of the period in days.
    pub days: u16,
    /// Where the acceleration figures come from.
    pub source: SignalSource,
    /// Trips in the period.
    pub trips: u16,
    /// Distance driven, metres.
    pub distance_m: u32,
    /// Time moving, seconds.
    pub moving_s: u32,
    /// Harsh accelerations.
    pub harsh_accel: u16,
    /// Harsh braking events.
    pub harsh_brake: u16,
    /// Harsh cornering events.
    pub harsh_corner: u16,
    /// Time above the configured speed limit, seconds.
    pub overspeed_s: u32,
    /// Distance-weighted mean of the trips' 1st percentile of longitudinal acceleration, cm/s².
    pub accel_p01_cms2: i16,
    /// Distance-weighted mean of the trips' 99th percentile of longitudinal acceleration, cm/s².
    pub accel_p99_cms2: i16,
    /// Distance-weighted mean of the trips' 99th percentile of lateral acceleration, cm/s².
    pub lateral_p99_cms2: i16,
    /// Distance-weighted mean coefficient of variation of speed, percent.
    pub speed_cv_pct: u8,
    /// Sub-score for acceleration, 0–100.
    pub accel_score: u8,
    /// Sub-score for braking, 0–100.
    pub brake_score: u8,
    /// Sub-score for cornering, 0–100.
    pub corner_score: u8,
    /// Sub-score for speeding, 0–100.
    pub speed_score: u8,
    /// Overall score, 0–100, higher is smoother and safer.
    pub score: u8,
}

// ---------------------------------------------------------------------------------------------
// Downlink
// ---------------------------------------------------------------------------------------------

/// The server's answer to uplink envelopes: which it has committed, which it refuses.
///
/// The agent deletes a summary from its outbox only when it appears here: the broker's PUBACK
/// says only that the broker has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct Ack {
    /// The device the acknowledgement is for.
    pub device: DeviceId,
    /// Sequence numbers now durably stored (including ones stored before: duplicates).
    pub stored: Vec<SeqRange>,
    /// Sequence numbers the server will never store, kept in its dead-letter table instead.
    pub rejected: Vec<Rejection>,
}

/// An inclusive range of sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct SeqRange {
    /// First sequence number in the range.
    pub first: u64,
    /// Last sequence number in the range, at least `first`.
    pub last: u64,
}

impl SeqRange {
    /// Whether `seq` lies in the range.
    pub fn contains(&self, seq: u64) -> bool {
        (self.first..=self.last).contains(&seq)
    }

    /// Collapses sequence numbers into the fewest ranges, sorted.
    pub fn collapse(seqs: impl IntoIterator<Item = u64>) -> Vec<SeqRange> {
        let mut seqs: Vec<u64> = seqs.into_iter().collect();
        seqs.sort_unstable();
        seqs.dedup();
        let mut ranges: Vec<SeqRange> = Vec::new();
        for seq in seqs {
            match ranges.last_mut() {
                Some(range) if range.last + 1 == seq => range.last = seq,
                _ => ranges.push(SeqRange {
                    first: seq,
                    last: seq,
                }),
            }
        }
        ranges
    }
}

/// One envelope the server refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct Rejection {
    /// Its sequence number.
    pub seq: u64,
    /// Why.
    pub reason: RejectReason,
}

/// Why the server refuses an envelope. Retrying cannot help in any of these cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub enum RejectReason {
    /// The server does not know the envelope's major version.
    UnknownVersion,
    /// The header decoded but the body did not.
    Malformed,
    /// The device in the envelope is not the device in the topic.
    DeviceMismatch,
    /// The kind in the topic is not the kind of the body.
    KindMismatch,
}

/// The configuration the server pushes to an agent on its retained config topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct ConfigUpdate {
    /// Increases with every change; the agent ignores a revision older than the one it has.
    pub revision: u32,
    /// When the server issued it, UTC seconds.
    pub issued_s: u64,
    /// The configuration.
    pub config: AgentConfig,
}

/// Everything the server may tune on an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct AgentConfig {
    /// Trip segmentation.
    pub trips: TripThresholds,
    /// Harsh-event detection for each signal source.
    pub events: EventThresholds,
    /// Stay points, frequent places and visits.
    pub places: PlaceThresholds,
    /// How often to send what.
    pub upload: UploadPolicy,
    /// The grid size of every cell that leaves the car.
    pub precision: CellSize,
    /// IANA time zone for local-time features, e.g. "Asia/Shanghai".
    pub time_zone: String,
    /// The dealer group's stores.
    pub stores: Vec<Store>,
    /// Other points of interest whose visits are counted.
    pub pois: Vec<Poi>,
}

/// When a trip starts and ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct TripThresholds {
    /// Staying within this radius for `stop_dwell_s` ends a trip, metres.
    pub stop_radius_m: u32,
    /// See `stop_radius_m`, seconds.
    pub stop_dwell_s: u32,
    /// A gap in the data longer than this ends a trip, seconds.
    pub max_gap_s: u32,
    /// Shorter trips are dropped, metres.
    pub min_distance_m: u32,
    /// Shorter trips are dropped, seconds.
    pub min_duration_s: u32,
    /// A trip that ends within `min_distance_m` of its start and never gets farther than this
    /// from it is GPS noise around a parked car and is dropped, metres; 0 keeps every trip.
    pub noise_reach_m: u32,
    /// Time above this speed counts as speeding, cm/s.
    pub speed_limit_cms: u16,
}

/// Harsh-event thresholds per signal source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct EventThresholds {
    /// For speed and course from GNSS at about 1 Hz.
    pub gnss: HarshThresholds,
    /// For CAN or inertial signals at 10 Hz or more.
    pub imu: HarshThresholds,
}

/// When an acceleration counts as a harsh event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct HarshThresholds {
    /// Longitudinal acceleration at or above this is harsh, cm/s².
    pub accel_cms2: u16,
    /// Deceleration at or above this (a positive number) is harsh braking, cm/s².
    pub brake_cms2: u16,
    /// Lateral acceleration at or above this is harsh cornering, cm/s².
    pub corner_cms2: u16,
    /// The acceleration must last this long, milliseconds.
    pub min_duration_ms: u32,
    /// No longitudinal event below this speed, cm/s.
    pub min_speed_cms: u16,
    /// No cornering event below this speed, cm/s.
    pub corner_min_speed_cms: u16,
}

/// Stay points, frequent places and visits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct PlaceThresholds {
    /// A stay point keeps within this distance of its first fix, metres.
    pub stay_radius_m: u32,
    /// A stay point lasts at least this long, seconds.
    pub stay_min_s: u32,
    /// A gap longer than this splits a stay, seconds.
    pub stay_max_gap_s: u32,
    /// Stay points closer than this join one place (DBSCAN ε), metres.
    pub cluster_eps_m: u32,
    /// A stay within a POI's radius must last this long to count as a visit, seconds.
    pub visit_min_dwell_s: u32,
    /// At most this many frequent places are sent.
    pub max_places: u16,
    /// Whether a data gap that starts and ends at the same place (a receiver switched off with
    /// the ignition) counts as a stay there. trackintel splits such stays; a head unit needs
    /// them, or it never sees the car parked at home overnight.
    pub bridge_gaps: bool,
}

/// How often the agent sends what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct UploadPolicy {
    /// Place and style summaries cover this many days, and are sent once per period.
    pub period_days: u16,
    /// The agent publishes its health this often, seconds.
    pub status_interval_s: u32,
    /// At most this many envelopes are in flight unacknowledged.
    pub max_in_flight: u16,
}

/// One of the dealer group's stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct Store {
    /// The server's id for the store.
    pub id: u32,
    /// Where it is. Store addresses are public, so this is exact.
    pub position: Position,
    /// A visit needs a stay within this radius, metres.
    pub radius_m: u32,
}

/// A point of interest whose visits are counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct Poi {
    /// The server's id for the POI.
    pub id: u32,
    /// What kind of place it is.
    pub kind: PoiKind,
    /// Where it is.
    pub position: Position,
    /// A visit needs a stay within this radius, metres.
    pub radius_m: u32,
}

/// An exact position in fixed point: degrees × 10⁷ (about 1 cm). Downlink only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct Position {
    /// Latitude × 10⁷.
    #[cfg_attr(
        any(test, feature = "proptest"),
        proptest(strategy = "-900_000_000i32..=900_000_000")
    )]
    pub lat_e7: i32,
    /// Longitude × 10⁷.
    #[cfg_attr(
        any(test, feature = "proptest"),
        proptest(strategy = "-1_800_000_000i32..=1_800_000_000")
    )]
    pub lon_e7: i32,
}

impl Position {
    /// The position nearest to `(lat, lon)` in degrees.
    pub fn from_degrees(lat: f64, lon: f64) -> Position {
        Position {
            lat_e7: (lat * 1e7).round() as i32,
            lon_e7: (lon * 1e7).round() as i32,
        }
    }

    /// `(lat, lon)` in degrees.
    pub fn degrees(self) -> (f64, f64) {
        (f64::from(self.lat_e7) / 1e7, f64::from(self.lon_e7) / 1e7)
    }
}

// ---------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------

/// What the agent says about itself on its retained status topic. The broker publishes
/// [`AgentState::Offline`] as the agent's last will when its connection dies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct StatusReport {
    /// The reporting agent.
    pub device: DeviceId,
    /// When the report was made, UTC seconds (for the last will: when the agent connected).
    pub created_s: u64,
    /// Online with its health, or offline.
    pub state: AgentState,
}

/// Whether the agent is connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub enum AgentState {
    /// Connected, with its health.
    Online(Health),
    /// Disconnected (the last will) or shut down cleanly.
    Offline,
}

/// An agent's health, so an operator sees a sick head unit before its data goes missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct Health {
    /// Version of the agent software.
    pub agent_version: String,
    /// Seconds since the agent started.
    pub uptime_s: u64,
    /// The configuration revision in force.
    pub config_revision: u32,
    /// The last configuration the agent refused, if any.
    pub config_rejected: Option<ConfigRejection>,
    /// Summaries in the outbox waiting for an acknowledgement.
    pub backlog_len: u32,
    /// Bytes of encoded summaries in the outbox.
    pub backlog_bytes: u64,
    /// Creation time of the oldest unacknowledged summary, UTC seconds.
    pub oldest_unacked_s: Option<u64>,
    /// When the last acknowledgement arrived, UTC seconds.
    pub last_ack_s: Option<u64>,
    /// Summaries dropped by the outbox's disk cap since installation.
    pub dropped: u64,
    /// Summaries the server rejected since installation.
    pub rejected: u64,
    /// Times since the agent started that its outbox file was found corrupt, moved aside and
    /// replaced.
    pub outbox_resets: u32,
    /// Bad input lines by reason since the agent started.
    pub bad_input: Vec<BadInputCount>,
}

/// A configuration the agent refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct ConfigRejection {
    /// The refused revision.
    pub revision: u32,
    /// Why, in words.
    pub reason: String,
}

/// How many input lines were skipped for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "proptest"), derive(Arbitrary))]
pub struct BadInputCount {
    /// The reason, e.g. "checksum".
    pub reason: String,
    /// How many lines.
    pub count: u64,
}

// ---------------------------------------------------------------------------------------------
// Defaults: published practice, so a server that configures nothing gets sensible agents.
// ---------------------------------------------------------------------------------------------

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            trips: TripThresholds::default(),
            events: EventThresholds::default(),
            places: PlaceThresholds::default(),
            upload: UploadPolicy::default(),
            // 1.1 km: fine enough for the seed's 3 km distance bands, too coarse to find a door.
            precision: CellSize::Km1,
            time_zone: "UTC".into(),
            stores: Vec::new(),
            pois: Vec::new(),
        }
    }
}

impl Default for TripThresholds {
    fn default() -> Self {
        TripThresholds {
            // Longer than any traffic light, shorter than any errand; the radius absorbs parked
            // GPS drift, which reaches tens of metres under buildings (traccar/traccar#5449).
            stop_radius_m: 150,
            stop_dwell_s: 300,
            // A car that stops reporting (ignition off, basement) must not join two trips
            // (traccar/traccar#3231, #4301).
            max_gap_s: 300,
            // Traccar's `report.trip.minimalTripDistance` and `minimalTripDuration` defaults.
            min_distance_m: 200,
            min_duration_s: 180,
            // A round trip around the block reaches farther than 500 m; parked multipath
            // excursions (one 312 m jump in GPSBabel's dg100 log) do not.
            noise_reach_m: 500,
            // 120 km/h: the highest general limit in China (expressways) and much of Europe.
            speed_limit_cms: 3_333,
        }
    }
}

impl Default for EventThresholds {
    fn default() -> Self {
        EventThresholds {
            // Teltonika's FMB defaults, which it applies to 1 Hz GPS speed (max acceleration
            // 2.5, braking 2.7, cornering 3.4 m/s²; nothing below 10 km/h, no cornering below
            // 30 km/h); Damoov's braking threshold is the same 2.7 m/s².
            gnss: HarshThresholds {
                accel_cms2: 250,
                brake_cms2: 270,
                corner_cms2: 340,
                // One 1 Hz sample interval.
                min_duration_ms: 1_000,
                min_speed_cms: 278,
                corner_min_speed_cms: 833,
            },
            // An IMU or CAN speed sees the peaks 1 Hz GNSS smooths away, so its thresholds sit
            // higher: acceleration 3.0 and braking 3.2 m/s² for at least 0.6 s (an older
            // telematics SDK), cornering 0.45 g (SBeacon's accelerometer default).
            imu: HarshThresholds {
                accel_cms2: 300,
                brake_cms2: 320,
                corner_cms2: 440,
                min_duration_ms: 600,
                min_speed_cms: 278,
                corner_min_speed_cms: 833,
            },
        }
    }
}

impl Default for PlaceThresholds {
    fn default() -> Self {
        PlaceThresholds {
            // trackintel's `generate_staypoints` defaults: 100 m, 5 min, gaps up to 15 min.
            stay_radius_m: 100,
            stay_min_s: 300,
            stay_max_gap_s: 900,
            // trackintel's `generate_locations`: DBSCAN with ε = 100 m.
            cluster_eps_m: 100,
            // A drive past a competitor is not a visit (traccar/traccar#6019 asks for dwell
            // delays on geofences for the same reason).
            visit_min_dwell_s: 300,
            max_places: 10,
            bridge_gaps: true,
        }
    }
}

impl Default for UploadPolicy {
    fn default() -> Self {
        UploadPolicy {
            period_days: 7,
            status_interval_s: 300,
            max_in_flight: 32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_ranges_collapse() {
        assert_eq!(SeqRange::collapse([]), vec![]);
        assert_eq!(
            SeqRange::collapse([5, 3, 4, 4, 9, 1]),
            vec![
                SeqRange { first: 1, last: 1 },
                SeqRange { first: 3, last: 5 },
                SeqRange { first: 9, last: 9 },
            ]
        );
    }

    #[test]
    fn kinds_have_unique_names() {
        for kind in UpKind::ALL {
            assert_eq!(UpKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(UpKind::from_name("nope"), None);
    }

    #[test]
    fn positions_are_fixed_point() {
        let p = Position::from_degrees(48.1431, -11.5579);
        assert_eq!(
            p,
            Position {
                lat_e7: 481_431_000,
                lon_e7: -115_579_000
            }
        );
        assert_eq!(p.degrees(), (48.1431, -11.5579));
    }
}
