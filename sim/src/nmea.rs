//! What a simulated head unit emits: NMEA 0183 sentences (RMC and GGA, once a second while the
//! car is on) and the vehicle-signal CSV (speed, odometer, fuel or charge, ignition), produced
//! lazily as [`Read`] streams so that a month of driving never sits in memory.
//!
//! Both streams replay the same drives: they are made from the same vehicle with the same
//! seed, so the speeds, times and odometer of the CSV match the sentences.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use drivetag_agent::sources::nmea::append_checksum;

use crate::drive::{Sample, drive, route};
use crate::fleet::SimVehicle;

/// Counters shared by every stream of a run, for progress and figures.
#[derive(Debug, Default)]
pub struct Counters {
    /// GNSS epochs emitted (one RMC and one GGA each).
    pub epochs: AtomicU64,
    /// NMEA bytes emitted.
    pub nmea_bytes: AtomicU64,
    /// Signal CSV bytes emitted.
    pub signal_bytes: AtomicU64,
}

/// One drive of a plan, ready to be written out.
#[derive(Debug, Clone, PartialEq)]
pub struct Drive {
    /// Start, Unix seconds.
    pub start_s: i64,
    /// 1 Hz samples; `t_s` counts from `start_s`.
    pub samples: Vec<Sample>,
    /// Odometer at the start, metres.
    pub odometer_m: f64,
    /// Fuel (litres) or charge (%) at the start.
    pub energy: f64,
}

/// The drives of a vehicle's plan, one at a time.
#[derive(Debug, Clone)]
pub struct Drives {
    vehicle: Arc<SimVehicle>,
    rng: ChaCha8Rng,
    next: usize,
    here: (f64, f64),
    free_at_s: i64,
    odometer_m: f64,
    energy: f64,
    charging: bool,
}

/// Shortest time parked between two trips, seconds: a passenger gets out, a door closes.
const MIN_PARK_S: i64 = 90;

impl Drives {
    /// The drives of `vehicle`.
    pub fn new(vehicle: Arc<SimVehicle>) -> Drives {
        let ev = vehicle.energy == "ev";
        Drives {
            rng: ChaCha8Rng::seed_from_u64(vehicle.drive_seed),
            here: vehicle.home,
            free_at_s: i64::MIN,
            odometer_m: vehicle.start_odometer_km * 1000.0,
            energy: if ev { 80.0 } else { 45.0 },
            charging: false,
            next: 0,
            vehicle,
        }
    }

    fn is_ev(&self) -> bool {
        self.vehicle.energy == "ev"
    }
}

impl Iterator for Drives {
    type Item = Drive;

    fn next(&mut self) -> Option<Drive> {
        loop {
            let planned = *self.vehicle.trips.get(self.next)?;
            self.next += 1;
            let (dn, de) = (
                (planned.to.0 - self.here.0) * 111_195.0,
                (planned.to.1 - self.here.1) * 111_195.0 * self.here.0.to_radians().cos(),
            );
            if (dn * dn + de * de).sqrt() < 300.0 {
                continue;
            }
            let start_s = planned
                .depart_s
                .max(self.free_at_s.saturating_add(MIN_PARK_S));
            let mut samples = Vec::new();
            drive(
                &route(self.here, planned.to),
                self.vehicle.style,
                &mut self.rng,
                &mut samples,
            );
            let Some(last) = samples.last() else {
                continue;
            };
            // Parked overnight at home or at a charger, an EV charges; a car fills up when low.
            if self.is_ev() {
                if self.charging {
                    self.energy = (self.energy + 45.0).min(95.0);
                } else if self.energy < 20.0 {
                    self.energy = 90.0;
                }
            } else if self.energy < 10.0 {
                self.energy = 55.0;
            }
            let drive = Drive {
                start_s,
                samples: Vec::new(),
                odometer_m: self.odometer_m,
                energy: self.energy,
            };
            self.free_at_s = start_s + i64::from(last.t_s);
            let metres: f64 = samples.iter().map(|s| s.speed_mps).sum();
            self.odometer_m += metres;
            let per_km = if self.is_ev() { 0.25 } else { 0.075 };
            self.energy = (self.energy - metres / 1000.0 * per_km).max(1.0);
            self.here = planned.to;
            self.charging = planned.charges;
            return Some(Drive { samples, ..drive });
        }
    }
}

/// `seconds` as UTC (hhmmss, ddmmyy) for NMEA.
fn utc_fields(seconds: i64) -> (u32, u32) {
    let day = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400) as u32;
    let date = jiff::civil::date(1970, 1, 1)
        .checked_add(jiff::Span::new().days(day))
        .unwrap_or(jiff::civil::date(1970, 1, 1));
    let hms = of_day / 3600 * 10_000 + of_day % 3600 / 60 * 100 + of_day % 60;
    let dmy = date.day() as u32 * 10_000 + date.month() as u32 * 100 + (date.year() % 100) as u32;
    (hms, dmy)
}

