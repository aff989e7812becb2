//! The uplink: sends the outbox over MQTT and takes the server's acknowledgements and
//! configuration.
//!
//! QoS 1 with a persistent session; the broker's PUBACK only says the broker has a message, so
//! a summary leaves the outbox only when the server's [`Ack`] names it. Summaries go out
//! oldest first, at most `max_in_flight` unacknowledged at a time, and are sent again if no
//! acknowledgement arrives within `ack_timeout_s` or after a reconnect: the server stores by
//! `(device, seq)`, so a resend is harmless. A lost connection is retried with exponential
//! backoff and jitter. The status topic carries a retained `Online` report with the agent's
//! health, refreshed every `status_interval_s`, and the broker publishes the retained
//! `Offline` last will if the agent vanishes.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drivetag_shared::DeviceId;
use drivetag_shared::codec;
use drivetag_shared::topics::{self, Channel};
use drivetag_shared::wire::{
    Ack, AgentState, BadInputCount, ConfigRejection, ConfigUpdate, Health, StatusReport,
};
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS, Transport};
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use crate::config::MqttConfig;
use crate::outbox::Outbox;
use crate::sources::BadInput;

/// What the agent's threads share with the uplink.
#[derive(Debug)]
pub struct Shared {
    /// Bad input lines by reason.
    pub bad_input: Mutex<BadInput>,
    /// The configuration revision in force.
    pub config_revision: AtomicU32,
    /// The last refused configuration.
    pub config_rejected: Mutex<Option<ConfigRejection>>,
    /// When the last acknowledgement arrived, UTC seconds.
    pub last_ack_s: Mutex<Option<u64>>,
    /// Outbox files found corrupt and replaced since start.
    pub outbox_resets: AtomicU32,
    /// Raised when the outbox has new summaries.
    pub outbox_changed: Notify,
    /// Raised when the status should go out now (a refused configuration).
    pub status_now: Notify,
    /// When the agent started.
    pub started: Instant,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            bad_input: Mutex::default(),
            config_revision: AtomicU32::new(0),
            config_rejected: Mutex::default(),
            last_ack_s: Mutex::default(),
            outbox_resets: AtomicU32::new(0),
            outbox_changed: Notify::new(),
            status_now: Notify::new(),
            started: Instant::now(),
        }
    }
}

/// Why the uplink cannot start.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// The broker URL is not `mqtt://host:port` or `mqtts://host:port`.
    #[error("mqtt.url {0:?} is not mqtt://host:port or mqtts://host:port")]
    Url(String),
    /// A TLS file cannot be read.
    #[error("{path}: {source}")]
    TlsFile {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Host, port and whether to use TLS, from `mqtt://host:port` or `mqtts://host:port`.
pub fn parse_url(url: &str) -> Result<(String, u16, bool), UplinkError> {
    let (rest, tls, default_port) = if let Some(rest) = url.strip_prefix("mqtts://") {
        (rest, true, 8883)
    } else if let Some(rest) = url.strip_prefix("mqtt://") {
        (rest, false, 1883)
    } else {
        return Err(UplinkError::Url(url.to_owned()));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse().map_err(|_| UplinkError::Url(url.to_owned()))?,
        ),
        None => (rest, default_port),
    };
    if host.is_empty() {
        return Err(UplinkError::Url(url.to_owned()));
    }
    Ok((host.trim_matches(['[', ']']).to_owned(), port, tls))
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The broker options for `device`: persistent session, last will, credentials, TLS.
pub fn mqtt_options(
    device: &DeviceId,
    config: &MqttConfig,
    in_flight: u16,
) -> Result<MqttOptions, UplinkError> {
    let (host, port, tls) = parse_url(&config.url)?;
    let mut options = MqttOptions::new(device.as_str(), host, port);
    options
        .set_keep_alive(Duration::from_secs(config.keep_alive_s.max(5)))
        .set_clean_session(false)
        .set_inflight(in_flight.max(1))
        .set_request_channel_capacity(usize::from(in_flight) * 2 + 16)
        .set_last_will(LastWill::new(
            topics::topic_for(device, Channel::Status),
            codec::encode(&StatusReport {
                device: device.clone(),
                created_s: now_s(),
                state: AgentState::Offline,
            }),
            QoS::AtLeastOnce,
            true,
        ));
    if !config.username.is_empty() {
        options.set_credentials(config.username.clone(), config.password.clone());
    }
    if tls {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|source| UplinkError::TlsFile {
                path: path.to_owned(),
                source,
            })
        };
        let client_auth = if config.client_cert_file.as_os_str().is_empty() {
            None
        } else {
            Some((
                read(&config.client_cert_file)?,
                read(&config.client_key_file)?,
            ))
        };
        let transport = if config.ca_file.as_os_str().is_empty() && client_auth.is_none() {
            Transport::tls_with_default_config()
        } else {
            Transport::tls(read(&config.ca_file)?, client_auth, None)
        };
        options.set_transport(transport);
    }
    Ok(options)
}

