//! `drivetag-agent run`: source → pipeline → outbox → MQTT, as one long-running process.
//!
//! Three workers, joined by channels:
//!
//! * the **input** thread reads the GPS input (and the signal CSV), paces recorded files, and
//!   sends samples on;
//! * the **core** thread runs the pipeline, commits every summary to the outbox together with
//!   the replay checkpoint, and applies configurations from the server;
//! * the **uplink** task sends the outbox over MQTT and takes acknowledgements (see
//!   [`crate::uplink`]).
//!
//! On SIGTERM or SIGINT the core finishes a live input's trip under way (the head unit is being
//! switched off, so the trip has ended), commits it, and the uplink says offline and
//! disconnects. A recorded file is not finished early: after a restart it is read again and
//! continues where it stopped.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context;
use drivetag_shared::DeviceId;
use drivetag_shared::codec;
use drivetag_shared::wire::{ConfigRejection, ConfigUpdate, Uplink, VehicleInfo};
use tokio::sync::watch;
use tracing::{Instrument, error, info, info_span, warn};

use crate::config::InputConfig;
use crate::config::{AgentFileConfig, PipelineConfig};
use crate::outbox::{Checkpoint, Opened, Outbox};
use crate::pipeline::{Output, Pipeline};
use crate::sample::{Millis, Sample, Signal};
use crate::sources::BadLine;
use crate::sources::detect::Format;
use crate::sources::merge::{Input, Merge};
use crate::sources::open::{FixStream, GpsInput, OpenError, open};
use crate::sources::replay::{Pacer, Speed};
use crate::sources::signals::SignalReader;
use crate::uplink::{self, Shared, UplinkSettings};

/// What the input thread sends to the core.
#[derive(Debug)]
enum Event {
    Sample(Sample),
    BadGps(BadLine),
    BadSignal(BadLine),
    /// A recorded input has ended.
    End,
}

/// How the run ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Stop once a recorded input has ended and the server has acknowledged everything.
    pub exit_when_done: bool,
}

/// Opens a GPS stream, again after a restart or a lost gpsd connection.
pub type OpenGps = Box<dyn Fn() -> Result<(Format, FixStream), OpenError> + Send + Sync>;

/// Opens a vehicle-signal CSV.
pub type OpenSignals = Box<dyn Fn() -> std::io::Result<Box<dyn Read + Send>> + Send + Sync>;

/// Where an agent's samples come from.
pub struct Source {
    /// A name for logs.
    pub name: String,
    /// For an input that can be read again from its start (a recorded file), an identity that
    /// changes when it does; `None` for live inputs.
    pub replay_id: Option<String>,
    /// Whether to reconnect when the input ends (a gpsd socket).
    pub reconnect: bool,
    /// Opens the GPS stream.
    pub gps: OpenGps,
    /// Opens the vehicle-signal CSV, if there is one.
    pub signals: Option<OpenSignals>,
}

impl Source {
    /// The input a configuration names.
    pub fn from_config(input: &InputConfig) -> Source {
        let gps = GpsInput::parse(&input.gps);
        let signals = input.signals.clone();
        Source {
            name: gps.name(),
            replay_id: gps.replay_identity(),
            reconnect: matches!(gps, GpsInput::Gpsd(_)),
            signals: (!signals.as_os_str().is_empty()).then(|| {
                Box::new(move || {
                    std::fs::File::open(&signals).map(|file| Box::new(file) as Box<dyn Read + Send>)
                }) as OpenSignals
            }),
            gps: Box::new(move || open(&gps)),
        }
    }
}

fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// Runs the agent until `shutdown` turns true (or, with `exit_when_done`, until a recorded
/// input is delivered).
pub async fn run(
    config: AgentFileConfig,
    options: RunOptions,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let source = Source::from_config(&config.input);
    run_source(config, source, options, shutdown).await
}

