//! MQTT ingest: uplink envelopes in, rows stored, acknowledgements out.
//!
//! Servers connect with MQTT v5 and subscribe to the uplinks with the shared subscription
//! `$share/drivetag/drivetag/v1/+/up/+`, so several instances split the load and each message
//! reaches one of them. Agents may speak MQTT 3.1.1: a broker forwards between versions.
//! Messages are stored in batches (one transaction each); only after the commit does the server
//! publish, per device, an [`Ack`] naming the sequence numbers stored —
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
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::agents::AgentConfigs;
use crate::metrics::Metrics;
use crate::store::{DeadLetter, Incoming, Outcome, StatusRecord, Store};

/// How long the broker keeps the server's session (its subscriptions and the uplinks queued for
/// it) after the connection drops, in seconds. Long enough to ride through a broker or server
/// restart without a gap; short enough that the session of a server that is gone for good stops
/// taking a share of the uplinks soon. Nothing queued there is lost when it expires: agents send
/// again whatever was not acknowledged.
pub const SESSION_EXPIRY_S: u32 = 300;

/// Largest MQTT packet the server accepts, in bytes; the broker discards larger messages for it
/// (MQTT v5 "Maximum Packet Size") rather than break its connection. Above Mosquitto's
/// `message_size_limit` in `deploy/` and equal to the embedded broker's `max_payload_size`.
pub const MAX_PACKET_BYTES: u32 = 256 * 1024;

/// The MQTT v5 options ingest connects with: a persistent session that expires after
/// [`SESSION_EXPIRY_S`], up to 1000 acknowledgements and configurations in flight. Credentials
/// and TLS are for the caller to add.
pub fn mqtt_options(client_id: &str, host: &str, port: u16) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, host, port);
    options
        .set_keep_alive(Duration::from_secs(30))
        // MQTT v5 splits 3.1.1's clean session in two: keep the session across reconnects
        // (clean start off), and for how long after a disconnect (the expiry; 0 would end it at
        // once).
        .set_clean_start(false)
        .set_session_expiry_interval(Some(SESSION_EXPIRY_S))
        .set_max_packet_size(Some(MAX_PACKET_BYTES))
        .set_outgoing_inflight_upper_limit(1000);
    options
}

