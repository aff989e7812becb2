//! The main job in one command: a simulated fleet through the real system.
//!
//! [`run`] writes the dealer's CSV files, imports them, starts the server (embedded broker and
//! SQLite unless told otherwise), runs one real agent per vehicle — NMEA and signal streams in,
//! pipeline, SQLite outbox, MQTT with acknowledgements — relabels everyone and reports. The
//! pieces are public so that tests and the scale benchmark can take them one by one.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use drivetag_agent::config::{AgentFileConfig, EnergyName, PipelineConfig, VehicleConfig};
use drivetag_agent::run::{RunOptions, Source, run_source};
use drivetag_agent::sources::open::from_reader;
use drivetag_server::config::ServerConfig;
use drivetag_server::labels::engine::{Day, Scope, relabel};
use drivetag_server::labels::rules::Rules;
use drivetag_server::store::Store;
use tokio::sync::{Semaphore, watch};

use crate::fleet::{Fleet, FleetSpec, SimVehicle};
use crate::nmea::{Counters, NmeaStream, SignalStream};
use crate::persona::Persona;
use crate::world::World;

/// What the demo does.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The fleet.
    pub fleet: FleetSpec,
    /// Where the dealer CSVs, the database, the outboxes and the export go.
    pub data_dir: PathBuf,
    /// The HTTP API's address.
    pub http_listen: SocketAddr,
    /// The embedded broker's address (when `broker` is empty).
    pub mqtt_listen: SocketAddr,
    /// An external broker `mqtt://host:port`; empty for the embedded one.
    pub broker: String,
    /// The database URL; empty for `sqlite://<data_dir>/server.sqlite`.
    pub database: String,
    /// Agents running at once.
    pub concurrency: usize,
    /// A per-run MQTT share group and client id, for servers sharing a broker.
    pub share_group: String,
    /// How often the server's background labeller relabels vehicles with new data, seconds.
    pub labeller_interval_s: u64,
}

/// Figures of the driving phase.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DriveFigures {
    /// Vehicles whose every summary the server acknowledged.
    pub delivered: usize,
    /// Vehicles whose agent failed.
    pub failed: usize,
    /// GNSS epochs the agents read.
    pub epochs: u64,
    /// NMEA bytes the agents read.
    pub nmea_bytes: u64,
    /// Signal CSV bytes the agents read.
    pub signal_bytes: u64,
    /// Seconds.
    pub seconds: f64,
}

/// A progress report while the fleet drives.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Seconds since the fleet started.
    pub seconds: f64,
    /// Vehicles done.
    pub done: usize,
    /// Of.
    pub of: usize,
    /// Epochs read so far.
    pub epochs: u64,
    /// Summaries the server has stored.
    pub stored: u64,
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = self.epochs as f64 / self.seconds.max(0.001) / 1e6;
        write!(
            f,
            "[{:>5.0} s] {}/{} vehicles delivered · {:.1} M GPS fixes read ({rate:.2} M/s)",
            self.seconds,
            self.done,
            self.of,
            self.epochs as f64 / 1e6
        )?;
        if self.stored > 0 {
            write!(f, " · {} summaries stored", self.stored)?;
        }
        Ok(())
    }
}

/// How each persona fared.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonaResult {
    /// The persona.
    pub persona: Persona,
    /// Its vehicles.
    pub vehicles: usize,
    /// Those that carry the label the persona was built to get.
    pub label_hits: usize,
    /// Those whose first action is the strategy the persona was built to get.
    pub strategy_hits: usize,
    /// The first actions of the misses, for diagnosis.
    pub misses: Vec<(String, String)>,
}

/// What the labelling produced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// Vehicles labelled.
    pub labelled: u64,
    /// Seconds the relabel took.
    pub seconds: f64,
    /// Label counts: group → value → vehicles.
    pub distribution: BTreeMap<String, BTreeMap<String, usize>>,
    /// First actions per store: store → strategy → vehicles.
    pub first_by_store: BTreeMap<i64, BTreeMap<String, usize>>,
    /// Per persona.
    pub personas: Vec<PersonaResult>,
    /// The first action of each VIN.
    pub first_action: HashMap<String, String>,
}

