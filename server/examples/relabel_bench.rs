//! Benchmark: a full relabel of a synthetic population with the default rules.
//!
//! ```sh
//! cargo run --release -p drivetag-server --example relabel_bench -- --customers 1000000
//! cargo run --release -p drivetag-server --example relabel_bench -- --customers 1000000 \
//!     --postgres postgres://postgres@127.0.0.1:5432/test
//! ```
//!
//! Loads the population (see `drivetag_server::store::synthetic`) into a fresh SQLite file or a fresh
//! PostgreSQL schema, relabels everyone `--runs` times and prints each step's time, then drops
//! what it made unless `--keep`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};

/// The server's allocator (`src/main.rs`), so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::Parser;
use drivetag_server::labels::engine::{Day, Scope, relabel};
use drivetag_server::labels::rules::Rules;
use drivetag_server::store::Store;
use drivetag_server::store::synthetic::{Size, populate};

/// User and system CPU time of this process so far, seconds (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // After the command name in parentheses: utime and stime are fields 14 and 15.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks: f64 =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

#[derive(Debug, Parser)]
struct Args {
    /// Customers (one vehicle each).
    #[arg(long, default_value_t = 100_000)]
    customers: u64,
    /// Days of agent summaries per vehicle.
    #[arg(long, default_value_t = 30)]
    days: u64,
    /// Full relabels to time.
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// PostgreSQL URL; without it, a SQLite file in a temporary directory (or --sqlite).
    #[arg(long)]
    postgres: Option<String>,
    /// SQLite file to use instead of a temporary one.
    #[arg(long)]
    sqlite: Option<std::path::PathBuf>,
    /// Keep the database afterwards.
    #[arg(long)]
    keep: bool,
    /// With --sqlite: relabel the file as it is when it already holds vehicles, without
    /// loading a population (to time relabels again and again).
    #[arg(long)]
    reuse: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let today = Day::of_date(jiff::civil::date(2026, 11, 15));
    let dir = tempfile::tempdir()?;
    let schema = format!("relabel_bench_{}", std::process::id());
    let store = match &args.postgres {
        Some(url) => {
            let backend = drivetag_server::store::postgres::Postgres::connect(url, Some(&schema))?;
            Store::new(Arc::new(backend)).await?
        }
        None => {
            let path = args
                .sqlite
                .clone()
                .unwrap_or_else(|| dir.path().join("bench.sqlite"));
            Store::open(&format!("sqlite://{}", path.display())).await?
        }
    };
    let loaded = store.counts().await?.vehicles > 0;
    let size = Size {
        customers: args.customers,
        days: args.days,
        today: today.number,
    };
    println!(
        "population: {} customers, {} days of summaries each, {:?}",
        size.customers,
        size.days,
        store.dialect()
    );
    let started = Instant::now();
    let rows = if args.reuse && loaded {
        println!("  reusing the population already in the file");
        0
    } else {
        populate(&store, size, |name, rows, seconds| {
            println!("  load {name:<20} {rows:>11} rows {seconds:>8.1} s");
        })
        .await
        .context("loading the population")?
    };
    println!(
        "  loaded {rows} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let rules = Rules::defaults();
    for run in 1..=args.runs {
        let started = Instant::now();
        let cpu = cpu_seconds();
        let vehicles = relabel(&store, &rules, &Scope::All, today, |step| {
            println!(
                "  run {run} step {}/{} {:<11} {:>10} rows {:>8.2} s",
                step.number, step.of, step.name, step.rows, step.seconds
            );
        })
        .await?;
        // The bench's own process: with SQLite that is all of it; PostgreSQL works apart.
        println!(
            "run {run}: relabelled {vehicles} vehicles in {:.2} s ({:.1} s of this process's CPU)",
            started.elapsed().as_secs_f64(),
            cpu_seconds() - cpu
        );
    }
    // The relabel holds every vehicle's inputs and the population's ranks while it writes.
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(peak) = status.lines().find(|l| l.starts_with("VmHWM"))
    {
        println!(
            "peak RSS of the bench (load included): {}",
            peak.trim_start_matches("VmHWM:").trim()
        );
    }
    if args.keep {
        match &args.postgres {
            Some(_) => println!("kept schema {schema}"),
            None => println!("kept {}", dir.keep().display()),
        }
    } else if let Some(url) = &args.postgres {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await?;
    }
    Ok(())
}
