//! Agent → broker → server → database, with real processes: every summary arrives, once, in
//! order, through broker outages, agent crashes and a corrupt outbox.
//!
//! The embedded broker needs nothing; the Mosquitto tests use the machine's broker
//! (`DRIVETAG_TEST_MQTT_URL`) or a private `mosquitto` they start and stop.
#![allow(clippy::unwrap_used)] // Tests may panic on what they did not expect.

use std::path::Path;
use std::time::Duration;

use drivetag_agent::config::PipelineConfig;
use drivetag_agent::sources::replay::Speed;
use drivetag_agent::summarize::{Request, summarize};
use drivetag_server::store::Store;
use drivetag_tests::process::{AgentProcess, PrivateMosquitto, ServerProcess, eventually};
use drivetag_tests::{data_file, free_port, require_mosquitto, unique};

const SERVER: &str = env!("CARGO_BIN_EXE_e2e-server");
const AGENT: &str = env!("CARGO_BIN_EXE_e2e-agent");
const PATIENCE: Duration = Duration::from_secs(60);

/// How many summaries the agent makes of `file`: the pipeline's outputs plus the vehicle info.
fn expected_summaries(file: &Path) -> u64 {
    let run = summarize(&Request {
        files: vec![file.to_owned()],
        signals: None,
        config: PipelineConfig::default(),
        speed: Speed::Max,
        progress: Some(false),
    })
    .unwrap();
    (run.trips.len() + run.days.len() + run.places.len() + run.styles.len() + 1) as u64
}

fn server_store(dir: &Path) -> (String, impl Fn() -> Vec<u64>) {
    let url = format!("sqlite://{}", dir.join("server.sqlite").display());
    let read = url.clone();
    let seqs = move || -> Vec<u64> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let store = Store::open(&read)
                .await
                .unwrap_or_else(|error| panic!("the server's database {read}: {error}"));
            store
                .sequence_numbers("car-e2e")
                .await
                .unwrap_or_else(|error| panic!("the server's database {read}: {error}"))
        })
    };
    (url, seqs)
}

fn agent_args<'a>(
    file: &'a str,
    mqtt: &'a str,
    outbox: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "--gps",
        file,
        "--mqtt-url",
        mqtt,
        "--device-id",
        "car-e2e",
        "--outbox",
        outbox,
    ];
    args.extend_from_slice(extra);
    args
}

/// Seqs 1..=n, each once.
fn all_once(n: u64) -> Vec<u64> {
    (1..=n).collect()
}

#[test]
fn summaries_arrive_once_through_the_embedded_broker() {
    let Some(file) = data_file("switzerland-2010-04-03.nmea") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (db, seqs) = server_store(dir.path());
    let broker = format!("127.0.0.1:{}", free_port());
    let server = ServerProcess::start(
        SERVER,
        dir.path(),
        &["--database", &db, "--embedded-mqtt", &broker],
    );
    let outbox = dir.path().join("outbox.sqlite");
    let (file_arg, mqtt, outbox_arg) = (
        file.to_str().unwrap(),
        server.mqtt_url(),
        outbox.to_str().unwrap().to_owned(),
    );
    let agent = AgentProcess::start(
        AGENT,
        dir.path(),
        &agent_args(
            file_arg,
            &mqtt,
            &outbox_arg,
            &["--replay-speed", "max", "--exit-when-done"],
        ),
    );
    assert!(agent.wait(PATIENCE).success());
    let expected = expected_summaries(&file);
    assert_eq!(expected, 6, "2 trips, 1 day, places, style and the vehicle");
    assert_eq!(seqs(), all_once(expected));
    assert_eq!(
        server.metric("drivetag_envelopes_stored_total") as u64,
        expected
    );
}

#[test]
fn summaries_arrive_once_through_mosquitto() {
    let Some((host, port)) = require_mosquitto("summaries_arrive_once_through_mosquitto") else {
        return;
    };
    let Some(file) = data_file("switzerland-2010-04-03.nmea") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (db, seqs) = server_store(dir.path());
    let mqtt = format!("mqtt://{host}:{port}");
    // Two test runs on one broker must not share a device: a private device id per run.
    let device = unique("car");
    let group = unique("g");
    let _server = ServerProcess::start(
        SERVER,
        dir.path(),
        &[
            "--database",
            &db,
            "--mqtt-url",
            &mqtt,
            "--share-group",
            &group,
        ],
    );
    let outbox = dir.path().join("outbox.sqlite");
    let agent = AgentProcess::start(
        AGENT,
        dir.path(),
        &[
            "--gps",
            file.to_str().unwrap(),
            "--mqtt-url",
            &mqtt,
            "--device-id",
            &device,
            "--outbox",
            outbox.to_str().unwrap(),
            "--replay-speed",
            "max",
            "--exit-when-done",
        ],
    );
    assert!(agent.wait(PATIENCE).success());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stored = runtime.block_on(async {
        Store::open(&db)
            .await
            .unwrap()
            .sequence_numbers(&device)
            .await
            .unwrap()
    });
    assert_eq!(stored, all_once(expected_summaries(&file)));
    drop(seqs);
}

