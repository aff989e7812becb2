//! The agent's configuration: the TOML file a head-unit maker installs, and the pipeline
//! settings that the server may replace at run time with a [`ConfigUpdate`].
//!
//! Every key has a default, so an empty file is a valid configuration;
//! `deploy/agent.example.toml` lists every key with its unit and default, and a test keeps
//! the two in step. The pipeline defaults are the wire defaults of
//! [`AgentConfig`](drivetag_shared::wire::AgentConfig), converted to friendlier units, and a
//! test checks that they agree.
//!
//! [`ConfigUpdate`]: drivetag_shared::wire::ConfigUpdate

use std::path::{Path, PathBuf};

use drivetag_shared::wire::{self, AgentConfig, EnergyType, PoiKind};
use drivetag_shared::{CellSize, DeviceId};
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentFileConfig {
    /// The head unit's identity: its topics, its envelopes and its broker login.
    pub device_id: String,
    /// The vehicle the head unit is built into.
    pub vehicle: VehicleConfig,
    /// The broker connection.
    pub mqtt: MqttConfig,
    /// The store-and-forward outbox.
    pub outbox: OutboxConfig,
    /// Where samples come from.
    pub input: InputConfig,
    /// How samples become summaries, until the server sends its own settings.
    pub pipeline: PipelineConfig,
}

impl Default for AgentFileConfig {
    fn default() -> Self {
        AgentFileConfig {
            device_id: "hu-0001".into(),
            vehicle: VehicleConfig::default(),
            mqtt: MqttConfig::default(),
            outbox: OutboxConfig::default(),
            input: InputConfig::default(),
            pipeline: PipelineConfig::default(),
        }
    }
}

/// What the car is. A head-unit maker fills this in at the factory or reads it from the CAN bus.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VehicleConfig {
    /// Vehicle identification number.
    pub vin: String,
    /// Manufacturer.
    pub make: String,
    /// Model.
    pub model: String,
    /// Model year.
    pub model_year: u16,
    /// `ice`, `hev`, `phev` or `ev`.
    pub energy: EnergyName,
}

impl Default for VehicleConfig {
    fn default() -> Self {
        VehicleConfig {
            vin: String::new(),
            make: String::new(),
            model: String::new(),
            model_year: 2024,
            energy: EnergyName::Ice,
        }
    }
}

/// Power train as written in the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnergyName {
    /// Internal combustion engine.
    Ice,
    /// Hybrid electric.
    Hev,
    /// Plug-in hybrid electric.
    Phev,
    /// Battery electric.
    Ev,
}

impl From<EnergyName> for EnergyType {
    fn from(name: EnergyName) -> Self {
        match name {
            EnergyName::Ice => EnergyType::Ice,
            EnergyName::Hev => EnergyType::Hev,
            EnergyName::Phev => EnergyType::Phev,
            EnergyName::Ev => EnergyType::Ev,
        }
    }
}

/// The broker connection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `mqtt://host:port`, or `mqtts://host:port` for TLS. Default: the server's embedded
    /// broker on this machine, `mqtt://127.0.0.1:1884`.
    pub url: String,
    /// PEM file of the certificate authorities that sign the broker's certificate (TLS only).
    /// Empty: the system's roots.
    pub ca_file: PathBuf,
    /// PEM client certificate, for brokers that authenticate devices by certificate.
    pub client_cert_file: PathBuf,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: PathBuf,
    /// User name, for brokers that authenticate devices by password. Empty: none.
    pub username: String,
    /// Password for `username`.
    pub password: String,
    /// Keep-alive interval, seconds. Default 30: a dead link is noticed within a minute.
    pub keep_alive_s: u64,
    /// First reconnect delay, seconds; it doubles after each failure. Default 1.
    pub reconnect_min_s: f64,
    /// Longest reconnect delay, seconds. Default 60. A random jitter of up to half the delay
    /// keeps a fleet that lost its broker from reconnecting in lockstep.
    pub reconnect_max_s: f64,
    /// A summary not acknowledged by the server within this time is sent again, seconds.
    /// Default 30.
    pub ack_timeout_s: f64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: "mqtt://127.0.0.1:1884".into(),
            ca_file: PathBuf::new(),
            client_cert_file: PathBuf::new(),
            client_key_file: PathBuf::new(),
            username: String::new(),
            password: String::new(),
            keep_alive_s: 30,
            reconnect_min_s: 1.0,
            reconnect_max_s: 60.0,
            ack_timeout_s: 30.0,
        }
    }
}

