//! `drivetag-server`: the command line over the server library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use drivetag_server::config::ServerConfig;

/// drivetag's dealership backend: ingests vehicle summaries over MQTT, labels customers and
/// picks the matching aftermarket strategy for each.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Log filter, e.g. `info` or `drivetag_server=debug` (overrides RUST_LOG).
    #[arg(long, global = true, env = "DRIVETAG_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a configuration file and print it with every default filled in.
    CheckConfig {
        /// The TOML configuration file (see deploy/server.example.toml).
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
            eprintln!("drivetag-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::CheckConfig { config } => {
            println!("{:#?}", ServerConfig::load(&config)?);
            Ok(())
        }
    }
}