#[test]
fn a_broker_outage_loses_nothing_and_duplicates_nothing() {
    let Some(file) = data_file("switzerland-2010-04-03.nmea") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (db, seqs) = server_store(dir.path());
    let mut broker = PrivateMosquitto::start();
    let config = dir.path().join("agent.toml");
    // Reconnect quickly so the test does not wait out a long backoff.
    std::fs::write(
        &config,
        "[mqtt]\nreconnect_min_s = 0.2\nreconnect_max_s = 1.0\nack_timeout_s = 2.0\n",
    )
    .unwrap();
    let outbox = dir.path().join("outbox.sqlite");
    let (file_arg, url, outbox_arg, config_arg) = (
        file.to_str().unwrap(),
        broker.url(),
        outbox.to_str().unwrap().to_owned(),
        config.to_str().unwrap().to_owned(),
    );

    // 1. The agent runs with the broker but no server: everything is sent, nothing is acked.
    let agent = AgentProcess::start(
        AGENT,
        dir.path(),
        &agent_args(
            file_arg,
            &url,
            &outbox_arg,
            &[
                "--config",
                &config_arg,
                "--replay-speed",
                "max",
                "--exit-when-done",
            ],
        ),
    );
    std::thread::sleep(Duration::from_secs(2));
    // 2. The broker dies with whatever it held, and stays down for a while.
    broker.stop();
    std::thread::sleep(Duration::from_secs(2));
    // 3. Broker and server come back; the agent resends and finishes.
    broker.restart();
    let _server =
        ServerProcess::start(SERVER, dir.path(), &["--database", &db, "--mqtt-url", &url]);
    assert!(agent.wait(PATIENCE).success());
    let expected = expected_summaries(&file);
    assert_eq!(seqs(), all_once(expected));
    // Stored in the order they were sent.
    let conn = rusqlite_order(&dir.path().join("server.sqlite"));
    assert_eq!(conn, all_once(expected), "rows were stored out of order");
}

/// Sequence numbers in the order the server stored them (SQLite's row order).
fn rusqlite_order(path: &Path) -> Vec<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("sqlite://{}", path.display());
    runtime.block_on(async {
        let store = Store::open(&url).await.unwrap();
        store
            .sequence_numbers_in_arrival_order("car-e2e")
            .await
            .unwrap()
    })
}

#[test]
fn killing_the_agent_again_and_again_loses_and_duplicates_nothing() {
    let Some(file) = data_file("switzerland-2010-04-03.nmea") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (db, seqs) = server_store(dir.path());
    let broker = format!("127.0.0.1:{}", free_port());
    let server = ServerProcess::start(
        SERVER,
        dir.path(),
        &["--database", &db, "--embedded-mqtt", &broker],
    );
    let outbox = dir.path().join("outbox.sqlite");
    let (file_arg, mqtt, outbox_arg) = (
        file.to_str().unwrap(),
        server.mqtt_url(),
        outbox.to_str().unwrap().to_owned(),
    );
    // The 3-hour drive replayed 2 000 times faster takes about 5 s; kill it at points spread
    // over that run, many times.
    let mut kills = 0;
    for round in 0..12u64 {
        let agent = AgentProcess::start(
            AGENT,
            dir.path(),
            &agent_args(file_arg, &mqtt, &outbox_arg, &["--replay-speed", "2000"]),
        );
        let after = Duration::from_millis(300 + (round * 733) % 5_000);
        std::thread::sleep(after);
        agent.kill();
        kills += 1;
    }
    let last = AgentProcess::start(
        AGENT,
        dir.path(),
        &agent_args(
            file_arg,
            &mqtt,
            &outbox_arg,
            &["--replay-speed", "2000", "--exit-when-done"],
        ),
    );
    assert!(last.wait(PATIENCE).success());
    assert_eq!(kills, 12);
    let expected = expected_summaries(&file);
    assert_eq!(seqs(), all_once(expected), "after {kills} kills");
    assert_eq!(
        server.metric("drivetag_envelopes_stored_total") as u64,
        expected
    );
}

#[test]
fn a_corrupt_outbox_is_set_aside_and_the_agent_goes_on() {
    let Some(file) = data_file("munich-2009-04-01.nmea") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (db, seqs) = server_store(dir.path());
    let broker = format!("127.0.0.1:{}", free_port());
    let server = ServerProcess::start(
        SERVER,
        dir.path(),
        &["--database", &db, "--embedded-mqtt", &broker],
    );
    let outbox = dir.path().join("outbox.sqlite");
    std::fs::write(&outbox, vec![0xA5; 8192]).unwrap();
    let (file_arg, mqtt, outbox_arg) = (
        file.to_str().unwrap(),
        server.mqtt_url(),
        outbox.to_str().unwrap().to_owned(),
    );
    let agent = AgentProcess::start(
        AGENT,
        dir.path(),
        &agent_args(
            file_arg,
            &mqtt,
            &outbox_arg,
            &["--replay-speed", "max", "--exit-when-done"],
        ),
    );
    let log = agent.log.clone();
    assert!(agent.wait(PATIENCE).success());
    let moved: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("outbox.sqlite.corrupt-")
        })
        .collect();
    assert_eq!(moved.len(), 1, "the corrupt file is kept aside");
    assert_eq!(std::fs::read(moved[0].path()).unwrap(), vec![0xA5; 8192]);
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("The outbox was corrupt"), "{log}");
    assert_eq!(seqs(), all_once(expected_summaries(&file)));
    eventually(PATIENCE, "the status report", || {
        server.metric("drivetag_status_reports_total") >= 1.0
    });
}
