//! MQTT ingest: uplink envelopes in, rows stored, acknowledgements out.
//!
//! Servers subscribe to the uplinks with the shared subscription
//! `$share/drivetag/drivetag/v1/+/up/+`, so several instances split the load and each message
//! reaches one of them. Messages are stored in batches (one transaction each); only after the
//! commit does the server publish, per device, an [`Ack`] naming the sequence numbers stored —
//! including duplicates, which the agent may have sent again because an earlier ack was lost.
//! A payload that cannot be stored (undecodable, unknown version, device or kind not matching
//! its topic) goes to the dead-letter table with the reason and its bytes, and the agent is
//! told, by sequence number when the header can be read, that retrying cannot help.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use drivetag_shared::DeviceId;
use drivetag_shared::codec::{self, DecodeError};
use drivetag_shared::topics::{self, Channel};
use drivetag_shared::wire::{
    Ack, AgentState, ConfigUpdate, Envelope, RejectReason, Rejection, SeqRange, StatusReport,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::agents::AgentConfigs;
use crate::metrics::Metrics;
use crate::store::{DeadLetter, Incoming, Outcome, StatusRecord, Store};

/// Ingest settings.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Broker options (host, port, client id, credentials, TLS).
    pub options: MqttOptions,
    /// Subscribe with `$share/{group}/...` so instances split the load; `None`: a plain
    /// subscription.
    pub share_group: Option<String>,
    /// Most envelopes per stored batch.
    pub batch_max: usize,
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What one received message became.
#[derive(Debug)]
enum Classified {
    Envelope(Incoming),
    Status(StatusRecord),
    Dead(DeadLetter, Option<(DeviceId, Rejection)>),
    Ignored,
}

/// Decides what a message is. Pure, so it is tested without a broker.
fn classify(topic: &str, payload: &[u8], received_s: u64) -> Classified {
    let dead =
        |reason: &str, detail: String, device: Option<&DeviceId>, seq: Option<u64>| DeadLetter {
            received_s,
            topic: topic.to_owned(),
            device_id: device.map(|d| d.as_str().to_owned()),
            seq,
            reason: reason.to_owned(),
            detail,
            payload: payload.to_vec(),
        };
    let (device, channel) = match topics::parse_topic(topic) {
        Ok(parsed) => parsed,
        Err(error) => return Classified::Dead(dead("topic", error.to_string(), None, None), None),
    };
    match channel {
        Channel::Status => {
            if payload.is_empty() {
                return Classified::Ignored; // A cleared retained status.
            }
            match codec::decode::<StatusReport>(payload) {
                Ok(report) if report.device == device => Classified::Status(StatusRecord {
                    device_id: device.as_str().to_owned(),
                    online: matches!(report.state, AgentState::Online(_)),
                    created_s: report.created_s,
                    received_s,
                    health: health_json(&report),
                }),
                Ok(report) => Classified::Dead(
                    dead(
                        "device_mismatch",
                        format!("status of {} on the topic of {device}", report.device),
                        Some(&device),
                        None,
                    ),
                    None,
                ),
                Err(error) => Classified::Dead(
                    dead(reason_code(&error), error.to_string(), Some(&device), None),
                    None,
                ),
            }
        }
        Channel::Up(kind) => {
            let reject = |reason: &str, detail: String, why: RejectReason| {
                let header = codec::peek_header(payload)
                    .ok()
                    .filter(|h| h.device == device);
                let seq = header.as_ref().map(|h| h.seq);
                Classified::Dead(
                    dead(reason, detail, Some(&device), seq),
                    seq.map(|seq| (device.clone(), Rejection { seq, reason: why })),
                )
            };
            match codec::decode::<Envelope>(payload) {
                Ok(envelope) if envelope.device != device => Classified::Dead(
                    dead(
                        "device_mismatch",
                        format!("envelope of {} on the topic of {device}", envelope.device),
                        Some(&device),
                        Some(envelope.seq),
                    ),
                    Some((
                        device.clone(),
                        Rejection {
                            seq: envelope.seq,
                            reason: RejectReason::DeviceMismatch,
                        },
                    )),
                ),
                Ok(envelope) if envelope.body.kind() != kind => {
                    let detail = format!(
                        "a {} summary on the {} topic",
                        envelope.body.kind().as_str(),
                        kind.as_str()
                    );
                    reject("kind_mismatch", detail, RejectReason::KindMismatch)
                }
                Ok(envelope) => Classified::Envelope(Incoming {
                    envelope,
                    payload: payload.to_vec(),
                    received_s,
                }),
                Err(error @ DecodeError::UnknownVersion { .. }) => reject(
                    "unknown_version",
                    error.to_string(),
                    RejectReason::UnknownVersion,
                ),
                Err(error) => reject(
                    reason_code(&error),
                    error.to_string(),
                    RejectReason::Malformed,
                ),
            }
        }
        Channel::Ack | Channel::Config => Classified::Ignored,
    }
}

fn reason_code(error: &DecodeError) -> &'static str {
    match error {
        DecodeError::Truncated { .. } => "truncated",
        DecodeError::UnknownVersion { .. } => "unknown_version",
        DecodeError::TrailingBytes { .. } => "trailing_bytes",
        DecodeError::Malformed { .. } => "malformed",
    }
}

