use proptest::prelude::*;

use super::*;
use crate::wire::*;
use crate::{Cell, CellSize};

/// A trip as a head unit really sends it: a 25-minute, 18 km commute.
pub(crate) fn typical_trip() -> TripSummary {
    TripSummary {
        start_s: 1_775_000_000,
        start_local_hour_of_week: 2 * 24 + 8,
        duration_s: 1_576,
        distance_m: 17_987,
        moving_s: 1_402,
        max_speed_cms: 2_903,
        speed_band_pct: [22, 31, 28, 19, 0],
        night_pct: 0,
        harsh_accel: 2,
        harsh_brake: 3,
        harsh_corner: 1,
        accel_p01_cms2: -241,
        accel_p99_cms2: 187,
        lateral_p99_cms2: 265,
        speed_cv_pct: 48,
        overspeed_s: 35,
        score: 82,
        start_cell: Cell::containing(49.0441, 12.0982, CellSize::Km1).unwrap(),
        end_cell: Cell::containing(49.0237, 12.0354, CellSize::Km1).unwrap(),
    }
}

/// A busy day: five trips, 212 km, driving in eight different hours.
pub(crate) fn typical_day() -> DaySummary {
    let mut hours = [0u8; 24];
    for (hour, minutes) in [
        (7, 35),
        (8, 12),
        (12, 20),
        (13, 18),
        (17, 41),
        (18, 25),
        (21, 9),
    ] {
        hours[hour] = minutes;
    }
    DaySummary {
        local_day: 20_543,
        utc_offset_min: 480,
        distance_m: 212_480,
        trips: 5,
        long_trips: 1,
        driving_s: 9_600,
        moving_s: 8_310,
        night_pct: 3,
        driving_min_by_local_hour: hours,
        commute_trips: 2,
        max_speed_cms: 3_611,
        harsh_accel: 4,
        harsh_brake: 6,
        harsh_corner: 2,
        overspeed_s: 412,
        score: 74,
        odometer_m: Some(48_212_000),
        energy: Some(EnergyUse {
            fuel_ml: 14_200,
            soc_used_permille: 0,
        }),
    }
}

fn envelope(body: Uplink) -> Envelope {
    Envelope {
        device: DeviceId::new("hu-00012345").unwrap(),
        seq: 48_213,
        created_s: 1_775_001_600,
        body,
    }
}

#[test]
fn a_typical_trip_fits_in_64_bytes() {
    let body = postcard::to_allocvec(&typical_trip()).unwrap();
    let frame = encode(&envelope(Uplink::Trip(typical_trip())));
    println!(
        "trip: body {} bytes, framed envelope {} bytes",
        body.len(),
        frame.len()
    );
    assert!(body.len() <= 64, "trip body is {} bytes", body.len());
    // Version, an 11-character device id, seq, time and kind add 23 bytes.
    assert_eq!(frame.len(), body.len() + 23);
}

#[test]
fn a_typical_day_fits_in_256_bytes() {
    let body = postcard::to_allocvec(&typical_day()).unwrap();
    let frame = encode(&envelope(Uplink::Day(typical_day())));
    println!(
        "day: body {} bytes, framed envelope {} bytes",
        body.len(),
        frame.len()
    );
    assert!(body.len() <= 256, "day body is {} bytes", body.len());
    assert!(frame.len() <= 256, "day frame is {} bytes", frame.len());
}

/// The bytes of one envelope, written down. If this test fails, the wire format changed:
/// that needs a new major version, not a new expected value.
#[test]
fn the_wire_format_of_a_trip_is_frozen() {
    let bytes = encode(&envelope(Uplink::Trip(typical_trip())));
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        concat!(
            "0100",                     // version 1.0
            "0b68752d3030303132333435", // device "hu-00012345", length-prefixed
            "d5f802",                   // seq 48213, varint
            "80c0b1ce06",               // created_s 1775001600
            "01",                       // Uplink::Trip
            "c0b3b1ce06",               // start_s 1775000000
            "38",                       // start_local_hour_of_week 56
            "a80c",                     // duration_s 1576
            "c38c01",                   // distance_m 17987
            "fa0a",                     // moving_s 1402
            "d716",                     // max_speed_cms 2903
            "161f1c1300",               // speed_band_pct [22, 31, 28, 19, 0]
            "00",                       // night_pct
            "020301",                   // harsh accel 2, brake 3, corner 1
            "e103",                     // accel_p01_cms2 -241, zigzag
            "f602",                     // accel_p99_cms2 187
            "9204",                     // lateral_p99_cms2 265
            "30",                       // speed_cv_pct 48
            "23",                       // overspeed_s 35
            "52",                       // score 82
            "03d04cf212",               // start cell: Km1, lat 4904, lon 1209 (zigzag)
            "03cc4ce612",               // end cell: Km1, lat 4902, lon 1203
        )
    );
}

#[test]
fn an_unknown_major_version_is_refused_before_the_body() {
    let mut bytes = encode(&envelope(Uplink::Trip(typical_trip())));
    bytes[0] = 2;
    // Garble the body: the version check must come first.
    bytes.truncate(5);
    assert_eq!(
        decode::<Envelope>(&bytes),
        Err(DecodeError::UnknownVersion {
            frame: "envelope",
            found: 2
        })
    );
}

#[test]
fn the_header_survives_an_unknown_major_version() {
    let mut bytes = encode(&envelope(Uplink::Day(typical_day())));
    bytes[0] = 9;
    let header = peek_header(&bytes).unwrap();
    assert_eq!(header.major, 9);
    assert_eq!(header.device.as_str(), "hu-00012345");
    assert_eq!((header.seq, header.created_s), (48_213, 1_775_001_600));
}

