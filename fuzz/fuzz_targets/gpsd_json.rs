//! Arbitrary bytes as gpsd JSON lines.
//!
//! Properties: the reader never panics and always ends; every fix is a finite position on the
//! globe with a finite, non-negative speed if any; every bad line names a line that exists.

#![no_main]

use drivetag_agent::sources::gpsd::GpsdReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let lines = data.iter().filter(|&&b| b == b'\n').count() as u64
        + u64::from(data.last().is_some_and(|&b| b != b'\n'));
    let mut items = 0u64;
    for item in GpsdReader::new(data) {
        items += 1;
        assert!(items <= lines, "{items} items from {lines} lines");
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
            Err(bad) => assert!(
                (1..=lines).contains(&bad.line),
                "bad line {} of {lines}: {bad:?}",
                bad.line
            ),
        }
    }
});
