//! Times the stay-point detector alone on a recording, for the trackintel comparison of
//! `tools/crosscheck/crosscheck.sh`.
//!
//! ```sh
//! cargo run --release -p drivetag-agent --example stays_bench -- ../shared/data/dg100.gpx
//! cargo run --release -p drivetag-agent --example stays_bench -- --runs 20 FILE
//! ```
//!
//! The file (NMEA 0183 or GPX, told apart by content) is decoded once; the fixes then go
//! straight into a `StayDetector` under trackintel's rules (`bridge_gaps = false`, 100 m,
//! 5 min, 15 min gap), with no cleaning, so the time is the detector's alone. Prints one JSON
//! line: the fixes, the stays found, and the best of `--runs` (default 100) passes.
#![allow(clippy::unwrap_used)] // An example may panic where a product would report.

use std::hint::black_box;
use std::time::{Duration, Instant};

use drivetag_agent::config::PlaceRules;
use drivetag_agent::sample::Fix;
use drivetag_agent::sources::detect::{Format, detect};
use drivetag_agent::sources::gpx;
use drivetag_agent::sources::nmea::NmeaReader;
use drivetag_agent::transforms::stays::StayDetector;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut runs = 100usize;
    let mut path = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => {
                runs = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .expect("--runs takes a positive number");
            }
            _ => path = Some(arg),
        }
    }
    let Some(path) = path else {
        eprintln!("usage: stays_bench [--runs N] FILE");
        std::process::exit(2);
    };
    let bytes = std::fs::read(&path).unwrap();
    let fixes: Vec<Fix> = match detect(&bytes[..bytes.len().min(4096)]) {
        Format::Gpx => gpx::read(bytes.as_slice())
            .unwrap()
            .into_iter()
            .filter_map(Result::ok)
            .collect(),
        Format::Nmea => NmeaReader::new(bytes.as_slice())
            .filter_map(Result::ok)
            .collect(),
        Format::Gpsd => panic!("{path}: gpsd JSON is not benchmarked"),
    };
    let rules = PlaceRules {
        bridge_gaps: false,
        ..PlaceRules::default()
    };
    let mut best = Duration::MAX;
    let mut stays = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let mut detector = StayDetector::new(&rules);
        let mut found = 0usize;
        for fix in black_box(&fixes) {
            found += usize::from(detector.push(*fix).is_some());
        }
        found += usize::from(detector.finish().is_some());
        best = best.min(start.elapsed());
        stays = black_box(found);
    }
    let best_s = best.as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "file": path,
            "fixes": fixes.len(),
            "stays": stays,
            "runs": runs,
            "best_s": best_s,
            "fixes_per_s": fixes.len() as f64 / best_s,
        })
    );
}