fn health_json(report: &StatusReport) -> String {
    match &report.state {
        AgentState::Offline => "{}".to_owned(),
        AgentState::Online(health) => serde_json::json!({
            "agent_version": health.agent_version,
            "uptime_s": health.uptime_s,
            "config_revision": health.config_revision,
            "config_rejected": health.config_rejected.as_ref().map(|r| serde_json::json!({"revision": r.revision, "reason": r.reason})),
            "backlog_len": health.backlog_len,
            "backlog_bytes": health.backlog_bytes,
            "oldest_unacked_s": health.oldest_unacked_s,
            "last_ack_s": health.last_ack_s,
            "dropped": health.dropped,
            "rejected": health.rejected,
            "outbox_resets": health.outbox_resets,
            "bad_input": health.bad_input.iter().map(|b| (b.reason.clone(), b.count)).collect::<BTreeMap<_, _>>(),
        })
        .to_string(),
    }
}

/// Runs ingest until `shutdown` turns true.
///
/// `ready` turns true once the broker has confirmed the uplink subscription: from then on no
/// uplink is missed.
pub async fn run(
    settings: IngestSettings,
    store: Store,
    metrics: Arc<Metrics>,
    configs: Arc<AgentConfigs>,
    ready: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let capacity = settings.batch_max * 4 + 64;
    let (client, mut events) = AsyncClient::new(settings.options.clone(), capacity);
    let (tx, mut rx) = mpsc::channel::<(String, bytes::Bytes, u64)>(capacity);
    let uplink_filter = match &settings.share_group {
        Some(group) => topics::shared_uplink_filter(group),
        None => topics::uplink_filter(),
    };
    let subscriber = client.clone();
    let poller = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    info!("Connected to the broker.");
                    backoff = Duration::from_millis(200);
                    for filter in [uplink_filter.clone(), topics::status_filter()] {
                        if let Err(error) = subscriber.subscribe(filter, QoS::AtLeastOnce).await {
                            warn!(%error, "Cannot subscribe.");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready.send(true);
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let topic = publish.topic.clone();
                    if tx.send((topic, publish.payload, now_s())).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    warn!(%error, retry_in_ms = backoff.as_millis() as u64, "Cannot reach the broker.");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    });

    let mut configured: HashSet<DeviceId> = HashSet::new();
    let mut revision_seen = configs.revision();
    let mut batch = Vec::with_capacity(settings.batch_max);
    loop {
        tokio::select! {
            received = rx.recv_many(&mut batch, settings.batch_max) => {
                if received == 0 {
                    break;
                }
            }
            _ = shutdown.changed() => break,
        }
        if configs.revision() != revision_seen {
            // New stores or POIs: every agent gets its configuration again.
            revision_seen = configs.revision();
            configured.clear();
        }
        handle_batch(
            &client,
            &store,
            &metrics,
            &configs,
            &mut configured,
            std::mem::take(&mut batch),
        )
        .await;
    }
    poller.abort();
    let _ = client.disconnect().await;
    Ok(())
}

