//! `drivetag-sim`: the one-command demo and the simulator's file generator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use drivetag_sim::demo::{self, DemoOptions};
use drivetag_sim::fleet::{Fleet, FleetSpec};
use drivetag_sim::nmea::{Counters, NmeaStream, SignalStream};
use drivetag_sim::world::World;
use tokio::sync::watch;

/// drivetag's fleet simulator: simulated cars, real agents, a real server.
///
/// Each simulated car is driven by a persona (commuter, long-distance traveller, aggressive
/// driver, night driver, ride-hailing, premium shopper, lost customer, new-car owner, EV owner)
/// around three dealer stores in Shanghai. Its head unit emits NMEA sentences and vehicle
/// signals; a real drivetag agent summarises them and sends the summaries over MQTT to a real
/// drivetag server, which labels the customers and picks after-sales strategies.
/// Everything follows from the seed.
#[derive(Debug, Parser)]
#[command(name = "drivetag-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The fleet to simulate.
#[derive(Debug, clap::Args)]
struct FleetArgs {
    /// Vehicles; personas take turns, so 9 or more gives every persona at least one.
    #[arg(long, default_value_t = 200)]
    vehicles: usize,
    /// Days of driving, ending yesterday (local time).
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Seed of every random choice: the same seed gives the same fleet, drives and files.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Prefix of device ids and customer ids, to keep several fleets apart on one broker or
    /// database.
    #[arg(long, default_value = "")]
    prefix: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole system on this machine with nothing installed: an embedded MQTT broker,
    /// the server on SQLite, and one real agent per simulated vehicle in fast-forward; then
    /// print the label distribution and the top strategies per store, write an export, and
    /// serve the HTTP API until Ctrl-C.
    ///
    /// Examples:
    ///   drivetag-sim demo
    ///   drivetag-sim demo --vehicles 1000 --days 60 --seed 7
    ///   drivetag-sim demo --exit-after-report        (for scripts)
    ///   drivetag-sim demo --broker mqtt://127.0.0.1:1883 --database postgres://127.0.0.1/test
    Demo {
        #[command(flatten)]
        fleet: FleetArgs,
        /// Where the dealer CSVs, the database, the agents' outboxes and the export go. What an
        /// earlier demo left there is replaced.
        #[arg(long, default_value = "drivetag-demo")]
        data_dir: PathBuf,
        /// The HTTP API's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http_listen: SocketAddr,
        /// The embedded MQTT broker's address (1884, beside a system Mosquitto on 1883).
        #[arg(long, default_value = "127.0.0.1:1884")]
        mqtt_listen: SocketAddr,
        /// Use this broker (`mqtt://host:port`) instead of the embedded one.
        #[arg(long, default_value = "")]
        broker: String,
        /// Use this database (`postgres://...` or `sqlite://PATH`) instead of
        /// `<data-dir>/server.sqlite`.
        #[arg(long, default_value = "")]
        database: String,
        /// Agents running at once. Default: four per CPU core.
        #[arg(long)]
        concurrency: Option<usize>,
        /// Stop once the report is printed instead of serving the API.
        #[arg(long)]
        exit_after_report: bool,
    },
    /// Drive the fleet's agents against a running server's broker, without starting a server:
    /// for load tests and for trying a real deployment. Import the dealer CSVs first
    /// (`generate` writes them; the demo's are the same for the same flags).
    ///
    /// Example:
    ///   drivetag-server serve --config server.toml &
    ///   drivetag-sim drive --broker mqtt://127.0.0.1:1883 --vehicles 10000 --days 7
    Drive {
        #[command(flatten)]
        fleet: FleetArgs,
        /// The broker, `mqtt://host:port`.
        #[arg(long)]
        broker: String,
        /// Where the agents' outboxes go.
        #[arg(long, default_value = "drivetag-sim-outboxes")]
        outboxes: PathBuf,
        /// Agents running at once. Default: four per CPU core.
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Write what the fleet's head units would record, for the real `drivetag-agent` binary:
    /// `nmea/<device>.nmea`, `signals/<device>.csv`, `agents/<device>.toml` and the dealer's
    /// CSVs under `dealer/`.
    ///
    /// Example:
    ///   drivetag-sim generate --vehicles 9 --days 7 --out sim-data
    ///   drivetag-server import stores sim-data/dealer/stores.csv   (and the other files in order)
    ///   drivetag-agent run --config sim-data/agents/sim-00000.toml
    Generate {
        #[command(flatten)]
        fleet: FleetArgs,
        /// Output directory.
        #[arg(long, default_value = "drivetag-sim-data")]
        out: PathBuf,
        /// The broker the agents' configurations name.
        #[arg(long, default_value = "mqtt://127.0.0.1:1884")]
        broker: String,
        /// Write only the dealer's CSVs (for `drive`, whose agents need no files).
        #[arg(long)]
        dealer_only: bool,
    },
}

fn spec(args: FleetArgs) -> anyhow::Result<FleetSpec> {
    let time_zone = "Asia/Shanghai".to_owned();
    let (_, last_day) = demo::today_in(&time_zone)?;
    Ok(FleetSpec {
        vehicles: args.vehicles,
        days: args.days.max(1),
        seed: args.seed,
        last_day,
        time_zone,
        prefix: args.prefix,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rumqttd=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("drivetag-sim: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo {
            fleet,
            data_dir,
            http_listen,
            mqtt_listen,
            broker,
            database,
            concurrency,
            exit_after_report,
        } => {
            let cores = std::thread::available_parallelism().map_or(2, usize::from);
            let options = DemoOptions {
                fleet: spec(fleet)?,
                data_dir,
                http_listen,
                mqtt_listen,
                broker,
                database,
                concurrency: concurrency.unwrap_or(4 * cores).max(1),
                share_group: String::new(),
                labeller_interval_s: 60,
            };
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(demo_main(options, exit_after_report))
        }
        Command::Generate {
            fleet,
            out,
            broker,
            dealer_only,
        } => generate(spec(fleet)?, &out, &broker, dealer_only),
        Command::Drive {
            fleet,
            broker,
            outboxes,
            concurrency,
        } => {
            let cores = std::thread::available_parallelism().map_or(2, usize::from);
            let fleet = Fleet::new(spec(fleet)?, World::shanghai())?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(drive(
                fleet,
                &broker,
                &outboxes,
                concurrency.unwrap_or(4 * cores),
            ))
        }
    }
}

async fn demo_main(options: DemoOptions, exit_after_report: bool) -> anyhow::Result<ExitCode> {
    use drivetag_server::service::access::{Keys, Role};
    let (shutdown_tx, shutdown) = watch::channel(false);
    let stop_on_signal = tokio::spawn({
        let shutdown_tx = shutdown_tx.clone();
        async move {
            drivetag_server::cli::shutdown_signal().await;
            let _ = shutdown_tx.send(true);
        }
    });
    let finished = demo::run(&options, shutdown.clone()).await?;
    let store = &finished.running.store;
    let admin = Keys::create(store, &Role::Admin, "demo admin").await?;
    let store_key = Keys::create(store, &Role::Store(1), "demo store 1").await?;
    let fleet_key =
        Keys::create(store, &Role::Fleet("ride-co".into()), "demo fleet ride-co").await?;
    let base = format!("http://{}", finished.running.http);
    println!("\nAPI keys (stored hashed; shown once):");
    println!("  admin            {admin}");
    println!("  store 1          {store_key}");
    println!("  fleet ride-co    {fleet_key}");
    println!("Try:");
    println!(
        "  curl -H 'Authorization: Bearer {admin}' '{base}/api/v1/customers?label=lifecycle%3Dlost'"
    );
    println!(
        "  curl -H 'Authorization: Bearer {store_key}' {base}/api/v1/stores/1/label-distribution"
    );
    println!("  curl -H 'Authorization: Bearer {fleet_key}' {base}/api/v1/exports/vehicles.csv");
    println!("  OpenAPI: {base}/api/v1/openapi.json");
    let failed = finished.figures.failed;
    if exit_after_report {
        let _ = shutdown_tx.send(true);
    } else {
        println!("\nServing until Ctrl-C.");
    }
    let mut shutdown = shutdown;
    let _ = shutdown.wait_for(|stop| *stop).await;
    stop_on_signal.abort();
    let _ = finished.server.await;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn drive(
    fleet: Fleet,
    broker: &str,
    outboxes: &std::path::Path,
    concurrency: usize,
) -> anyhow::Result<ExitCode> {
    let (stop_tx, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        drivetag_server::cli::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    println!(
        "driving {} vehicles × {} days against {broker}, {concurrency} agents at a time",
        fleet.vehicles.len(),
        fleet.spec.days
    );
    let pipeline = demo::pipeline_for(&fleet);
    let figures = demo::drive_fleet(
        &fleet,
        broker,
        outboxes,
        &pipeline,
        concurrency,
        None,
        shutdown,
        std::time::Duration::from_secs(5),
        |p| println!("  {p}"),
    )
    .await?;
    let vehicle_days = (fleet.vehicles.len() as f64) * f64::from(fleet.spec.days);
    println!(
        "delivered {}/{} vehicles in {:.1} s: {:.1} M fixes ({:.2} M/s), {:.0} MB of NMEA ({:.2} MB per vehicle-day), {} failed",
        figures.delivered,
        fleet.vehicles.len(),
        figures.seconds,
        figures.epochs as f64 / 1e6,
        figures.epochs as f64 / figures.seconds.max(0.001) / 1e6,
        figures.nmea_bytes as f64 / 1e6,
        figures.nmea_bytes as f64 / 1e6 / vehicle_days.max(1.0),
        figures.failed
    );
    Ok(if figures.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn generate(
    spec: FleetSpec,
    out: &std::path::Path,
    broker: &str,
    dealer_only: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let fleet = Fleet::new(spec, World::shanghai())?;
    demo::write_dealer_csvs(&fleet, &out.join("dealer"))?;
    if dealer_only {
        println!(
            "wrote the dealer CSVs of {} vehicles to {}",
            fleet.vehicles.len(),
            out.join("dealer").display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for dir in ["nmea", "signals", "agents"] {
        std::fs::create_dir_all(out.join(dir))
            .with_context(|| out.join(dir).display().to_string())?;
    }
    let counters = Arc::new(Counters::default());
    for vehicle in &fleet.vehicles {
        let shared = Arc::new(vehicle.clone());
        let nmea = out.join("nmea").join(format!("{}.nmea", vehicle.device_id));
        let signals = out
            .join("signals")
            .join(format!("{}.csv", vehicle.device_id));
        let copy =
            |mut reader: Box<dyn std::io::Read>, path: &std::path::Path| -> anyhow::Result<()> {
                let mut file = std::io::BufWriter::new(
                    std::fs::File::create(path).with_context(|| path.display().to_string())?,
                );
                std::io::copy(&mut reader, &mut file)?;
                file.flush()?;
                Ok(())
            };
        copy(
            Box::new(NmeaStream::new(shared.clone(), counters.clone())),
            &nmea,
        )?;
        copy(
            Box::new(SignalStream::new(shared, counters.clone())),
            &signals,
        )?;
        let absolute =
            |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        let toml = format!(
            "# {persona} · {make} {model} · generated by drivetag-sim\n\
             device_id = \"{device}\"\n\n[vehicle]\nvin = \"{vin}\"\nmake = \"{make}\"\nmodel = \"{model}\"\nmodel_year = {year}\nenergy = \"{energy}\"\n\n\
             [mqtt]\nurl = \"{broker}\"\n\n[outbox]\npath = \"{outbox}\"\n\n\
             [input]\ngps = \"{nmea}\"\nsignals = \"{signals}\"\nreplay_speed = \"max\"\n\n\
             [pipeline]\ntime_zone = \"{zone}\"\n",
            persona = vehicle.persona.name(),
            device = vehicle.device_id,
            vin = vehicle.vin,
            make = vehicle.make,
            model = vehicle.model,
            year = vehicle.model_year,
            energy = vehicle.energy,
            outbox = absolute(&out.join("outboxes"))
                .join(format!("{}.sqlite", vehicle.device_id))
                .display(),
            nmea = absolute(&nmea).display(),
            signals = absolute(&signals).display(),
            zone = fleet.spec.time_zone,
        );
        let path = out
            .join("agents")
            .join(format!("{}.toml", vehicle.device_id));
        std::fs::write(&path, toml).with_context(|| path.display().to_string())?;
    }
    std::fs::create_dir_all(out.join("outboxes"))?;
    println!(
        "wrote {} vehicles × {} days to {}: {:.1} M fixes, {:.0} MB of NMEA, {:.0} MB of signals",
        fleet.vehicles.len(),
        fleet.spec.days,
        out.display(),
        counters.epochs.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6,
        counters
            .nmea_bytes
            .load(std::sync::atomic::Ordering::Relaxed) as f64
            / 1e6,
        counters
            .signal_bytes
            .load(std::sync::atomic::Ordering::Relaxed) as f64
            / 1e6
    );
    Ok(ExitCode::SUCCESS)
}
