//! The driving score falls when the same drive is driven harder.
//!
//! Each recorded drive is replayed as recorded and as variants made harsher: faster
//! throughout, braking harder, accelerating harder. The variants keep the route and the
//! receiver, so only the driving changes, as in a labelled normal-vs-aggressive pair.
#![allow(clippy::unwrap_used)] // Tests may panic on what they did not expect.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use drivetag_agent::config::PipelineConfig;
use drivetag_agent::pipeline::{Output, Pipeline};
use drivetag_agent::sample::{Fix, Sample};
use drivetag_agent::sources::{gpx, nmea::NmeaReader};
use drivetag_agent::transforms::score::{Score, StyleTotals};

fn recording(name: &str) -> Option<Vec<Fix>> {
    let dir = std::env::var_os("DRIVETAG_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data"))
        });
    let path = dir.join(name);
    if !path.exists() {
        eprintln!("SKIPPED: {} not found", path.display());
        return None;
    }
    let file = BufReader::new(File::open(path).unwrap());
    let items: Vec<_> = if name.ends_with(".gpx") {
        gpx::read(file).unwrap()
    } else {
        NmeaReader::new(file).collect()
    };
    Some(
        items
            .into_iter()
            .flatten()
            .filter(|f| f.speed_mps.is_some())
            .collect(),
    )
}

/// The distance-weighted score of every trip in `fixes`.
fn score(fixes: &[Fix]) -> Score {
    let mut pipeline = Pipeline::new(PipelineConfig::default()).unwrap();
    for fix in fixes {
        pipeline.push(Sample::Fix(*fix));
    }
    pipeline.finish();
    let mut totals = StyleTotals::default();
    for output in pipeline.drain() {
        if let Output::Trip(trip) = output {
            totals.add(&trip.style, &trip.score);
        }
    }
    totals.score().expect("the drive has trips")
}

/// The same positions driven `factor` times faster.
fn faster(fixes: &[Fix], factor: f64) -> Vec<Fix> {
    let t0 = fixes[0].t_ms;
    fixes
        .iter()
        .map(|f| Fix {
            t_ms: t0 + ((f.t_ms - t0) as f64 / factor) as i64,
            speed_mps: f.speed_mps.map(|v| v * factor as f32),
            ..*f
        })
        .collect()
}

/// The same drive with every interval in which speed changes in the chosen direction by
/// more than 0.3 m/s taking `factor` of its time: the same speed change, harder.
fn harder(fixes: &[Fix], braking: bool, factor: f64) -> Vec<Fix> {
    let mut out = vec![fixes[0]];
    let mut t = fixes[0].t_ms;
    for pair in fixes.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let change = f64::from(b.speed_mps.unwrap() - a.speed_mps.unwrap());
        let hit = if braking { change < -0.3 } else { change > 0.3 };
        let dt = b.t_ms - a.t_ms;
        t += if hit && dt <= 5_000 {
            (dt as f64 * factor).round() as i64
        } else {
            dt
        };
        out.push(Fix { t_ms: t, ..b });
    }
    out
}

fn check(name: &str) {
    let Some(fixes) = recording(name) else { return };
    let base = score(&fixes);
    let fast = score(&faster(&fixes, 1.25));
    let braking = score(&harder(&fixes, true, 0.5));
    let accelerating = score(&harder(&fixes, false, 0.5));
    println!(
        "{name}: as recorded {:.1}, 25 % faster {:.1}, braking twice as hard {:.1}, accelerating twice as hard {:.1}",
        base.total, fast.total, braking.total, accelerating.total
    );
    assert!(
        fast.total < base.total - 2.0,
        "{name}: faster {fast:?} vs {base:?}"
    );
    assert!(
        braking.total < base.total - 2.0,
        "{name}: braking {braking:?} vs {base:?}"
    );
    assert!(
        braking.brake < base.brake,
        "{name}: brake term {braking:?} vs {base:?}"
    );
    assert!(
        accelerating.total < base.total - 2.0,
        "{name}: accelerating {accelerating:?} vs {base:?}"
    );
    assert!(
        accelerating.accel < base.accel,
        "{name}: accel term {accelerating:?} vs {base:?}"
    );
}

#[test]
fn switzerland_scores_lower_when_driven_harder() {
    check("switzerland-2010-04-03.nmea");
}

#[test]
fn regensburg_scores_lower_when_driven_harder() {
    check("regensburg-geko-2010-04-11.nmea");
}

#[test]
fn munich_scores_lower_when_driven_harder() {
    check("munich-2009-04-01.nmea");
}

#[test]
fn dg100_scores_lower_when_driven_harder() {
    check("dg100.gpx");
}
