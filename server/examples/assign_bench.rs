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
use drivetag_server::labels::assign::{Assigner, Subject};
use drivetag_server::labels::features::FEATURES;
use drivetag_server::labels::rules::{CHANNELS, Rules};

#[derive(Parser)]
#[command(about = "The relabel's logic in the server, without the database")]
struct Args {
    /// Vehicles, one per customer.
    #[arg(long, default_value_t = 1_000_000)]
    vehicles: usize,
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// NULL a tenth of the time, else 0..scale with two decimals.
    fn value(&mut self, scale: u64) -> Option<f64> {
        let r = self.next();
        (r % 10 != 0).then(|| ((r >> 8) % (scale * 100)) as f64 / 100.0)
    }
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
    let mut rng = Rng(42);
    let energies = ["ice", "hev", "phev", "ev"];
    let started = Instant::now();
    let subjects: Vec<Subject> = (0..args.vehicles)
        .map(|i| Subject {
            vin: format!("VIN{i:014}"),
            customer: Some(format!("C{i:09}")),
            has_device: rng.next() % 4 != 0,
            features: (0..FEATURES.len())
                .map(|f| if f == 0 { None } else { rng.value(400) })
                .collect(),
            energy: Some(energies[(rng.next() % 4) as usize].to_owned()),
            consents: std::array::from_fn(|_| rng.next() % 2 == 0),
            recent_contacts: (rng.next() % 3) as u32,
        })
        .collect();
    println!(
        "{} vehicles generated in {:.2} s",
        subjects.len(),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let assigner = Assigner::new(&rules, [20_600, 5, 2026], || {
        subjects.iter().map(|s| s.features.as_slice())
    })
    .map_err(anyhow::Error::msg)?;
    let ranked = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let (mut labels, mut actions, mut planned) = (0usize, 0usize, 0usize);
    for (position, subject) in subjects.iter().enumerate() {
        for assigned in assigner.customer(position, std::slice::from_ref(subject)) {
            labels += assigned.labels.len();
            actions += assigned.actions.len();
            planned += assigned
                .actions
                .iter()
                .filter(|a| a.status.as_str() == "planned")
                .count();
        }
    }
    let assigned = started.elapsed().as_secs_f64();
    println!(
        "rank the population ({} tiers): {ranked:.2} s",
        rules.tiers.len()
    );
    println!(
        "assign: {assigned:.2} s, {:.0} vehicles/s; {labels} labels, {actions} actions ({planned} planned) over {} channels",
        subjects.len() as f64 / assigned,
        CHANNELS.len()
    );
    println!("peak RSS {} MB", peak_rss_kb() / 1024);
    Ok(())
}
