//! The agent's footprint over a synthetic week: speed, memory and uplink bytes per vehicle-day.
//!
//! ```sh
//! cargo run --release -p drivetag-agent --example footprint            # the full report
//! cargo run --release -p drivetag-agent --example footprint -- --days 3 # one run, one line
//! cargo run --release -p drivetag-agent --example footprint -- --nmea 7 > week.nmea
//! ```
//!
//! A week (7 × 24 h, from Monday 2024-03-04 00:00 UTC) of 1 Hz NMEA, an RMC and a GGA every
//! second, is synthesised as a stream and fed through `NmeaReader` → `Pipeline`: a car that
//! commutes twice a working day, runs errands some evenings and at the weekend, and stands
//! parked the rest of the time with a receiver that keeps reporting a few metres of drift. The
//! text is generated one second at a time and never held whole, so the memory measured is the
//! agent's.
//!
//! The full report runs itself as child processes for 0, 1 and 7 days (each child's peak RSS,
//! `VmHWM`, is its own), then times the 7-day stream in this process, best of three:
//! generation alone, generation + reader, and generation + reader + pipeline, so the end-to-end
//! rate (reader + pipeline) is the difference; and the pipeline alone on hour-long batches of
//! decoded fixes, which gives its samples/s. Every summary the pipeline emits is encoded
//! as it would be sent, in an `Envelope` with `codec::encode`, to give uplink bytes per
//! vehicle-day against the NMEA bytes per day.
//!
//! Targets: ≥ 1 000 000 sentences/s end to end, ≥ 5 000 000 samples/s through the pipeline,
//! peak RSS < 10 MB and the same for 1 and 7 days.
#![allow(clippy::unwrap_used)] // An example may panic where a product would report.

use std::io::{self, BufRead, Read};
use std::process::Command;
use std::time::{Duration, Instant};

use drivetag_agent::config::PipelineConfig;
use drivetag_agent::pipeline::{Output, Pipeline};
use drivetag_agent::sample::{Fix, Sample};
use drivetag_agent::sources::nmea::{NmeaReader, append_checksum};
use drivetag_shared::codec;
use drivetag_shared::wire::{Envelope, Uplink};
use drivetag_shared::{CellSize, DeviceId};

