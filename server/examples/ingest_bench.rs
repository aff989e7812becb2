//! Benchmark: sustained ingest from many simulated devices through a real MQTT broker into
//! SQLite and PostgreSQL, against the raw rate of a bare subscriber on the same broker.
//!
//! ```sh
//! cargo run --release -p drivetag-server --example ingest_bench -- --help
//! cargo run --release -p drivetag-server --example ingest_bench   # raw, sqlite, raw, postgres, raw
//! cargo run --release -p drivetag-server --example ingest_bench -- --window 1
//! cargo run --release -p drivetag-server --example ingest_bench -- --private-broker
//! ```
//!
//! `--devices` devices each send `--per-device` summaries (four trips, then the day), encoded
//! with the shared codec, over `--connections` MQTT connections, QoS 1. Each run gets its own
//! device ids (`bench-<pid>-<run>-NNNN`), client ids and shared-subscription group, so it
//! disturbs nothing else on a shared broker. Backends:
//!
//! - `raw`: the same frames over the same connections, and a bare `rumqttc` subscriber with the
//!   server's options (MQTT v5, [`ingest::mqtt_options`]) and the same kind of shared
//!   subscription that only counts them. At most
//!   `--raw-window` messages are on their way at once (a semaphore the subscriber refills). If
//!   the broker drops some all the same, a silence of 250 ms counts what is on its way as
//!   dropped; the silence is not counted as time. "% of raw" is against the median of the raw
//!   runs: a raw run lasts about a second and swings by a fifth, so the default measures it
//!   before, between and after the stores.
//! - `sqlite`, `postgres`: the server's own ingest ([`drivetag_server::ingest::run`], as
//!   `drivetag-server serve` runs it, without HTTP and labeller) into a fresh SQLite file or
//!   PostgreSQL schema. Every device speaks the agent's protocol: at most `--window` summaries
//!   unacknowledged, each sent again after `--ack-timeout-s` until the server's `Ack` names it
//!   (a broker drops QoS 1 messages for a subscriber whose queue is full: Mosquitto keeps
//!   `max_queued_messages`, 1000 by default). The rate runs from the first publish to the last
//!   acknowledgement; afterwards every device's stored sequence numbers must be exactly
//!   `1..=per-device`, and the store must hold every envelope once.
//! - `sqlite-store`, `postgres-store`: no broker; the frames are decoded and stored with
//!   `Store::ingest` in batches of `--batch-max`, to see what the store alone can do.
//!
//! Afterwards the bench clears the retained configurations ingest published and the server's
//! persistent broker session, and drops its PostgreSQL schema and SQLite file (unless `--keep`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The server's allocator (`src/main.rs`), so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use drivetag_server::agents::{AgentConfigs, AgentDefaults};
use drivetag_server::config::ServerConfig;
use drivetag_server::ingest::{self, IngestSettings};
use drivetag_server::metrics::Metrics;
use drivetag_server::store::postgres::Postgres;
use drivetag_server::store::{Incoming, Store};
use drivetag_shared::topics::{self, Channel};
use drivetag_shared::wire::{Ack, DaySummary, Envelope, TripSummary, Uplink, UploadPolicy};
use drivetag_shared::{Cell, CellSize, DeviceId, codec};
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::Packet as Packet5;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeFilter};
use tokio::sync::{Semaphore, watch};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// A bare subscriber that only counts.
    Raw,
    /// The server's ingest into a fresh SQLite file.
    Sqlite,
    /// The server's ingest into a fresh PostgreSQL schema.
    Postgres,
    /// No broker: decode and `Store::ingest` in batches of `--batch-max`, into SQLite.
    SqliteStore,
    /// No broker: decode and `Store::ingest` in batches of `--batch-max`, into PostgreSQL.
    PostgresStore,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Raw => "raw",
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::SqliteStore => "sqlite-store",
            Backend::PostgresStore => "postgres-store",
        }
    }

    fn postgres(self) -> bool {
        matches!(self, Backend::Postgres | Backend::PostgresStore)
    }
}

