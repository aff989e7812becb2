//! Arbitrary bytes as a GPX document.
//!
//! Properties: reading never panics; every fix is a finite position on the globe; every bad
//! point is numbered 1..=points, in document order.

#![no_main]

use drivetag_agent::sources::gpx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(items) = gpx::read(data) else {
        return;
    };
    let points = items.len() as u64;
    let mut previous = 0;
    for item in items {
        match item {
            Ok(fix) => {
                assert!(
                    fix.lat.is_finite() && (-90.0..=90.0).contains(&fix.lat),
                    "latitude off the globe: {fix:?}"
                );
                assert!(
                    fix.lon.is_finite() && (-180.0..=180.0).contains(&fix.lon),
                    "longitude off the globe: {fix:?}"
                );
                if let Some(speed) = fix.speed_mps {
                    assert!(speed.is_finite() && speed >= 0.0, "speed {speed}: {fix:?}");
                }
            }
            Err(bad) => {
                assert!(
                    (1..=points).contains(&bad.line) && bad.line > previous,
                    "bad point {} of {points} after {previous}: {bad:?}",
                    bad.line
                );
                previous = bad.line;
            }
        }
    }
});
