//! The vehicle-signal CSV: what a head unit reads from the CAN bus or OBD port.
//!
//! ```text
//! time,speed_kmh,odometer_km,rpm,fuel_l,soc_pct,ignition
//! 2024-05-01T08:00:00Z,0,12345.6,800,40.5,,1
//! 2024-05-01T08:00:01.5Z,3.2,12345.6,1100,40.5,,1
//! ```
//!
//! Columns are found by their header, in any order; only `time` is required. `time` is RFC 3339
//! (UTC or with an offset) or Unix seconds. `ignition` is `1`/`0`, `true`/`false` or `on`/`off`.
//! An empty cell means the car did not report that value.

use std::io::Read;

use super::{BadLine, BadReason};
use crate::sample::{Millis, Signal};

/// The columns a signal file may have.
pub const COLUMNS: [&str; 7] = [
    "time",
    "speed_kmh",
    "odometer_km",
    "rpm",
    "fuel_l",
    "soc_pct",
    "ignition",
];

/// A signal file that cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// The header row is missing or unreadable.
    #[error("signal CSV header: {0}")]
    Header(String),
    /// The header has no `time` column.
    #[error("signal CSV has no `time` column (columns: {0})")]
    NoTime(String),
    /// A column name is not one of [`COLUMNS`].
    #[error("signal CSV has unknown column {0:?}; known columns are {COLUMNS:?}")]
    UnknownColumn(String),
}

/// Reads a signal CSV; yields one signal per row, or a bad line for a row that does not parse.
pub struct SignalReader<R: Read> {
    rows: csv::StringRecordsIntoIter<R>,
    columns: Vec<usize>,
}

impl<R: Read> SignalReader<R> {
    /// Reads the header and prepares to read rows.
    pub fn new(input: R) -> Result<Self, SignalError> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(true)
            .comment(Some(b'#'))
            .from_reader(input);
        let header = reader
            .headers()
            .map_err(|error| SignalError::Header(error.to_string()))?
            .clone();
        let mut columns = Vec::with_capacity(header.len());
        for name in header.iter() {
            let index = COLUMNS
                .iter()
                .position(|known| known.eq_ignore_ascii_case(name))
                .ok_or_else(|| SignalError::UnknownColumn(name.to_owned()))?;
            columns.push(index);
        }
        if !columns.contains(&0) {
            return Err(SignalError::NoTime(
                header.iter().collect::<Vec<_>>().join(","),
            ));
        }
        Ok(SignalReader {
            rows: reader.into_records(),
            columns,
        })
    }

    fn row(&self, record: &csv::StringRecord) -> Result<Signal, (BadReason, String)> {
        let mut signal = Signal::default();
        let mut time = None;
        for (cell, &column) in record.iter().zip(&self.columns) {
            if cell.is_empty() {
                continue;
            }
            let number = || {
                cell.parse::<f64>()
                    .ok()
                    .filter(|value| value.is_finite())
                    .ok_or_else(|| {
                        (
                            BadReason::Unparseable,
                            format!("{} {cell:?} is not a number", COLUMNS[column]),
                        )
                    })
            };
            match column {
                0 => time = Some(parse_time(cell)?),
                1 => {
                    signal.speed_mps =
                        Some(in_range(number()?, 0.0, 500.0, "speed_kmh")? as f32 / 3.6)
                }
                2 => {
                    signal.odometer_m =
                        Some(in_range(number()?, 0.0, 10e6, "odometer_km")? * 1000.0)
                }
                3 => signal.rpm = Some(in_range(number()?, 0.0, 20_000.0, "rpm")? as f32),
                4 => signal.fuel_l = Some(in_range(number()?, 0.0, 2_000.0, "fuel_l")? as f32),
                5 => signal.soc_pct = Some(in_range(number()?, 0.0, 100.0, "soc_pct")? as f32),
                _ => signal.ignition = Some(parse_bool(cell)?),
            }
        }
        signal.t_ms = time.ok_or((BadReason::MissingTime, "row without time".to_owned()))?;
        Ok(signal)
    }
}

impl<R: Read> Iterator for SignalReader<R> {
    type Item = Result<Signal, BadLine>;

    fn next(&mut self) -> Option<Self::Item> {
        let record = self.rows.next()?;
        Some(match record {
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line());
                self.row(&record).map_err(|(reason, detail)| BadLine {
                    line,
                    reason,
                    detail,
                })
            }
            Err(error) => Err(BadLine {
                line: error.position().map_or(0, |p| p.line()),
                reason: BadReason::Garbage,
                detail: error.to_string(),
            }),
        })
    }
}