#[derive(Debug, Parser)]
#[command(about = "Ingest throughput through a real MQTT broker, against a bare subscriber")]
struct Args {
    /// The broker.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    mqtt: String,
    /// PostgreSQL; each run works in a fresh schema, dropped afterwards.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres: String,
    /// What to measure, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "raw,sqlite,raw,postgres,raw"
    )]
    backends: Vec<Backend>,
    /// Simulated devices.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Summaries per device (four trips, then a day summary, over and over).
    #[arg(long, default_value_t = 100)]
    per_device: u64,
    /// MQTT connections the devices share (each device keeps its own topics, window and acks).
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Most unacknowledged summaries per device (the agent's `upload.max_in_flight`, whose
    /// default this is).
    #[arg(long, default_value_t = usize::from(UploadPolicy::default().max_in_flight))]
    window: usize,
    /// Seconds before an unacknowledged summary is sent again (the agent's
    /// `mqtt.ack_timeout_s`).
    #[arg(long, default_value_t = 5.0)]
    ack_timeout_s: f64,
    /// Most envelopes per stored batch (the server's `ingest.batch_max`).
    #[arg(long, default_value_t = ServerConfig::default().ingest.batch_max)]
    batch_max: usize,
    /// Batches stored at once (the server's `ingest.lanes`).
    #[arg(long, default_value_t = ServerConfig::default().ingest.lanes)]
    lanes: usize,
    /// Most messages published but not yet received in the raw run (enough to keep the
    /// subscriber busy; more only makes the broker drop messages).
    #[arg(long, default_value_t = 100)]
    raw_window: usize,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
    /// Instead of `--mqtt`, start a private Mosquitto on a free port with the queue settings of
    /// `deploy/mosquitto/mosquitto.conf` (`max_queued_messages 100000`,
    /// `max_inflight_messages 1000`), to compare with a broker on its defaults.
    #[arg(long)]
    private_broker: bool,
    /// Keep the SQLite file and PostgreSQL schema.
    #[arg(long)]
    keep: bool,
}

/// One row of the results.
struct Outcome {
    backend: Backend,
    messages: u64,
    seconds: f64,
    resends: u64,
    check: String,
    ok: bool,
    notes: String,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds.max(1e-9)
    }
}

/// The devices of one run and their frames, encoded once.
struct Load {
    devices: Vec<DeviceId>,
    /// Per device: (topic, frame) for seq 1..=per_device.
    frames: Vec<Vec<(String, bytes::Bytes)>>,
}

impl Load {
    fn total(&self) -> u64 {
        self.frames.iter().map(|f| f.len() as u64).sum()
    }
}

