//! Arbitrary bytes as a drive: a stream of fixes (and a few vehicle signals) near a base point,
//! pushed through the whole pipeline with the default configuration.
//!
//! The first byte picks the base point (Munich, the antimeridian, near the North Pole, the
//! equator at 0°); then each 10-byte record is one sample:
//!
//! | bytes | meaning |
//! | ----- | ------- |
//! | 0–1   | time step, `u16 % 6001` × 100 ms (0 to 600 s; 0 repeats the time) |
//! | 2–3   | latitude step, `i16` × 10⁻⁶° (up to ±3.6 km) |
//! | 4–5   | longitude step, `i16` × 10⁻⁶° |
//! | 6     | reported speed, 0.5 m/s steps; 255 = none |
//! | 7     | bit 0: a vehicle signal instead of a fix, bit 1: its ignition, bit 2: step back in time |
//! | 8–9   | course, `u16` × 0.1° (up to 6553°, as a receiver may send); 65535 = none, 65534 = ∞ |
//!
//! Latitude is clamped to the globe and longitude wraps, so every fix is one a reader could
//! yield.
//!
//! Properties: no panic; every trip starts no later than it ends, has finite non-negative
//! distance, moving time and top speed, moves no longer than it lasts, and scores 0–100 in
//! total and in every part; its wire summary can be built.

#![no_main]

use drivetag_agent::config::PipelineConfig;
use drivetag_agent::pipeline::{Output, Pipeline};
use drivetag_agent::sample::{Fix, Sample, Signal};
use drivetag_agent::transforms::trip::Trip;
use drivetag_shared::CellSize;
use libfuzzer_sys::fuzz_target;

const BASES: [(f64, f64); 4] = [(48.137, 11.575), (65.0, 179.995), (89.99, 0.0), (0.0, 0.0)];
const START_MS: i64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&base, records)) = data.split_first() else {
        return;
    };
    let (mut lat, mut lon) = BASES[usize::from(base) % BASES.len()];
    let mut t_ms = START_MS;
    let mut pipeline = Pipeline::new(PipelineConfig::default()).expect("UTC exists");
    let mut trips = Vec::new();
    for record in records.chunks_exact(10) {
        let word = |at: usize| u16::from_le_bytes([record[at], record[at + 1]]);
        let step_ms = i64::from(word(0) % 6001) * 100;
        let flags = record[7];
        t_ms += if flags & 4 != 0 { -step_ms } else { step_ms };
        lat = (lat + f64::from(word(2) as i16) * 1e-6).clamp(-90.0, 90.0);
        lon += f64::from(word(4) as i16) * 1e-6;
        if lon > 180.0 {
            lon -= 360.0;
        } else if lon < -180.0 {
            lon += 360.0;
        }
        let speed = (record[6] != 255).then(|| f32::from(record[6]) * 0.5);
        let course = match word(8) {
            u16::MAX => None,
            0xFFFE => Some(f32::INFINITY),
            tenths => Some(f32::from(tenths) * 0.1),
        };
        let sample = if flags & 1 != 0 {
            Sample::Signal(Signal {
                t_ms,
                speed_mps: speed,
                ignition: Some(flags & 2 != 0),
                ..Signal::default()
            })
        } else {
            Sample::Fix(Fix {
                speed_mps: speed,
                course_deg: course,
                ..Fix::at(t_ms, lat, lon)
            })
        };
        pipeline.push(sample);
        collect(&mut pipeline, &mut trips);
    }
    pipeline.finish();
    collect(&mut pipeline, &mut trips);
    for trip in trips {
        check(&trip);
    }
});

fn collect(pipeline: &mut Pipeline, trips: &mut Vec<Trip>) {
    trips.extend(pipeline.drain().filter_map(|output| match output {
        Output::Trip(trip) => Some(*trip),
        _ => None,
    }));
}

fn check(trip: &Trip) {
    assert!(
        trip.start_ms <= trip.end_ms,
        "ends before it starts: {trip:?}"
    );
    let finite_non_negative = |value: f64| value.is_finite() && value >= 0.0;
    assert!(finite_non_negative(trip.distance_m), "distance: {trip:?}");
    assert!(finite_non_negative(trip.moving_s), "moving time: {trip:?}");
    assert!(
        finite_non_negative(trip.max_speed_mps),
        "top speed: {trip:?}"
    );
    assert!(
        trip.moving_s <= trip.duration_s() + 1e-6,
        "moving {} s in a {} s trip",
        trip.moving_s,
        trip.duration_s()
    );
    let score = trip.score;
    for part in [
        score.total,
        score.accel,
        score.brake,
        score.corner,
        score.speed,
    ] {
        assert!((0.0..=100.0).contains(&part), "score {score:?}: {trip:?}");
    }
    let summary = trip.to_wire(CellSize::Km1);
    assert!(summary.score <= 100, "{summary:?}");
}