/// The store-and-forward outbox.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// The SQLite file. Default `drivetag-outbox.sqlite` in the working directory.
    pub path: PathBuf,
    /// Most bytes of summaries kept while the server is unreachable. Beyond it the lowest-value,
    /// oldest summaries are dropped first (trips, then days, then style and places, vehicle
    /// info last) and counted. Default 8 MiB: about 100 000 trips, years of driving.
    pub max_bytes: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            path: "drivetag-outbox.sqlite".into(),
            max_bytes: 8 * 1024 * 1024,
        }
    }
}

/// Where GPS and vehicle signals come from when the agent runs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// `gpsd://host:port` for a running gpsd, a serial device such as `/dev/ttyUSB0` (set its
    /// baud rate first, e.g. `stty -F /dev/ttyUSB0 9600 raw`), `-` for stdin, or a recorded
    /// NMEA, GPX or gpsd file to replay. Default `gpsd://127.0.0.1:2947`.
    pub gps: String,
    /// A vehicle-signal CSV to merge by time (see `drivetag-agent summarize --help`). Empty:
    /// none.
    pub signals: PathBuf,
    /// Replay speed for recorded files: `1` (as recorded), a factor such as `60`, or `max`.
    /// Live sources ignore it. Default `1`.
    pub replay_speed: String,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            gps: "gpsd://127.0.0.1:2947".into(),
            signals: PathBuf::new(),
            replay_speed: "1".into(),
        }
    }
}

/// Where longitudinal acceleration is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpeedSource {
    /// GNSS speed, about 1 Hz: the `events.gnss` thresholds apply.
    Gnss,
    /// Vehicle speed from the signal CSV (CAN bus, 10 Hz or more): the `events.imu` thresholds
    /// apply.
    Vehicle,
}

/// How samples become summaries. SI units and degrees; every name carries its unit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// IANA time zone for local-time features, e.g. "Asia/Shanghai". Default "UTC".
    pub time_zone: String,
    /// Edge of the grid cells in which places leave the car, metres; rounded up to one of
    /// 110, 220, 550, 1100, 2200, 5500 or 11000. Default 1000 (cells of 1.1 km).
    pub cell_size_m: u32,
    /// `gnss` or `vehicle`: where acceleration is measured. Default `gnss`. Local to the head
    /// unit: the server cannot change it.
    pub speed_source: SpeedSource,
    /// Trip segmentation.
    pub trips: TripRules,
    /// Harsh-event thresholds.
    pub events: EventRules,
    /// Stay points, frequent places and visits.
    pub places: PlaceRules,
    /// Upload cadence.
    pub upload: UploadRules,
    /// The dealer group's stores.
    pub stores: Vec<StoreRule>,
    /// Points of interest whose visits are counted.
    pub pois: Vec<PoiRule>,
}

/// Trip segmentation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TripRules {
    /// Staying within this radius for `stop_dwell_s` ends a trip, metres. Default 150.
    pub stop_radius_m: f64,
    /// See `stop_radius_m`, seconds. Default 300: longer than any traffic light.
    pub stop_dwell_s: f64,
    /// A data gap longer than this ends a trip, seconds. Default 300.
    pub max_gap_s: f64,
    /// Shorter trips are dropped, metres. Default 200 (Traccar's default).
    pub min_distance_m: f64,
    /// Shorter trips are dropped, seconds. Default 180 (Traccar's default).
    pub min_duration_s: f64,
    /// A trip ending within `min_distance_m` of its start that never gets farther than this
    /// from it is GPS noise around a parked car, metres; 0 keeps every trip. Default 500.
    pub noise_reach_m: f64,
    /// Time above this speed counts as speeding, km/h. Default 120.
    pub speed_limit_kmh: f64,
}

