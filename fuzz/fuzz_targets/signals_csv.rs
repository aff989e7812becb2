//! Arbitrary bytes as a vehicle-signal CSV.
//!
//! Properties: neither the header nor any row panics; every signal keeps the ranges the
//! reader promises (speed 0–500 km/h, odometer 0–10 million km, rpm 0–20 000, fuel 0–2 000 l,
//! charge 0–100 %), all finite, and a time that a calendar can place (what jiff's `Timestamp`
//! can hold, years -9999 to 9999), so the pipeline's local clock can read it.

#![no_main]

use drivetag_agent::sources::signals::SignalReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = SignalReader::new(data) else {
        return;
    };
    let lines = data.split(|&b| b == b'\n' || b == b'\r').count() as u64;
    let (min_ms, max_ms) = (
        jiff::Timestamp::MIN.as_millisecond(),
        jiff::Timestamp::MAX.as_millisecond(),
    );
    for item in reader {
        match item {
            Ok(signal) => {
                assert!(
                    (min_ms..=max_ms).contains(&signal.t_ms),
                    "time outside the calendar: {signal:?}"
                );
                let within = |value: Option<f32>, high: f32| {
                    value.is_none_or(|v| v.is_finite() && (0.0..=high).contains(&v))
                };
                assert!(within(signal.speed_mps, 500.0 / 3.6 + 1e-3), "{signal:?}");
                assert!(within(signal.rpm, 20_000.0), "{signal:?}");
                assert!(within(signal.fuel_l, 2_000.0), "{signal:?}");
                assert!(within(signal.soc_pct, 100.0), "{signal:?}");
                assert!(
                    signal
                        .odometer_m
                        .is_none_or(|m| m.is_finite() && (0.0..=10e9).contains(&m)),
                    "{signal:?}"
                );
            }
            Err(bad) => assert!(bad.line <= lines + 1, "bad line {} of {lines}", bad.line),
        }
    }
});