/// Today in `zone`, and the day before (the last simulated one).
pub fn today_in(zone: &str) -> anyhow::Result<(jiff::civil::Date, jiff::civil::Date)> {
    let tz = jiff::tz::TimeZone::get(zone).with_context(|| format!("time zone {zone}"))?;
    let today = jiff::Timestamp::now().to_zoned_datetime(tz).date();
    Ok((today, today.yesterday()?))
}

/// Writes the dealer CSVs into `dir`; returns their paths in import order.
pub fn write_dealer_csvs(
    fleet: &Fleet,
    dir: &Path,
) -> anyhow::Result<Vec<(&'static str, PathBuf)>> {
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    fleet
        .dealer_csvs()
        .into_iter()
        .map(|(kind, content)| {
            let path = dir.join(format!("{kind}.csv"));
            std::fs::write(&path, content).with_context(|| path.display().to_string())?;
            Ok((kind, path))
        })
        .collect()
}

/// Imports the dealer CSVs as a dealer would; returns rows imported per kind. Any refused row
/// is an error: the simulator writes only good rows.
pub async fn import_csvs(
    store: &Store,
    files: &[(&'static str, PathBuf)],
) -> anyhow::Result<Vec<(&'static str, usize)>> {
    let mut imported = Vec::new();
    for (kind, path) in files {
        let ids = store.registry_ids().await?;
        let file = std::fs::File::open(path).with_context(|| path.display().to_string())?;
        let parsed = drivetag_server::import::parse(kind, file, &ids)
            .with_context(|| path.display().to_string())?;
        if let Some(bad) = parsed.bad.first() {
            anyhow::bail!(
                "{}: line {}: {} ({} bad rows)",
                path.display(),
                bad.line,
                bad.reason,
                parsed.bad.len()
            );
        }
        imported.push((*kind, store.import(&parsed.rows).await?));
    }
    Ok(imported)
}

/// The pipeline settings a server of this world would send its agents: the city's time zone,
/// our stores and the points of interest, default thresholds. For agents that start before
/// (or without) the server's configuration.
pub fn pipeline_for(fleet: &Fleet) -> PipelineConfig {
    use drivetag_agent::config::{PoiKindName, PoiRule, StoreRule};
    let mut pipeline = PipelineConfig {
        time_zone: fleet.spec.time_zone.clone(),
        ..PipelineConfig::default()
    };
    pipeline.stores = fleet
        .world
        .stores
        .iter()
        .map(|s| StoreRule {
            id: s.id as u32,
            lat: s.lat,
            lon: s.lon,
            radius_m: 200.0,
        })
        .collect();
    pipeline.pois = fleet
        .world
        .pois
        .iter()
        .map(|s| PoiRule {
            id: s.id as u32,
            kind: match s.kind {
                "competitor_dealer" => PoiKindName::CompetitorDealer,
                "independent_repair" => PoiKindName::IndependentRepair,
                "premium" => PoiKindName::Premium,
                "charging" => PoiKindName::Charging,
                _ => PoiKindName::Other,
            },
            lat: s.lat,
            lon: s.lon,
            radius_m: 200.0,
        })
        .collect();
    pipeline
}

/// An agent's configuration for a simulated vehicle.
pub fn agent_config(
    vehicle: &SimVehicle,
    mqtt_url: &str,
    outboxes: &Path,
    pipeline: &PipelineConfig,
) -> AgentFileConfig {
    let mut config = AgentFileConfig {
        device_id: vehicle.device_id.clone(),
        vehicle: VehicleConfig {
            vin: vehicle.vin.clone(),
            make: vehicle.make.into(),
            model: vehicle.model.into(),
            model_year: vehicle.model_year.try_into().unwrap_or(2024),
            energy: match vehicle.energy {
                "ev" => EnergyName::Ev,
                "hev" => EnergyName::Hev,
                "phev" => EnergyName::Phev,
                _ => EnergyName::Ice,
            },
        },
        pipeline: pipeline.clone(),
        ..AgentFileConfig::default()
    };
    config.mqtt.url = mqtt_url.to_owned();
    config.outbox.path = outboxes.join(format!("{}.sqlite", vehicle.device_id));
    config.input.replay_speed = "max".into();
    // A simulated month takes seconds: an hourly health report is plenty.
    config.pipeline.upload.status_interval_s = 3600;
    config.pipeline.upload.max_in_flight = 64;
    config
}

/// The agent's input for a simulated vehicle: its NMEA and signal streams.
pub fn source(vehicle: Arc<SimVehicle>, counters: Arc<Counters>, seed: u64, days: u32) -> Source {
    let (gps_vehicle, gps_counters) = (vehicle.clone(), counters.clone());
    let name = vehicle.device_id.clone();
    Source {
        name: name.clone(),
        replay_id: Some(format!("sim:{seed}:{days}:{}", vehicle.index)),
        reconnect: false,
        gps: Box::new(move || {
            from_reader(
                name.clone(),
                Box::new(NmeaStream::new(gps_vehicle.clone(), gps_counters.clone())),
            )
        }),
        signals: Some(Box::new(move || {
            Ok(
                Box::new(SignalStream::new(vehicle.clone(), counters.clone()))
                    as Box<dyn std::io::Read + Send>,
            )
        })),
    }
}

/// Runs one agent per vehicle, `concurrency` at a time, until each has its summaries
/// acknowledged; `progress` is called every `every`.
#[allow(clippy::too_many_arguments)]
pub async fn drive_fleet(
    fleet: &Fleet,
    mqtt_url: &str,
    outboxes: &Path,
    pipeline: &PipelineConfig,
    concurrency: usize,
    store: Option<&Store>,
    shutdown: watch::Receiver<bool>,
    every: Duration,
    mut progress: impl FnMut(&Progress),
) -> anyhow::Result<DriveFigures> {
    std::fs::create_dir_all(outboxes).with_context(|| outboxes.display().to_string())?;
    let started = Instant::now();
    let counters = Arc::new(Counters::default());
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for vehicle in &fleet.vehicles {
        let config = agent_config(vehicle, mqtt_url, outboxes, pipeline);
        let source = source(
            Arc::new(vehicle.clone()),
            counters.clone(),
            fleet.spec.seed,
            fleet.spec.days,
        );
        let (permits, done, shutdown) = (permits.clone(), done.clone(), shutdown.clone());
        let device = vehicle.device_id.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let outcome = run_source(
                config,
                source,
                RunOptions {
                    exit_when_done: true,
                },
                shutdown,
            )
            .await
            .with_context(|| format!("agent {device}"));
            done.fetch_add(1, Ordering::Relaxed);
            outcome
        });
    }
    let of = fleet.vehicles.len();
    let mut figures = DriveFigures::default();
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(Ok(()))) => figures.delivered += 1,
                Some(Ok(Err(error))) => {
                    figures.failed += 1;
                    tracing::error!("{error:#}");
                }
                Some(Err(error)) => {
                    figures.failed += 1;
                    tracing::error!(%error, "An agent task failed.");
                }
            },
            _ = ticker.tick() => {
                let stored = match store {
                    Some(store) => store.counts().await.map(|c| c.envelopes).unwrap_or(0),
                    None => 0,
                };
                progress(&Progress {
                    seconds: started.elapsed().as_secs_f64(),
                    done: done.load(Ordering::Relaxed),
                    of,
                    epochs: counters.epochs.load(Ordering::Relaxed),
                    stored,
                });
            }
        }
    }
    if let Some(store) = store {
        await_own_commits(fleet, outboxes, store, &shutdown).await?;
    }
    figures.epochs = counters.epochs.load(Ordering::Relaxed);
    figures.nmea_bytes = counters.nmea_bytes.load(Ordering::Relaxed);
    figures.signal_bytes = counters.signal_bytes.load(Ordering::Relaxed);
    figures.seconds = started.elapsed().as_secs_f64();
    Ok(figures)
}

