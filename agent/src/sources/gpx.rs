//! GPX 1.0 and 1.1 tracks through the `gpx` crate.
//!
//! Every track point with a time becomes a fix, in document order; GPX 1.0's `<speed>` (m/s)
//! is kept as the reported speed. The `gpx` crate parses the whole document at once, so a GPX
//! file costs memory in proportion to its size; live and long inputs should be NMEA or gpsd.

use std::io::Read;

use super::{BadLine, BadReason};
use crate::sample::Fix;

/// A GPX document that cannot be read at all.
#[derive(Debug, thiserror::Error)]
#[error("GPX document is not readable: {0}")]
pub struct GpxError(String);

/// GPX 1.0 point elements the `gpx` crate refuses (georust/gpx#105): it stops at the first
/// `<course>`, which GPSBabel writes on every point. We drop them before parsing; heading is
/// derived from positions anyway.
const UNSUPPORTED_POINT_ELEMENTS: [&str; 2] = ["course", "magvar"];

/// Reads every timed track point of a GPX document. Points without a time, or off the globe,
/// come back as bad lines numbered by their position among all track points (1-based).
pub fn read(mut input: impl Read) -> Result<Vec<Result<Fix, BadLine>>, GpxError> {
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .map_err(|error| GpxError(error.to_string()))?;
    for element in UNSUPPORTED_POINT_ELEMENTS {
        text = without_element(&text, element);
    }
    let document = gpx::read(text.as_bytes()).map_err(|error| GpxError(error.to_string()))?;
    let points = document
        .tracks
        .iter()
        .flat_map(|track| &track.segments)
        .flat_map(|segment| &segment.points);
    Ok(points
        .enumerate()
        .map(|(index, point)| {
            let number = index as u64 + 1;
            let position = point.point();
            let (lat, lon) = (position.y(), position.x());
            let Some(time) = point.time else {
                return Err(BadLine {
                    line: number,
                    reason: BadReason::MissingTime,
                    detail: "track point without <time>".into(),
                });
            };
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                return Err(BadLine {
                    line: number,
                    reason: BadReason::ImpossibleValue,
                    detail: format!("position {lat},{lon} is off the globe"),
                });
            }
            let time = time::OffsetDateTime::from(time);
            let t_ms = (time.unix_timestamp_nanos() / 1_000_000) as i64;
            Ok(Fix {
                t_ms,
                lat,
                lon,
                speed_mps: point
                    .speed
                    .filter(|speed| speed.is_finite() && *speed >= 0.0)
                    .map(|speed| speed as f32),
                course_deg: None,
                hdop: point.hdop.map(|hdop| hdop as f32),
            })
        })
        .collect())
}

/// `text` without any `<name>...</name>` element.
fn without_element(text: &str, name: &str) -> String {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(&open) {
        let Some(length) = rest[start..].find(&close) else {
            break;
        };
        out.push_str(&rest[..start]);
        rest = &rest[start + length + close.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_points_become_fixes_and_untimed_points_are_reported() {
        let document = r#"<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.0" creator="test" xmlns="http://www.topografix.com/GPX/1/0">
  <trk><trkseg>
    <trkpt lat="45.491561890" lon="-77.696372986"><time>2020-02-14T18:04:30Z</time><speed>0.888889</speed></trkpt>
    <trkpt lat="45.4915" lon="-77.6963"></trkpt>
    <trkpt lat="45.491409302" lon="-77.696434021"><time>2020-02-14T18:04:32.500Z</time></trkpt>
  </trkseg></trk>
</gpx>"#;
        let items = read(document.as_bytes()).unwrap();
        assert_eq!(items.len(), 3);
        let first = items[0].as_ref().unwrap();
        assert_eq!(first.t_ms, 1_581_703_470_000);
        assert!((first.speed_mps.unwrap() - 0.888_889).abs() < 1e-6);
        assert_eq!(
            items[1].as_ref().unwrap_err().reason,
            BadReason::MissingTime
        );
        assert_eq!(items[1].as_ref().unwrap_err().line, 2);
        assert_eq!(items[2].as_ref().unwrap().t_ms, 1_581_703_472_500);
    }

    #[test]
    fn gpx_1_0_course_elements_do_not_stop_the_reader() {
        let document = r#"<?xml version="1.0"?>
<gpx version="1.0" creator="GPSBabel" xmlns="http://www.topografix.com/GPX/1/0"><trk><trkseg>
<trkpt lat="42.5" lon="-88.1"><time>2004-08-07T03:29:08.379Z</time><course>138.919998</course><speed>0.083333</speed></trkpt>
</trkseg></trk></gpx>"#;
        let items = read(document.as_bytes()).unwrap();
        assert_eq!(items[0].as_ref().unwrap().t_ms, 1_091_849_348_379);
        assert_eq!(without_element("a<x>1</x>b<x>2</x>c", "x"), "abc");
    }

    #[test]
    fn a_broken_document_is_an_error_not_a_panic() {
        assert!(read(&b"<gpx><trk><trkseg><trkpt lat=\"x\""[..]).is_err());
        assert!(read(&b"not xml at all"[..]).is_err());
    }
}
