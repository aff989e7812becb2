//! `drivetag-agent summarize`: recorded files through the pipeline, at the edge where files
//! are opened and progress is shown.

use std::fs::File;
use std::io::{BufReader, IsTerminal};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::PipelineConfig;
use crate::pipeline::{Output, Pipeline};
use crate::report::Run;
use crate::sample::{Sample, Signal};
use crate::sources::BadLine;
use crate::sources::merge::{Input, Merge};
use crate::sources::open::{GpsInput, OpenError, open};
use crate::sources::replay::{Pacer, Speed};
use crate::sources::signals::SignalReader;

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
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The signal CSV cannot be opened.
    #[error("{path}: {source}")]
    SignalFile {
        /// The input.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
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

/// Reads each input, runs the pipeline, and collects everything the report needs.
pub fn summarize(request: &Request) -> Result<Run, SummarizeError> {
    let mut pipeline = Pipeline::new(request.config.clone())?;
    let mut run = Run::new(request.config.cell_size());
    let show_progress = request
        .progress
        .unwrap_or_else(|| std::io::stderr().is_terminal());
    let mut signals: Box<dyn Iterator<Item = Result<Signal, BadLine>>> = match &request.signals {
        Some(path) => {
            let file = File::open(path).map_err(|source| SummarizeError::SignalFile {
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
        let input = GpsInput::parse(&name);
        let size = std::fs::metadata(path).ok().map(|m| m.len());
        let (format, fixes) = open(&input)?;
        run.files.push((name.clone(), format));
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