/// Harsh-event thresholds per speed source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventRules {
    /// For GNSS speed at about 1 Hz, which smooths peaks away.
    pub gnss: HarshRules,
    /// For vehicle (CAN) or inertial speed at 10 Hz or more.
    pub imu: HarshRules,
}

/// When an acceleration counts as a harsh event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HarshRules {
    /// Acceleration at or above this is harsh, m/s².
    pub accel_mps2: f64,
    /// Deceleration at or above this (positive) is harsh braking, m/s².
    pub brake_mps2: f64,
    /// Lateral acceleration at or above this is harsh cornering, m/s².
    pub corner_mps2: f64,
    /// The acceleration must last this long, seconds.
    pub min_duration_s: f64,
    /// No longitudinal event below this speed, km/h.
    pub min_speed_kmh: f64,
    /// No cornering event below this speed, km/h.
    pub corner_min_speed_kmh: f64,
}

/// Stay points, frequent places and visits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlaceRules {
    /// A stay keeps within this distance of its first fix, metres. Default 100 (trackintel).
    pub stay_radius_m: f64,
    /// A stay lasts at least this long, seconds. Default 300 (trackintel).
    pub stay_min_s: f64,
    /// A longer gap splits a stay, seconds. Default 900 (trackintel).
    pub stay_max_gap_s: f64,
    /// Stays closer than this are one place (DBSCAN ε), metres. Default 100 (trackintel).
    pub cluster_eps_m: f64,
    /// A stay within a POI's radius counts as a visit from this long, seconds. Default 300.
    pub visit_min_dwell_s: f64,
    /// At most this many frequent places are reported. Default 10.
    pub max_places: usize,
    /// Whether a gap that starts and ends at one place is a stay there (receiver off with the
    /// ignition). Default true.
    pub bridge_gaps: bool,
}

/// Upload cadence.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadRules {
    /// Place and style summaries cover this many days. Default 7.
    pub period_days: u16,
    /// Health reports are sent this often, seconds. Default 300.
    pub status_interval_s: u32,
    /// At most this many summaries are in flight unacknowledged. Default 32.
    pub max_in_flight: u16,
}

/// One of the dealer group's stores.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreRule {
    /// The server's id for the store.
    pub id: u32,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// A visit needs a stay within this radius, metres.
    pub radius_m: f64,
}

/// A point of interest.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoiRule {
    /// The server's id for the POI.
    pub id: u32,
    /// `own_store`, `competitor_dealer`, `independent_repair`, `premium`, `charging` or `other`.
    pub kind: PoiKindName,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// A visit needs a stay within this radius, metres.
    pub radius_m: f64,
}

/// POI kinds as written in the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum PoiKindName {
    OwnStore,
    CompetitorDealer,
    IndependentRepair,
    Premium,
    Charging,
    Other,
}

impl From<PoiKindName> for PoiKind {
    fn from(name: PoiKindName) -> Self {
        match name {
            PoiKindName::OwnStore => PoiKind::OwnStore,
            PoiKindName::CompetitorDealer => PoiKind::CompetitorDealer,
            PoiKindName::IndependentRepair => PoiKind::IndependentRepair,
            PoiKindName::Premium => PoiKind::Premium,
            PoiKindName::Charging => PoiKind::Charging,
            PoiKindName::Other => PoiKind::Other,
        }
    }
}

impl From<PoiKind> for PoiKindName {
    fn from(kind: PoiKind) -> Self {
        match kind {
            PoiKind::OwnStore => PoiKindName::OwnStore,
            PoiKind::CompetitorDealer => PoiKindName::CompetitorDealer,
            PoiKind::IndependentRepair => PoiKindName::IndependentRepair,
            PoiKind::Premium => PoiKindName::Premium,
            PoiKind::Charging => PoiKindName::Charging,
            PoiKind::Other => PoiKindName::Other,
        }
    }
}

impl PipelineConfig {
    /// The grid size of cells that leave the car.
    pub fn cell_size(&self) -> CellSize {
        CellSize::at_least_m(self.cell_size_m)
    }

