//! What the relabel's logic costs in the server, without the database: the default rules'
//! tiers, groups and strategies for N vehicles with random features (`labels::assign`).
//!
//! ```sh
//! cargo run --release -p drivetag-server --example assign_bench -- --vehicles 1000000
//! ```
//!
//! Prints the time to rank the population (sorting each tier part and score), to assign every
//! vehicle's labels and ranked actions, and the process's peak RSS.

use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use drivetag_server::labels::assign::{Assigner, Subject, column};
use drivetag_server::labels::features::FEATURES;
use drivetag_server::labels::rules::{CHANNELS, Rules};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[derive(Parser)]
#[command(about = "The relabel's logic in the server, without the database")]
struct Args {
    /// Vehicles, one per customer.
    #[arg(long, default_value_t = 1_000_000)]
    vehicles: usize,
    /// Threads that assign, each a contiguous share of the customers (ranking is one thread).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// NULL a tenth of the time, else 0..scale with two decimals.
fn value(rng: &mut SmallRng, scale: u32) -> Option<f64> {
    (!rng.random_ratio(1, 10)).then(|| f64::from(rng.random_range(0..scale * 100)) / 100.0)
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rules = Rules::defaults();
    let mut rng = SmallRng::seed_from_u64(42);
    let energies = ["ice", "hev", "phev", "ev"];
    let started = Instant::now();
    let subjects: Vec<Subject> = (0..args.vehicles)
        .map(|i| Subject {
            vin: format!("VIN{i:014}"),
            customer: Some(format!("C{i:09}")),
            has_device: !rng.random_ratio(1, 4),
            features: (0..FEATURES.len())
                .map(|f| if f == 0 { None } else { value(&mut rng, 400) })
                .collect(),
            energy: Some(energies[rng.random_range(0..4_usize)].to_owned()),
            consents: std::array::from_fn(|_| rng.random_bool(0.5)),
            recent_contacts: rng.random_range(0..3),
        })
        .collect();
    println!(
        "{} vehicles generated in {:.2} s",
        subjects.len(),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let assigner = Assigner::new(&rules, [20_600, 5, 2026], |f| column(&subjects, f))
        .map_err(anyhow::Error::msg)?;
    let ranked = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let threads = args.threads.max(1);
    let share = subjects.len().div_ceil(threads).max(1);
    let counts: Vec<(usize, usize, usize)> = std::thread::scope(|scope| {
        let workers: Vec<_> = subjects
            .chunks(share)
            .enumerate()
            .map(|(chunk, part)| {
                let assigner = &assigner;
                scope.spawn(move || {
                    let (mut labels, mut actions, mut planned) = (0, 0, 0);
                    for (offset, subject) in part.iter().enumerate() {
                        let position = chunk * share + offset;
                        for assigned in assigner.customer(&[(position, subject)]) {
                            labels += assigned.labels.len();
                            actions += assigned.actions.len();
                            planned += assigned
                                .actions
                                .iter()
                                .filter(|a| a.status.as_str() == "planned")
                                .count();
                        }
                    }
                    (labels, actions, planned)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect()
    });
    let (labels, actions, planned) = counts
        .iter()
        .fold((0, 0, 0), |(l, a, p), c| (l + c.0, a + c.1, p + c.2));
    let assigned = started.elapsed().as_secs_f64();
    println!(
        "rank the population ({} tiers): {ranked:.2} s",
        rules.tiers.len()
    );
    println!(
        "assign on {threads} thread(s): {assigned:.2} s, {:.0} vehicles/s; {labels} labels, {actions} actions ({planned} planned) over {} channels",
        subjects.len() as f64 / assigned,
        CHANNELS.len()
    );
    println!("peak RSS {} MB", peak_rss_kb() / 1024);
    Ok(())
}