fn mix(mut x: u64) -> u64 {
    // splitmix64: deterministic, varied field values.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A plausible summary: four trips of a day, then the day.
fn summary(device: usize, seq: u64) -> Uplink {
    let r = mix((device as u64) << 32 | seq);
    let day_index = (seq - 1) / 5;
    let local_day = 20_500 + day_index as u32;
    let start_s = u64::from(local_day) * 86_400 + 7 * 3_600 + (r % 40_000);
    let lat = 31.0 + (r % 1_000) as f64 / 2_000.0;
    let lon = 121.2 + ((r >> 10) % 1_000) as f64 / 2_000.0;
    let start_cell = Cell::containing(lat, lon, CellSize::Km1).unwrap_or_else(|_| unreachable!());
    let end_cell =
        Cell::containing(lat + 0.05, lon - 0.03, CellSize::Km1).unwrap_or_else(|_| unreachable!());
    let distance_m = 2_000 + (r % 40_000) as u32;
    if seq % 5 == 0 {
        let mut by_hour = [0u8; 24];
        by_hour[7] = 20 + (r % 30) as u8;
        by_hour[18] = 15 + ((r >> 8) % 40) as u8;
        return Uplink::Day(DaySummary {
            local_day,
            utc_offset_min: 480,
            distance_m: distance_m * 4,
            trips: 4,
            long_trips: (r % 2) as u16,
            driving_s: 3_000 + (r % 5_000) as u32,
            moving_s: 2_500 + (r % 4_000) as u32,
            night_pct: (r % 10) as u8,
            driving_min_by_local_hour: by_hour,
            commute_trips: 2,
            max_speed_cms: 2_000 + (r % 1_500) as u16,
            harsh_accel: (r % 4) as u16,
            harsh_brake: ((r >> 4) % 4) as u16,
            harsh_corner: ((r >> 6) % 3) as u16,
            overspeed_s: (r % 120) as u32,
            score: 60 + (r % 40) as u8,
            odometer_m: Some(10_000_000 + day_index as u32 * 40_000),
            energy: None,
        });
    }
    let slow = 10 + (r % 40) as u8;
    let mid = 20 + ((r >> 8) % 30) as u8;
    Uplink::Trip(TripSummary {
        start_s,
        start_local_hour_of_week: ((day_index % 7) * 24 + 7 + (r % 12)) as u8,
        duration_s: 600 + (r % 3_000) as u32,
        distance_m,
        moving_s: 500 + (r % 2_500) as u32,
        max_speed_cms: 1_500 + (r % 2_000) as u16,
        speed_band_pct: [slow, mid, 100 - slow - mid, 0, 0],
        night_pct: (r % 10) as u8,
        harsh_accel: (r % 3) as u16,
        harsh_brake: ((r >> 3) % 3) as u16,
        harsh_corner: ((r >> 5) % 2) as u16,
        accel_p01_cms2: -150 - (r % 200) as i16,
        accel_p99_cms2: 100 + (r % 150) as i16,
        lateral_p99_cms2: 120 + (r % 200) as i16,
        speed_cv_pct: 20 + (r % 50) as u8,
        overspeed_s: (r % 60) as u32,
        score: 55 + (r % 45) as u8,
        start_cell,
        end_cell,
    })
}

fn build_load(tag: &str, devices: usize, per_device: u64) -> Result<Load> {
    let mut load = Load {
        devices: Vec::with_capacity(devices),
        frames: Vec::with_capacity(devices),
    };
    for index in 0..devices {
        let device = DeviceId::new(format!("{tag}-{index:04}"))?;
        let frames = (1..=per_device)
            .map(|seq| {
                let envelope = Envelope {
                    device: device.clone(),
                    seq,
                    created_s: 1_775_000_000 + seq * 600,
                    body: summary(index, seq),
                };
                let topic = topics::topic_for(&device, Channel::Up(envelope.body.kind()));
                (topic, bytes::Bytes::from(codec::encode(&envelope)))
            })
            .collect();
        load.devices.push(device);
        load.frames.push(frames);
    }
    Ok(load)
}

fn host_port(url: &str) -> Result<(String, u16)> {
    drivetag_server::serve::parse_mqtt_url(url)
}

fn device_options(client_id: &str, host: &str, port: u16, in_flight: usize) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, host, port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_inflight(in_flight.clamp(1, 1000) as u16);
    options
}

/// Polls until the broker acknowledges the connection (and, with `subscribe`, the subscription).
async fn wait_for(events: &mut EventLoop, subscribed: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) if !subscribed => return Ok(()),
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) if subscribed => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => bail!("broker: {error}"),
            Err(_) => break,
        }
    }
    bail!("the broker did not answer within 10 s")
}

/// [`wait_for`] for the MQTT v5 client the server (and the raw subscriber) uses.
async fn wait_for_v5(events: &mut rumqttc::v5::EventLoop, subscribed: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Ok(rumqttc::v5::Event::Incoming(Packet5::ConnAck(_)))) if !subscribed => {
                return Ok(());
            }
            Ok(Ok(rumqttc::v5::Event::Incoming(Packet5::SubAck(_)))) if subscribed => {
                return Ok(());
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => bail!("broker: {error}"),
            Err(_) => break,
        }
    }
    bail!("the broker did not answer within 10 s")
}

/// Devices grouped by connection.
fn groups(load: &Load, connections: usize) -> Vec<Vec<usize>> {
    let connections = connections.clamp(1, load.devices.len().max(1));
    let mut groups = vec![Vec::new(); connections];
    for index in 0..load.devices.len() {
        groups[index % connections].push(index);
    }
    groups
}

/// What one connection's devices did.
#[derive(Default)]
struct Sent {
    first_publish: Option<Instant>,
    last_ack: Option<Instant>,
    resends: u64,
    complete: bool,
}

struct DeviceState {
    index: usize,
    next: usize,
    in_flight: HashMap<u64, Instant>,
    acked: Vec<bool>,
    acked_count: usize,
}