    /// The thresholds for the configured speed source.
    pub fn harsh(&self) -> &HarshRules {
        match self.speed_source {
            SpeedSource::Gnss => &self.events.gnss,
            SpeedSource::Vehicle => &self.events.imu,
        }
    }

    /// The settings a server sent, with what only the head unit knows (`speed_source`) kept
    /// from `local`.
    pub fn from_wire(config: &AgentConfig, local: &PipelineConfig) -> PipelineConfig {
        let trips = &config.trips;
        let places = &config.places;
        PipelineConfig {
            time_zone: config.time_zone.clone(),
            cell_size_m: config.precision.edge_m(),
            speed_source: local.speed_source,
            trips: TripRules {
                stop_radius_m: f64::from(trips.stop_radius_m),
                stop_dwell_s: f64::from(trips.stop_dwell_s),
                max_gap_s: f64::from(trips.max_gap_s),
                min_distance_m: f64::from(trips.min_distance_m),
                min_duration_s: f64::from(trips.min_duration_s),
                noise_reach_m: f64::from(trips.noise_reach_m),
                speed_limit_kmh: kmh(trips.speed_limit_cms),
            },
            events: EventRules {
                gnss: HarshRules::from_wire(&config.events.gnss),
                imu: HarshRules::from_wire(&config.events.imu),
            },
            places: PlaceRules {
                stay_radius_m: f64::from(places.stay_radius_m),
                stay_min_s: f64::from(places.stay_min_s),
                stay_max_gap_s: f64::from(places.stay_max_gap_s),
                cluster_eps_m: f64::from(places.cluster_eps_m),
                visit_min_dwell_s: f64::from(places.visit_min_dwell_s),
                max_places: usize::from(places.max_places),
                bridge_gaps: places.bridge_gaps,
            },
            upload: UploadRules {
                period_days: config.upload.period_days,
                status_interval_s: config.upload.status_interval_s,
                max_in_flight: config.upload.max_in_flight,
            },
            stores: config
                .stores
                .iter()
                .map(|store| {
                    let (lat, lon) = store.position.degrees();
                    StoreRule {
                        id: store.id,
                        lat,
                        lon,
                        radius_m: f64::from(store.radius_m),
                    }
                })
                .collect(),
            pois: config
                .pois
                .iter()
                .map(|poi| {
                    let (lat, lon) = poi.position.degrees();
                    PoiRule {
                        id: poi.id,
                        kind: poi.kind.into(),
                        lat,
                        lon,
                        radius_m: f64::from(poi.radius_m),
                    }
                })
                .collect(),
        }
    }

    /// Checks values a typo could make absurd. Returns what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        LocalZoneCheck::check(&self.time_zone)?;
        let t = &self.trips;
        positive("trips.stop_radius_m", t.stop_radius_m)?;
        positive("trips.stop_dwell_s", t.stop_dwell_s)?;
        positive("trips.max_gap_s", t.max_gap_s)?;
        positive("trips.speed_limit_kmh", t.speed_limit_kmh)?;
        non_negative("trips.min_distance_m", t.min_distance_m)?;
        non_negative("trips.min_duration_s", t.min_duration_s)?;
        non_negative("trips.noise_reach_m", t.noise_reach_m)?;
        for (name, rules) in [
            ("events.gnss", &self.events.gnss),
            ("events.imu", &self.events.imu),
        ] {
            positive(&format!("{name}.accel_mps2"), rules.accel_mps2)?;
            positive(&format!("{name}.brake_mps2"), rules.brake_mps2)?;
            positive(&format!("{name}.corner_mps2"), rules.corner_mps2)?;
            non_negative(&format!("{name}.min_duration_s"), rules.min_duration_s)?;
            non_negative(&format!("{name}.min_speed_kmh"), rules.min_speed_kmh)?;
            non_negative(
                &format!("{name}.corner_min_speed_kmh"),
                rules.corner_min_speed_kmh,
            )?;
        }
        let p = &self.places;
        positive("places.stay_radius_m", p.stay_radius_m)?;
        positive("places.stay_min_s", p.stay_min_s)?;
        positive("places.stay_max_gap_s", p.stay_max_gap_s)?;
        positive("places.cluster_eps_m", p.cluster_eps_m)?;
        non_negative("places.visit_min_dwell_s", p.visit_min_dwell_s)?;
        if self.upload.period_days == 0 {
            return Err("upload.period_days must be at least 1".into());
        }
        if self.upload.max_in_flight == 0 {
            return Err("upload.max_in_flight must be at least 1".into());
        }
        for store in &self.stores {
            on_globe(&format!("store {}", store.id), store.lat, store.lon)?;
            positive(&format!("store {} radius_m", store.id), store.radius_m)?;
        }
        for poi in &self.pois {
            on_globe(&format!("poi {}", poi.id), poi.lat, poi.lon)?;
            positive(&format!("poi {} radius_m", poi.id), poi.radius_m)?;
        }
        Ok(())
    }
}