const TARGET_SENTENCES_PER_S: f64 = 1_000_000.0;
const TARGET_SAMPLES_PER_S: f64 = 5_000_000.0;
const TARGET_RSS_KB: u64 = 10 * 1024;
/// Peak RSS of the 7-day run may exceed the 1-day run's by this much and still count as flat
/// (page-granular allocator noise, not growth).
const FLAT_SLACK_KB: u64 = 256;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => report(),
        [flag, days] if flag == "--days" => {
            let days: u32 = days.parse().expect("--days takes a whole number");
            println!("{}", measure_run(days).to_line());
        }
        [flag, days] if flag == "--nmea" => {
            let days: u32 = days.parse().expect("--nmea takes a whole number");
            let mut stdout = io::stdout().lock();
            io::copy(&mut Week::new(days), &mut stdout).unwrap();
        }
        _ => {
            eprintln!("usage: footprint [--days N | --nmea N]");
            std::process::exit(2);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The report.

fn report() {
    println!("drivetag agent footprint: synthetic 1 Hz NMEA (RMC + GGA each second), streamed\n");
    let exe = std::env::current_exe().unwrap();
    let runs: Vec<RunFigures> = [0u32, 1, 7]
        .iter()
        .map(|days| {
            let out = Command::new(&exe)
                .args(["--days", &days.to_string()])
                .output()
                .unwrap();
            assert!(out.status.success(), "child run of {days} days failed");
            RunFigures::from_line(String::from_utf8_lossy(&out.stdout).trim())
        })
        .collect();
    let (base, day, week) = (&runs[0], &runs[1], &runs[2]);

    println!("memory (each run in its own process; VmHWM = peak resident set)");
    println!(
        "  {:>6}  {:>10}  {:>10}  {:>10}  RSS at the end of each day, kB",
        "days", "sentences", "fixes", "peak kB"
    );
    for run in &runs {
        println!(
            "  {:>6}  {:>10}  {:>10}  {:>10}  {}",
            run.days,
            run.sentences,
            run.fixes,
            run.hwm_kb,
            run.rss_kb_by_day
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let growth = week.hwm_kb as i64 - day.hwm_kb as i64;
    let flat = week.hwm_kb <= day.hwm_kb + FLAT_SLACK_KB;
    println!(
        "  peak RSS 7 days {} kB vs 1 day {} kB: {:+} kB ({}); process baseline (0 days) {} kB",
        week.hwm_kb,
        day.hwm_kb,
        growth,
        if flat { "flat" } else { "GROWS" },
        base.hwm_kb
    );
    verdict(
        "peak RSS < 10 MB and flat",
        week.hwm_kb < TARGET_RSS_KB && flat,
        &format!("{:.2} MB", week.hwm_kb as f64 / 1024.0),
    );

    println!(
        "\nuplink (7-day run; each summary in an Envelope, codec::encode; MQTT and TLS framing \
         not counted)"
    );
    let days = f64::from(week.days);
    for (kind, count, bytes) in &week.uplink {
        println!(
            "  {kind:<7} {count:>4} messages {bytes:>7} bytes ({:.0} bytes each)",
            *bytes as f64 / (*count).max(1) as f64
        );
    }
    let uplink_per_day = week.uplink_bytes() as f64 / days;
    let raw_per_day = week.raw_bytes as f64 / days;
    println!(
        "  uplink {:.0} bytes per vehicle-day ({} messages in {} days, {} trips, {} stays)",
        uplink_per_day,
        week.messages(),
        week.days,
        week.trips,
        week.stays
    );
    println!(
        "  raw NMEA {:.0} bytes per day ({:.1} MB); compression ratio {:.0} : 1",
        raw_per_day,
        raw_per_day / 1e6,
        raw_per_day / uplink_per_day
    );

    println!("\nspeed (7 days in this process, best of 3; each rate over its stage's own time)");
    let mut best = [Duration::MAX; 4];
    let mut counts = (0u64, 0u64);
    for _ in 0..3 {
        let (t, sentences) = timed(|| generate_only(7));
        best[0] = best[0].min(t);
        let (t, _) = timed(|| read_only(7));
        best[1] = best[1].min(t);
        let (t, run) = timed(|| stream(7, |_| {}));
        best[2] = best[2].min(t);
        best[3] = best[3].min(pipeline_in_batches(7));
        counts = (sentences, run.fixes);
    }
    let (sentences, fixes) = counts;
    let [generate, read, all, batches] = best.map(|d| d.as_secs_f64());
    let reader = sentences as f64 / (read - generate);
    let end_to_end = sentences as f64 / (all - generate);
    let pipeline = fixes as f64 / batches;
    println!("  {sentences} sentences, {fixes} fixes");
    println!("  generate only                          {generate:.3} s");
    println!(
        "  generate + NmeaReader                  {read:.3} s   NmeaReader {:.2} M sentences/s",
        reader / 1e6
    );
    println!(
        "  generate + NmeaReader + Pipeline       {all:.3} s   reader + pipeline {:.2} M sentences/s; \
         pipeline's share {:.2} M samples/s",
        end_to_end / 1e6,
        fixes as f64 / (all - read) / 1e6
    );
    println!(
        "  Pipeline alone, on hour-long batches   {batches:.3} s   {:.2} M samples/s",
        pipeline / 1e6
    );
    verdict(
        "end to end (NmeaReader + Pipeline) ≥ 1 M sentences/s",
        end_to_end >= TARGET_SENTENCES_PER_S,
        &format!("{:.2} M sentences/s", end_to_end / 1e6),
    );
    verdict(
        "Pipeline ≥ 5 M samples/s",
        pipeline >= TARGET_SAMPLES_PER_S,
        &format!("{:.2} M samples/s", pipeline / 1e6),
    );
}

fn verdict(what: &str, met: bool, measured: &str) {
    println!(
        "  {} {what}: {measured}",
        if met { "MET   " } else { "MISSED" }
    );
}

fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let value = f();
    (start.elapsed(), value)
}

// ---------------------------------------------------------------------------------------------
// One run.

/// What one run measured.
#[derive(Debug, Default)]
struct RunFigures {
    days: u32,
    sentences: u64,
    raw_bytes: u64,
    fixes: u64,
    trips: u64,
    stays: u64,
    /// (kind, messages, bytes) per uplink kind.
    uplink: Vec<(String, u64, u64)>,
    hwm_kb: u64,
    rss_kb_by_day: Vec<u64>,
}

impl RunFigures {
    fn uplink_bytes(&self) -> u64 {
        self.uplink.iter().map(|(_, _, bytes)| bytes).sum()
    }

    fn messages(&self) -> u64 {
        self.uplink.iter().map(|(_, count, _)| count).sum()
    }

    fn count(&mut self, kind: &str, bytes: usize) {
        match self.uplink.iter_mut().find(|(k, _, _)| k == kind) {
            Some((_, count, total)) => {
                *count += 1;
                *total += bytes as u64;
            }
            None => self.uplink.push((kind.to_owned(), 1, bytes as u64)),
        }
    }

    /// One line of `key=value` pairs, for the parent process.
    fn to_line(&self) -> String {
        let join = |values: &[u64]| {
            values
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let uplink = self
            .uplink
            .iter()
            .map(|(kind, count, bytes)| format!("{kind}:{count}:{bytes}"))
            .collect::<Vec<_>>()
            .join(",");
        format!(
            "days={} sentences={} raw_bytes={} fixes={} trips={} stays={} hwm_kb={} rss_kb_by_day={} uplink={}",
            self.days,
            self.sentences,
            self.raw_bytes,
            self.fixes,
            self.trips,
            self.stays,
            self.hwm_kb,
            join(&self.rss_kb_by_day),
            uplink
        )
    }

    fn from_line(line: &str) -> RunFigures {
        let mut figures = RunFigures::default();
        for pair in line.split_whitespace() {
            let (key, value) = pair.split_once('=').unwrap();
            let number = || value.parse::<u64>().unwrap();
            match key {
                "days" => figures.days = value.parse().unwrap(),
                "sentences" => figures.sentences = number(),
                "raw_bytes" => figures.raw_bytes = number(),
                "fixes" => figures.fixes = number(),
                "trips" => figures.trips = number(),
                "stays" => figures.stays = number(),
                "hwm_kb" => figures.hwm_kb = number(),
                "rss_kb_by_day" => {
                    figures.rss_kb_by_day = value
                        .split(',')
                        .filter(|v| !v.is_empty())
                        .map(|v| v.parse().unwrap())
                        .collect()
                }
                "uplink" => {
                    figures.uplink = value
                        .split(',')
                        .filter(|v| !v.is_empty())
                        .map(|entry| {
                            let mut parts = entry.split(':');
                            let kind = parts.next().unwrap().to_owned();
                            let count = parts.next().unwrap().parse().unwrap();
                            let bytes = parts.next().unwrap().parse().unwrap();
                            (kind, count, bytes)
                        })
                        .collect()
                }
                _ => {}
            }
        }
        figures
    }
}

/// Streams `days` through reader and pipeline, encoding every summary, and reads the memory.
fn measure_run(days: u32) -> RunFigures {
    let device = DeviceId::new("hu-0001").unwrap();
    let size = PipelineConfig::default().cell_size();
    let mut seq = 0u64;
    let mut encoded = Vec::new();
    let mut rss_kb_by_day = Vec::new();
    let mut figures = stream_with(
        days,
        |output, now_s| {
            if let Some((kind, body)) = uplink(output, size) {
                seq += 1;
                let envelope = Envelope {
                    device: device.clone(),
                    seq,
                    created_s: now_s,
                    body,
                };
                encoded.push((kind, codec::encode(&envelope).len()));
            }
        },
        |_day| rss_kb_by_day.push(proc_status_kb("VmRSS")),
    );
    for (kind, bytes) in encoded {
        figures.count(kind, bytes);
    }
    figures.rss_kb_by_day = rss_kb_by_day;
    figures.hwm_kb = proc_status_kb("VmHWM");
    figures
}

/// The summary as it would leave the car, or `None` for what stays in it.
fn uplink(output: &Output, size: CellSize) -> Option<(&'static str, Uplink)> {
    Some(match output {
        Output::Trip(trip) => ("trip", Uplink::Trip(trip.to_wire(size))),
        Output::Day(day) => ("day", Uplink::Day(day.to_wire())),
        Output::Places(places) => ("places", Uplink::Places(places.to_wire(size))),
        Output::Style(style) => ("style", Uplink::Style(style.to_wire())),
        Output::Stay(_) => return None,
    })
}

/// A `kB` figure from `/proc/self/status` (Linux), 0 where there is none.
fn proc_status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let rest = line.strip_prefix(key)?.strip_prefix(':')?;
                rest.trim().trim_end_matches("kB").trim().parse().ok()
            })
        })
        .unwrap_or(0)
}