/// A delay between `base / 2` and `base`, so a fleet that lost its broker spreads out.
fn jittered(base: Duration) -> Duration {
    let random = RandomState::new().hash_one(Instant::now());
    let fraction = 0.5 + (random % 1000) as f64 / 2000.0;
    base.mul_f64(fraction)
}

/// The uplink's settings.
#[derive(Debug, Clone)]
pub struct UplinkSettings {
    /// This agent.
    pub device: DeviceId,
    /// The broker.
    pub mqtt: MqttConfig,
    /// Most summaries unacknowledged at once.
    pub max_in_flight: u16,
    /// How often to report health.
    pub status_interval: Duration,
    /// The outbox file.
    pub outbox_path: std::path::PathBuf,
    /// The outbox cap.
    pub outbox_max_bytes: u64,
}

/// Runs the uplink until `shutdown` turns true; configurations from the server go to
/// `configs`. Run it inside a span that names the device.
pub async fn run(
    settings: UplinkSettings,
    shared: Arc<Shared>,
    configs: std::sync::mpsc::Sender<ConfigUpdate>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (mut outbox, _) = Outbox::open(&settings.outbox_path, settings.outbox_max_bytes)?;
    let options = mqtt_options(&settings.device, &settings.mqtt, settings.max_in_flight)?;
    let (client, mut events) =
        AsyncClient::new(options, usize::from(settings.max_in_flight) * 2 + 16);
    let mut uplink = Uplink {
        client,
        settings,
        shared,
        in_flight: HashMap::new(),
        connected: false,
    };
    let min = Duration::from_secs_f64(uplink.settings.mqtt.reconnect_min_s);
    let max = Duration::from_secs_f64(uplink.settings.mqtt.reconnect_max_s);
    let ack_timeout = Duration::from_secs_f64(uplink.settings.mqtt.ack_timeout_s);
    let mut backoff = min;
    let mut status = tokio::time::interval(uplink.settings.status_interval);
    let mut resend = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            event = events.poll() => match event {
                Ok(event) => {
                    if let Event::Incoming(Packet::ConnAck(_)) = &event {
                        backoff = min;
                    }
                    uplink.event(event, &mut outbox, &configs);
                }
                Err(error) => {
                    if uplink.connected {
                        warn!(%error, "Broker connection lost.");
                    }
                    uplink.connected = false;
                    let delay = jittered(backoff);
                    warn!(%error, retry_in_s = delay.as_secs_f64(), "Cannot reach the broker.");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => break,
                    }
                    backoff = (backoff * 2).min(max);
                }
            },
            _ = uplink.shared.outbox_changed.notified() => uplink.send(&mut outbox),
            _ = resend.tick() => {
                uplink.in_flight.retain(|_, sent| sent.elapsed() < ack_timeout);
                uplink.send(&mut outbox);
            }
            _ = status.tick() => uplink.status(&outbox),
            _ = uplink.shared.status_now.notified() => uplink.status(&outbox),
            _ = shutdown.changed() => break,
        }
    }
    uplink.goodbye(&mut events).await;
    Ok(())
}

struct Uplink {
    client: AsyncClient,
    settings: UplinkSettings,
    shared: Arc<Shared>,
    in_flight: HashMap<u64, Instant>,
    connected: bool,
}

