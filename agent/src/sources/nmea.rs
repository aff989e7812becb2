//! NMEA 0183 text: one fix per receiver epoch from RMC, GGA and VTG of any talker.
//!
//! The rules follow the reference figures of `../shared/data/README.md`:
//! a fix comes from an RMC with status `A` (and a mode indicator other than `N`); an epoch
//! without RMC takes a GGA with quality above 0, dated by the last RMC (with midnight
//! roll-over); an epoch whose RMC says `V` gives no fix even if its GGA has one. VTG adds speed
//! and course to the epoch it follows. Other sentences (GSA, GSV, proprietary `$P...`) are
//! counted and skipped without parsing. Sentences are parsed by the `nmea` crate; this module
//! only frames lines, groups sentences into epochs and checks values.

use std::collections::BTreeMap;
use std::io::BufRead;

use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};
use nmea::ParseResult;
use nmea::sentences::rmc::RmcStatusOfFix;
use nmea::sentences::{FixType, faa_mode::FaaMode};

use super::{BadLine, BadReason};
use crate::sample::{Fix, Millis};

const KNOTS_TO_MPS: f32 = 1852.0 / 3600.0;
/// Receivers that lose their almanac report dates like 1980-01-06; no car data predates 1990.
const EARLIEST_MS: Millis = 631_152_000_000;
/// No land vehicle reports 300 m/s (1080 km/h); such a speed is a corrupt field.
const MAX_SPEED_MPS: f32 = 300.0;

/// What an NMEA reader has seen besides fixes and bad lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NmeaStats {
    /// Lines read.
    pub lines: u64,
    /// Sentences seen, by type (`GPRMC`, `GPGSV`, `PSRFTXT`...).
    pub sentences: BTreeMap<String, u64>,
    /// Lines whose sentence followed other bytes (a NUL, line noise) that were cut off.
    pub leading_bytes_stripped: u64,
    /// `#` comment lines (headers of recorded logs).
    pub comments: u64,
    /// Epochs in which the receiver had no fix (RMC `V`, GGA quality 0).
    pub no_fix_epochs: u64,
    /// GGA fixes before any RMC gave a date, which cannot be placed in time.
    pub undated: u64,
}

/// Reads NMEA 0183 lines and yields one [`Fix`] per valid epoch, or a [`BadLine`].
pub struct NmeaReader<R> {
    input: R,
    buffer: Vec<u8>,
    line_no: u64,
    epoch: Option<Epoch>,
    last_date: Option<NaiveDate>,
    last_rmc_ms_of_day: Option<u32>,
    ready: Option<Fix>,
    stats: NmeaStats,
    done: bool,
}

/// The sentences of one receiver epoch, gathered until the time changes.
#[derive(Debug, Clone, Copy)]
struct Epoch {
    ms_of_day: u32,
    rmc: Option<Fix>,
    rmc_invalid: bool,
    gga: Option<(Millis, f64, f64, Option<f32>)>,
    gga_invalid: bool,
    vtg: Option<(Option<f32>, Option<f32>)>,
}

impl Epoch {
    fn new(ms_of_day: u32) -> Epoch {
        Epoch {
            ms_of_day,
            rmc: None,
            rmc_invalid: false,
            gga: None,
            gga_invalid: false,
            vtg: None,
        }
    }
}

impl<R: BufRead> NmeaReader<R> {
    /// A reader over `input`.
    pub fn new(input: R) -> Self {
        NmeaReader {
            input,
            buffer: Vec::with_capacity(128),
            line_no: 0,
            epoch: None,
            last_date: None,
            last_rmc_ms_of_day: None,
            ready: None,
            stats: NmeaStats::default(),
            done: false,
        }
    }

    /// What the reader has seen so far.
    pub fn stats(&self) -> &NmeaStats {
        &self.stats
    }