async fn handle_batch(
    client: &AsyncClient,
    store: &Store,
    metrics: &Metrics,
    configs: &AgentConfigs,
    configured: &mut HashSet<DeviceId>,
    batch: Vec<(String, bytes::Bytes, u64)>,
) {
    let mut incoming = Vec::with_capacity(batch.len());
    let mut dead = Vec::new();
    let mut rejections: BTreeMap<DeviceId, Vec<Rejection>> = BTreeMap::new();
    for (topic, payload, received_s) in &batch {
        match classify(topic, payload, *received_s) {
            Classified::Envelope(envelope) => {
                metrics.messages_in.inc();
                incoming.push(envelope);
            }
            Classified::Status(status) => {
                metrics.status_reports.inc();
                if let Err(error) = store.record_status(&status).await {
                    warn!(%error, device = %status.device_id, "Cannot record a status.");
                }
                if let Ok(device) = DeviceId::new(status.device_id.clone()) {
                    if status.online && !configured.contains(&device) {
                        publish_config(client, configs, &device, configured).await;
                    }
                }
            }
            Classified::Dead(letter, rejection) => {
                metrics.messages_in.inc();
                metrics.dead_letter(&letter.reason);
                warn!(topic = %letter.topic, reason = %letter.reason, detail = %letter.detail, "Kept a payload in the dead-letter table.");
                dead.push(letter);
                if let Some((device, rejection)) = rejection {
                    rejections.entry(device).or_default().push(rejection);
                }
            }
            Classified::Ignored => {}
        }
    }
    if !dead.is_empty()
        && let Err(error) = store.dead_letter(&dead).await
    {
        // Without the dead letters stored, refusing would lose them: let the agents resend.
        warn!(%error, "Cannot store dead letters; not refusing them.");
        metrics.store_errors.inc();
        rejections.clear();
    }
    let mut stored: BTreeMap<DeviceId, Vec<u64>> = BTreeMap::new();
    if !incoming.is_empty() {
        match store.ingest(&incoming).await {
            Ok(outcomes) => {
                metrics.batch_size.observe(incoming.len() as f64);
                let newest = incoming
                    .iter()
                    .map(|i| i.envelope.created_s)
                    .max()
                    .unwrap_or(0);
                metrics
                    .lag_seconds
                    .set(now_s().saturating_sub(newest) as i64);
                for (envelope, outcome) in incoming.iter().zip(outcomes) {
                    let counter = match outcome {
                        Outcome::Stored => &metrics.stored,
                        Outcome::Duplicate => &metrics.duplicates,
                    };
                    counter.inc();
                    stored
                        .entry(envelope.envelope.device.clone())
                        .or_default()
                        .push(envelope.envelope.seq);
                }
            }
            Err(error) => {
                // No ack: the agents keep the summaries and send them again.
                warn!(%error, envelopes = incoming.len(), "Cannot store a batch; agents will resend.");
                metrics.store_errors.inc();
            }
        }
    }
    let devices: HashSet<DeviceId> = stored.keys().chain(rejections.keys()).cloned().collect();
    for device in devices {
        let ack = Ack {
            device: device.clone(),
            stored: SeqRange::collapse(stored.remove(&device).unwrap_or_default()),
            rejected: rejections.remove(&device).unwrap_or_default(),
        };
        let topic = topics::topic_for(&device, Channel::Ack);
        match client
            .publish(topic, QoS::AtLeastOnce, false, codec::encode(&ack))
            .await
        {
            Ok(()) => {
                metrics.acks.inc();
            }
            Err(error) => {
                warn!(%error, %device, "Cannot publish an acknowledgement; the agent will resend.")
            }
        }
        if !configured.contains(&device) {
            publish_config(client, configs, &device, configured).await;
        }
    }
}

/// Publishes the device's configuration, retained, once per revision.
async fn publish_config(
    client: &AsyncClient,
    configs: &AgentConfigs,
    device: &DeviceId,
    configured: &mut HashSet<DeviceId>,
) {
    let update: ConfigUpdate = configs.update();
    let topic = topics::topic_for(device, Channel::Config);
    match client
        .publish(topic, QoS::AtLeastOnce, true, codec::encode(&update))
        .await
    {
        Ok(()) => {
            debug!(%device, revision = update.revision, "Published the configuration.");
            configured.insert(device.clone());
        }
        Err(error) => warn!(%error, %device, "Cannot publish the configuration."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{incoming, trip};

    #[test]
    fn a_good_envelope_is_stored() {
        let good = incoming("car-1", 3, trip(1_000));
        let Classified::Envelope(found) = classify("drivetag/v1/car-1/up/trip", &good.payload, 5)
        else {
            panic!("not an envelope");
        };
        assert_eq!(found.envelope, good.envelope);
    }

    #[test]
    fn a_mismatched_device_is_refused_by_seq() {
        let other = incoming("car-2", 3, trip(1_000));
        let Classified::Dead(letter, Some((device, rejection))) =
            classify("drivetag/v1/car-1/up/trip", &other.payload, 5)
        else {
            panic!("not refused");
        };
        assert_eq!(letter.reason, "device_mismatch");
        assert_eq!(device.as_str(), "car-1");
        assert_eq!(
            rejection,
            Rejection {
                seq: 3,
                reason: RejectReason::DeviceMismatch
            }
        );
    }

    #[test]
    fn a_wrong_kind_and_an_unknown_version_are_refused_by_seq() {
        let trip = incoming("car-1", 4, trip(1_000));
        let Classified::Dead(letter, Some((_, rejection))) =
            classify("drivetag/v1/car-1/up/day", &trip.payload, 5)
        else {
            panic!("not refused");
        };
        assert_eq!(
            (letter.reason.as_str(), rejection.reason),
            ("kind_mismatch", RejectReason::KindMismatch)
        );
        let mut future = trip.payload.clone();
        future[0] = 9;
        let Classified::Dead(letter, Some((_, rejection))) =
            classify("drivetag/v1/car-1/up/trip", &future, 5)
        else {
            panic!("not refused");
        };
        assert_eq!(
            (letter.reason.as_str(), rejection.seq),
            ("unknown_version", 4)
        );
        assert_eq!(letter.payload, future);
    }

    #[test]
    fn garbage_is_kept_without_a_seq() {
        let Classified::Dead(letter, rejection) = classify("drivetag/v1/car-1/up/trip", b"\x01", 5)
        else {
            panic!("not dead");
        };
        assert_eq!((letter.reason.as_str(), letter.seq), ("truncated", None));
        assert!(rejection.is_none());
        let Classified::Dead(letter, _) = classify("drivetag/v1/car/1/up/trip", b"x", 5) else {
            panic!("not dead");
        };
        assert_eq!(letter.reason, "topic");
    }
}
