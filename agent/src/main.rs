//! `drivetag-agent`: the command line over the agent library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use drivetag_agent::config::{AgentFileConfig, PipelineConfig};
use drivetag_agent::sources::replay::Speed;
use drivetag_agent::summarize::{Request, summarize};

/// drivetag's in-car agent: reads GPS and vehicle signals, summarises travel, places and
/// driving style, and sends only the summaries to the dealer's server.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Log filter, e.g. `info` or `drivetag_agent=debug`.
    #[arg(long, global = true, env = "DRIVETAG_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Summarise recorded drives: trips, days, places and driving style.
    ///
    /// Reads NMEA 0183 (RMC, GGA, VTG from any talker), GPX, or gpsd JSON, detected from the
    /// content. The files are one vehicle's recording, read in the given order as one stream;
    /// `-` reads stdin. Bad lines are counted with their line numbers and skipped.
    ///
    /// Examples:
    ///   drivetag-agent summarize drive.nmea
    ///   drivetag-agent summarize --json monday.gpx tuesday.gpx > week.json
    ///   drivetag-agent summarize --signals can.csv --config agent.toml drive.nmea
    #[command(verbatim_doc_comment)]
    Summarize {
        /// The recordings.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Print one JSON document instead of tables: {"trips", "days", "places", "stays",
        /// "summary", "bad_input"}.
        #[arg(long)]
        json: bool,
        /// Vehicle signals (CSV with a header: time,speed_kmh,odometer_km,rpm,fuel_l,soc_pct,
        /// ignition; any subset but time) to merge by time.
        #[arg(long, value_name = "CSV")]
        signals: Option<PathBuf>,
        /// Take the pipeline settings (thresholds, time zone, stores, POIs) from this agent
        /// configuration file; default: the built-in defaults.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Local time zone for hours, days and weekdays, e.g. Asia/Shanghai (overrides the
        /// configuration).
        #[arg(long, value_name = "IANA_ZONE")]
        time_zone: Option<String>,
        /// Replay pacing: `max` (as fast as possible), `1` (recorded speed) or a factor like
        /// `60`.
        #[arg(long, default_value = "max")]
        speed: Speed,
        /// Show progress on stderr even when it is not a terminal.
        #[arg(long)]
        progress: bool,
    },
    /// Check a configuration file and print it with every default filled in.
    ///
    /// Unknown keys and out-of-range values are errors that name the line or the key.
    CheckConfig {
        /// The TOML configuration file (see deploy/agent.example.toml).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("drivetag-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Summarize {
            files,
            json,
            signals,
            config,
            time_zone,
            speed,
            progress,
        } => {
            let mut pipeline = match config {
                Some(path) => AgentFileConfig::load(&path)?.pipeline,
                None => PipelineConfig::default(),
            };
            if let Some(zone) = time_zone {
                pipeline.time_zone = zone;
            }
            let run = summarize(&Request {
                files,
                signals,
                config: pipeline,
                speed,
                progress: progress.then_some(true),
            })?;
            let text = if json {
                serde_json::to_string_pretty(&run.json()).context("writing JSON")?
            } else {
                run.table()
            };
            print_or_broken_pipe(&text)
        }
        Command::CheckConfig { config } => {
            let loaded = AgentFileConfig::load(&config)?;
            println!("{loaded:#?}");
            Ok(())
        }
    }
}

/// Prints, treating a closed pipe (`| head`) as success, as ripgrep does.
fn print_or_broken_pipe(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}