/// The devices of one connection speaking the agent's protocol until every summary is acked.
async fn devices_with_acks(
    load: Arc<Load>,
    indices: Vec<usize>,
    client_id: String,
    (host, port): (String, u16),
    args: Arc<Args>,
    acked_total: Arc<AtomicU64>,
    deadline: Instant,
) -> Result<Sent> {
    let window = args.window.max(1);
    let capacity = indices.len() * window * 2 + 64;
    let (client, mut events) = AsyncClient::new(
        device_options(&client_id, &host, port, indices.len() * window),
        capacity,
    );
    wait_for(&mut events, false).await?;
    client
        .subscribe_many(indices.iter().map(|&i| {
            SubscribeFilter::new(
                topics::topic_for(&load.devices[i], Channel::Ack),
                QoS::AtLeastOnce,
            )
        }))
        .await?;
    wait_for(&mut events, true).await?;
    let mut by_device: HashMap<DeviceId, usize> = HashMap::new();
    let mut devices: Vec<DeviceState> = indices
        .iter()
        .enumerate()
        .map(|(local, &index)| {
            by_device.insert(load.devices[index].clone(), local);
            DeviceState {
                index,
                next: 0,
                in_flight: HashMap::new(),
                acked: vec![false; load.frames[index].len()],
                acked_count: 0,
            }
        })
        .collect();
    let mut sent = Sent::default();
    let ack_timeout = Duration::from_secs_f64(args.ack_timeout_s);
    let fill = |device: &mut DeviceState, sent: &mut Sent| {
        let frames = &load.frames[device.index];
        while device.in_flight.len() < window && device.next < frames.len() {
            let seq = device.next as u64 + 1;
            if device.acked[device.next] {
                device.next += 1;
                continue;
            }
            let (topic, frame) = &frames[device.next];
            if client
                .try_publish(topic.as_str(), QoS::AtLeastOnce, false, frame.to_vec())
                .is_err()
            {
                break; // The request queue is full; the rest waits.
            }
            sent.first_publish.get_or_insert_with(Instant::now);
            device.in_flight.insert(seq, Instant::now());
            device.next += 1;
        }
    };
    for device in &mut devices {
        fill(device, &mut sent);
    }
    let mut remaining: usize = devices.iter().map(|d| d.acked.len()).sum();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while remaining > 0 && Instant::now() < deadline {
        tokio::select! {
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let Ok(ack) = codec::decode::<Ack>(&publish.payload) else { continue };
                    let Some(&local) = by_device.get(&ack.device) else { continue };
                    let device = &mut devices[local];
                    for range in &ack.stored {
                        for seq in range.first..=range.last {
                            let slot = seq as usize - 1;
                            if slot < device.acked.len() && !device.acked[slot] {
                                device.acked[slot] = true;
                                device.acked_count += 1;
                                remaining -= 1;
                                acked_total.fetch_add(1, Ordering::Relaxed);
                            }
                            device.in_flight.remove(&seq);
                        }
                    }
                    if remaining == 0 {
                        sent.last_ack = Some(Instant::now());
                    }
                    fill(device, &mut sent);
                }
                Ok(_) => {}
                Err(error) => bail!("{client_id}: broker: {error}"),
            },
            _ = tick.tick() => {
                for device in &mut devices {
                    let frames = &load.frames[device.index];
                    for (seq, at) in device.in_flight.iter_mut() {
                        if at.elapsed() < ack_timeout {
                            continue;
                        }
                        let (topic, frame) = &frames[*seq as usize - 1];
                        if client
                            .try_publish(topic.as_str(), QoS::AtLeastOnce, false, frame.to_vec())
                            .is_ok()
                        {
                            *at = Instant::now();
                            sent.resends += 1;
                        }
                    }
                    fill(device, &mut sent);
                }
            }
        }
    }
    sent.complete = remaining == 0;
    let _ = client.disconnect().await;
    // Let the disconnect go out.
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while events.poll().await.is_ok() {}
    })
    .await;
    Ok(sent)
}

