//! What `drivetag-agent summarize` prints: a table for people, JSON for scripts.
//!
//! The JSON field names are a contract: `trips[].start`, `end`, `distance_km`, `duration_s`,
//! `max_speed_kmh`, `harsh_accel`, `harsh_brake`, `harsh_corner`, `overspeed_s`,
//! `driving_score`, and `summary.driving_score` (the distance-weighted score over all trips)
//! keep their names and meaning.

use std::fmt::Write as _;

use drivetag_shared::wire::{Envelope, Uplink};
use drivetag_shared::{CellSize, DeviceId, codec};
use serde_json::{Value, json};

use crate::pipeline::Style;
use crate::sample::Millis;
use crate::sources::BadInput;
use crate::sources::detect::Format;
use crate::transforms::clean::CleanStats;
use crate::transforms::days::Day;
use crate::transforms::places::{Places, Role};
use crate::transforms::score::{Score, StyleTotals};
use crate::transforms::stays::Stay;
use crate::transforms::trip::Trip;

/// Everything one summarize run found.
#[derive(Debug, Clone)]
pub struct Run {
    /// The inputs, in order, with their detected format.
    pub files: Vec<(String, Format)>,
    /// Fixes read (before cleaning).
    pub fixes: u64,
    /// What cleaning dropped.
    pub clean: CleanStats,
    /// Bad input lines.
    pub bad: BadInput,
    /// Trips.
    pub trips: Vec<Trip>,
    /// Days.
    pub days: Vec<Day>,
    /// Stays.
    pub stays: Vec<Stay>,
    /// Places per period.
    pub places: Vec<Places>,
    /// Style per period.
    pub styles: Vec<Style>,
    /// The grid size of cells that would leave the car.
    pub cell_size: CellSize,
}

impl Run {
    /// An empty run.
    pub fn new(cell_size: CellSize) -> Self {
        Run {
            files: Vec::new(),
            fixes: 0,
            clean: CleanStats::default(),
            bad: BadInput::default(),
            trips: Vec::new(),
            days: Vec::new(),
            stays: Vec::new(),
            places: Vec::new(),
            styles: Vec::new(),
            cell_size,
        }
    }

    /// All trips combined.
    pub fn totals(&self) -> StyleTotals {
        let mut totals = StyleTotals::default();
        for trip in &self.trips {
            totals.add(&trip.style, &trip.score);
        }
        totals
    }