fn stream(days: u32, on_output: impl FnMut(&Output)) -> RunFigures {
    let mut on_output = on_output;
    stream_with(days, |output, _| on_output(output), |_| {})
}

/// Generator → `NmeaReader` → `Pipeline`, one fix at a time. `on_output` sees each summary
/// with the stream's time in UTC seconds; `on_day` is called as each simulated day ends.
fn stream_with(
    days: u32,
    mut on_output: impl FnMut(&Output, u64),
    mut on_day: impl FnMut(u32),
) -> RunFigures {
    let mut week = Week::new(days);
    let mut pipeline = Pipeline::new(PipelineConfig::default()).unwrap();
    let mut figures = RunFigures {
        days,
        ..RunFigures::default()
    };
    let mut day = 0u32;
    let mut now_s = START_S;
    let mut collect = |pipeline: &mut Pipeline, figures: &mut RunFigures, now_s: u64| {
        for output in pipeline.drain() {
            match &output {
                Output::Trip(_) => figures.trips += 1,
                Output::Stay(_) => figures.stays += 1,
                _ => {}
            }
            on_output(&output, now_s);
        }
    };
    let reader = NmeaReader::new(&mut week);
    for item in reader {
        let fix: Fix = item.expect("the synthetic NMEA is well formed");
        figures.fixes += 1;
        now_s = (fix.t_ms / 1000) as u64;
        let fix_day = ((now_s - START_S) / 86_400) as u32;
        while day < fix_day {
            on_day(day);
            day += 1;
        }
        pipeline.push(Sample::Fix(fix));
        collect(&mut pipeline, &mut figures, now_s);
    }
    pipeline.finish();
    collect(&mut pipeline, &mut figures, now_s);
    while day < days {
        on_day(day);
        day += 1;
    }
    figures.sentences = week.sentences;
    figures.raw_bytes = week.bytes;
    figures
}

