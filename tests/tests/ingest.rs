//! The server's ingest against real brokers: duplicates and out-of-order envelopes are stored
//! once, bad payloads are kept as dead letters and refused by sequence number, and two server
//! instances on one PostgreSQL split the load through a shared subscription without storing
//! anything twice.
#![allow(clippy::unwrap_used)] // Tests may panic on what they did not expect.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use drivetag_server::config::ServerConfig;
use drivetag_server::store::Store;
use drivetag_server::store::conformance::{day, incoming, trip};
use drivetag_shared::DeviceId;
use drivetag_shared::codec;
use drivetag_shared::topics::{self, Channel};
use drivetag_shared::wire::{Ack, RejectReason};
use drivetag_tests::process::ServerProcess;
use drivetag_tests::{free_port, postgres_schema_url, require_mosquitto, unique};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};

const SERVER: &str = env!("CARGO_BIN_EXE_e2e-server");

async fn connect(id: &str, host: &str, port: u16) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(id, host, port);
    options
        .set_keep_alive(Duration::from_secs(10))
        .set_inflight(500);
    AsyncClient::new(options, 4096)
}

/// Publishes the frames of one device and collects the server's acks until every seq in
/// `expect` was acknowledged (stored or refused).
async fn exchange(
    host: &str,
    port: u16,
    device: &str,
    frames: Vec<(String, Vec<u8>)>,
    expect: &BTreeSet<u64>,
) -> (BTreeSet<u64>, BTreeMap<u64, RejectReason>) {
    let (client, mut events) = connect(&unique("dev"), host, port).await;
    let id = DeviceId::new(device).unwrap();
    client
        .subscribe(topics::topic_for(&id, Channel::Ack), QoS::AtLeastOnce)
        .await
        .unwrap();
    let (mut stored, mut rejected) = (BTreeSet::new(), BTreeMap::new());
    let mut sent = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored
        .iter()
        .chain(rejected.keys())
        .collect::<BTreeSet<_>>()
        .len()
        < expect.len()
    {
        assert!(
            Instant::now() < deadline,
            "acks so far: {stored:?} {rejected:?}"
        );
        let event = tokio::time::timeout(Duration::from_secs(5), events.poll()).await;
        match event {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) if !sent => {
                sent = true;
                for (topic, frame) in &frames {
                    client
                        .publish(topic, QoS::AtLeastOnce, false, frame.clone())
                        .await
                        .unwrap();
                }
            }
            Ok(Ok(Event::Incoming(Packet::Publish(publish)))) => {
                let ack: Ack = codec::decode(&publish.payload).unwrap();
                for range in ack.stored {
                    stored.extend(range.first..=range.last);
                }
                for rejection in ack.rejected {
                    rejected.insert(rejection.seq, rejection.reason);
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => panic!("broker: {error}"),
            Err(_) => {}
        }
    }
    (stored, rejected)
}

async fn check_duplicates_and_dead_letters(store: &Store, host: &str, port: u16) {
    let device = unique("car-raw");
    let up = |kind| topics::topic_for(&DeviceId::new(&device).unwrap(), Channel::Up(kind));
    use drivetag_shared::wire::UpKind;
    let mut frames: Vec<(String, Vec<u8>)> = [3, 1, 2, 1, 3]
        .into_iter()
        .map(|seq| {
            (
                up(UpKind::Trip),
                incoming(&device, seq, trip(1_000 * seq as u32)).payload,
            )
        })
        .collect();
    // A day summary on the trip topic, a future major version, another device's envelope, garbage.
    frames.push((
        up(UpKind::Trip),
        incoming(&device, 7, day(20_000, 5)).payload,
    ));
    let mut future = incoming(&device, 8, trip(1)).payload;
    future[0] = 9;
    frames.push((up(UpKind::Trip), future));
    frames.push((
        up(UpKind::Trip),
        incoming("someone-else", 9, trip(1)).payload,
    ));
    frames.push((up(UpKind::Trip), b"\x01\x00garbage".to_vec()));
    let expect: BTreeSet<u64> = [1, 2, 3, 7, 8, 9].into();
    let (stored, rejected) = exchange(host, port, &device, frames, &expect).await;
    assert_eq!(stored, [1, 2, 3].into());
    assert_eq!(
        rejected,
        [
            (7, RejectReason::KindMismatch),
            (8, RejectReason::UnknownVersion),
            (9, RejectReason::DeviceMismatch)
        ]
        .into()
    );
    // Another deployment on the same broker (its own share group) may have acknowledged
    // first: wait for this server's own commits.
    let letters_of_device = || async {
        store
            .dead_letters()
            .await
            .unwrap()
            .into_iter()
            .filter(|(_, dev, _)| dev.as_deref() == Some(device.as_str()))
            .map(|(reason, _, _)| reason)
            .collect::<Vec<String>>()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while (store.sequence_numbers(&device).await.unwrap() != [1, 2, 3]
        || letters_of_device().await.len() < 4)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.sequence_numbers(&device).await.unwrap(), [1, 2, 3]);
    let letters = letters_of_device().await;
    assert_eq!(letters.len(), 4, "{letters:?}");
    for reason in [
        "kind_mismatch",
        "unknown_version",
        "device_mismatch",
        "truncated",
    ] {
        assert!(
            letters.iter().any(|r| r == reason),
            "{reason} missing from {letters:?}"
        );
    }
}

async fn in_process_server(
    mqtt_url: Option<String>,
) -> (
    drivetag_server::serve::Running,
    tokio::sync::watch::Sender<bool>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::default();
    config.database.url = format!("sqlite://{}", dir.path().join("s.sqlite").display());
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    // Tests share the machine's broker: a group of their own keeps other servers out.
    config.mqtt.share_group = unique("g");
    match mqtt_url {
        Some(url) => config.mqtt.url = url,
        None => config.mqtt.embedded_listen = format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    let (running, _) = drivetag_server::serve::start(&config, rx).await.unwrap();
    (running, tx, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_broker_path_stores_once_and_keeps_dead_letters() {
    let (running, _stop, _dir) = in_process_server(None).await;
    let (host, port) = running.mqtt.clone();
    check_duplicates_and_dead_letters(&running.store, &host, port).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mosquitto_path_stores_once_and_keeps_dead_letters() {
    let Some((host, port)) =
        require_mosquitto("the_mosquitto_path_stores_once_and_keeps_dead_letters")
    else {
        return;
    };
    let (running, _stop, _dir) = in_process_server(Some(format!("mqtt://{host}:{port}"))).await;
    check_duplicates_and_dead_letters(&running.store, &host, port).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_on_one_postgres_store_every_message_once() {
    let test = "two_servers_on_one_postgres_store_every_message_once";
    let Some((host, port)) = require_mosquitto(test) else {
        return;
    };
    let Some(database) = postgres_schema_url(test).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let group = unique("g");
    let mqtt = format!("mqtt://{host}:{port}");
    let servers = [
        ServerProcess::start(
            SERVER,
            dir.path(),
            &[
                "--database",
                &database,
                "--mqtt-url",
                &mqtt,
                "--share-group",
                &group,
            ],
        ),
        ServerProcess::start(
            SERVER,
            dir.path(),
            &[
                "--database",
                &database,
                "--mqtt-url",
                &mqtt,
                "--share-group",
                &group,
            ],
        ),
    ];
    // 20 simulated agents, 100 summaries each, sent until acknowledged as a real agent would.
    let run = unique("fleet");
    let devices: Vec<String> = (0..20).map(|i| format!("{run}-{i}")).collect();
    let mut tasks = Vec::new();
    for device in devices.clone() {
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            let frames: Vec<(String, Vec<u8>)> = (1..=100u64)
                .map(|seq| {
                    let topic = topics::topic_for(
                        &DeviceId::new(&device).unwrap(),
                        Channel::Up(drivetag_shared::wire::UpKind::Trip),
                    );
                    (topic, incoming(&device, seq, trip(seq as u32)).payload)
                })
                .collect();
            resend_until_acked(&host, port, &device, frames).await
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let store = Store::open(&database).await.unwrap();
    for device in &devices {
        assert_eq!(
            store.sequence_numbers(device).await.unwrap(),
            (1..=100).collect::<Vec<u64>>(),
            "{device}"
        );
    }
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.envelopes, 2_000);
    let stored: Vec<f64> = servers
        .iter()
        .map(|s| s.metric("drivetag_envelopes_stored_total"))
        .collect();
    assert_eq!(
        stored.iter().sum::<f64>() as u64,
        2_000,
        "stored once across both servers: {stored:?}"
    );
    assert!(
        stored.iter().all(|s| *s > 0.0),
        "both servers took a share: {stored:?}"
    );
}

/// Sends every frame and sends again whatever is not acknowledged within 3 s.
async fn resend_until_acked(host: &str, port: u16, device: &str, frames: Vec<(String, Vec<u8>)>) {
    let (client, mut events) = connect(&unique("sim"), host, port).await;
    let id = DeviceId::new(device).unwrap();
    client
        .subscribe(topics::topic_for(&id, Channel::Ack), QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut waiting: BTreeSet<u64> = (1..=frames.len() as u64).collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last_send: Option<Instant> = None;
    let mut subscribed = false;
    while !waiting.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{device}: never acknowledged {waiting:?}"
        );
        if subscribed && last_send.is_none_or(|t| t.elapsed() > Duration::from_secs(3)) {
            for seq in &waiting {
                let (topic, frame) = &frames[*seq as usize - 1];
                client
                    .publish(topic, QoS::AtLeastOnce, false, frame.clone())
                    .await
                    .unwrap();
            }
            last_send = Some(Instant::now());
        }
        match tokio::time::timeout(Duration::from_millis(500), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => subscribed = true,
            Ok(Ok(Event::Incoming(Packet::Publish(publish)))) => {
                let ack: Ack = codec::decode(&publish.payload).unwrap();
                for range in ack.stored {
                    for seq in range.first..=range.last {
                        waiting.remove(&seq);
                    }
                }
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(error)) => panic!("broker: {error}"),
        }
    }
}