    /// Bytes the summaries would take on the wire, framed, per kind.
    pub fn wire_bytes(&self) -> [(&'static str, usize); 4] {
        let device = DeviceId::new("hu-00012345").expect("a valid id");
        let framed = |body: Uplink| {
            codec::encode(&Envelope {
                device: device.clone(),
                seq: 1,
                created_s: 1_775_000_000,
                body,
            })
            .len()
        };
        [
            (
                "trip",
                self.trips
                    .iter()
                    .map(|t| framed(Uplink::Trip(t.to_wire(self.cell_size))))
                    .sum(),
            ),
            (
                "day",
                self.days
                    .iter()
                    .map(|d| framed(Uplink::Day(d.to_wire())))
                    .sum(),
            ),
            (
                "places",
                self.places
                    .iter()
                    .map(|p| framed(Uplink::Places(p.to_wire(self.cell_size))))
                    .sum(),
            ),
            (
                "style",
                self.styles
                    .iter()
                    .map(|s| framed(Uplink::Style(s.to_wire())))
                    .sum(),
            ),
        ]
    }
}

/// ISO 8601 UTC with milliseconds when there are any.
pub fn iso(t_ms: Millis) -> String {
    jiff::Timestamp::from_millisecond(t_ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("{t_ms} ms"))
}

/// A local day number as a calendar date.
pub fn date(local_day: i32) -> String {
    iso(i64::from(local_day) * 86_400_000)
        .get(..10)
        .unwrap_or_default()
        .to_owned()
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

fn score_json(score: &Score) -> Value {
    json!({
        "accel": round(score.accel, 1),
        "brake": round(score.brake, 1),
        "corner": round(score.corner, 1),
        "speed": round(score.speed, 1),
    })
}

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn role(role: Role) -> &'static str {
    match role {
        Role::Home => "home",
        Role::Work => "work",
        Role::Other => "other",
    }
}

impl Run {
    /// The JSON document: `{"trips", "days", "places", "stays", "summary", "bad_input"}`.
    pub fn json(&self) -> Value {
        let trips: Vec<Value> = self
            .trips
            .iter()
            .map(|trip| {
                let style = &trip.style;
                let wire = trip.to_wire(self.cell_size);
                json!({
                    "start": iso(trip.start_ms),
                    "end": iso(trip.end_ms),
                    "distance_km": round(trip.distance_m / 1000.0, 3),
                    "duration_s": round(trip.duration_s(), 1),
                    "moving_s": round(trip.moving_s, 1),
                    "max_speed_kmh": round(trip.max_speed_mps * 3.6, 1),
                    "mean_speed_kmh": if trip.moving_s > 0.0 { round(trip.distance_m / trip.moving_s * 3.6, 1) } else { 0.0 },
                    "harsh_accel": style.harsh_accel,
                    "harsh_brake": style.harsh_brake,
                    "harsh_corner": style.harsh_corner,
                    "overspeed_s": round(trip.overspeed_s, 1),
                    "driving_score": round(trip.score.total, 1),
                    "score_terms": score_json(&trip.score),
                    "accel_p01_mps2": round(style.accel_p01_mps2, 2),
                    "accel_p99_mps2": round(style.accel_p99_mps2, 2),
                    "lateral_p99_mps2": round(style.lateral_p99_mps2, 2),
                    "accel_rms_mps2": round(style.accel_rms_mps2, 3),
                    "speed_cv": round(style.speed_cv, 3),
                    "night_share": if trip.duration_s() > 0.0 { round(trip.night_s / trip.duration_s(), 3) } else { 0.0 },
                    "speed_band_pct": wire.speed_band_pct,
                    "start_local_hour": trip.start_local.hour,
                    "fixes": trip.fixes,
                    "start_cell": [wire.start_cell.lat_idx(), wire.start_cell.lon_idx()],
                    "end_cell": [wire.end_cell.lat_idx(), wire.end_cell.lon_idx()],
                })
            })
            .collect();
        let days: Vec<Value> = self
            .days
            .iter()
            .map(|day| {
                json!({
                    "date": date(day.local_day),
                    "weekday": WEEKDAYS[usize::from(day.weekday.min(6))],
                    "weekend": day.is_weekend(),
                    "distance_km": round(day.distance_m / 1000.0, 3),
                    "trips": day.trips,
                    "long_trips": day.long_trips,
                    "driving_s": round(day.driving_s, 1),
                    "night_share": if day.driving_s > 0.0 { round(day.night_s / day.driving_s, 3) } else { 0.0 },
                    "commute_trips": day.commute_trips,
                    "max_speed_kmh": round(day.max_speed_mps * 3.6, 1),
                    "harsh_accel": day.style.harsh_accel,
                    "harsh_brake": day.style.harsh_brake,
                    "harsh_corner": day.style.harsh_corner,
                    "driving_score": day.score().map(|s| round(s.total, 1)),
                })
            })
            .collect();
        let places: Vec<Value> = self
            .places
            .iter()
            .flat_map(|period| {
                period.places.iter().map(move |place| {
                    json!({
                        "period_start": date(period.from_local_day),
                        "lat": round(place.lat, 5),
                        "lon": round(place.lon, 5),
                        "role": role(place.role),
                        "visits": place.visits,
                        "dwell_s": round(place.dwell_s, 0),
                    })
                })
            })
            .collect();
        let stays: Vec<Value> = self
            .stays
            .iter()
            .map(|stay| {
                json!({
                    "start": iso(stay.start_ms),
                    "end": iso(stay.end_ms),
                    "duration_s": round(stay.duration_s(), 1),
                    "lat": round(stay.lat, 5),
                    "lon": round(stay.lon, 5),
                    "bridged": stay.bridged,
                })
            })
            .collect();
        let visits: Vec<Value> = self
            .places
            .iter()
            .flat_map(|period| {
                period.visits.iter().map(move |visit| {
                    json!({
                        "period_start": date(period.from_local_day),
                        "id": visit.id,
                        "kind": visit.kind.as_str(),
                        "visits": visit.visits,
                        "dwell_s": round(visit.dwell_s, 0),
                    })
                })
            })
            .collect();
        let store_distances: Vec<Value> = self
            .places
            .iter()
            .flat_map(|period| {
                period.store_distances_m.iter().map(move |(id, metres)| {
                    json!({"period_start": date(period.from_local_day), "store_id": id, "home_distance_km": round(metres / 1000.0, 2)})
                })
            })
            .collect();
        let totals = self.totals();
        let score = totals.score();
        let wire_bytes: serde_json::Map<String, Value> = self
            .wire_bytes()
            .into_iter()
            .map(|(kind, bytes)| (kind.to_owned(), json!(bytes)))
            .collect();
        let by_reason: serde_json::Map<String, Value> = self
            .bad
            .counts()
            .map(|(reason, count)| (reason.as_str().to_owned(), json!(count)))
            .collect();
        let examples: Vec<Value> = self
            .bad
            .examples()
            .map(|(file, bad)| {
                json!({"file": file, "line": bad.line, "reason": bad.reason.as_str(), "detail": bad.detail})
            })
            .collect();
        json!({
            "trips": trips,
            "days": days,
            "places": places,
            "stays": stays,
            "poi_visits": visits,
            "store_distances": store_distances,
            "summary": {
                "files": self.files.iter().map(|(name, format)| json!({"file": name, "format": format.as_str()})).collect::<Vec<_>>(),
                "fixes_read": self.fixes,
                "fixes_kept": self.clean.kept,
                "trips": self.trips.len(),
                "distance_km": round(totals.distance_m / 1000.0, 3),
                "moving_s": round(totals.moving_s, 1),
                "harsh_accel": totals.harsh_accel,
                "harsh_brake": totals.harsh_brake,
                "harsh_corner": totals.harsh_corner,
                "overspeed_s": round(totals.overspeed_s, 1),
                "driving_score": score.map(|s| round(s.total, 1)),
                "score_terms": score.map(|s| score_json(&s)),
                "stays": self.stays.len(),
                "wire_bytes": wire_bytes,
            },
            "bad_input": {
                "total": self.bad.total(),
                "by_reason": by_reason,
                "examples": examples,
                "dropped_fixes": {
                    "repeated_time": self.clean.repeated_time,
                    "jump_over_250_kmh": self.clean.jumps,
                },
            },
        })
    }