struct LocalZoneCheck;

impl LocalZoneCheck {
    fn check(name: &str) -> Result<(), String> {
        crate::transforms::local_time::LocalClock::new(name)
            .map(|_| ())
            .map_err(|error| error.to_string())
    }
}

fn positive(name: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(format!("{name} must be above 0, not {value}"))
    }
}

fn non_negative(name: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(format!("{name} must be 0 or more, not {value}"))
    }
}

fn on_globe(name: &str, lat: f64, lon: f64) -> Result<(), String> {
    if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) {
        Ok(())
    } else {
        Err(format!("{name} position {lat},{lon} is off the globe"))
    }
}

fn kmh(cms: u16) -> f64 {
    f64::from(cms) * 0.036
}

impl HarshRules {
    fn from_wire(rules: &wire::HarshThresholds) -> HarshRules {
        HarshRules {
            accel_mps2: f64::from(rules.accel_cms2) / 100.0,
            brake_mps2: f64::from(rules.brake_cms2) / 100.0,
            corner_mps2: f64::from(rules.corner_cms2) / 100.0,
            min_duration_s: f64::from(rules.min_duration_ms) / 1000.0,
            min_speed_kmh: kmh(rules.min_speed_cms),
            corner_min_speed_kmh: kmh(rules.corner_min_speed_cms),
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            time_zone: "UTC".into(),
            cell_size_m: 1000,
            speed_source: SpeedSource::Gnss,
            trips: TripRules::default(),
            events: EventRules::default(),
            places: PlaceRules::default(),
            upload: UploadRules::default(),
            stores: Vec::new(),
            pois: Vec::new(),
        }
    }
}

impl Default for TripRules {
    fn default() -> Self {
        TripRules {
            stop_radius_m: 150.0,
            stop_dwell_s: 300.0,
            max_gap_s: 300.0,
            min_distance_m: 200.0,
            min_duration_s: 180.0,
            noise_reach_m: 500.0,
            speed_limit_kmh: 120.0,
        }
    }
}

impl Default for EventRules {
    fn default() -> Self {
        // The wire defaults (`drivetag_shared::wire::EventThresholds`), where their sources are
        // cited.
        EventRules {
            gnss: HarshRules {
                accel_mps2: 2.5,
                brake_mps2: 2.7,
                corner_mps2: 3.4,
                min_duration_s: 1.0,
                min_speed_kmh: 10.0,
                corner_min_speed_kmh: 30.0,
            },
            imu: HarshRules {
                accel_mps2: 3.0,
                brake_mps2: 3.2,
                corner_mps2: 4.4,
                min_duration_s: 0.6,
                min_speed_kmh: 10.0,
                corner_min_speed_kmh: 30.0,
            },
        }
    }
}

impl Default for PlaceRules {
    fn default() -> Self {
        PlaceRules {
            stay_radius_m: 100.0,
            stay_min_s: 300.0,
            stay_max_gap_s: 900.0,
            cluster_eps_m: 100.0,
            visit_min_dwell_s: 300.0,
            max_places: 10,
            bridge_gaps: true,
        }
    }
}