    /// Handles one line; returns a bad line if it is one.
    fn line(&mut self) -> Option<BadLine> {
        let line = trim(&self.buffer);
        if line.is_empty() {
            return None;
        }
        let Some(dollar) = line.iter().position(|&b| b == b'$') else {
            if line[0] == b'#' {
                self.stats.comments += 1;
                return None;
            }
            return Some(self.bad(BadReason::Garbage, "no '$' sentence start"));
        };
        if dollar > 0 {
            if line[0] == b'#' {
                self.stats.comments += 1;
                return None;
            }
            self.stats.leading_bytes_stripped += 1;
        }
        let sentence = &line[dollar..];
        let Ok(sentence) = std::str::from_utf8(sentence) else {
            return Some(self.bad(BadReason::NonAscii, "bytes that are not text"));
        };
        if !sentence.is_ascii() {
            return Some(self.bad(BadReason::NonAscii, "non-ASCII characters"));
        }
        let address = sentence[1..].split([',', '*']).next().unwrap_or("");
        // Look up before inserting: `entry` would allocate the key for every line.
        match self.stats.sentences.get_mut(address) {
            Some(count) => *count += 1,
            None => {
                self.stats.sentences.insert(address.to_owned(), 1);
            }
        }
        let kind = if address.len() == 5 && !address.starts_with('P') {
            &address[2..]
        } else {
            ""
        };
        if !matches!(kind, "RMC" | "GGA" | "VTG") {
            return None;
        }
        if !has_checksum(sentence) {
            return Some(self.bad(BadReason::MissingChecksum, "no *hh checksum"));
        }
        match nmea::parse_str(sentence) {
            Ok(ParseResult::RMC(rmc)) => self.rmc(rmc),
            Ok(ParseResult::GGA(gga)) => self.gga(gga),
            Ok(ParseResult::VTG(vtg)) => {
                if let Some(knots) = vtg.speed_over_ground
                    && !(0.0..=MAX_SPEED_MPS / KNOTS_TO_MPS).contains(&knots)
                {
                    return Some(
                        self.bad(BadReason::ImpossibleValue, &format!("speed {knots} kn")),
                    );
                }
                if let Some(epoch) = &mut self.epoch {
                    epoch.vtg.get_or_insert((
                        vtg.speed_over_ground.map(|knots| knots * KNOTS_TO_MPS),
                        vtg.true_course,
                    ));
                }
                None
            }
            Ok(_) => None,
            Err(nmea::Error::ChecksumMismatch { calculated, found }) => Some(self.bad(
                BadReason::Checksum,
                &format!("checksum {found:02X}, computed {calculated:02X}"),
            )),
            Err(error) => Some(self.bad(BadReason::Unparseable, &error.to_string())),
        }
    }

    fn rmc(&mut self, rmc: nmea::sentences::RmcData) -> Option<BadLine> {
        let invalid = rmc.status_of_fix == RmcStatusOfFix::Invalid
            || rmc.faa_mode == Some(FaaMode::DataNotValid);
        let (Some(time), Some(date)) = (rmc.fix_time, rmc.fix_date) else {
            if invalid {
                // A receiver without a fix often has no time either: nothing to place.
                self.stats.no_fix_epochs += 1;
                return None;
            }
            return Some(self.bad(BadReason::MissingTime, "RMC without time or date"));
        };
        let ms_of_day = ms_of_day(time);
        self.last_date = Some(date);
        self.last_rmc_ms_of_day = Some(ms_of_day);
        self.enter_epoch(ms_of_day);
        if invalid {
            self.epoch_mut(ms_of_day).rmc_invalid = true;
            return None;
        }
        let (Some(lat), Some(lon)) = (rmc.lat, rmc.lon) else {
            return Some(self.bad(BadReason::Unparseable, "RMC status A without a position"));
        };
        let t_ms = epoch_ms(date, ms_of_day);
        if let Some(bad) = self.check(t_ms, lat, lon, rmc.speed_over_ground) {
            return Some(bad);
        }
        let epoch = self.epoch_mut(ms_of_day);
        // A repeated RMC within one epoch keeps the first, as the reference does.
        epoch.rmc.get_or_insert(Fix {
            t_ms,
            lat,
            lon,
            speed_mps: rmc.speed_over_ground.map(|knots| knots * KNOTS_TO_MPS),
            course_deg: rmc.true_course,
            hdop: None,
        });
        None
    }

    fn gga(&mut self, gga: nmea::sentences::GgaData) -> Option<BadLine> {
        let valid = gga.fix_type.is_some_and(|fix| fix != FixType::Invalid);
        let Some(time) = gga.fix_time else {
            if !valid {
                self.stats.no_fix_epochs += 1;
                return None;
            }
            return Some(self.bad(BadReason::MissingTime, "GGA without time"));
        };
        let ms_of_day = ms_of_day(time);
        self.enter_epoch(ms_of_day);
        if !valid {
            self.epoch_mut(ms_of_day).gga_invalid = true;
            return None;
        }
        let (Some(lat), Some(lon)) = (gga.latitude, gga.longitude) else {
            return Some(self.bad(BadReason::Unparseable, "GGA with a fix but no position"));
        };
        let Some(mut date) = self.last_date else {
            self.stats.undated += 1;
            return None;
        };
        // A GGA just after midnight may come before the RMC that carries the new date.
        if self
            .last_rmc_ms_of_day
            .is_some_and(|rmc| rmc > ms_of_day + 12 * 3_600_000)
        {
            date = date.succ_opt().unwrap_or(date);
        }
        let t_ms = epoch_ms(date, ms_of_day);
        if let Some(bad) = self.check(t_ms, lat, lon, None) {
            return Some(bad);
        }
        self.epoch_mut(ms_of_day)
            .gga
            .get_or_insert((t_ms, lat, lon, gga.hdop));
        None
    }