fn in_range(value: f64, low: f64, high: f64, name: &str) -> Result<f64, (BadReason, String)> {
    if (low..=high).contains(&value) {
        Ok(value)
    } else {
        Err((
            BadReason::ImpossibleValue,
            format!("{name} {value} is outside {low}..{high}"),
        ))
    }
}

fn parse_time(cell: &str) -> Result<Millis, (BadReason, String)> {
    if let Ok(seconds) = cell.parse::<f64>() {
        // `f64` also parses "NaN" and "inf", and `as` would turn them into 1970 and year 292
        // million: keep Unix seconds to the years RFC 3339 can write (-9999 to 9999).
        let ms = (seconds * 1000.0).round();
        let calendar = jiff::Timestamp::MIN.as_millisecond() as f64
            ..=jiff::Timestamp::MAX.as_millisecond() as f64;
        if !calendar.contains(&ms) {
            return Err((
                BadReason::ImpossibleValue,
                format!("time {cell:?} is not a Unix time between the years -9999 and 9999"),
            ));
        }
        return Ok(ms as Millis);
    }
    cell.parse::<jiff::Timestamp>()
        .map(|timestamp| timestamp.as_millisecond())
        .map_err(|error| (BadReason::Unparseable, format!("time {cell:?}: {error}")))
}

fn parse_bool(cell: &str) -> Result<bool, (BadReason, String)> {
    match cell.to_ascii_lowercase().as_str() {
        "1" | "true" | "on" => Ok(true),
        "0" | "false" | "off" => Ok(false),
        _ => Err((
            BadReason::Unparseable,
            format!("ignition {cell:?} is not 1/0, true/false or on/off"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_signals_and_bad_rows_are_reported() {
        let csv = "time,speed_kmh,ignition,odometer_km\n\
                   2024-05-01T08:00:00Z,36,1,12345.6\n\
                   1714550401.5,,off,\n\
                   2024-05-01T08:00:02Z,fast,1,\n\
                   2024-05-01T08:00:03Z,900,1,\n";
        let items: Vec<_> = SignalReader::new(csv.as_bytes()).unwrap().collect();
        let first = items[0].as_ref().unwrap();
        assert_eq!(first.t_ms, 1_714_550_400_000);
        assert!((first.speed_mps.unwrap() - 10.0).abs() < 1e-6);
        assert_eq!(first.ignition, Some(true));
        assert_eq!(first.odometer_m, Some(12_345_600.0));
        let second = items[1].as_ref().unwrap();
        assert_eq!(
            (second.t_ms, second.ignition, second.speed_mps),
            (1_714_550_401_500, Some(false), None)
        );
        let bad = items[2].as_ref().unwrap_err();
        assert_eq!((bad.line, bad.reason), (4, BadReason::Unparseable));
        assert_eq!(
            items[3].as_ref().unwrap_err().reason,
            BadReason::ImpossibleValue
        );
    }

    /// Caught by the time property of `fuzz/fuzz_targets/signals_csv.rs`: Unix seconds were cast
    /// unchecked, so `NaN` became 1970-01-01, `inf` the year 292 million and 17145714550401 s the
    /// year 545 000, past anything a calendar or the local clock can place.
    #[test]
    fn unix_seconds_outside_the_calendar_are_impossible() {
        let csv = "time,ignition\nNaN,1\ninf,1\n17145714550401,1\n-1e300,1\n253402207200,1\n";
        let items: Vec<_> = SignalReader::new(csv.as_bytes()).unwrap().collect();
        let reasons: Vec<_> = items[..4]
            .iter()
            .map(|item| item.as_ref().map_err(|bad| (bad.line, bad.reason)))
            .collect();
        let impossible = |line| Err((line, BadReason::ImpossibleValue));
        assert_eq!(
            reasons,
            [impossible(2), impossible(3), impossible(4), impossible(5)]
        );
        // jiff's last second, 9999-12-30T22:00:00Z, is still a time.
        assert_eq!(items[4].as_ref().unwrap().t_ms, 253_402_207_200_000);
    }

    #[test]
    fn a_file_without_time_or_with_unknown_columns_is_refused() {
        assert!(matches!(
            SignalReader::new("speed_kmh\n1\n".as_bytes()),
            Err(SignalError::NoTime(_))
        ));
        assert!(matches!(
            SignalReader::new("time,boost\n1,2\n".as_bytes()),
            Err(SignalError::UnknownColumn(name)) if name == "boost"
        ));
    }
}