/// Degrees as NMEA `ddmm.mmmmm` (`width` digits of degrees) and a hemisphere.
fn angle(out: &mut Vec<u8>, value: f64, width: usize, positive: u8, negative: u8) {
    use std::io::Write;
    let hundred_thousandths = (value.abs() * 60.0 * 100_000.0).round() as u64;
    let degrees = hundred_thousandths / 6_000_000;
    let minutes = hundred_thousandths % 6_000_000;
    let _ = write!(
        out,
        "{degrees:0width$}{:02}.{:05},",
        minutes / 100_000,
        minutes % 100_000
    );
    out.push(if value < 0.0 { negative } else { positive });
}

/// Appends the RMC and GGA sentences of one epoch.
pub fn epoch(out: &mut Vec<u8>, seconds: i64, sample: &Sample) {
    use std::io::Write;
    let (hms, dmy) = utc_fields(seconds);
    let start = out.len();
    let _ = write!(out, "$GPRMC,{hms:06}.00,A,");
    angle(out, sample.lat, 2, b'N', b'S');
    out.push(b',');
    angle(out, sample.lon, 3, b'E', b'W');
    let knots = sample.speed_mps * 3600.0 / 1852.0;
    let _ = write!(out, ",{knots:.2},{:.1},{dmy:06},,,A", sample.course_deg);
    append_checksum(out, start);
    let start = out.len();
    let _ = write!(out, "$GPGGA,{hms:06}.00,");
    angle(out, sample.lat, 2, b'N', b'S');
    out.push(b',');
    angle(out, sample.lon, 3, b'E', b'W');
    out.extend_from_slice(b",1,10,0.8,12.0,M,9.0,M,,");
    append_checksum(out, start);
}

/// A byte stream produced a chunk at a time.
pub trait Chunks {
    /// Appends the next chunk to `out` (empty); appends nothing at the end of the stream.
    fn next_chunk(&mut self, out: &mut Vec<u8>);
}

/// A [`Read`] over [`Chunks`], holding one chunk at a time.
pub struct ChunkReader<C> {
    chunks: C,
    buffer: Vec<u8>,
    read: usize,
}

impl<C: Chunks> Read for ChunkReader<C> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.read == self.buffer.len() {
            self.buffer.clear();
            self.read = 0;
            self.chunks.next_chunk(&mut self.buffer);
        }
        let n = buf.len().min(self.buffer.len() - self.read);
        buf[..n].copy_from_slice(&self.buffer[self.read..self.read + n]);
        self.read += n;
        Ok(n)
    }
}

/// Epochs formatted per chunk: a few hundred kilobytes at most.
const EPOCHS_PER_CHUNK: usize = 512;

/// The NMEA sentences of a vehicle's drives.
pub struct NmeaChunks {
    drives: Drives,
    current: Option<Drive>,
    at: usize,
    counters: Arc<Counters>,
}

/// The NMEA stream of a vehicle.
pub type NmeaStream = ChunkReader<NmeaChunks>;

impl NmeaStream {
    /// The sentences of `vehicle`'s drives.
    pub fn new(vehicle: Arc<SimVehicle>, counters: Arc<Counters>) -> NmeaStream {
        ChunkReader {
            chunks: NmeaChunks {
                drives: Drives::new(vehicle),
                current: None,
                at: 0,
                counters,
            },
            buffer: Vec::with_capacity(EPOCHS_PER_CHUNK * 150),
            read: 0,
        }
    }
}

impl Chunks for NmeaChunks {
    fn next_chunk(&mut self, out: &mut Vec<u8>) {
        let mut epochs = 0;
        while epochs < EPOCHS_PER_CHUNK {
            let drive = match &self.current {
                Some(drive) if self.at < drive.samples.len() => drive,
                _ => {
                    let Some(next) = self.drives.next() else {
                        break;
                    };
                    self.at = 0;
                    self.current.insert(next)
                }
            };
            let end = (self.at + EPOCHS_PER_CHUNK - epochs).min(drive.samples.len());
            for sample in &drive.samples[self.at..end] {
                epoch(out, drive.start_s + i64::from(sample.t_s), sample);
            }
            epochs += end - self.at;
            self.at = end;
        }
        self.counters
            .epochs
            .fetch_add(epochs as u64, Ordering::Relaxed);
        self.counters
            .nmea_bytes
            .fetch_add(out.len() as u64, Ordering::Relaxed);
    }
}

/// A signal row every this many seconds while driving, as a CAN gateway's slow channel.
const SIGNAL_EVERY_S: u32 = 10;

/// The signal rows of a vehicle's drives: ignition on before each drive, speed, odometer and
/// fuel or charge every ten seconds, ignition off after it.
pub struct SignalChunks {
    drives: Drives,
    ev: bool,
    header: bool,
    counters: Arc<Counters>,
}

/// The signal CSV of a vehicle.
pub type SignalStream = ChunkReader<SignalChunks>;