/// Publishes every frame of one connection's devices, QoS 1, each after taking a permit the
/// counting subscriber gives back when the message arrives.
async fn devices_without_acks(
    load: Arc<Load>,
    indices: Vec<usize>,
    client_id: String,
    (host, port): (String, u16),
    window: usize,
    (permits, published): (Arc<Semaphore>, Arc<AtomicU64>),
    mut stop: watch::Receiver<bool>,
) -> Result<Sent> {
    let in_flight = indices.len() * window.max(1);
    let (client, mut events) = AsyncClient::new(
        device_options(&client_id, &host, port, in_flight),
        in_flight + 64,
    );
    wait_for(&mut events, false).await?;
    let poller = tokio::spawn(async move {
        loop {
            tokio::select! {
                event = events.poll() => if event.is_err() { break },
                _ = stop.changed() => break,
            }
        }
        events
    });
    let mut sent = Sent::default();
    let rounds = indices
        .iter()
        .map(|&i| load.frames[i].len())
        .max()
        .unwrap_or(0);
    for round in 0..rounds {
        for &index in &indices {
            if let Some((topic, frame)) = load.frames[index].get(round) {
                permits.acquire().await?.forget();
                published.fetch_add(1, Ordering::SeqCst);
                sent.first_publish.get_or_insert_with(Instant::now);
                client
                    .publish(topic.as_str(), QoS::AtLeastOnce, false, frame.to_vec())
                    .await?;
            }
        }
    }
    let mut events = poller.await?;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while events.poll().await.is_ok() {}
    })
    .await;
    sent.complete = true;
    Ok(sent)
}

async fn run_raw(args: &Arc<Args>, tag: &str, load: Arc<Load>) -> Result<Outcome> {
    let (host, port) = host_port(&args.mqtt)?;
    let total = load.total();
    // The bare subscriber: the server's options and the same kind of shared subscription.
    let subscriber_id = format!("{tag}-subscriber");
    let (subscriber, mut events) = rumqttc::v5::AsyncClient::new(
        ingest::mqtt_options(&subscriber_id, &host, port),
        args.batch_max * 4 + 64,
    );
    wait_for_v5(&mut events, false).await?;
    subscriber
        .subscribe(topics::shared_uplink_filter(tag), QoS5::AtLeastOnce)
        .await?;
    wait_for_v5(&mut events, true).await?;
    let prefix = format!("{}/{tag}-", topics::PREFIX);
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    let permits = Arc::new(Semaphore::new(args.raw_window.max(1)));
    let published = Arc::new(AtomicU64::new(0));
    let counter = tokio::spawn({
        let (permits, published) = (permits.clone(), published.clone());
        async move {
            let mut counted = Counted::default();
            while counted.received + counted.dropped < total && Instant::now() < deadline {
                match tokio::time::timeout(RAW_SILENCE, events.poll()).await {
                    Ok(Ok(rumqttc::v5::Event::Incoming(Packet5::Publish(publish)))) => {
                        if publish.topic.starts_with(prefix.as_bytes()) {
                            permits.add_permits(1);
                            counted.received += 1;
                            counted.last = Some(Instant::now());
                        }
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => {
                        eprintln!("raw subscriber: {error}");
                        break;
                    }
                    Err(_) => {
                        // Silence: what is still on its way, the broker dropped. Its permits
                        // come back and the silence does not count as time.
                        let on_the_way =
                            published.load(Ordering::SeqCst) - counted.received - counted.dropped;
                        if on_the_way > 0 {
                            permits.add_permits(on_the_way as usize);
                            counted.dropped += on_the_way;
                            counted.silent += RAW_SILENCE;
                        }
                    }
                }
            }
            (counted, events)
        }
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut publishers = Vec::new();
    for (n, indices) in groups(&load, args.connections).into_iter().enumerate() {
        publishers.push(tokio::spawn(devices_without_acks(
            load.clone(),
            indices,
            format!("{tag}-pub-{n:03}"),
            (host.clone(), port),
            args.window,
            (permits.clone(), published.clone()),
            stop_rx.clone(),
        )));
    }
    let (counted, mut events) = counter.await?;
    let _ = stop_tx.send(true);
    let mut first = None;
    for publisher in publishers {
        let sent = publisher.await??;
        first = match (first, sent.first_publish) {
            (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
            (a, b) => a.or(b),
        };
    }
    // Leave no session behind.
    let _ = subscriber.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while events.poll().await.is_ok() {}
    })
    .await;
    forget_session(&subscriber_id, &host, port).await;
    let seconds = match (first, counted.last) {
        (Some(first), Some(last)) => (last - first).saturating_sub(counted.silent).as_secs_f64(),
        _ => f64::NAN,
    };
    let Counted {
        received, dropped, ..
    } = counted;
    Ok(Outcome {
        backend: Backend::Raw,
        messages: received,
        seconds,
        resends: 0,
        check: format!("n/a: {received} received, {dropped} dropped by the broker"),
        ok: received + dropped == total,
        notes: format!(
            "{:.2} s of silence after broker drops not counted",
            counted.silent.as_secs_f64()
        ),
    })
}

/// After this long without a message, the raw run takes what is on its way as dropped.
const RAW_SILENCE: Duration = Duration::from_millis(250);

/// What the bare subscriber saw.
#[derive(Default)]
struct Counted {
    received: u64,
    dropped: u64,
    last: Option<Instant>,
    silent: Duration,
}

/// Connects with a clean session under `client_id`, so the broker forgets its persistent one.
async fn forget_session(client_id: &str, host: &str, port: u16) {
    let mut options = MqttOptions::new(client_id, host, port);
    options.set_clean_session(true);
    let (client, mut events) = AsyncClient::new(options, 10);
    if wait_for(&mut events, false).await.is_ok() {
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while events.poll().await.is_ok() {}
        })
        .await;
    }
}

