//! gpsd's JSON protocol: `TPV` (time-position-velocity) reports, one JSON object per line,
//! from a recorded log or a live gpsd socket (`?WATCH={"enable":true,"json":true}`).
//!
//! A TPV with `mode` 2 (2D) or 3 (3D) and a time is a fix; other classes (`VERSION`, `SKY`,
//! `DEVICES`...) are skipped.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use serde::Deserialize;

use super::{BadLine, BadReason};
use crate::sample::Fix;

/// gpsd's default port.
pub const DEFAULT_PORT: u16 = 2947;

#[derive(Deserialize)]
struct Report {
    class: String,
    #[serde(default)]
    mode: u8,
    time: Option<String>,
    lat: Option<f64>,
    lon: Option<f64>,
    /// m/s.
    speed: Option<f64>,
    /// Degrees from true north.
    track: Option<f64>,
}

/// Reads gpsd JSON lines and yields one fix per usable TPV report.
pub struct GpsdReader<R> {
    input: R,
    buffer: String,
    line_no: u64,
}

impl<R: BufRead> GpsdReader<R> {
    /// A reader over recorded or live gpsd output.
    pub fn new(input: R) -> Self {
        GpsdReader {
            input,
            buffer: String::new(),
            line_no: 0,
        }
    }

    fn parse(&self, line: &str) -> Option<Result<Fix, BadLine>> {
        let bad = |reason, detail: String| {
            Some(Err(BadLine {
                line: self.line_no,
                reason,
                detail,
            }))
        };
        let report: Report = match serde_json::from_str(line) {
            Ok(report) => report,
            Err(error) => return bad(BadReason::Unparseable, format!("gpsd JSON: {error}")),
        };
        if report.class != "TPV" || report.mode < 2 {
            return None;
        }
        let (Some(lat), Some(lon)) = (report.lat, report.lon) else {
            return bad(
                BadReason::Unparseable,
                "TPV with a fix but no position".into(),
            );
        };
        let Some(time) = report.time else {
            return bad(BadReason::MissingTime, "TPV without time".into());
        };
        let t_ms = match time.parse::<jiff::Timestamp>() {
            Ok(timestamp) => timestamp.as_millisecond(),
            Err(error) => {
                return bad(
                    BadReason::Unparseable,
                    format!("TPV time {time:?}: {error}"),
                );
            }
        };
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return bad(
                BadReason::ImpossibleValue,
                format!("position {lat},{lon} is off the globe"),
            );
        }
        Some(Ok(Fix {
            t_ms,
            lat,
            lon,
            speed_mps: report
                .speed
                .filter(|speed| speed.is_finite() && *speed >= 0.0)
                .map(|speed| speed as f32),
            course_deg: report.track.map(|track| track as f32),
            hdop: None,
        }))
    }
}

impl<R: BufRead> Iterator for GpsdReader<R> {
    type Item = Result<Fix, BadLine>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buffer.clear();
            match self.input.read_line(&mut self.buffer) {
                Ok(0) => return None,
                Ok(_) => {
                    self.line_no += 1;
                    let line = self.buffer.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    if let Some(item) = self.parse(line) {
                        return Some(item);
                    }
                }
                Err(error) => {
                    self.line_no += 1;
                    return Some(Err(BadLine {
                        line: self.line_no,
                        reason: BadReason::NonAscii,
                        detail: format!("read error: {error}"),
                    }));
                }
            }
        }
    }
}

/// Connects to a running gpsd and asks it to stream JSON reports.
pub fn connect(address: &str) -> std::io::Result<GpsdReader<BufReader<TcpStream>>> {
    let mut stream = TcpStream::connect(address)?;
    stream.write_all(b"?WATCH={\"enable\":true,\"json\":true};\n")?;
    Ok(GpsdReader::new(BufReader::new(stream)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tpv_reports_become_fixes() {
        let log = r#"{"class":"VERSION","release":"3.25"}
{"class":"TPV","device":"/dev/ttyUSB0","mode":1,"time":"2019-03-12T10:51:52.000Z"}
{"class":"TPV","device":"/dev/ttyUSB0","mode":3,"time":"2019-03-12T10:51:53.408Z","lat":50.8402,"lon":4.34708,"speed":0.15,"track":123.4}
{"class":"TPV","mode":3,"lat":50.8402,"lon":4.34708}
{"class":"TPV", broken
{"class":"SKY","hdop":1.2}
"#;
        let items: Vec<_> = GpsdReader::new(log.as_bytes()).collect();
        assert_eq!(items.len(), 3);
        let fix = items[0].as_ref().unwrap();
        assert_eq!(fix.t_ms, 1_552_387_913_408);
        assert_eq!(fix.speed_mps, Some(0.15));
        assert_eq!(fix.course_deg, Some(123.4));
        assert_eq!(
            items[1].as_ref().unwrap_err().reason,
            BadReason::MissingTime
        );
        assert_eq!(items[2].as_ref().unwrap_err().line, 5);
    }

    #[test]
    fn a_live_gpsd_socket_is_read_after_the_watch_command() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut command = String::new();
            BufReader::new(socket.try_clone().unwrap())
                .read_line(&mut command)
                .unwrap();
            socket
                .write_all(b"{\"class\":\"TPV\",\"mode\":2,\"time\":\"2024-01-01T00:00:00Z\",\"lat\":1.0,\"lon\":2.0}\n")
                .unwrap();
            command
        });
        let mut reader = connect(&address).unwrap();
        let fix = reader.next().unwrap().unwrap();
        assert_eq!((fix.lat, fix.lon), (1.0, 2.0));
        assert!(server.join().unwrap().starts_with("?WATCH="));
    }
}
