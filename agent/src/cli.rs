//! The `drivetag-agent` command line. `main.rs` only calls [`main`], so tests can build the
//! same program.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{AgentFileConfig, PipelineConfig};
use crate::run::RunOptions;
use crate::sources::replay::Speed;
use crate::summarize::{Request, summarize};
use anyhow::Context;
use clap::{Parser, Subcommand};

/// drivetag's in-car agent: reads GPS and vehicle signals, summarises travel, places and
/// driving style, and sends only the summaries to the dealer's server.
#[derive(Debug, Parser)]
#[command(name = "drivetag-agent", version, about, long_about = None)]
struct Cli {
    /// Log filter, e.g. `info` or `drivetag_agent=debug`.
    #[arg(
        long,
        global = true,
        env = "DRIVETAG_LOG",
        default_value = "info,rumqttd=warn"
    )]
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
    /// Run on a head unit: read GPS, summarise, and deliver the summaries over MQTT.
    ///
    /// Every summary is committed to the SQLite outbox before it is sent and stays there until
    /// the server acknowledges it, across power cuts and dead links. The server's configuration
    /// (thresholds, stores, POIs, precision) arrives on the retained config topic and applies
    /// without a restart. SIGTERM or Ctrl-C stop cleanly.
    ///
    /// Examples:
    ///   drivetag-agent run --config /etc/drivetag/agent.toml
    ///   drivetag-agent run --config agent.toml --gps drive.nmea --replay-speed 60
    #[command(verbatim_doc_comment)]
    Run {
        /// The TOML configuration file (see deploy/agent.example.toml); default: built-in
        /// defaults.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// GPS input, overriding input.gps: gpsd://host:port, a serial device, `-`, or a
        /// recorded file.
        #[arg(long, value_name = "INPUT")]
        gps: Option<String>,
        /// Replay speed for a recorded file, overriding input.replay_speed: `1`, `60`, `max`.
        #[arg(long, value_name = "SPEED")]
        replay_speed: Option<String>,
        /// Broker URL, overriding mqtt.url.
        #[arg(long, value_name = "URL")]
        mqtt_url: Option<String>,
        /// Device id, overriding device_id.
        #[arg(long, value_name = "ID")]
        device_id: Option<String>,
        /// Outbox file, overriding outbox.path.
        #[arg(long, value_name = "FILE")]
        outbox: Option<PathBuf>,
        /// Exit once a recorded input has ended and the server has acknowledged everything.
        #[arg(long)]
        exit_when_done: bool,
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

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
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
        Command::Run {
            config,
            gps,
            replay_speed,
            mqtt_url,
            device_id,
            outbox,
            exit_when_done,
        } => {
            let mut loaded = match config {
                Some(path) => AgentFileConfig::load(&path)?,
                None => AgentFileConfig::default(),
            };
            if let Some(gps) = gps {
                loaded.input.gps = gps;
            }
            if let Some(speed) = replay_speed {
                loaded.input.replay_speed = speed;
            }
            if let Some(url) = mqtt_url {
                loaded.mqtt.url = url;
            }
            if let Some(id) = device_id {
                loaded.device_id = id;
            }
            if let Some(path) = outbox {
                loaded.outbox.path = path;
            }
            loaded.device().context("device_id")?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(async move {
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    shutdown_signal().await;
                    let _ = stop_tx.send(true);
                });
                crate::run::run(loaded, RunOptions { exit_when_done }, stop_rx).await
            })
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

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