    fn check(&self, t_ms: Millis, lat: f64, lon: f64, knots: Option<f32>) -> Option<BadLine> {
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return Some(self.bad(
                BadReason::ImpossibleValue,
                &format!("position {lat:.5},{lon:.5} is off the globe"),
            ));
        }
        if t_ms < EARLIEST_MS {
            return Some(self.bad(BadReason::ImpossibleValue, "fix dated before 1990"));
        }
        if let Some(knots) = knots
            && !(0.0..=MAX_SPEED_MPS / KNOTS_TO_MPS).contains(&knots)
        {
            return Some(self.bad(BadReason::ImpossibleValue, &format!("speed {knots} kn")));
        }
        None
    }

    /// Starts a new epoch when the time changes, finishing the previous one.
    fn enter_epoch(&mut self, ms_of_day: u32) {
        if self.epoch.is_some_and(|epoch| epoch.ms_of_day != ms_of_day) {
            self.finish_epoch();
        }
        if self.epoch.is_none() {
            self.epoch = Some(Epoch::new(ms_of_day));
        }
    }

    fn epoch_mut(&mut self, ms_of_day: u32) -> &mut Epoch {
        self.epoch.get_or_insert_with(|| Epoch::new(ms_of_day))
    }

    fn finish_epoch(&mut self) {
        let Some(epoch) = self.epoch.take() else {
            return;
        };
        let fix = match (epoch.rmc, epoch.gga) {
            (Some(mut fix), gga) => {
                fix.hdop = gga.and_then(|(_, _, _, hdop)| hdop);
                Some(fix)
            }
            (None, Some((t_ms, lat, lon, hdop))) if !epoch.rmc_invalid => Some(Fix {
                t_ms,
                lat,
                lon,
                speed_mps: None,
                course_deg: None,
                hdop,
            }),
            _ => None,
        };
        match fix {
            Some(mut fix) => {
                if let Some((speed, course)) = epoch.vtg {
                    fix.speed_mps = fix.speed_mps.or(speed);
                    fix.course_deg = fix.course_deg.or(course);
                }
                self.ready = Some(fix);
            }
            None if epoch.rmc_invalid || epoch.gga_invalid => self.stats.no_fix_epochs += 1,
            None => {}
        }
    }

    fn bad(&self, reason: BadReason, detail: &str) -> BadLine {
        BadLine {
            line: self.line_no,
            reason,
            detail: detail.to_owned(),
        }
    }
}

impl<R: BufRead> Iterator for NmeaReader<R> {
    type Item = Result<Fix, BadLine>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(fix) = self.ready.take() {
                return Some(Ok(fix));
            }
            if self.done {
                return None;
            }
            self.buffer.clear();
            match self.input.read_until(b'\n', &mut self.buffer) {
                Ok(0) => {
                    self.done = true;
                    self.finish_epoch();
                }
                Ok(_) => {
                    self.line_no += 1;
                    self.stats.lines += 1;
                    if let Some(bad) = self.line() {
                        return Some(Err(bad));
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // A serial device that vanishes ends the stream; say why.
                    self.done = true;
                    self.finish_epoch();
                    return Some(Err(BadLine {
                        line: self.line_no + 1,
                        reason: BadReason::Garbage,
                        detail: format!("read error: {error}"),
                    }));
                }
            }
        }
    }
}

/// Ends the sentence that starts at `start` in `out` (its `$`) with `*hh\r\n`, its checksum: for
/// writers of NMEA, such as simulators and benchmarks.
pub fn append_checksum(out: &mut Vec<u8>, start: usize) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let checksum = out[start + 1..].iter().fold(0u8, |c, b| c ^ b);
    out.extend_from_slice(&[
        b'*',
        HEX[usize::from(checksum >> 4)],
        HEX[usize::from(checksum & 15)],
        b'\r',
        b'\n',
    ]);
}