/// Generation alone: returns the sentences made.
fn generate_only(days: u32) -> u64 {
    let mut week = Week::new(days);
    let mut sink = 0u64;
    loop {
        let chunk = week.fill_buf().unwrap();
        if chunk.is_empty() {
            break;
        }
        sink = sink.wrapping_add(u64::from(chunk[chunk.len() / 2]));
        let n = chunk.len();
        week.consume(n);
    }
    std::hint::black_box(sink);
    week.sentences
}

/// The pipeline's own time: the stream is decoded an hour (3600 fixes) at a time, untimed,
/// and each batch is then pushed through the pipeline, timed. Interleaving reader and pipeline
/// fix by fix (as [`stream`] does) costs more than the sum of the two, as each evicts the
/// other's code and data from the caches; this measures the pipeline as the criterion bench
/// does, without holding the week.
fn pipeline_in_batches(days: u32) -> Duration {
    let mut week = Week::new(days);
    let mut reader = NmeaReader::new(&mut week);
    let mut pipeline = Pipeline::new(PipelineConfig::default()).unwrap();
    let mut batch: Vec<Fix> = Vec::with_capacity(3600);
    let mut spent = Duration::ZERO;
    let mut outputs = 0usize;
    loop {
        batch.clear();
        batch.extend(
            reader
                .by_ref()
                .take(3600)
                .map(|item| item.expect("well formed")),
        );
        if batch.is_empty() {
            break;
        }
        let start = Instant::now();
        for fix in &batch {
            pipeline.push(Sample::Fix(*fix));
            outputs += pipeline.drain().count();
        }
        spent += start.elapsed();
    }
    let start = Instant::now();
    pipeline.finish();
    outputs += pipeline.drain().count();
    spent += start.elapsed();
    std::hint::black_box(outputs);
    spent
}