/// Runs the agent on `source` instead of the configured input (a simulator, a test).
pub async fn run_source(
    config: AgentFileConfig,
    source: Source,
    options: RunOptions,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let device = config.device().context("device_id")?;
    let shared = Arc::new(Shared::default());
    let (outbox, opened) = Outbox::open(&config.outbox.path, config.outbox.max_bytes)?;
    match &opened {
        Opened::Recovered { moved_to, reason } => {
            error!(path = %config.outbox.path.display(), moved_to = %moved_to.display(), %reason,
                "The outbox was corrupt; it was moved aside and a new one started.");
            shared.outbox_resets.fetch_add(1, Ordering::Relaxed);
        }
        Opened::Created => info!(path = %config.outbox.path.display(), "Created the outbox."),
        Opened::Existing => {
            let stats = outbox.stats()?;
            info!(
                waiting = stats.len,
                next_seq = stats.next_seq,
                "Opened the outbox."
            );
        }
    }

    let replay = source.replay_id.clone();
    let live = replay.is_none();
    let speed: Speed = config
        .input
        .replay_speed
        .parse()
        .map_err(|reason: String| anyhow::anyhow!("input.replay_speed: {reason}"))?;
    let checkpoint = match (&replay, outbox.checkpoint()?) {
        (Some(identity), Some(checkpoint)) if &checkpoint.source == identity => Some(checkpoint),
        _ => None,
    };
    if let Some(checkpoint) = &checkpoint {
        info!(
            outputs = checkpoint.outputs,
            "Resuming a recorded input after a restart."
        );
    }

    let (samples_tx, samples_rx) = sync_channel(4096);
    let input_done = Arc::new(AtomicBool::new(false));
    let fast_until = checkpoint.as_ref().map(|c| c.last_sample_ms);
    spawn_input(source, speed, fast_until, samples_tx)?;

    let (configs_tx, configs_rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let core = Core {
        device: device.clone(),
        file: config.clone(),
        outbox,
        shared: shared.clone(),
        replay,
        outputs: 0,
        skip: checkpoint.map_or(0, |c| c.outputs),
        last_sample_ms: 0,
        live,
        stop: stop.clone(),
        input_done: input_done.clone(),
        unsaved: Vec::new(),
    };
    let core_thread = std::thread::Builder::new()
        .name("core".into())
        .spawn(move || core.run(samples_rx, configs_rx))
        .context("starting the core thread")?;

    let settings = UplinkSettings {
        device: device.clone(),
        mqtt: config.mqtt.clone(),
        max_in_flight: config.pipeline.upload.max_in_flight,
        status_interval: Duration::from_secs(u64::from(
            config.pipeline.upload.status_interval_s.max(1),
        )),
        outbox_path: config.outbox.path.clone(),
        outbox_max_bytes: config.outbox.max_bytes,
    };
    let (uplink_stop_tx, uplink_stop_rx) = watch::channel(false);
    let uplink = tokio::spawn(
        uplink::run(settings, shared.clone(), configs_tx, uplink_stop_rx)
            .instrument(info_span!("uplink", device = %device)),
    );

    let mut done_check = tokio::time::interval(Duration::from_millis(250));
    let (watch_outbox, _) = Outbox::open(&config.outbox.path, config.outbox.max_bytes)?;
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                info!("Shutting down.");
                break;
            }
            _ = done_check.tick() => {
                if core_thread.is_finished() && !input_done.load(Ordering::Relaxed) {
                    // The core stopped on its own: an error it already logged.
                    break;
                }
                if options.exit_when_done && input_done.load(Ordering::Relaxed)
                    && watch_outbox.stats().map(|s| s.len == 0).unwrap_or(false)
                {
                    info!("The input has ended and the server has everything.");
                    break;
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let core_result = tokio::task::spawn_blocking(move || core_thread.join())
        .await
        .context("joining the core thread")?;
    // Let the uplink send what the core committed on its way out.
    shared.outbox_changed.notify_one();
    let _ = uplink_stop_tx.send(true);
    match uplink.await {
        Ok(Err(error)) => warn!(%error, "The uplink stopped with an error."),
        Err(error) => warn!(%error, "The uplink task failed."),
        Ok(Ok(())) => {}
    }
    match core_result {
        Ok(result) => result,
        Err(_) => anyhow::bail!("the core thread panicked"),
    }
}

/// Starts the input thread. A live gpsd is reconnected when it goes away; any other input
/// ends with [`Event::End`].
fn spawn_input(
    source: Source,
    speed: Speed,
    fast_until: Option<Millis>,
    tx: SyncSender<Event>,
) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("input".into())
        .spawn(move || {
            let mut backoff = Duration::from_secs(1);
            loop {
                match read_input(&source, speed, fast_until, &tx) {
                    Ok(Flow::Stopped) => return,
                    Ok(Flow::Ended) if !source.reconnect => {
                        let _ = tx.send(Event::End);
                        return;
                    }
                    Ok(Flow::Ended) => {
                        warn!(input = %source.name, "The GPS input ended; reconnecting.");
                        backoff = Duration::from_secs(1);
                    }
                    Err(error) => {
                        warn!(%error, retry_in_s = backoff.as_secs(), "Cannot read the GPS input.");
                        if !source.reconnect {
                            let _ = tx.send(Event::End);
                            return;
                        }
                    }
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        })
        .context("starting the input thread")?;
    Ok(())
}

enum Flow {
    /// The input ended.
    Ended,
    /// The core hung up.
    Stopped,
}

fn read_input(
    source: &Source,
    speed: Speed,
    fast_until: Option<Millis>,
    tx: &SyncSender<Event>,
) -> anyhow::Result<Flow> {
    let (format, fixes) = (source.gps)()?;
    info!(input = %source.name, format = format.as_str(), "Reading GPS.");
    let signals: Box<dyn Iterator<Item = Result<Signal, BadLine>>> = match &source.signals {
        None => Box::new(std::iter::empty()),
        Some(open_signals) => {
            let reader = open_signals().context("the vehicle-signal input")?;
            Box::new(
                SignalReader::new(std::io::BufReader::new(reader))
                    .context("the vehicle-signal input")?,
            )
        }
    };
    let mut pacer = Pacer::new(if source.reconnect { Speed::Max } else { speed });
    let started = Instant::now();
    for item in Merge::new(fixes, signals) {
        let event = match item {
            Input::Sample(sample) => {
                // After a restart, what was already summarised goes through at full speed.
                let catching_up = fast_until.is_some_and(|until| sample.t_ms() <= until);
                if !catching_up {
                    let wait = pacer.wait(sample.t_ms(), started.elapsed());
                    if !wait.is_zero() {
                        std::thread::sleep(wait);
                    }
                }
                Event::Sample(sample)
            }
            Input::BadGps(bad) => Event::BadGps(bad),
            Input::BadSignal(bad) => Event::BadSignal(bad),
        };
        if tx.send(event).is_err() {
            return Ok(Flow::Stopped);
        }
    }
    Ok(Flow::Ended)
}

/// The core thread's state.
struct Core {
    device: DeviceId,
    file: AgentFileConfig,
    outbox: Outbox,
    shared: Arc<Shared>,
    replay: Option<String>,
    /// Summaries the pipeline produced from this input so far.
    outputs: u64,
    /// Summaries to drop because an earlier run already stored them.
    skip: u64,
    last_sample_ms: Millis,
    live: bool,
    stop: Arc<AtomicBool>,
    input_done: Arc<AtomicBool>,
    /// Summaries the outbox refused (locked, full disk), kept to be committed again.
    unsaved: Vec<Uplink>,
}

/// At most this many unsaved summaries are kept in memory, a year of driving; beyond it the
/// oldest are dropped and logged.
const MAX_UNSAVED: usize = 50_000;

const CONFIG_KEY: &str = "config";
const VEHICLE_KEY: &str = "vehicle";

impl Core {
    fn run(
        mut self,
        samples: Receiver<Event>,
        configs: Receiver<ConfigUpdate>,
    ) -> anyhow::Result<()> {
        let mut revision = 0;
        let mut pipeline_config = self.file.pipeline.clone();
        if let Some(update) = self
            .outbox
            .get(CONFIG_KEY)?
            .and_then(|bytes| codec::decode::<ConfigUpdate>(&bytes).ok())
        {
            let config = PipelineConfig::from_wire(&update.config, &self.file.pipeline);
            if config.validate().is_ok() {
                info!(
                    revision = update.revision,
                    "Using the configuration the server sent last."
                );
                pipeline_config = config;
                revision = update.revision;
            }
        }
        self.shared
            .config_revision
            .store(revision, Ordering::Relaxed);
        let mut pipeline = Pipeline::new(pipeline_config)?;
        self.announce_vehicle()?;
        let mut input_ended = false;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                if self.live && !input_ended {
                    pipeline.finish();
                }
                self.commit(&mut pipeline);
                if !self.unsaved.is_empty() {
                    error!(
                        summaries = self.unsaved.len(),
                        "Stopping with summaries the outbox refused; a recorded input makes them again after a restart."
                    );
                }
                return Ok(());
            }
            for update in configs.try_iter() {
                self.apply(update, &mut revision, &mut pipeline);
            }
            match samples.recv_timeout(Duration::from_millis(200)) {
                Ok(Event::Sample(sample)) => {
                    self.last_sample_ms = sample.t_ms();
                    pipeline.push(sample);
                    self.commit(&mut pipeline);
                }
                Ok(Event::BadGps(bad) | Event::BadSignal(bad)) => {
                    tracing::debug!(line = bad.line, reason = %bad.reason, detail = %bad.detail, "Skipped input.");
                    if let Ok(mut counts) = self.shared.bad_input.lock() {
                        counts.record("input", bad);
                    }
                }
                Ok(Event::End) => {
                    pipeline.finish();
                    self.commit(&mut pipeline);
                    input_ended = true;
                    info!(summaries = self.outputs, "The recorded input has ended.");
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.live {
                        pipeline.tick(now_ms());
                    }
                    self.commit(&mut pipeline);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // The input thread is gone (after End): retry what the outbox refused,
                    // and wait for the stop.
                    self.commit(&mut pipeline);
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            // Done only once every summary of the input is in the outbox.
            if input_ended && self.unsaved.is_empty() {
                self.input_done.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Sends vehicle info when it differs from what was sent last.
    fn announce_vehicle(&mut self) -> anyhow::Result<()> {
        let vehicle = &self.file.vehicle;
        let info = VehicleInfo {
            vin: vehicle.vin.clone(),
            make: vehicle.make.clone(),
            model: vehicle.model.clone(),
            model_year: vehicle.model_year,
            energy: vehicle.energy.into(),
            odometer_m: 0,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let fingerprint = postcard::to_allocvec(&info).unwrap_or_default();
        if self.outbox.get(VEHICLE_KEY)?.as_deref() == Some(fingerprint.as_slice()) {
            return Ok(());
        }
        self.outbox.append(
            &self.device,
            (now_ms() / 1000) as u64,
            &[Uplink::Vehicle(info)],
            None,
        )?;
        self.outbox.put(VEHICLE_KEY, &fingerprint)?;
        self.shared.outbox_changed.notify_one();
        Ok(())
    }

    /// Applies a configuration from the server, or reports why not.
    fn apply(&mut self, update: ConfigUpdate, revision: &mut u32, pipeline: &mut Pipeline) {
        if update.revision <= *revision {
            return;
        }
        let config = PipelineConfig::from_wire(&update.config, &self.file.pipeline);
        let result = config.validate().and_then(|()| {
            pipeline
                .reconfigure(config)
                .map_err(|error| error.to_string())
        });
        match result {
            Ok(()) => {
                info!(revision = update.revision, "Applied a new configuration.");
                *revision = update.revision;
                self.shared
                    .config_revision
                    .store(update.revision, Ordering::Relaxed);
                if let Err(error) = self.outbox.put(CONFIG_KEY, &codec::encode(&update)) {
                    warn!(%error, "Cannot store the configuration; it holds until a restart.");
                }
                self.commit(pipeline);
            }
            Err(reason) => {
                warn!(revision = update.revision, %reason, "Refused a configuration.");
                if let Ok(mut rejected) = self.shared.config_rejected.lock() {
                    *rejected = Some(ConfigRejection {
                        revision: update.revision,
                        reason,
                    });
                }
            }
        }
        self.shared.status_now.notify_one();
    }

    /// Commits the pipeline's new summaries and any the outbox refused before, with the
    /// checkpoint, in one transaction. Refused summaries stay in memory and are retried on the
    /// next call: none is lost to a locked database or a full disk that clears.
    fn commit(&mut self, pipeline: &mut Pipeline) {
        let size = pipeline.config().cell_size();
        let mut bodies = std::mem::take(&mut self.unsaved);
        for output in pipeline.drain() {
            let body = match output {
                Output::Trip(trip) => Uplink::Trip(trip.to_wire(size)),
                Output::Day(day) => Uplink::Day(day.to_wire()),
                Output::Places(places) => Uplink::Places(places.to_wire(size)),
                Output::Style(style) => Uplink::Style(style.to_wire()),
                Output::Stay(_) => continue,
            };
            self.outputs += 1;
            if self.outputs > self.skip {
                bodies.push(body);
            }
        }
        if bodies.is_empty() {
            return;
        }
        let checkpoint = self.replay.as_ref().map(|source| Checkpoint {
            source: source.clone(),
            outputs: self.outputs,
            last_sample_ms: self.last_sample_ms,
        });
        match self.outbox.append(
            &self.device,
            (now_ms() / 1000) as u64,
            &bodies,
            checkpoint.as_ref(),
        ) {
            Ok(seqs) => {
                tracing::debug!(
                    first = seqs.first(),
                    count = seqs.len(),
                    "Committed summaries."
                );
                self.shared.outbox_changed.notify_one();
            }
            Err(error) => {
                let dropped = bodies.len().saturating_sub(MAX_UNSAVED);
                if dropped > 0 {
                    error!(dropped, "Dropped the oldest summaries the outbox refused.");
                    bodies.drain(..dropped);
                }
                error!(%error, summaries = bodies.len(), "Summaries could not be stored yet; retrying.");
                self.unsaved = bodies;
            }
        }
    }
}