/// Clears the retained configurations ingest published for the run's devices.
async fn clear_retained(load: &Load, client_id: &str, host: &str, port: u16) -> Result<()> {
    let (client, mut events) = AsyncClient::new(
        device_options(client_id, host, port, 100),
        load.devices.len() + 16,
    );
    wait_for(&mut events, false).await?;
    for device in &load.devices {
        client.try_publish(
            topics::topic_for(device, Channel::Config),
            QoS::AtLeastOnce,
            true,
            Vec::new(),
        )?;
    }
    let mut acked = 0;
    while acked < load.devices.len() {
        match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            _ => bail!("clearing retained configurations: the broker stopped answering"),
        }
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while events.poll().await.is_ok() {}
    })
    .await;
    Ok(())
}

fn histogram_count(metrics: &Metrics) -> u64 {
    metrics
        .render()
        .lines()
        .find_map(|line| line.strip_prefix("drivetag_ingest_batch_size_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

async fn run_store(
    args: &Arc<Args>,
    backend: Backend,
    tag: &str,
    load: Arc<Load>,
) -> Result<Outcome> {
    let (host, port) = host_port(&args.mqtt)?;
    let dir = tempfile::tempdir()?;
    let schema = tag.replace('-', "_");
    let store = if backend.postgres() {
        Store::new(Arc::new(Postgres::connect(&args.postgres, Some(&schema))?)).await?
    } else {
        let path = dir.path().join("bench.sqlite");
        Store::open(&format!("sqlite://{}", path.display())).await?
    };
    let result = match backend {
        Backend::SqliteStore | Backend::PostgresStore => {
            store_only(args, backend, load.clone(), &store).await
        }
        _ => {
            let result =
                measure_store(args, backend, tag, load.clone(), &store, (&host, port)).await;
            // Clean up whatever happened.
            if let Err(error) = clear_retained(&load, &format!("{tag}-cleanup"), &host, port).await
            {
                eprintln!("{error:#}");
            }
            forget_session(&format!("{tag}-server"), &host, port).await;
            result
        }
    };
    drop(store);
    if backend.postgres() {
        if args.keep {
            eprintln!("kept PostgreSQL schema {schema}");
        } else {
            drop_schema(&args.postgres, &schema).await?;
        }
    } else if args.keep {
        eprintln!("kept {}", dir.keep().join("bench.sqlite").display());
    }
    result
}

/// The store alone: the frames in arrival order (round robin over the devices), decoded as
/// ingest decodes them and stored in batches of `--batch-max`, one after another.
async fn store_only(
    args: &Arc<Args>,
    backend: Backend,
    load: Arc<Load>,
    store: &Store,
) -> Result<Outcome> {
    let rounds = load.frames.iter().map(Vec::len).max().unwrap_or(0);
    let arrival: Vec<&bytes::Bytes> = (0..rounds)
        .flat_map(|round| load.frames.iter().filter_map(move |f| f.get(round)))
        .map(|(_, frame)| frame)
        .collect();
    let (mut decoding, mut storing, mut batches) = (Duration::ZERO, Duration::ZERO, 0u64);
    for chunk in arrival.chunks(args.batch_max.max(1)) {
        let started = Instant::now();
        let batch = chunk
            .iter()
            .map(|frame| {
                Ok(Incoming {
                    envelope: codec::decode::<Envelope>(frame)?,
                    payload: frame.to_vec(),
                    received_s: 1_775_000_000,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        decoding += started.elapsed();
        let started = Instant::now();
        store.ingest(&batch).await?;
        storing += started.elapsed();
        batches += 1;
    }
    let total = load.total();
    let counts = store.counts().await?;
    let ok = counts.envelopes == total;
    Ok(Outcome {
        backend,
        messages: counts.envelopes,
        seconds: (decoding + storing).as_secs_f64(),
        resends: 0,
        check: if ok {
            "OK".to_owned()
        } else {
            format!("FAILED: {} rows", counts.envelopes)
        },
        ok,
        notes: format!(
            "decode {:.1} µs/msg, store {:.1} ms per batch of {} ({:.0} µs/msg)",
            decoding.as_secs_f64() * 1e6 / total as f64,
            storing.as_secs_f64() * 1e3 / batches.max(1) as f64,
            args.batch_max,
            storing.as_secs_f64() * 1e6 / total as f64,
        ),
    })
}

async fn drop_schema(url: &str, schema: &str) -> Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("PostgreSQL at {url}"))?;
    let connection = tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .with_context(|| format!("dropping schema {schema}"))?;
    drop(client);
    let _ = connection.await;
    Ok(())
}

async fn measure_store(
    args: &Arc<Args>,
    backend: Backend,
    tag: &str,
    load: Arc<Load>,
    store: &Store,
    (host, port): (&str, u16),
) -> Result<Outcome> {
    let defaults = ServerConfig::default();
    let configs = Arc::new(
        AgentConfigs::load(
            store,
            &AgentDefaults {
                time_zone: defaults.agents.time_zone.clone(),
                cell_size_m: defaults.agents.cell_size_m,
            },
        )
        .await?,
    );
    let metrics = Arc::new(Metrics::default());
    let settings = IngestSettings {
        options: ingest::mqtt_options(&format!("{tag}-server"), host, port),
        share_group: Some(tag.to_owned()),
        batch_max: args.batch_max.max(1),
        lanes: args.lanes.max(1),
    };
    let (ready_tx, mut ready) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(ingest::run(
        settings,
        store.clone(),
        metrics.clone(),
        configs,
        ready_tx,
        stop_rx,
    ));
    tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|r| *r))
        .await
        .context("ingest did not subscribe within 10 s")??;

    let total = load.total();
    let acked = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    let progress = tokio::spawn({
        let acked = acked.clone();
        async move {
            let started = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                eprintln!(
                    "  {:>5.1} s: {} of {total} acknowledged",
                    started.elapsed().as_secs_f64(),
                    acked.load(Ordering::Relaxed)
                );
            }
        }
    });
    let mut devices = Vec::new();
    for (n, indices) in groups(&load, args.connections).into_iter().enumerate() {
        devices.push(tokio::spawn(devices_with_acks(
            load.clone(),
            indices,
            format!("{tag}-dev-{n:03}"),
            (host.to_owned(), port),
            args.clone(),
            acked.clone(),
            deadline,
        )));
    }
    let (mut first, mut last, mut resends, mut complete) = (None, None, 0, true);
    for device in devices {
        let sent = device.await??;
        first = match (first, sent.first_publish) {
            (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
            (a, b) => a.or(b),
        };
        last = match (last, sent.last_ack) {
            (Some(a), Some(b)) => Some(std::cmp::max(a, b)),
            (a, b) => a.or(b),
        };
        resends += sent.resends;
        complete &= sent.complete;
    }
    progress.abort();
    let _ = stop_tx.send(true);
    let _ = server.await?;

    // Exactly once: every device's sequence numbers are 1..=per_device, and nothing else.
    let mut incomplete = 0;
    for (device, frames) in load.devices.iter().zip(&load.frames) {
        let seqs = store.sequence_numbers(device.as_str()).await?;
        if seqs != (1..=frames.len() as u64).collect::<Vec<_>>() {
            incomplete += 1;
        }
    }
    let counts = store.counts().await?;
    let stored = metrics.stored.get();
    let ok = complete && incomplete == 0 && counts.envelopes == total && stored == total;
    let batches = histogram_count(&metrics);
    let seconds = match (first, last) {
        (Some(first), Some(last)) => (last - first).as_secs_f64(),
        _ => f64::NAN,
    };
    Ok(Outcome {
        backend,
        messages: counts.envelopes,
        seconds,
        resends,
        check: if ok {
            "OK".to_owned()
        } else {
            format!(
                "FAILED: {incomplete} devices incomplete, {} rows, {stored} stored",
                counts.envelopes
            )
        },
        ok,
        notes: format!(
            "{} duplicates received, {batches} batches (mean {:.0}), {} acks",
            metrics.duplicates.get(),
            (stored + metrics.duplicates.get()) as f64 / batches.max(1) as f64,
            metrics.acks.get()
        ),
    })
}

/// A private Mosquitto, stopped on drop.
struct PrivateBroker {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn private_broker() -> Result<(PrivateBroker, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             max_queued_messages 100000\nmax_inflight_messages 1000\n"
        ),
    )?;
    let child = std::process::Command::new("mosquitto")
        .arg("-c")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("mosquitto must be installed for --private-broker")?;
    let broker = PrivateBroker { child, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("the private mosquitto did not listen on {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((broker, format!("mqtt://127.0.0.1:{port}")))
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    let _broker = if args.private_broker {
        let (broker, url) = private_broker()?;
        args.mqtt = url;
        Some(broker)
    } else {
        None
    };
    let args = Arc::new(args);
    if args.devices == 0 || args.per_device == 0 {
        bail!("--devices and --per-device must be at least 1");
    }
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{}: {} devices × {} summaries = {} messages, {} connections, window {}, ack timeout {} s, batch_max {}, lanes {}; load average {}",
        if args.private_broker {
            "private mosquitto (queue 100000, in flight 1000)".to_owned()
        } else {
            args.mqtt.clone()
        },
        args.devices,
        args.per_device,
        args.devices as u64 * args.per_device,
        args.connections,
        args.window,
        args.ack_timeout_s,
        args.batch_max,
        args.lanes,
        load_avg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut outcomes: Vec<Outcome> = Vec::new();
    for (run, &backend) in args.backends.iter().enumerate() {
        let tag = format!("bench-{}-{run}", std::process::id());
        let load = Arc::new(build_load(&tag, args.devices, args.per_device)?);
        eprintln!(
            "{}: {} messages as {tag}-NNNN",
            backend.name(),
            load.total()
        );
        let outcome = match backend {
            Backend::Raw => run_raw(&args, &tag, load).await?,
            _ => run_store(&args, backend, &tag, load).await?,
        };
        eprintln!(
            "{}: {:.0} msgs/s, {} {}",
            backend.name(),
            outcome.rate(),
            outcome.check,
            outcome.notes
        );
        outcomes.push(outcome);
    }
    // The reference is the median of the raw runs: one lasts under a second and its rate swings
    // by a fifth from run to run, so the default runs it before, between and after the stores.
    let mut raws: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.backend == Backend::Raw && o.ok)
        .map(Outcome::rate)
        .collect();
    raws.sort_by(f64::total_cmp);
    let raw = raws.get(raws.len() / 2).copied();
    if raws.len() > 1 {
        println!(
            "\n% of raw is against the median of {} raw runs: {:.0} msgs/s",
            raws.len(),
            raw.unwrap_or_default()
        );
    }
    println!();
    println!(
        "| backend        | messages | seconds |  msgs/s | % of raw | resends | exactly once |"
    );
    println!(
        "|----------------|---------:|--------:|--------:|---------:|--------:|--------------|"
    );
    for o in &outcomes {
        let share = match (raw, o.backend) {
            (Some(raw), Backend::Raw | Backend::Sqlite | Backend::Postgres) => {
                format!("{:.0} %", 100.0 * o.rate() / raw)
            }
            _ => "-".to_owned(),
        };
        println!(
            "| {:<14} | {:>8} | {:>7.2} | {:>7.0} | {:>8} | {:>7} | {} |",
            o.backend.name(),
            o.messages,
            o.seconds,
            o.rate(),
            share,
            if matches!(
                o.backend,
                Backend::Raw | Backend::SqliteStore | Backend::PostgresStore
            ) {
                "-".to_owned()
            } else {
                o.resends.to_string()
            },
            o.check
        );
    }
    for o in outcomes.iter().filter(|o| !o.notes.is_empty()) {
        println!("{}: {}", o.backend.name(), o.notes);
    }
    println!("load average now {}", {
        let now = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        now.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    });
    if outcomes.iter().any(|o| !o.ok) {
        bail!("a run did not deliver every message exactly once");
    }
    Ok(())
}
