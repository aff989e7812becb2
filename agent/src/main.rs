//! `drivetag-agent`: the command line over the agent library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use drivetag_agent::config::AgentFileConfig;

/// drivetag's in-car agent: reads GPS and vehicle signals, summarises travel, places and
/// driving style, and sends only the summaries to the dealer's server.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Log filter, e.g. `info` or `drivetag_agent=debug` (overrides RUST_LOG).
    #[arg(long, global = true, env = "DRIVETAG_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a configuration file and print it with every default filled in.
    ///
    /// Unknown keys and out-of-range values are errors that name the line.
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
        Command::CheckConfig { config } => {
            let loaded = AgentFileConfig::load(&config)?;
            println!("{loaded:#?}");
            let _ = loaded.device().context("device_id")?;
            Ok(())
        }
    }
}