fn trim(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |end| end + 1);
    &line[start..end.max(start)]
}

fn has_checksum(sentence: &str) -> bool {
    sentence
        .rfind('*')
        .is_some_and(|star| sentence.len() >= star + 3)
}

fn ms_of_day(time: NaiveTime) -> u32 {
    // Leap seconds arrive as nanosecond values of a second or more; fold them into second 59.
    time.num_seconds_from_midnight() * 1000 + (time.nanosecond() / 1_000_000).min(999)
}

fn epoch_ms(date: NaiveDate, ms_of_day: u32) -> Millis {
    let days = i64::from(date.num_days_from_ce() - 719_163);
    days * 86_400_000 + i64::from(ms_of_day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Vec<Fix>, Vec<BadLine>, NmeaStats) {
        let mut reader = NmeaReader::new(text.as_bytes());
        let (mut fixes, mut bad) = (Vec::new(), Vec::new());
        for item in &mut reader {
            match item {
                Ok(fix) => fixes.push(fix),
                Err(line) => bad.push(line),
            }
        }
        (fixes, bad, reader.stats().clone())
    }

    const MUNICH: &str = "\
$GPRMC,124022.00,A,4810.8509,N,01133.9095,E,008.5,171.1,010409,002.0,E,A*3B
$GPGGA,124022.00,4810.8509,N,01133.9095,E,1,04,23.9,-0704.5,M,0046.3,M,,*41
";

    #[test]
    fn an_rmc_and_its_gga_make_one_fix() {
        let (fixes, bad, _) = read(MUNICH);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(fixes.len(), 1);
        let fix = fixes[0];
        assert_eq!(fix.t_ms, 1_238_589_622_000); // 2009-04-01T12:40:22Z
        assert!((fix.lat - (48.0 + 10.8509 / 60.0)).abs() < 1e-9);
        assert!((fix.lon - (11.0 + 33.9095 / 60.0)).abs() < 1e-9);
        assert!((fix.speed_mps.unwrap() - 8.5 * 0.514_444).abs() < 1e-3);
        assert_eq!(fix.course_deg, Some(171.1));
        assert_eq!(fix.hdop, Some(23.9));
    }

    #[test]
    fn bad_lines_are_reported_with_their_numbers_and_the_rest_is_kept() {
        let text = format!(
            "# header\n\
             garbage line\n\
             $GPRMC,124022.00,A,4810.8509,N,01133.9095,E,008.5,171.1,010409,002.0,E,A*3C\n\
             $GPRMC,124023.00,A,4810.8509,N,01133.9095,E,008.5,171.1,010409,002.0,E,A\n\
             $GPRMC,124024.00,A,9910.8509,N,01133.9095,E,008.5,171.1,010409,002.0,E,A*{}\n\
             \0$GPRMC,124025.00,A,4810.8509,N,01133.9095,E,008.5,171.1,010409,002.0,E,A*{}\n\
             $GPGSV,3,1,12,23,75,057,38,13,68,236,36,04,53,284,30,20,46,101,36*76\n\
             $PGRME,5.5,M,7.0,M,8.9,M*28\n",
            checksum("GPRMC,124024.00,A,9910.8509,N,01133.9095,E,008.5,171.1,010409,002.0,E,A"),
            checksum("GPRMC,124025.00,A,4810.8509,N,01133.9095,E,008.5,171.1,010409,002.0,E,A"),
        );
        let (fixes, bad, stats) = read(&text);
        let found: Vec<(u64, BadReason)> = bad.iter().map(|b| (b.line, b.reason)).collect();
        assert_eq!(
            found,
            [
                (2, BadReason::Garbage),
                (3, BadReason::Checksum),
                (4, BadReason::MissingChecksum),
                (5, BadReason::ImpossibleValue),
            ]
        );
        assert_eq!(fixes.len(), 1, "the NUL-prefixed sentence is kept");
        assert_eq!(stats.leading_bytes_stripped, 1);
        assert_eq!(stats.comments, 1);
        assert_eq!(stats.sentences.get("GPGSV"), Some(&1));
        assert_eq!(stats.sentences.get("PGRME"), Some(&1));
    }

    #[test]
    fn an_invalid_rmc_vetoes_its_gga_and_a_gga_alone_is_dated_by_the_last_rmc() {
        let text = format!(
            "{MUNICH}\
             $GPRMC,124023.00,V,4810.8509,N,01133.9095,E,008.5,171.1,010409,002.0,E,N*{}\n\
             $GPGGA,124023.00,4810.8509,N,01133.9095,E,1,04,23.9,-0704.5,M,0046.3,M,,*{}\n\
             $GPGGA,124024.00,4810.8600,N,01133.9095,E,6,04,2.0,500.0,M,0046.3,M,,*{}\n",
            checksum("GPRMC,124023.00,V,4810.8509,N,01133.9095,E,008.5,171.1,010409,002.0,E,N"),
            checksum("GPGGA,124023.00,4810.8509,N,01133.9095,E,1,04,23.9,-0704.5,M,0046.3,M,,"),
            checksum("GPGGA,124024.00,4810.8600,N,01133.9095,E,6,04,2.0,500.0,M,0046.3,M,,"),
        );
        let (fixes, bad, stats) = read(&text);
        assert!(bad.is_empty(), "{bad:?}");
        let times: Vec<Millis> = fixes.iter().map(|f| f.t_ms).collect();
        assert_eq!(times, [1_238_589_622_000, 1_238_589_624_000]);
        assert_eq!(fixes[1].speed_mps, None);
        assert_eq!(stats.no_fix_epochs, 1);
    }

    #[test]
    fn a_gga_after_midnight_takes_the_next_day() {
        let rmc = "GPRMC,235959.00,A,4810.8509,N,01133.9095,E,008.5,171.1,010409,002.0,E,A";
        let gga = "GPGGA,000000.00,4810.8509,N,01133.9095,E,1,04,2.0,500.0,M,0046.3,M,,";
        let text = format!("${rmc}*{}\n${gga}*{}\n", checksum(rmc), checksum(gga));
        let (fixes, _, _) = read(&text);
        assert_eq!(fixes[1].t_ms - fixes[0].t_ms, 1000);
    }

    #[test]
    fn vtg_adds_speed_to_a_gga_fix() {
        let rmc = "GPRMC,120000.00,A,4810.8509,N,01133.9095,E,,,010409,,,A";
        let vtg = "GPVTG,054.7,T,034.4,M,005.5,N,010.2,K";
        let text = format!("${rmc}*{}\n${vtg}*{}\n", checksum(rmc), checksum(vtg));
        let (fixes, bad, _) = read(&text);
        assert!(bad.is_empty(), "{bad:?}");
        assert!((fixes[0].speed_mps.unwrap() - 5.5 * 0.514_444).abs() < 1e-3);
        assert_eq!(fixes[0].course_deg, Some(54.7));
    }

    /// Caught by the speed property of `fuzz/fuzz_targets/nmea_line.rs`: a VTG's speed reached the
    /// fix unchecked, so `nan`, `inf` or a negative speed became the fix's speed when its RMC had
    /// none.
    #[test]
    fn an_impossible_vtg_speed_is_a_bad_line_not_the_fix_speed() {
        let rmc = "GPRMC,120000.00,A,4810.8509,N,01133.9095,E,,,010409,,,A";
        for knots in ["nan", "inf", "-5.0", "600.0"] {
            let vtg = format!("GPVTG,054.7,T,034.4,M,{knots},N,010.2,K");
            let text = format!("${rmc}*{}\n${vtg}*{}\n", checksum(rmc), checksum(&vtg));
            let (fixes, bad, _) = read(&text);
            let found: Vec<(u64, BadReason)> = bad.iter().map(|b| (b.line, b.reason)).collect();
            assert_eq!(found, [(2, BadReason::ImpossibleValue)], "{knots}");
            assert_eq!(fixes.len(), 1, "{knots}: the RMC still gives a fix");
            assert_eq!(fixes[0].speed_mps, None, "{knots}");
        }
    }

    #[test]
    fn other_talkers_are_read() {
        for talker in ["GN", "GL", "GA", "BD"] {
            let rmc = format!(
                "{talker}RMC,124022.00,A,4810.8509,N,01133.9095,E,008.5,171.1,010409,002.0,E,A"
            );
            let text = format!("${rmc}*{}\n", checksum(&rmc));
            let (fixes, bad, _) = read(&text);
            assert_eq!((fixes.len(), bad.len()), (1, 0), "{talker}: {bad:?}");
        }
    }

    fn checksum(body: &str) -> String {
        let mut sentence = format!("${body}").into_bytes();
        append_checksum(&mut sentence, 0);
        String::from_utf8_lossy(&sentence[sentence.len() - 4..sentence.len() - 2]).into_owned()
    }
}
