//! Arbitrary bytes as an NMEA 0183 stream.
//!
//! Properties: the reader never panics; every fix is a finite position on the globe with a speed,
//! if any, of 0 to 300 m/s; every bad line names a line that exists (1-based, at most the number
//! of lines read), and the reader counts every line. Fix times are not checked for order: real
//! receivers step back, and the cleaner drops such fixes later.

#![no_main]

use drivetag_agent::sources::nmea::NmeaReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The reader splits on '\n' like `BufRead::read_until`: a last line without one still counts.
    let lines = data.iter().filter(|&&b| b == b'\n').count() as u64
        + u64::from(data.last().is_some_and(|&b| b != b'\n'));
    let mut reader = NmeaReader::new(data);
    for item in &mut reader {
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
                // The reader refuses speeds a land vehicle cannot have (over 300 m/s).
                if let Some(speed) = fix.speed_mps {
                    assert!((0.0..=300.001).contains(&speed), "speed {speed}: {fix:?}");
                }
            }
            Err(bad) => assert!(
                (1..=lines).contains(&bad.line),
                "bad line {} of {lines}: {bad:?}",
                bad.line
            ),
        }
    }
    assert_eq!(reader.stats().lines, lines, "lines counted");
});