    /// The human-readable report.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for (name, format) in &self.files {
            let _ = writeln!(out, "input  {name} ({})", format.as_str());
        }
        let _ = writeln!(
            out,
            "fixes  {} read, {} kept ({} repeated times, {} jumps over 250 km/h dropped)\n",
            self.fixes, self.clean.kept, self.clean.repeated_time, self.clean.jumps
        );
        let _ = writeln!(
            out,
            "{:>3}  {:<24} {:<24} {:>9} {:>8} {:>8} {:>11} {:>9} {:>5}",
            "#",
            "start (UTC)",
            "end (UTC)",
            "km",
            "minutes",
            "max km/h",
            "harsh a/b/c",
            "speeding",
            "score"
        );
        for (i, trip) in self.trips.iter().enumerate() {
            let style = &trip.style;
            let _ = writeln!(
                out,
                "{:>3}  {:<24} {:<24} {:>9.3} {:>8.1} {:>8.1} {:>11} {:>8.0}s {:>5.0}",
                i + 1,
                iso(trip.start_ms),
                iso(trip.end_ms),
                trip.distance_m / 1000.0,
                trip.duration_s() / 60.0,
                trip.max_speed_mps * 3.6,
                format!(
                    "{}/{}/{}",
                    style.harsh_accel, style.harsh_brake, style.harsh_corner
                ),
                trip.overspeed_s,
                trip.score.total,
            );
        }
        if self.trips.is_empty() {
            let _ = writeln!(out, "     no trips");
        }
        if !self.days.is_empty() {
            let _ = writeln!(
                out,
                "\n{:<10} {:<3} {:>9} {:>5} {:>8} {:>7} {:>5}",
                "day", "", "km", "trips", "driving", "commute", "score"
            );
            for day in &self.days {
                let _ = writeln!(
                    out,
                    "{:<10} {:<3} {:>9.3} {:>5} {:>7.0}m {:>7} {:>5}",
                    date(day.local_day),
                    WEEKDAYS[usize::from(day.weekday.min(6))],
                    day.distance_m / 1000.0,
                    day.trips,
                    day.driving_s / 60.0,
                    day.commute_trips,
                    day.score()
                        .map_or("-".to_owned(), |s| format!("{:.0}", s.total)),
                );
            }
        }
        let places: Vec<_> = self
            .places
            .iter()
            .flat_map(|p| p.places.iter().map(move |place| (p, place)))
            .collect();
        if !places.is_empty() {
            let _ = writeln!(
                out,
                "\n{:<10} {:<6} {:>10} {:>11} {:>6} {:>9}",
                "period", "role", "lat", "lon", "visits", "dwell"
            );
            for (period, place) in places {
                let _ = writeln!(
                    out,
                    "{:<10} {:<6} {:>10.5} {:>11.5} {:>6} {:>8.0}m",
                    date(period.from_local_day),
                    role(place.role),
                    place.lat,
                    place.lon,
                    place.visits,
                    place.dwell_s / 60.0
                );
            }
        }
        let totals = self.totals();
        let _ = writeln!(
            out,
            "\ntotal  {} trips, {:.3} km, {} stays, harsh a/b/c {}/{}/{}, driving score {}",
            self.trips.len(),
            totals.distance_m / 1000.0,
            self.stays.len(),
            totals.harsh_accel,
            totals.harsh_brake,
            totals.harsh_corner,
            totals.score().map_or("-".to_owned(), |s| format!(
                "{:.1} (accel {:.0}, brake {:.0}, corner {:.0}, speed {:.0})",
                s.total, s.accel, s.brake, s.corner, s.speed
            )),
        );
        let bytes: Vec<String> = self
            .wire_bytes()
            .iter()
            .map(|(kind, b)| format!("{kind} {b} B"))
            .collect();
        let _ = writeln!(out, "wire   {}", bytes.join(", "));
        if self.bad.total() > 0 {
            let counts: Vec<String> = self
                .bad
                .counts()
                .map(|(reason, n)| format!("{reason} {n}"))
                .collect();
            let _ = writeln!(
                out,
                "bad    {} lines skipped: {}",
                self.bad.total(),
                counts.join(", ")
            );
            for (file, bad) in self.bad.examples() {
                let _ = writeln!(
                    out,
                    "       {file}:{}: {}: {}",
                    bad.line, bad.reason, bad.detail
                );
            }
        }
        out
    }
}