impl SignalStream {
    /// The signals of `vehicle`'s drives.
    pub fn new(vehicle: Arc<SimVehicle>, counters: Arc<Counters>) -> SignalStream {
        ChunkReader {
            chunks: SignalChunks {
                ev: vehicle.energy == "ev",
                drives: Drives::new(vehicle),
                header: false,
                counters,
            },
            buffer: Vec::new(),
            read: 0,
        }
    }
}

impl SignalChunks {
    fn row(
        &self,
        out: &mut Vec<u8>,
        t_s: i64,
        speed_mps: f64,
        odometer_m: f64,
        energy: f64,
        ignition: bool,
    ) {
        use std::io::Write;
        let kmh = speed_mps * 3.6;
        let km = odometer_m / 1000.0;
        let (fuel, soc) = if self.ev {
            (String::new(), format!("{energy:.1}"))
        } else {
            (format!("{energy:.1}"), String::new())
        };
        let _ = writeln!(
            out,
            "{t_s},{kmh:.1},{km:.1},{fuel},{soc},{}",
            u8::from(ignition)
        );
    }
}

impl Chunks for SignalChunks {
    fn next_chunk(&mut self, out: &mut Vec<u8>) {
        if !self.header {
            self.header = true;
            out.extend_from_slice(b"time,speed_kmh,odometer_km,fuel_l,soc_pct,ignition\n");
        }
        if let Some(drive) = self.drives.next() {
            let per_m = (if self.ev { -0.25 } else { -0.075 }) / 1000.0;
            let energy_at =
                |odometer: f64| (drive.energy + (odometer - drive.odometer_m) * per_m).max(1.0);
            let mut odometer = drive.odometer_m;
            self.row(out, drive.start_s - 1, 0.0, odometer, drive.energy, true);
            for sample in &drive.samples {
                odometer += sample.speed_mps;
                if sample.t_s % SIGNAL_EVERY_S == 0 {
                    let t_s = drive.start_s + i64::from(sample.t_s);
                    self.row(
                        out,
                        t_s,
                        sample.speed_mps,
                        odometer,
                        energy_at(odometer),
                        true,
                    );
                }
            }
            let end = drive.start_s + i64::from(drive.samples.last().map_or(0, |s| s.t_s));
            self.row(out, end + 1, 0.0, odometer, energy_at(odometer), false);
        }
        self.counters
            .signal_bytes
            .fetch_add(out.len() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{Fleet, FleetSpec};
    use crate::persona::Persona;
    use crate::world::World;

    #[test]
    fn sentences_carry_valid_checksums_and_parse() {
        let mut out = Vec::new();
        let sample = Sample {
            t_s: 0,
            lat: 31.230_416,
            lon: 121.473_701,
            speed_mps: 13.9,
            course_deg: 87.5,
        };
        // 2024-05-01 08:00:05 UTC.
        epoch(&mut out, 1_714_550_405, &sample);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with(
                "$GPRMC,080005.00,A,3113.82496,N,12128.42206,E,27.02,87.5,010524,,,A*"
            ),
            "{}",
            lines[0]
        );
        for line in &lines {
            let parsed = nmea::parse_str(line).unwrap();
            assert!(
                matches!(
                    parsed,
                    nmea::ParseResult::RMC(_) | nmea::ParseResult::GGA(_)
                ),
                "{line}"
            );
        }
    }

    #[test]
    fn signals_follow_the_sentences() {
        let spec = FleetSpec {
            vehicles: 1,
            days: 3,
            seed: 11,
            last_day: jiff::civil::date(2026, 11, 25),
            time_zone: "Asia/Shanghai".into(),
            prefix: String::new(),
        };
        let fleet = Fleet::new(spec, World::shanghai()).unwrap();
        let vehicle = Arc::new(fleet.vehicles[0].clone());
        assert_eq!(vehicle.persona, Persona::Commuter);
        let counters = Arc::new(Counters::default());
        let mut nmea = String::new();
        NmeaStream::new(vehicle.clone(), counters.clone())
            .read_to_string(&mut nmea)
            .unwrap();
        let mut signals = String::new();
        SignalStream::new(vehicle.clone(), counters.clone())
            .read_to_string(&mut signals)
            .unwrap();
        let epochs = counters.epochs.load(Ordering::Relaxed);
        assert_eq!(nmea.lines().count() as u64, epochs * 2);
        assert_eq!(
            counters.nmea_bytes.load(Ordering::Relaxed),
            nmea.len() as u64
        );
        // Three weekdays (Nov 23 is a Sunday) of commuting: two drives a day, maybe an errand.
        let offs = signals.lines().filter(|l| l.ends_with(",0")).count();
        assert!((4..=8).contains(&offs), "{offs} drives");
        // The odometer grows by what the sentences' speeds cover.
        let odometer = |line: &str| line.split(',').nth(2).unwrap().parse::<f64>().unwrap();
        let rows: Vec<&str> = signals.lines().skip(1).collect();
        let driven = odometer(rows[rows.len() - 1]) - odometer(rows[0]);
        let commute_km = fleet.vehicles[0].trips.len() as f64;
        assert!(
            driven > 6.0 * 4.0 && driven < 60.0 * commute_km,
            "{driven} km"
        );
    }
}