/// Generation and reading: returns the fixes read.
fn read_only(days: u32) -> u64 {
    let mut week = Week::new(days);
    let mut fixes = 0u64;
    for item in NmeaReader::new(&mut week) {
        std::hint::black_box(item.expect("well formed"));
        fixes += 1;
    }
    fixes
}

// ---------------------------------------------------------------------------------------------
// The synthetic week.

/// Monday 2024-03-04 00:00:00 UTC.
const START_S: u64 = 1_709_510_400;
/// Home, near Munich.
const ORIGIN: (f64, f64) = (48.137_2, 11.575_5);
const METRES_PER_DEG_LAT: f64 = 111_195.0;

/// A place, metres east and north of home.
#[derive(Debug, Clone, Copy)]
struct Place(f64, f64);

const HOME: Place = Place(0.0, 0.0);
const WORK: Place = Place(9_200.0, 6_400.0);
const SUPERMARKET: Place = Place(-2_300.0, 1_700.0);
const GYM: Place = Place(2_600.0, -1_900.0);
const RESTAURANT: Place = Place(11_000.0, 8_600.0);
const FRIENDS: Place = Place(4_300.0, 9_100.0);
const LAKE: Place = Place(-31_000.0, -47_500.0);
const HARDWARE_STORE: Place = Place(-5_200.0, -3_800.0);

/// One drive of the week: departure (seconds after the start) and its ends.
#[derive(Debug, Clone, Copy)]
struct Leave {
    at_s: u64,
    from: Place,
    to: Place,
}

/// The week's drives, in order. Departure times vary by a few minutes from day to day.
fn schedule(days: u32, rng: &mut Rng) -> Vec<Leave> {
    let mut drives = Vec::new();
    let mut plan = |day: u32, hhmm: u32, jitter_min: u32, from: Place, to: Place| {
        let at_s = u64::from(day) * 86_400
            + u64::from(hhmm / 100 * 3600 + hhmm % 100 * 60)
            + rng.below(u64::from(jitter_min) * 60 + 1);
        drives.push(Leave { at_s, from, to });
    };
    for day in 0..days {
        match day % 7 {
            // Monday to Friday: to work and back, with an errand on some days.
            weekday @ 0..=4 => {
                plan(day, 725, 15, HOME, WORK);
                if weekday == 2 {
                    plan(day, 1230, 5, WORK, RESTAURANT);
                    plan(day, 1320, 5, RESTAURANT, WORK);
                }
                plan(
                    day,
                    1710,
                    20,
                    WORK,
                    if weekday == 4 { SUPERMARKET } else { HOME },
                );
                match weekday {
                    1 | 3 => {
                        plan(day, 1900, 10, HOME, GYM);
                        plan(day, 2015, 10, GYM, HOME);
                    }
                    4 => plan(day, 1825, 5, SUPERMARKET, HOME),
                    _ => {}
                }
            }
            // Saturday: shopping, then friends.
            5 => {
                plan(day, 1000, 20, HOME, HARDWARE_STORE);
                plan(day, 1105, 10, HARDWARE_STORE, SUPERMARKET);
                plan(day, 1150, 10, SUPERMARKET, HOME);
                plan(day, 1500, 30, HOME, FRIENDS);
                plan(day, 2200, 30, FRIENDS, HOME);
            }
            // Sunday: a day at the lake.
            _ => {
                plan(day, 930, 30, HOME, LAKE);
                plan(day, 1500, 30, LAKE, HOME);
            }
        }
    }
    drives
}