impl Uplink {
    fn event(
        &mut self,
        event: Event,
        outbox: &mut Outbox,
        configs: &std::sync::mpsc::Sender<ConfigUpdate>,
    ) {
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                info!("Connected to the broker.");
                self.connected = true;
                // Everything unacknowledged goes again: the server may not have seen it.
                self.in_flight.clear();
                for filter in topics::downlink_filters(&self.settings.device) {
                    if let Err(error) = self.client.try_subscribe(filter, QoS::AtLeastOnce) {
                        warn!(%error, "Cannot subscribe to the downlink.");
                    }
                }
                self.status(outbox);
                self.send(outbox);
            }
            Event::Incoming(Packet::Publish(publish)) => {
                match topics::parse_topic(&publish.topic) {
                    Ok((device, Channel::Ack)) if device == self.settings.device => {
                        self.ack(&publish.payload, outbox);
                    }
                    Ok((device, Channel::Config)) if device == self.settings.device => {
                        if publish.payload.is_empty() {
                            return; // A cleared retained config.
                        }
                        match codec::decode::<ConfigUpdate>(&publish.payload) {
                            Ok(update) => {
                                let _ = configs.send(update);
                            }
                            Err(error) => {
                                warn!(%error, "Refused an undecodable configuration.");
                                if let Ok(mut rejected) = self.shared.config_rejected.lock() {
                                    *rejected = Some(ConfigRejection {
                                        revision: 0,
                                        reason: error.to_string(),
                                    });
                                }
                                self.status(outbox);
                            }
                        }
                    }
                    _ => debug!(topic = %publish.topic, "Ignored a message."),
                }
            }
            _ => {}
        }
    }

    fn ack(&mut self, payload: &[u8], outbox: &mut Outbox) {
        let ack: Ack = match codec::decode(payload) {
            Ok(ack) => ack,
            Err(error) => {
                warn!(%error, "Ignored an undecodable acknowledgement.");
                return;
            }
        };
        match outbox.acknowledge(&ack) {
            Ok(done) => {
                for range in &ack.stored {
                    self.in_flight.retain(|seq, _| !range.contains(*seq));
                }
                for (seq, reason) in &done.rejected {
                    self.in_flight.remove(seq);
                    warn!(
                        seq,
                        ?reason,
                        "The server refused a summary; it is kept in its dead-letter table."
                    );
                }
                for rejection in &ack.rejected {
                    self.in_flight.remove(&rejection.seq);
                }
                if let Ok(mut last) = self.shared.last_ack_s.lock() {
                    *last = Some(now_s());
                }
                debug!(stored = done.stored, "Acknowledged.");
                self.send(outbox);
            }
            Err(error) => {
                warn!(%error, "Cannot apply an acknowledgement; the summaries will be sent again.")
            }
        }
    }

    /// Publishes the oldest summaries not in flight, up to the window.
    fn send(&mut self, outbox: &mut Outbox) {
        if !self.connected {
            return;
        }
        let room = usize::from(self.settings.max_in_flight).saturating_sub(self.in_flight.len());
        if room == 0 {
            return;
        }
        let exclude: Vec<u64> = self.in_flight.keys().copied().collect();
        let entries = match outbox.pending(&exclude, room) {
            Ok(entries) => entries,
            Err(error) => {
                warn!(%error, "Cannot read the outbox.");
                return;
            }
        };
        for entry in entries {
            let topic = topics::topic_for(&self.settings.device, Channel::Up(entry.kind));
            match self
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, entry.frame)
            {
                Ok(()) => {
                    self.in_flight.insert(entry.seq, Instant::now());
                }
                Err(error) => {
                    debug!(%error, "Send queue full; the rest waits.");
                    break;
                }
            }
        }
    }

    fn health(&self, outbox: &Outbox) -> Health {
        let stats = outbox.stats().unwrap_or_default();
        let bad_input = self
            .shared
            .bad_input
            .lock()
            .map(|bad| {
                bad.counts()
                    .map(|(reason, count)| BadInputCount {
                        reason: reason.as_str().to_owned(),
                        count,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Health {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_s: self.shared.started.elapsed().as_secs(),
            config_revision: self.shared.config_revision.load(Ordering::Relaxed),
            config_rejected: self
                .shared
                .config_rejected
                .lock()
                .ok()
                .and_then(|r| r.clone()),
            backlog_len: u32::try_from(stats.len).unwrap_or(u32::MAX),
            backlog_bytes: stats.bytes,
            oldest_unacked_s: stats.oldest_created_s,
            last_ack_s: self.shared.last_ack_s.lock().ok().and_then(|last| *last),
            dropped: stats.dropped,
            rejected: stats.rejected,
            outbox_resets: self.shared.outbox_resets.load(Ordering::Relaxed),
            bad_input,
        }
    }

    fn status(&mut self, outbox: &Outbox) {
        if !self.connected {
            return;
        }
        let report = StatusReport {
            device: self.settings.device.clone(),
            created_s: now_s(),
            state: AgentState::Online(self.health(outbox)),
        };
        let topic = topics::topic_for(&self.settings.device, Channel::Status);
        if let Err(error) =
            self.client
                .try_publish(topic, QoS::AtLeastOnce, true, codec::encode(&report))
        {
            debug!(%error, "Status not sent; the next one will be.");
        }
    }

    /// Says offline (retained) and disconnects, giving the broker a moment to take it.
    async fn goodbye(&mut self, events: &mut EventLoop) {
        if !self.connected {
            return;
        }
        let report = StatusReport {
            device: self.settings.device.clone(),
            created_s: now_s(),
            state: AgentState::Offline,
        };
        let topic = topics::topic_for(&self.settings.device, Channel::Status);
        let _ = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, true, codec::encode(&report));
        let _ = self.client.try_disconnect();
        let deadline = tokio::time::sleep(Duration::from_secs(3));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                event = events.poll() => if event.is_err() { break },
                _ = &mut deadline => break,
            }
        }
        info!("Disconnected.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1884").unwrap(),
            ("127.0.0.1".into(), 1884, false)
        );
        assert_eq!(
            parse_url("mqtts://broker.example.com").unwrap(),
            ("broker.example.com".into(), 8883, true)
        );
        assert_eq!(
            parse_url("mqtt://[::1]:1883/").unwrap(),
            ("::1".into(), 1883, false)
        );
        assert!(parse_url("http://x:1").is_err());
        assert!(parse_url("mqtt://:1").is_err());
        assert!(parse_url("mqtt://x:port").is_err());
    }

    #[test]
    fn jitter_stays_within_half_to_full() {
        for _ in 0..100 {
            let delay = jittered(Duration::from_secs(10));
            assert!(
                delay >= Duration::from_secs(5) && delay <= Duration::from_secs(10),
                "{delay:?}"
            );
        }
    }
}
