//! `drivetag-agent summarize`: recorded files through the pipeline, at the edge where files
//! are opened and progress is shown.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::PipelineConfig;
use crate::pipeline::{Output, Pipeline};
use crate::report::Run;
use crate::sample::{Fix, Sample, Signal};
use crate::sources::detect::{Format, detect};
use crate::sources::merge::{Input, Merge};
use crate::sources::nmea::NmeaReader;
use crate::sources::replay::{Pacer, Speed};
use crate::sources::signals::SignalReader;
use crate::sources::{BadLine, gpsd::GpsdReader, gpx};

/// What to summarise and how.
#[derive(Debug, Clone)]
pub struct Request {
    /// GPS recordings of one vehicle, read in this order as one stream; `-` is stdin.
    pub files: Vec<PathBuf>,
    /// A vehicle-signal CSV to merge with them.
    pub signals: Option<PathBuf>,
    /// Pipeline settings.
    pub config: PipelineConfig,
    /// Replay pacing.
    pub speed: Speed,
    /// Show progress on stderr: `None` decides by whether stderr is a terminal.
    pub progress: Option<bool>,
}

/// Why a summary could not be made at all (bad lines are not errors: they are counted).
#[derive(Debug, thiserror::Error)]
pub enum SummarizeError {
    /// An input cannot be opened or read.
    #[error("{path}: {source}")]
    Open {
        /// The input.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A GPX document is broken as a whole.
    #[error("{path}: {source}")]
    Gpx {
        /// The input.
        path: PathBuf,
        /// Why.
        source: gpx::GpxError,
    },
    /// The signal CSV is unusable as a whole.
    #[error("{path}: {source}")]
    Signals {
        /// The input.
        path: PathBuf,
        /// Why.
        source: crate::sources::signals::SignalError,
    },
    /// The configured time zone is unknown.
    #[error(transparent)]
    Zone(#[from] crate::transforms::local_time::UnknownZone),
}

/// Counts bytes as they are read, for progress.
struct Counting<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Reads each input, runs the pipeline, and collects everything the report needs.
pub fn summarize(request: &Request) -> Result<Run, SummarizeError> {
    let mut pipeline = Pipeline::new(request.config.clone())?;
    let mut run = Run::new(request.config.cell_size());
    let show_progress = request
        .progress
        .unwrap_or_else(|| std::io::stderr().is_terminal());
    let mut signals: Box<dyn Iterator<Item = Result<Signal, BadLine>>> = match &request.signals {
        Some(path) => {
            let file = File::open(path).map_err(|source| SummarizeError::Open {
                path: path.clone(),
                source,
            })?;
            let reader = SignalReader::new(BufReader::new(file)).map_err(|source| {
                SummarizeError::Signals {
                    path: path.clone(),
                    source,
                }
            })?;
            Box::new(reader)
        }
        None => Box::new(std::iter::empty()),
    };
    let signals_name = request
        .signals
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let started = Instant::now();
    let mut pacer = Pacer::new(request.speed);
    for path in &request.files {
        let name = path.display().to_string();
        let (size, input) = open(path)?;
        let mut input = BufReader::with_capacity(
            64 * 1024,
            Counting {
                inner: input,
                bytes: 0,
            },
        );
        let head = input.fill_buf().map_err(|source| SummarizeError::Open {
            path: path.clone(),
            source,
        })?;
        let format = detect(&head[..head.len().min(4096)]);
        run.files.push((name.clone(), format));
        let fixes: Box<dyn Iterator<Item = Result<Fix, BadLine>>> = match format {
            Format::Nmea => Box::new(NmeaReader::new(input)),
            Format::Gpsd => Box::new(GpsdReader::new(input)),
            Format::Gpx => Box::new(
                gpx::read(input)
                    .map_err(|source| SummarizeError::Gpx {
                        path: path.clone(),
                        source,
                    })?
                    .into_iter(),
            ),
        };
        // Signals merge into the stream of the file they overlap; leftovers go with the last.
        let merged = Merge::new(fixes, signals.by_ref());
        let mut last_progress = Instant::now();
        let mut count = 0u64;
        for input in merged {
            match input {
                Input::Sample(sample) => {
                    if let Sample::Fix(_) = sample {
                        run.fixes += 1;
                    }
                    let wait = pacer.wait(sample.t_ms(), started.elapsed());
                    if !wait.is_zero() {
                        std::thread::sleep(wait);
                    }
                    pipeline.push(sample);
                    collect(&mut pipeline, &mut run);
                }
                Input::BadGps(bad) => run.bad.record(&name, bad),
                Input::BadSignal(bad) => run.bad.record(&signals_name, bad),
            }
            count += 1;
            if show_progress
                && count % 8192 == 0
                && last_progress.elapsed() > Duration::from_secs(1)
            {
                last_progress = Instant::now();
                eprint!(
                    "\rsummarize: {name}: {} fixes, {} trips{}",
                    run.fixes,
                    run.trips.len(),
                    size.map_or(String::new(), |s| format!(" ({s} bytes)"))
                );
            }
        }
    }
    // Signals left over after the last GPS file.
    for signal in signals {
        match signal {
            Ok(signal) => {
                pipeline.push(Sample::Signal(signal));
                collect(&mut pipeline, &mut run);
            }
            Err(bad) => run.bad.record(&signals_name, bad),
        }
    }
    pipeline.finish();
    collect(&mut pipeline, &mut run);
    run.clean = pipeline.clean_stats();
    if show_progress {
        eprintln!(
            "\rsummarize: {} fixes, {} trips in {:.1} s",
            run.fixes,
            run.trips.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(run)
}

fn collect(pipeline: &mut Pipeline, run: &mut Run) {
    for output in pipeline.drain() {
        match output {
            Output::Trip(trip) => run.trips.push(*trip),
            Output::Day(day) => run.days.push(*day),
            Output::Places(places) => run.places.push(*places),
            Output::Style(style) => run.styles.push(*style),
            Output::Stay(stay) => run.stays.push(stay),
        }
    }
}

fn open(path: &Path) -> Result<(Option<u64>, Box<dyn Read>), SummarizeError> {
    if path == Path::new("-") {
        return Ok((None, Box::new(std::io::stdin().lock())));
    }
    let file = File::open(path).map_err(|source| SummarizeError::Open {
        path: path.to_owned(),
        source,
    })?;
    let size = file.metadata().ok().map(|m| m.len());
    Ok((size, Box::new(file)))
}