/// xorshift64*: deterministic, and fast enough to draw several numbers per second of data.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Roughly standard normal (Irwin–Hall of four).
    fn normal(&mut self) -> f64 {
        (self.unit() + self.unit() + self.unit() + self.unit() - 2.0) * 3f64.sqrt()
    }
}

/// A drive in progress: a polyline with a speed limit per leg, traffic lights and corners.
#[derive(Debug)]
struct Drive {
    /// Waypoints and the cumulative distance to each, metres.
    points: Vec<(Place, f64)>,
    /// Speed limit of the leg that ends at each waypoint, m/s.
    limits: Vec<f64>,
    /// Red lights ahead: where (metres along) and how long (s).
    lights: Vec<(f64, u64)>,
    /// Distance covered, metres.
    s: f64,
    /// Speed, m/s.
    v: f64,
    /// Standing at a red light until this second.
    red_until: u64,
    /// The driver's taste: cruise at this share of the limit.
    temper: f64,
}

/// Speed through a corner, m/s (20 km/h).
const CORNER_MPS: f64 = 5.5;
/// Comfortable braking, m/s².
const BRAKE_MPS2: f64 = 2.0;

impl Drive {
    /// A route from `a` to `b` along a street grid, with lights on town roads.
    fn new(a: Place, b: Place, rng: &mut Rng) -> Drive {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let split = 0.25 + 0.5 * rng.unit();
        let mut corners = vec![
            a,
            Place(a.0 + 150.0 * dx.signum(), a.1),
            Place(a.0 + 150.0 * dx.signum(), a.1 + dy * split),
            Place(a.0 + dx * 0.85, a.1 + dy * split),
            Place(a.0 + dx * 0.85, b.1),
            b,
        ];
        corners.dedup_by(|p, q| (p.0 - q.0).hypot(p.1 - q.1) < 1.0);
        let mut points = Vec::with_capacity(corners.len());
        let mut limits = Vec::with_capacity(corners.len());
        let mut lights = Vec::new();
        let mut total = 0.0;
        for (i, corner) in corners.iter().enumerate() {
            if i > 0 {
                let prev = corners[i - 1];
                let leg = (corner.0 - prev.0).hypot(corner.1 - prev.1);
                let limit = match leg {
                    l if l > 15_000.0 => 33.3, // motorway, 120 km/h
                    l if l > 4_000.0 => 22.2,  // arterial, 80 km/h
                    _ => 13.9,                 // town, 50 km/h
                };
                if limit < 30.0 {
                    let mut at = 400.0 + 500.0 * rng.unit();
                    while at < leg - 150.0 {
                        if rng.unit() < 0.4 {
                            lights.push((total + at, 10 + rng.below(50)));
                        }
                        at += 500.0 + 700.0 * rng.unit();
                    }
                }
                total += leg;
                limits.push(limit);
            } else {
                limits.push(13.9);
            }
            points.push((*corner, total));
        }
        Drive {
            points,
            limits,
            lights,
            s: 0.0,
            v: 0.0,
            red_until: 0,
            temper: 0.9 + 0.15 * rng.unit(),
        }
    }

    fn length(&self) -> f64 {
        self.points.last().map_or(0.0, |p| p.1)
    }

