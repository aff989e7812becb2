//! The whole system end to end: simulated cars → real agents (pipeline, outbox, MQTT) → the
//! embedded broker or Mosquitto → the server on SQLite or PostgreSQL → labels and strategies →
//! the HTTP API and exports. Each persona must get the label and the first strategy it was
//! built to get, every summary must be stored exactly once, and tiers must keep their shares.
#![allow(clippy::unwrap_used)] // Tests may panic on what they did not expect.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;

use drivetag_server::service::access::{Keys, Role};
use drivetag_sim::demo::{self, DemoOptions, Finished};
use drivetag_sim::fleet::{FLEETS, FleetSpec};
use drivetag_sim::persona::Persona;
use drivetag_tests::{free_port, postgres_schema_url, require_mosquitto, unique};
use serde_json::Value;

/// Three of each persona over three weeks: enough for home, work and commutes to settle.
fn options(prefix: &str, dir: &std::path::Path) -> DemoOptions {
    DemoOptions {
        fleet: FleetSpec {
            vehicles: 27,
            days: 21,
            seed: 17,
            // A fixed calendar: the same weekdays, service dates and labels on every run.
            last_day: jiff::civil::date(2026, 11, 15),
            time_zone: "Asia/Shanghai".into(),
            prefix: prefix.into(),
        },
        data_dir: dir.to_owned(),
        http_listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
        mqtt_listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
        broker: String::new(),
        database: String::new(),
        concurrency: 8,
        share_group: String::new(),
        // Only the test's own relabel, as of the fixed day.
        labeller_interval_s: 86_400,
    }
}

