//! Throughput of the agent on a recorded drive: NMEA text to summaries, the pipeline alone, and
//! the stay-point detector alone.
//!
//! ```sh
//! cargo bench -p drivetag-agent --bench pipeline
//! ```
//!
//! The trace is `switzerland-2010-04-03.nmea` from `../shared/data` (3 h at 1 Hz, 38 938
//! lines, 10 327 fixes); set `DRIVETAG_DATA_DIR` to read it from elsewhere. Without it the
//! bench says so and measures nothing. Rates are per NMEA line ("sentences/s") for the end-to-
//! end case and per fix ("samples/s") for the others, so they compare with the targets in the
//! footprint example (`cargo run --release -p drivetag-agent --example footprint`).
#![allow(clippy::unwrap_used)] // A bench may panic on a broken recording.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use drivetag_agent::config::{PipelineConfig, PlaceRules};
use drivetag_agent::pipeline::Pipeline;
use drivetag_agent::sample::{Fix, Sample};
use drivetag_agent::sources::nmea::NmeaReader;
use drivetag_agent::transforms::stays::StayDetector;

const TRACE: &str = "switzerland-2010-04-03.nmea";

fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("DRIVETAG_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data"))
        });
    dir.join(TRACE).exists().then_some(dir)
}

/// Runs the whole pipeline over `fixes` and returns how many summaries came out, so the
/// optimiser cannot drop the work.
fn summarise(fixes: impl Iterator<Item = Fix>) -> usize {
    let mut pipeline = Pipeline::new(PipelineConfig::default()).unwrap();
    let mut outputs = 0;
    for fix in fixes {
        pipeline.push(Sample::Fix(fix));
        outputs += pipeline.drain().count();
    }
    pipeline.finish();
    outputs + pipeline.drain().count()
}

fn benches(c: &mut Criterion) {
    let Some(dir) = data_dir() else {
        eprintln!(
            "SKIPPED: {TRACE} not found (../shared/data or DRIVETAG_DATA_DIR); nothing measured"
        );
        return;
    };
    let text = std::fs::read(dir.join(TRACE)).unwrap();
    let lines = text.iter().filter(|&&b| b == b'\n').count() as u64;
    let fixes: Vec<Fix> = NmeaReader::new(text.as_slice())
        .filter_map(Result::ok)
        .collect();
    let trackintel = PlaceRules {
        bridge_gaps: false,
        ..PlaceRules::default()
    };

    let mut group = c.benchmark_group("agent");
    group.throughput(Throughput::Elements(lines));
    group.bench_function("nmea_to_summaries", |b| {
        b.iter(|| summarise(NmeaReader::new(black_box(text.as_slice())).filter_map(Result::ok)))
    });
    group.throughput(Throughput::Elements(fixes.len() as u64));
    group.bench_function("pipeline_from_fixes", |b| {
        b.iter(|| summarise(black_box(&fixes).iter().copied()))
    });
    group.bench_function("stay_detector", |b| {
        b.iter(|| {
            let mut detector = StayDetector::new(&trackintel);
            let mut stays = 0usize;
            for fix in black_box(&fixes) {
                stays += usize::from(detector.push(*fix).is_some());
            }
            stays + usize::from(detector.finish().is_some())
        })
    });
    group.finish();
}

criterion_group!(agent, benches);
criterion_main!(agent);