    /// Advances one second; returns whether the car has arrived.
    fn step(&mut self, t: u64, rng: &mut Rng) -> bool {
        if t < self.red_until {
            self.v = 0.0;
            return false;
        }
        let leg = self
            .points
            .partition_point(|p| p.1 <= self.s)
            .min(self.points.len() - 1);
        let limit = self.limits[leg] * self.temper;
        // The highest speed from which every constraint ahead can still be met.
        let mut allowed = limit;
        let brake_to =
            |v_at: f64, at: f64| (v_at * v_at + 2.0 * BRAKE_MPS2 * (at - self.s).max(0.0)).sqrt();
        if let Some((_, at)) = self.points.get(leg).filter(|_| leg + 1 < self.points.len()) {
            allowed = allowed.min(brake_to(CORNER_MPS, *at));
        }
        let stop = self
            .lights
            .first()
            .map_or(self.length(), |light| light.0.min(self.length()));
        allowed = allowed.min(brake_to(0.0, stop));
        let accel = 1.2 + 0.8 * rng.unit();
        let v = allowed
            .clamp((self.v - 4.0).max(0.0), self.v + accel)
            .max(0.8);
        self.s += (self.v + v) / 2.0;
        self.v = v;
        if self.s >= stop - 0.5 {
            self.s = stop;
            self.v = 0.0;
            match self.lights.first() {
                Some(&(at, wait)) if at <= self.length() => {
                    self.lights.remove(0);
                    self.red_until = t + wait;
                }
                _ => return true,
            }
        }
        false
    }

    /// Where the car is, and its course in degrees.
    fn position(&self) -> (Place, f64) {
        let i = self
            .points
            .partition_point(|p| p.1 <= self.s)
            .clamp(1, self.points.len() - 1);
        let ((a, sa), (b, sb)) = (self.points[i - 1], self.points[i]);
        let share = if sb > sa {
            (self.s - sa) / (sb - sa)
        } else {
            1.0
        };
        let at = Place(a.0 + (b.0 - a.0) * share, a.1 + (b.1 - a.1) * share);
        let course = (b.0 - a.0).atan2(b.1 - a.1).to_degrees().rem_euclid(360.0);
        (at, course)
    }
}

/// The synthetic NMEA stream. Implements `BufRead` over one second of text at a time.
struct Week {
    t: u64,
    end: u64,
    rng: Rng,
    drives: std::vec::IntoIter<Leave>,
    next: Option<Leave>,
    driving: Option<Drive>,
    parked: Place,
    /// GPS error, metres east and north: a slow random walk pulled back to zero.
    noise: (f64, f64),
    course: f64,
    buffer: Vec<u8>,
    pos: usize,
    sentences: u64,
    bytes: u64,
}

impl Week {
    fn new(days: u32) -> Week {
        let mut rng = Rng(0x5eed_d21e_7a60_0001);
        let mut drives = schedule(days, &mut rng).into_iter();
        let next = drives.next();
        Week {
            t: 0,
            end: u64::from(days) * 86_400,
            rng,
            drives,
            next,
            driving: None,
            parked: HOME,
            noise: (0.0, 0.0),
            course: 0.0,
            buffer: Vec::with_capacity(256),
            pos: 0,
            sentences: 0,
            bytes: 0,
        }
    }

    /// Writes the RMC and GGA of second `self.t` and advances the clock.
    fn emit_second(&mut self) {
        let (place, speed_mps) = self.advance();
        self.noise.0 = self.noise.0 * 0.95 + 0.6 * self.rng.normal();
        self.noise.1 = self.noise.1 * 0.95 + 0.6 * self.rng.normal();
        let lat = ORIGIN.0 + (place.1 + self.noise.1) / METRES_PER_DEG_LAT;
        let lon = ORIGIN.1
            + (place.0 + self.noise.0) / (METRES_PER_DEG_LAT * ORIGIN.0.to_radians().cos());
        let reported = if speed_mps > 0.0 {
            speed_mps + 0.1 * self.rng.normal()
        } else {
            0.05 * self.rng.unit()
        };
        let when = START_S + self.t;
        let second = when % 86_400;
        let (y, m, d) = civil_from_days((when / 86_400) as i64);
        let time = [second / 3600, second / 60 % 60, second % 60];

        let start = self.buffer.len();
        self.buffer.extend_from_slice(b"$GPRMC,");
        push_time(&mut self.buffer, time);
        self.buffer.extend_from_slice(b",A,");
        push_position(&mut self.buffer, lat, lon);
        self.buffer.push(b',');
        push_fixed1(
            &mut self.buffer,
            (reported.max(0.0) / 0.514_444 * 10.0 + 0.5) as u64,
        );
        self.buffer.push(b',');
        push_fixed1(&mut self.buffer, (self.course * 10.0 + 0.5) as u64 % 3600);
        self.buffer.push(b',');
        push_digits(&mut self.buffer, d as u64, 2);
        push_digits(&mut self.buffer, m as u64, 2);
        push_digits(&mut self.buffer, (y % 100) as u64, 2);
        self.buffer.extend_from_slice(b",,,A");
        append_checksum(&mut self.buffer, start);

        let start = self.buffer.len();
        self.buffer.extend_from_slice(b"$GPGGA,");
        push_time(&mut self.buffer, time);
        self.buffer.push(b',');
        push_position(&mut self.buffer, lat, lon);
        self.buffer.extend_from_slice(b",1,09,0.9,");
        push_fixed1(&mut self.buffer, 5_200 + (self.noise.1 * 10.0).abs() as u64);
        self.buffer.extend_from_slice(b",M,47.0,M,,");
        append_checksum(&mut self.buffer, start);

        self.sentences += 2;
        self.t += 1;
    }