async fn get(client: &reqwest::Client, url: &str, key: &str) -> (reqwest::StatusCode, String) {
    let response = client.get(url).bearer_auth(key).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// Everything a finished run must show, checked through the store and over HTTP.
async fn check(finished: &Finished) {
    let fleet = &finished.fleet;
    let store = &finished.running.store;
    assert_eq!(finished.figures.failed, 0);
    assert_eq!(finished.figures.delivered, fleet.vehicles.len());

    // Exactly once: every device's sequence numbers are 1..=n without gaps or repeats, and the
    // store holds nothing else.
    let mut total = 0;
    for vehicle in &fleet.vehicles {
        let seqs = store.sequence_numbers(&vehicle.device_id).await.unwrap();
        assert!(
            seqs.len() > 20,
            "{}: only {} summaries",
            vehicle.device_id,
            seqs.len()
        );
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{}",
            vehicle.device_id
        );
        total += seqs.len() as u64;
    }
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.envelopes, total);
    assert_eq!(counts.dead_letters, 0);

    // Each persona: its label and its first strategy, for every one of its vehicles.
    for result in &finished.report.personas {
        assert_eq!(result.vehicles, 3, "{:?}", result.persona);
        assert_eq!(
            result.label_hits, 3,
            "{:?} label: {result:?}",
            result.persona
        );
        assert_eq!(
            result.strategy_hits, 3,
            "{:?} strategy: {result:?}",
            result.persona
        );
    }
    assert_eq!(finished.report.personas.len(), Persona::ALL.len());

    // The same over HTTP, with the explanation the dealer sees.
    let admin = Keys::create(store, &Role::Admin, "test admin")
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://{}/api/v1", finished.running.http);
    for vehicle in &fleet.vehicles {
        let (strategy, (group, value)) = vehicle.persona.expectation();
        let (status, body) =
            get(&client, &format!("{base}/vehicles/{}", vehicle.vin), &admin).await;
        assert_eq!(status, 200, "{body}");
        let detail: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            detail["actions"][0]["strategy"], strategy,
            "{:?}: {body}",
            vehicle.persona
        );
        let label = detail["labels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["group"] == group && l["value"] == value)
            .unwrap_or_else(|| panic!("{:?} lacks {group}={value}: {body}", vehicle.persona));
        assert!(!label["rule"].as_str().unwrap().is_empty(), "{body}");
    }

    // Tiers keep the 30/40/30 rule: a level never holds more than its share, and every
    // member of a better level scores at least as high as every member of a worse one.
    let n = fleet.vehicles.len();
    let rules = drivetag_server::labels::rules::Rules::defaults();
    for tier in &rules.tiers {
        let scores = store.tier_scores(&tier.group).await.unwrap();
        let labels: BTreeMap<String, String> = store
            .label_rows(&tier.group)
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(labels.len(), n, "{}", tier.group);
        let mut cumulative = 0;
        let mut seen = 0;
        let mut floor_of_better = f64::INFINITY;
        for (value, share) in &tier.levels {
            cumulative += *share as usize;
            let members: Vec<f64> = labels
                .iter()
                .filter(|(_, v)| *v == value)
                .map(|(vin, _)| scores[vin])
                .collect();
            seen += members.len();
            assert!(
                seen * 100 <= cumulative * n,
                "{}: {seen} in the top {cumulative} %",
                tier.group
            );
            let best = members.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert!(
                best <= floor_of_better,
                "{} {value}: {best} above a better level's {floor_of_better}",
                tier.group
            );
            floor_of_better =
                floor_of_better.min(members.iter().copied().fold(f64::INFINITY, f64::min));
        }
        assert_eq!(seen, n, "{}", tier.group);
    }
    // Spend and mileage vary continuously, so that tier has no ties and fills its shares
    // exactly: 30 % of 27 is 8, 70 % is 18.
    let status = &finished.report.distribution["consumption_status"];
    assert_eq!(
        (
            status["spend_high"],
            status["spend_medium"],
            status["spend_low"]
        ),
        (8, 10, 9)
    );

    // The export file: a header and one row per vehicle.
    let export = std::fs::read_to_string(&finished.export).unwrap();
    assert!(export.starts_with("vin,device_id,"), "{}", &export[..80]);
    assert_eq!(export.lines().count(), n + 1);
    assert_eq!(finished.export_rows, n as u64);

    // A fleet owner exports their own ride-hailing cars, and nothing else.
    let (fleet_id, _) = FLEETS[0];
    let key = Keys::create(store, &Role::Fleet(fleet_id.into()), "test fleet")
        .await
        .unwrap();
    let (status, csv) = get(&client, &format!("{base}/exports/vehicles.csv"), &key).await;
    assert_eq!(status, 200, "{csv}");
    let exported: HashSet<&str> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect();
    let theirs: HashSet<&str> = fleet
        .vehicles
        .iter()
        .filter(|v| v.fleet_id.as_deref() == Some(fleet_id))
        .map(|v| v.vin.as_str())
        .collect();
    assert!(!theirs.is_empty());
    assert_eq!(exported, theirs);
}

async fn stop(finished: Finished, stop: tokio::sync::watch::Sender<bool>) {
    let _ = stop.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), finished.server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_simulated_fleet_through_the_embedded_broker_into_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let options = options("", dir.path());
    let (stop_tx, shutdown) = tokio::sync::watch::channel(false);
    let finished = demo::run(&options, shutdown).await.unwrap();
    check(&finished).await;
    stop(finished, stop_tx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_simulated_fleet_through_mosquitto_into_postgres() {
    let test = "a_simulated_fleet_through_mosquitto_into_postgres";
    let Some((host, port)) = require_mosquitto(test) else {
        return;
    };
    let Some(database) = postgres_schema_url(test).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Device ids of their own: the shared Mosquitto may hold other runs' sessions.
    let prefix = format!("f{}-", std::process::id() % 100_000);
    let mut options = options(&prefix, dir.path());
    options.broker = format!("mqtt://{host}:{port}");
    options.database = database;
    options.share_group = unique("fleet");
    let (stop_tx, shutdown) = tokio::sync::watch::channel(false);
    let finished = demo::run(&options, shutdown).await.unwrap();
    check(&finished).await;
    stop(finished, stop_tx).await;
}