/// Waits until `store` holds every summary each agent numbered. An agent stops once it is
/// acknowledged, and on a shared broker another deployment's server (its own share group) may
/// acknowledge before this one has committed.
async fn await_own_commits(
    fleet: &Fleet,
    outboxes: &Path,
    store: &Store,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut waiting: Vec<(&str, u64)> = Vec::new();
    for vehicle in &fleet.vehicles {
        let path = outboxes.join(format!("{}.sqlite", vehicle.device_id));
        let (outbox, _) = drivetag_agent::outbox::Outbox::open(&path, u64::MAX)?;
        waiting.push((
            &vehicle.device_id,
            outbox.stats()?.next_seq.saturating_sub(1),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for (device, last) in waiting {
            if store.sequence_numbers(device).await?.len() < last as usize {
                still.push((device, last));
            }
        }
        waiting = still;
        if waiting.is_empty() || *shutdown.borrow() {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "{} devices still have summaries the server has not stored, e.g. {}",
                waiting.len(),
                waiting[0].0
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Relabels everyone as of `today` and reports labels, first actions per store and how each
/// persona fared.
pub async fn label_and_report(
    store: &Store,
    fleet: &Fleet,
    rules: &Rules,
    today: jiff::civil::Date,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let day = Day::from_number(i64::from(
        (today - jiff::civil::date(1970, 1, 1)).get_days(),
    ));
    let labelled = relabel(store, rules, &Scope::All, day, |_| {}).await?;
    let seconds = started.elapsed().as_secs_f64();
    report(store, fleet, rules, labelled, seconds).await
}

/// Reads labels and actions back into a [`Report`].
pub async fn report(
    store: &Store,
    fleet: &Fleet,
    rules: &Rules,
    labelled: u64,
    seconds: f64,
) -> anyhow::Result<Report> {
    let ours: HashMap<&str, &SimVehicle> =
        fleet.vehicles.iter().map(|v| (v.vin.as_str(), v)).collect();
    let mut report = Report {
        labelled,
        seconds,
        ..Report::default()
    };
    let mut labels: HashMap<(String, String), Vec<String>> = HashMap::new();
    let groups = rules
        .tiers
        .iter()
        .map(|t| t.group.clone())
        .chain(rules.groups.iter().map(|g| g.name.clone()));
    for group in groups {
        let counts = report.distribution.entry(group.clone()).or_default();
        for (vin, value) in store.label_rows(&group).await? {
            if ours.contains_key(vin.as_str()) {
                *counts.entry(value.clone()).or_default() += 1;
                labels.entry((group.clone(), value)).or_default().push(vin);
            }
        }
    }
    for (vin, strategy, rank, _) in store.action_rows().await? {
        if rank != 1 {
            continue;
        }
        if let Some(vehicle) = ours.get(vin.as_str()) {
            *report
                .first_by_store
                .entry(vehicle.store_id)
                .or_default()
                .entry(strategy.clone())
                .or_default() += 1;
            report.first_action.insert(vin, strategy);
        }
    }
    for persona in Persona::ALL {
        let (strategy, (group, value)) = persona.expectation();
        let labelled: std::collections::HashSet<&str> = labels
            .get(&(group.to_owned(), value.to_owned()))
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let mut result = PersonaResult {
            persona,
            vehicles: 0,
            label_hits: 0,
            strategy_hits: 0,
            misses: Vec::new(),
        };
        for vehicle in fleet.vehicles.iter().filter(|v| v.persona == persona) {
            result.vehicles += 1;
            result.label_hits += usize::from(labelled.contains(vehicle.vin.as_str()));
            let first = report
                .first_action
                .get(&vehicle.vin)
                .cloned()
                .unwrap_or_default();
            if first == strategy {
                result.strategy_hits += 1;
            } else {
                result.misses.push((vehicle.vin.clone(), first));
            }
        }
        if result.vehicles > 0 {
            report.personas.push(result);
        }
    }
    Ok(report)
}

/// Writes the admin's CSV export of every labelled vehicle to `path`; returns the rows.
pub async fn export_csv(store: &Store, path: &Path) -> anyhow::Result<u64> {
    use drivetag_server::service::access::{Caller, Role};
    use drivetag_server::service::export::{Export, Format};
    use std::io::Write;
    let caller = Caller {
        key_id: "demo".into(),
        role: Role::Admin,
    };
    let mut export = Export::start(store.clone(), caller, None, Format::Csv).await?;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| path.display().to_string())?,
    );
    while let Some(chunk) = export.next_chunk().await? {
        out.write_all(&chunk)?;
    }
    out.flush()?;
    Ok(export.rows)
}

/// Prints a report the way the demo shows it.
pub fn print_report(report: &Report, fleet: &Fleet) {
    println!(
        "\nLabels ({} vehicles labelled in {:.2} s)",
        report.labelled, report.seconds
    );
    for (group, values) in &report.distribution {
        let mut values: Vec<_> = values.iter().collect();
        values.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let text: Vec<String> = values.iter().map(|(v, n)| format!("{v} {n}")).collect();
        println!("  {group:<22} {}", text.join(" · "));
    }
    println!("\nPersonas: the label and first strategy each was built to get");
    for p in &report.personas {
        let (strategy, (group, value)) = p.persona.expectation();
        println!(
            "  {:<14} {:>4} vehicles   {group}={value} {}/{}   first {strategy} {}/{}",
            p.persona.name(),
            p.vehicles,
            p.label_hits,
            p.vehicles,
            p.strategy_hits,
            p.vehicles
        );
    }
    println!("\nTop strategies per store (first action of each customer)");
    for (store, strategies) in &report.first_by_store {
        let name = fleet.world.site(*store).map_or("?", |s| s.name.as_str());
        let mut top: Vec<_> = strategies.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let total: usize = top.iter().map(|(_, n)| **n).sum();
        let text: Vec<String> = top
            .iter()
            .take(5)
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        println!("  {store} {name} ({total}): {}", text.join(" · "));
    }
}

/// The server configuration the demo runs.
pub fn server_config(options: &DemoOptions) -> ServerConfig {
    let mut config = ServerConfig::default();
    config.http.listen = options.http_listen;
    config.mqtt.embedded_listen = options.mqtt_listen;
    config.mqtt.url = options.broker.clone();
    config.database.url = if options.database.is_empty() {
        format!(
            "sqlite://{}",
            options.data_dir.join("server.sqlite").display()
        )
    } else {
        options.database.clone()
    };
    config.agents.time_zone = options.fleet.time_zone.clone();
    config.labels.interval_s = options.labeller_interval_s;
    if !options.share_group.is_empty() {
        config.mqtt.share_group = options.share_group.clone();
        config.mqtt.client_id = format!("drivetag-{}", options.share_group);
    }
    config
}

/// Removes what an earlier demo left in `dir` (its database, outboxes, CSVs and export), and
/// nothing else.
pub fn clear_data_dir(dir: &Path) -> anyhow::Result<()> {
    for name in [
        "server.sqlite",
        "server.sqlite-wal",
        "server.sqlite-shm",
        "export.csv",
    ] {
        let path = dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| path.display().to_string())?;
        }
    }
    for name in ["outboxes", "dealer"] {
        let path = dir.join(name);
        if path.exists() {
            std::fs::remove_dir_all(&path).with_context(|| path.display().to_string())?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())
}

/// What a finished demo leaves running.
pub struct Finished {
    /// The server.
    pub running: drivetag_server::serve::Running,
    /// The fleet.
    pub fleet: Fleet,
    /// The driving figures.
    pub figures: DriveFigures,
    /// The labelling report.
    pub report: Report,
    /// The export written.
    pub export: PathBuf,
    /// Its rows.
    pub export_rows: u64,
    /// The server task.
    pub server: tokio::task::JoinHandle<()>,
}

/// Runs the whole demo up to the report, printing progress; the server keeps running until
/// `shutdown` turns true.
pub async fn run(
    options: &DemoOptions,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Finished> {
    let started = Instant::now();
    let fleet = Fleet::new(options.fleet.clone(), World::shanghai())?;
    let spec = &fleet.spec;
    println!(
        "drivetag demo: {} vehicles × {} days ({} to {}) around {}, seed {}",
        spec.vehicles, spec.days, fleet.first_day, spec.last_day, fleet.world.city, spec.seed
    );
    clear_data_dir(&options.data_dir)?;
    let csvs = write_dealer_csvs(&fleet, &options.data_dir.join("dealer"))?;
    let config = server_config(options);
    {
        let store = Store::open(&config.database.url)
            .await
            .with_context(|| config.database.url.clone())?;
        let imported = import_csvs(&store, &csvs).await?;
        let text: Vec<String> = imported.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "  dealer data imported from {}: {}",
            options.data_dir.join("dealer").display(),
            text.join(", ")
        );
    }
    let (running, server) = drivetag_server::serve::start(&config, shutdown.clone()).await?;
    let mqtt_url = format!("mqtt://{}:{}", running.mqtt.0, running.mqtt.1);
    println!(
        "  server: HTTP http://{} · MQTT {} ({}) · database {}",
        running.http,
        mqtt_url,
        if options.broker.is_empty() {
            "embedded"
        } else {
            "external"
        },
        config.database.url
    );
    let pipeline =
        PipelineConfig::from_wire(&running.configs.update().config, &PipelineConfig::default());
    println!(
        "  driving: one real agent per vehicle (NMEA + signals → pipeline → outbox → MQTT), {} at a time",
        options.concurrency
    );
    let figures = drive_fleet(
        &fleet,
        &mqtt_url,
        &options.data_dir.join("outboxes"),
        &pipeline,
        options.concurrency,
        Some(&running.store),
        shutdown.clone(),
        Duration::from_secs(2),
        |p| println!("  {p}"),
    )
    .await?;
    if *shutdown.borrow() {
        anyhow::bail!("stopped before the fleet was delivered");
    }
    let counts = running.store.counts().await?;
    println!(
        "  delivered {}/{} vehicles in {:.1} s: {:.1} M fixes ({:.0} MB of NMEA, {:.0} MB of signals) became {} stored summaries ({} trips, {} days)",
        figures.delivered,
        fleet.vehicles.len(),
        figures.seconds,
        figures.epochs as f64 / 1e6,
        figures.nmea_bytes as f64 / 1e6,
        figures.signal_bytes as f64 / 1e6,
        counts.envelopes,
        counts.trips,
        counts.days
    );
    if figures.failed > 0 {
        println!("  {} agents failed; see the log above", figures.failed);
    }
    // The day after the last simulated one: today for a demo, a fixed day for a test.
    let today = fleet.spec.last_day.tomorrow()?;
    let report = label_and_report(&running.store, &fleet, &Rules::defaults(), today).await?;
    print_report(&report, &fleet);
    let export = options.data_dir.join("export.csv");
    let export_rows = export_csv(&running.store, &export).await?;
    println!(
        "\nExport: {} ({export_rows} vehicles with labels and first actions)",
        export.display()
    );
    println!(
        "First results after {:.1} s.",
        started.elapsed().as_secs_f64()
    );
    Ok(Finished {
        running,
        fleet,
        figures,
        report,
        export,
        export_rows,
        server,
    })
}