/// Ingest settings.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// MQTT v5 broker options (host, port, client id, credentials, TLS), usually from
    /// [`mqtt_options`].
    pub options: MqttOptions,
    /// Subscribe with `$share/{group}/...` so instances split the load; `None`: a plain
    /// subscription.
    pub share_group: Option<String>,
    /// Most envelopes per stored batch.
    pub batch_max: usize,
    /// Batches stored at once, each by its own lane of devices (at least 1).
    pub lanes: usize,
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
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let capacity = settings.batch_max * 4 + 64;
    let (client, mut events) = AsyncClient::new(settings.options.clone(), capacity);
    let lanes = settings.lanes.max(1);
    let mut senders = Vec::with_capacity(lanes);
    let mut workers = Vec::with_capacity(lanes);
    for _ in 0..lanes {
        let (tx, rx) = mpsc::channel::<Message>(capacity);
        senders.push(tx);
        workers.push(tokio::spawn(lane(
            Lane {
                client: client.clone(),
                store: store.clone(),
                metrics: metrics.clone(),
                configs: configs.clone(),
                batch_max: settings.batch_max,
            },
            rx,
            shutdown.clone(),
        )));
    }
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
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    // MQTT v5 says why a filter was refused (e.g. a broker without shared
                    // subscriptions); 3.1.1 only said that it was.
                    let refused: Vec<&SubscribeReasonCode> = ack
                        .return_codes
                        .iter()
                        .filter(|code| !matches!(code, SubscribeReasonCode::Success(_)))
                        .collect();
                    if refused.is_empty() {
                        let _ = ready.send(true);
                    } else {
                        warn!(reasons = ?refused, "The broker refused a subscription.");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    // MQTT requires UTF-8 topics; anything else becomes a dead letter.
                    let topic = String::from_utf8_lossy(&publish.topic).into_owned();
                    let lane = lane_of(&topic, senders.len());
                    if senders[lane]
                        .send((topic, publish.payload, now_s()))
                        .await
                        .is_err()
                    {
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
    for worker in workers {
        let _ = worker.await;
    }
    poller.abort();
    let _ = client.disconnect().await;
    Ok(())
}

/// A received message: topic, payload, seconds of arrival.
type Message = (String, bytes::Bytes, u64);

/// The lane that stores a topic's messages: each device's always go to the same one, so one
/// device's summaries are stored in the order they came and never by two transactions at once
/// (a newer places summary replaces an older one only when it sees it committed).
fn lane_of(topic: &str, lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    if lanes < 2 {
        return 0;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match topics::parse_topic(topic) {
        Ok((device, _)) => device.as_str().hash(&mut hasher),
        // Messages on topics that are not a device's become dead letters; any lane will do.
        Err(_) => topic.hash(&mut hasher),
    }
    (hasher.finish() % lanes as u64) as usize
}

/// What a lane stores with and reports to.
struct Lane {
    client: AsyncClient,
    store: Store,
    metrics: Arc<Metrics>,
    configs: Arc<AgentConfigs>,
    batch_max: usize,
}

/// Stores one lane's messages batch by batch, and acknowledges them: with PostgreSQL a batch's
/// round trips leave the database idle between commits, and a second lane fills that time.
async fn lane(lane: Lane, mut rx: mpsc::Receiver<Message>, mut shutdown: watch::Receiver<bool>) {
    let Lane {
        client,
        store,
        metrics,
        configs,
        batch_max,
    } = lane;
    let mut configured: HashSet<DeviceId> = HashSet::new();
    let mut revision_seen = configs.revision();
    let mut unsent = Unsent::default();
    let mut batch = Vec::with_capacity(batch_max);
    loop {
        tokio::select! {
            received = rx.recv_many(&mut batch, batch_max) => {
                if received == 0 {
                    break;
                }
            }
            // Acks the client could not take yet: try again soon even if nothing arrives.
            _ = tokio::time::sleep(RETRY_UNSENT), if !unsent.is_empty() => {}
            _ = shutdown.changed() => break,
        }
        if configs.revision() != revision_seen {
            // New stores or POIs: every agent gets its configuration again.
            revision_seen = configs.revision();
            configured.clear();
        }
        if !batch.is_empty() {
            handle_batch(
                &client,
                &store,
                &metrics,
                &configs,
                &mut configured,
                &mut unsent,
                std::mem::take(&mut batch),
            )
            .await;
        }
        unsent.flush(&client, &metrics);
    }
}

/// How soon to retry acks the MQTT client had no room for.
const RETRY_UNSENT: Duration = Duration::from_millis(5);

/// Acks stored but not yet handed to the MQTT client, by device.
///
/// This loop never waits for the client to take a publish: the client's queue drains only
/// while the poller polls the event loop, and the poller waits for this loop to take the
/// messages it received. Waiting on both sides stalled ingest for good under load (seen with
/// PostgreSQL, whose batches take longer). Acks of one device merge while they wait, so this
/// holds at most one per device.
#[derive(Debug, Default)]
struct Unsent {
    acks: BTreeMap<DeviceId, (Vec<u64>, Vec<Rejection>)>,
}

impl Unsent {
    fn is_empty(&self) -> bool {
        self.acks.is_empty()
    }

    fn add(&mut self, device: DeviceId, stored: Vec<u64>, rejected: Vec<Rejection>) {
        let (all_stored, all_rejected) = self.acks.entry(device).or_default();
        all_stored.extend(stored);
        all_rejected.extend(rejected);
    }

    /// Hands acks to the client until it has no more room.
    fn flush(&mut self, client: &AsyncClient, metrics: &Metrics) {
        while let Some((device, (stored, rejected))) = self.acks.pop_first() {
            let ack = Ack {
                device: device.clone(),
                stored: SeqRange::collapse(stored.clone()),
                rejected: rejected.clone(),
            };
            let topic = topics::topic_for(&device, Channel::Ack);
            if client
                .try_publish(topic, QoS::AtLeastOnce, false, codec::encode(&ack))
                .is_ok()
            {
                metrics.acks.inc();
            } else {
                self.acks.insert(device, (stored, rejected));
                return;
            }
        }
    }
}

async fn handle_batch(
    client: &AsyncClient,
    store: &Store,
    metrics: &Metrics,
    configs: &AgentConfigs,
    configured: &mut HashSet<DeviceId>,
    unsent: &mut Unsent,
    batch: Vec<Message>,
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
                        publish_config(client, configs, &device, configured);
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
        unsent.add(
            device.clone(),
            stored.remove(&device).unwrap_or_default(),
            rejections.remove(&device).unwrap_or_default(),
        );
        if !configured.contains(&device) {
            publish_config(client, configs, &device, configured);
        }
    }
}

/// Publishes the device's configuration, retained, once per revision. If the client has no
/// room now, the next message from the device tries again.
fn publish_config(
    client: &AsyncClient,
    configs: &AgentConfigs,
    device: &DeviceId,
    configured: &mut HashSet<DeviceId>,
) {
    let update: ConfigUpdate = configs.update();
    let topic = topics::topic_for(device, Channel::Config);
    match client.try_publish(topic, QoS::AtLeastOnce, true, codec::encode(&update)) {
        Ok(()) => {
            debug!(%device, revision = update.revision, "Published the configuration.");
            configured.insert(device.clone());
        }
        Err(error) => debug!(%error, %device, "No room to publish the configuration yet."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{incoming, trip};
    use drivetag_shared::wire::UpKind;

    #[test]
    fn a_device_keeps_to_one_lane_and_devices_spread_over_all() {
        let mut per_lane = [0; 3];
        for n in 0..300 {
            let device = DeviceId::new(format!("car-{n}")).unwrap();
            let lanes: HashSet<usize> = [
                Channel::Up(UpKind::Trip),
                Channel::Up(UpKind::Places),
                Channel::Status,
            ]
            .into_iter()
            .map(|channel| lane_of(&topics::topic_for(&device, channel), 3))
            .collect();
            assert_eq!(lanes.len(), 1, "{device}: {lanes:?}");
            per_lane[*lanes.iter().next().unwrap()] += 1;
        }
        assert!(per_lane.iter().all(|n| *n > 60), "{per_lane:?}");
        assert_eq!(lane_of("not/a/topic/of/ours", 1), 0);
        assert!(lane_of("garbage", 2) < 2);
    }

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