    /// Moves the car one second: returns where it is and how fast it goes.
    fn advance(&mut self) -> (Place, f64) {
        if self.driving.is_none()
            && let Some(leave) = self.next.filter(|leave| leave.at_s <= self.t)
        {
            self.driving = Some(Drive::new(leave.from, leave.to, &mut self.rng));
            self.next = self.drives.next();
        }
        let Some(drive) = &mut self.driving else {
            return (self.parked, 0.0);
        };
        let arrived = drive.step(self.t, &mut self.rng);
        let (place, course) = drive.position();
        let speed = drive.v;
        if speed > 0.5 {
            self.course = course;
        }
        if arrived {
            self.parked = place;
            self.driving = None;
        }
        (place, speed)
    }
}

impl Read for Week {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let chunk = self.fill_buf()?;
        let n = chunk.len().min(out.len());
        out[..n].copy_from_slice(&chunk[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Week {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.buffer.len() {
            self.buffer.clear();
            self.pos = 0;
            if self.t < self.end {
                self.emit_second();
            }
        }
        Ok(&self.buffer[self.pos..])
    }

    fn consume(&mut self, amount: usize) {
        self.pos += amount;
        self.bytes += amount as u64;
    }
}

fn push_digits(buffer: &mut Vec<u8>, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut v = value;
    let mut n = 0;
    while v > 0 || n < width {
        digits[n] = b'0' + (v % 10) as u8;
        v /= 10;
        n += 1;
    }
    buffer.extend(digits[..n].iter().rev());
}

/// Tenths as `i.t`.
fn push_fixed1(buffer: &mut Vec<u8>, tenths: u64) {
    push_digits(buffer, tenths / 10, 1);
    buffer.push(b'.');
    push_digits(buffer, tenths % 10, 1);
}

fn push_time(buffer: &mut Vec<u8>, [h, m, s]: [u64; 3]) {
    push_digits(buffer, h, 2);
    push_digits(buffer, m, 2);
    push_digits(buffer, s, 2);
    buffer.extend_from_slice(b".00");
}

/// `ddmm.mmmm,N,dddmm.mmmm,E` (4 decimals of a minute: 0.2 m).
fn push_position(buffer: &mut Vec<u8>, lat: f64, lon: f64) {
    for (value, width, hemispheres) in [(lat, 2, b"NS"), (lon, 3, b"EW")] {
        // 1e-4 minutes; `+ 0.5` and a cast round without a call to libm's `round`.
        let units = (value.abs() * 600_000.0 + 0.5) as u64;
        push_digits(buffer, units / 600_000, width);
        push_digits(buffer, units % 600_000 / 10_000, 2);
        buffer.push(b'.');
        push_digits(buffer, units % 10_000, 4);
        buffer.push(b',');
        buffer.push(hemispheres[usize::from(value < 0.0)]);
        if width == 2 {
            buffer.push(b',');
        }
    }
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