#[test]
fn trailing_bytes_are_refused_unless_a_newer_minor_wrote_them() {
    let mut bytes = encode(&envelope(Uplink::Trip(typical_trip())));
    bytes.extend_from_slice(&[0xAA, 0xBB]);
    assert_eq!(
        decode::<Envelope>(&bytes),
        Err(DecodeError::TrailingBytes {
            frame: "envelope",
            count: 2
        })
    );
    bytes[1] = MINOR + 1;
    assert_eq!(
        decode::<Envelope>(&bytes),
        Ok(envelope(Uplink::Trip(typical_trip())))
    );
}

#[test]
fn an_unknown_kind_is_malformed() {
    let mut bytes = encode(&envelope(Uplink::Trip(typical_trip())));
    // The body's variant tag follows the 2 version bytes, 12 device bytes, 3 seq and 5 time bytes.
    assert_eq!(bytes[22], 1);
    bytes[22] = 42;
    assert!(matches!(
        decode::<Envelope>(&bytes),
        Err(DecodeError::Malformed {
            frame: "envelope",
            ..
        })
    ));
}

#[test]
fn an_invalid_device_or_cell_is_malformed() {
    let mut bytes = encode(&envelope(Uplink::Trip(typical_trip())));
    bytes[3] = b'/';
    assert!(matches!(
        decode::<Envelope>(&bytes),
        Err(DecodeError::Malformed { .. })
    ));
    // Replace the end cell with latitude index 9000 at 1 km, which is 90°N: off the globe.
    let mut bytes = encode(&envelope(Uplink::Trip(typical_trip())));
    bytes.truncate(bytes.len() - 5);
    bytes.extend_from_slice(&[0x03, 0xd0, 0x8c, 0x01, 0xe6, 0x12]);
    assert!(matches!(
        decode::<Envelope>(&bytes),
        Err(DecodeError::Malformed { .. })
    ));
}

/// Found by `fuzz/fuzz_targets/envelope_decode.rs`: postcard reads `97 00` as 23, which encodes
/// as `17`, so one message had two encodings and did not re-encode to the bytes it came from.
#[test]
fn over_long_integers_are_malformed_so_a_frame_has_one_encoding() {
    let envelope = envelope(Uplink::Trip(typical_trip()));
    let canonical = encode(&envelope);
    // seq 48 213 is the varint `d5 f8 02` after the 2 version and 12 device bytes.
    assert_eq!(canonical[14..17], [0xd5, 0xf8, 0x02]);
    let mut over_long = canonical.clone();
    over_long.splice(14..17, [0xd5, 0xf8, 0x82, 0x00]);
    assert!(matches!(
        decode::<Envelope>(&over_long),
        Err(DecodeError::Malformed {
            frame: "envelope",
            ..
        })
    ));
    // A newer minor may append bytes, but not re-spell the ones this build knows.
    over_long[1] = MINOR + 1;
    assert!(matches!(
        decode::<Envelope>(&over_long),
        Err(DecodeError::Malformed { .. })
    ));
    assert_eq!(decode::<Envelope>(&canonical), Ok(envelope));
}

#[test]
fn empty_and_one_byte_inputs_are_truncated() {
    assert_eq!(
        decode::<Ack>(&[]),
        Err(DecodeError::Truncated { frame: "ack" })
    );
    assert_eq!(
        decode::<Ack>(&[MAJOR]),
        Err(DecodeError::Truncated { frame: "ack" })
    );
    assert!(matches!(
        peek_header(&[MAJOR, MINOR, 3, b'a']),
        Err(DecodeError::Truncated { .. })
    ));
}

fn round_trips<F: Frame + PartialEq + std::fmt::Debug>(frame: &F) -> Result<(), TestCaseError> {
    let bytes = encode(frame);
    prop_assert_eq!(&decode::<F>(&bytes)?, frame);
    // Every strict prefix is truncated, never mistaken for a shorter message.
    for cut in 0..bytes.len() {
        let error = decode::<F>(&bytes[..cut]).expect_err("a prefix decoded");
        prop_assert!(
            matches!(error, DecodeError::Truncated { .. }),
            "prefix of {} bytes gave {:?}",
            cut,
            error
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn envelopes_round_trip(frame in any::<Envelope>()) {
        round_trips(&frame)?;
        let header = peek_header(&encode(&frame))?;
        prop_assert_eq!((header.device, header.seq, header.created_s), (frame.device, frame.seq, frame.created_s));
    }

    #[test]
    fn acks_round_trip(frame in any::<Ack>()) {
        round_trips(&frame)?;
    }

    #[test]
    fn configs_round_trip(frame in any::<ConfigUpdate>()) {
        round_trips(&frame)?;
    }

    #[test]
    fn status_reports_round_trip(frame in any::<StatusReport>()) {
        round_trips(&frame)?;
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = peek_header(&bytes);
        // Whatever decodes re-encodes to the same bytes (but for bytes a newer minor may append).
        if let Ok(frame) = decode::<Envelope>(&bytes) {
            let again = encode(&frame);
            prop_assert_eq!(&again[2..], &bytes[2..again.len()]);
        }
        let _ = decode::<Ack>(&bytes);
        let _ = decode::<ConfigUpdate>(&bytes);
        let _ = decode::<StatusReport>(&bytes);
    }

    #[test]
    fn decoding_versioned_garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        // Garbage behind a valid version reaches the body decoder, which must not panic either.
        let mut bytes = vec![MAJOR, MINOR];
        bytes.extend(body);
        let _ = peek_header(&bytes);
        let _ = decode::<Envelope>(&bytes);
        let _ = decode::<Ack>(&bytes);
        let _ = decode::<ConfigUpdate>(&bytes);
        let _ = decode::<StatusReport>(&bytes);
    }
}