impl Default for UploadRules {
    fn default() -> Self {
        UploadRules {
            period_days: 7,
            status_interval_s: 300,
            max_in_flight: 32,
        }
    }
}

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration; the message names line and key.
    #[error("config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error, with line and column.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("config {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl AgentFileConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks configuration text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: AgentFileConfig =
            toml::from_str(text).map_err(|source| ConfigError::Parse {
                path: path.to_owned(),
                source: Box::new(source),
            })?;
        let invalid = |reason: String| ConfigError::Invalid {
            path: path.to_owned(),
            reason,
        };
        config
            .device()
            .map_err(|error| invalid(format!("device_id: {error}")))?;
        config
            .pipeline
            .validate()
            .map_err(|reason| invalid(format!("pipeline: {reason}")))?;
        config
            .input
            .replay_speed
            .parse::<crate::sources::replay::Speed>()
            .map_err(|reason| invalid(format!("input.replay_speed: {reason}")))?;
        let mqtt = &config.mqtt;
        if !(mqtt.url.starts_with("mqtt://") || mqtt.url.starts_with("mqtts://")) {
            return Err(invalid(format!(
                "mqtt.url {:?} must start with mqtt:// or mqtts://",
                mqtt.url
            )));
        }
        if mqtt.reconnect_min_s <= 0.0 || mqtt.reconnect_max_s < mqtt.reconnect_min_s {
            return Err(invalid(
                "mqtt.reconnect_min_s must be above 0 and at most mqtt.reconnect_max_s".into(),
            ));
        }
        if mqtt.client_cert_file.as_os_str().is_empty()
            != mqtt.client_key_file.as_os_str().is_empty()
        {
            return Err(invalid(
                "mqtt.client_cert_file and mqtt.client_key_file go together".into(),
            ));
        }
        Ok(config)
    }

    /// The device id, checked.
    pub fn device(&self) -> Result<DeviceId, drivetag_shared::device::DeviceIdError> {
        DeviceId::new(self.device_id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_lists_the_defaults() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/agent.example.toml"
        ));
        let config = AgentFileConfig::load(path).unwrap();
        assert_eq!(config, AgentFileConfig::default());
    }

    #[test]
    fn the_file_defaults_are_the_wire_defaults() {
        let local = PipelineConfig::default();
        let from_wire = PipelineConfig::from_wire(&AgentConfig::default(), &local);
        // The wire rounds 120 km/h to 3333 cm/s; everything else is exact.
        assert!((from_wire.trips.speed_limit_kmh - 120.0).abs() < 0.02);
        let mut from_wire = from_wire;
        from_wire.trips.speed_limit_kmh = 120.0;
        from_wire.cell_size_m = 1000;
        assert_eq!(from_wire.events.gnss.min_speed_kmh.round(), 10.0);
        from_wire.events = EventRules::default();
        assert_eq!(from_wire, local);
        assert_eq!(
            CellSize::at_least_m(local.cell_size_m),
            AgentConfig::default().precision
        );
    }

    #[test]
    fn an_empty_file_is_the_default() {
        let config = AgentFileConfig::parse("", Path::new("empty.toml")).unwrap();
        assert_eq!(config, AgentFileConfig::default());
    }

    #[test]
    fn unknown_keys_name_the_line() {
        let error = AgentFileConfig::parse(
            "[mqtt]\nurl = \"mqtt://x:1\"\nport = 1\n",
            Path::new("a.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("a.toml"), "{error}");
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("port"), "{error}");
    }

    #[test]
    fn bad_values_are_refused_with_their_name() {
        for (text, expected) in [
            ("device_id = \"car/1\"", "device_id"),
            ("[pipeline]\ntime_zone = \"Mars/Base\"", "Mars/Base"),
            (
                "[pipeline.trips]\nstop_radius_m = -5.0",
                "trips.stop_radius_m",
            ),
            ("[pipeline.upload]\nperiod_days = 0", "period_days"),
            (
                "[[pipeline.stores]]\nid = 1\nlat = 95.0\nlon = 0.0\nradius_m = 100.0",
                "store 1",
            ),
        ] {
            let error = AgentFileConfig::parse(text, Path::new("a.toml"))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
