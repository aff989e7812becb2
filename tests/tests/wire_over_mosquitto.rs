//! The wire contract over the machine's real Mosquitto: topics, frames, retained config and
//! the last will, as the agent and the server will use them.
#![allow(clippy::unwrap_used)] // Tests may panic on what they did not expect.

use std::time::Duration;

use drivetag_shared::codec::{self, Frame};
use drivetag_shared::topics::{self, Channel};
use drivetag_shared::wire::*;
use drivetag_shared::{Cell, CellSize, DeviceId};
use drivetag_tests::{require_mosquitto, unique};
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use tokio::time::timeout;

fn client(id: &str, broker: &(String, u16)) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(id, broker.0.clone(), broker.1);
    options.set_keep_alive(Duration::from_secs(5));
    AsyncClient::new(options, 16)
}

/// Polls until a publish arrives, or fails after 10 s.
async fn next_publish(events: &mut EventLoop) -> rumqttc::Publish {
    let wait = async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(publish))) => return publish,
                Ok(_) => {}
                Err(error) => panic!("broker connection failed: {error}"),
            }
        }
    };
    timeout(Duration::from_secs(10), wait)
        .await
        .expect("no message within 10 s")
}

/// Polls until the subscription is acknowledged.
async fn subscribed(events: &mut EventLoop) {
    let wait = async {
        loop {
            if let Event::Incoming(Packet::SubAck(_)) = events.poll().await.expect("broker") {
                return;
            }
        }
    };
    timeout(Duration::from_secs(10), wait)
        .await
        .expect("no SUBACK within 10 s");
}

fn decoded<F: Frame>(publish: &rumqttc::Publish) -> F {
    codec::decode(&publish.payload).expect("a frame")
}

#[tokio::test]
async fn an_uplink_envelope_reaches_a_server_subscription_intact() {
    let Some(broker) = require_mosquitto("an_uplink_envelope_reaches_a_server_subscription_intact")
    else {
        return;
    };
    let device = DeviceId::new(unique("wire-up")).unwrap();
    let (server, mut server_events) = client(&unique("server"), &broker);
    server
        .subscribe(topics::uplink_filter(), QoS::AtLeastOnce)
        .await
        .unwrap();
    subscribed(&mut server_events).await;

    let envelope = Envelope {
        device: device.clone(),
        seq: 1,
        created_s: 1_775_000_000,
        body: Uplink::Style(StyleSummary {
            from_local_day: 20_540,
            days: 7,
            source: SignalSource::Gnss,
            trips: 14,
            distance_m: 312_000,
            moving_s: 21_000,
            harsh_accel: 3,
            harsh_brake: 9,
            harsh_corner: 1,
            overspeed_s: 120,
            accel_p01_cms2: -260,
            accel_p99_cms2: 190,
            lateral_p99_cms2: 240,
            speed_cv_pct: 51,
            accel_score: 90,
            brake_score: 71,
            corner_score: 97,
            speed_score: 88,
            score: 86,
        }),
    };
    let (agent, mut agent_events) = client(&unique("agent"), &broker);
    let topic = topics::topic_for(&device, Channel::Up(envelope.body.kind()));
    agent
        .publish(&topic, QoS::AtLeastOnce, false, codec::encode(&envelope))
        .await
        .unwrap();
    tokio::spawn(async move { while agent_events.poll().await.is_ok() {} });

    // Other tests may publish on the same broker: wait for ours.
    loop {
        let publish = next_publish(&mut server_events).await;
        let (from, channel) = topics::parse_topic(&publish.topic).unwrap();
        if from == device {
            assert_eq!(channel, Channel::Up(UpKind::Style));
            assert_eq!(decoded::<Envelope>(&publish), envelope);
            break;
        }
    }
}

#[tokio::test]
async fn a_retained_config_reaches_an_agent_that_connects_later() {
    let Some(broker) = require_mosquitto("a_retained_config_reaches_an_agent_that_connects_later")
    else {
        return;
    };
    let device = DeviceId::new(unique("wire-config")).unwrap();
    let config_topic = topics::topic_for(&device, Channel::Config);
    let config = AgentConfig {
        time_zone: "Asia/Shanghai".into(),
        stores: vec![Store {
            id: 7,
            position: Position::from_degrees(31.2304, 121.4737),
            radius_m: 150,
        }],
        ..AgentConfig::default()
    };
    let update = ConfigUpdate {
        revision: 3,
        issued_s: 1_775_000_000,
        config,
    };

    let (server, mut server_events) = client(&unique("server"), &broker);
    server
        .publish(
            &config_topic,
            QoS::AtLeastOnce,
            true,
            codec::encode(&update),
        )
        .await
        .unwrap();
    // Wait for the broker's PUBACK so the retained message is stored before the agent comes.
    timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Packet::PubAck(_)) = server_events.poll().await.unwrap() {
                break;
            }
        }
    })
    .await
    .expect("no PUBACK");

    let (agent, mut agent_events) = client(&unique("agent"), &broker);
    for filter in topics::downlink_filters(&device) {
        agent.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    }
    let publish = next_publish(&mut agent_events).await;
    assert!(
        publish.retain,
        "the config must arrive as a retained message"
    );
    assert_eq!(
        topics::parse_topic(&publish.topic).unwrap().1,
        Channel::Config
    );
    assert_eq!(decoded::<ConfigUpdate>(&publish), update);

    // Clear the retained message so the broker does not keep test data.
    server
        .publish(&config_topic, QoS::AtLeastOnce, true, Vec::new())
        .await
        .unwrap();
    let _ = timeout(Duration::from_secs(2), server_events.poll()).await;
}

#[tokio::test]
async fn the_last_will_says_offline_when_an_agent_vanishes() {
    let Some(broker) = require_mosquitto("the_last_will_says_offline_when_an_agent_vanishes")
    else {
        return;
    };
    let device = DeviceId::new(unique("wire-will")).unwrap();
    let status_topic = topics::topic_for(&device, Channel::Status);
    let will = StatusReport {
        device: device.clone(),
        created_s: 1_775_000_000,
        state: AgentState::Offline,
    };

    let (server, mut server_events) = client(&unique("server"), &broker);
    server
        .subscribe(&status_topic, QoS::AtLeastOnce)
        .await
        .unwrap();
    subscribed(&mut server_events).await;

    let mut options = MqttOptions::new(unique("agent"), broker.0.clone(), broker.1);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_last_will(LastWill::new(
        &status_topic,
        codec::encode(&will),
        QoS::AtLeastOnce,
        false,
    ));
    let (_agent, mut agent_events) = AsyncClient::new(options, 16);
    timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Packet::ConnAck(_)) = agent_events.poll().await.unwrap() {
                break;
            }
        }
    })
    .await
    .expect("no CONNACK");
    // Dropping the event loop closes the socket without DISCONNECT: a power cut.
    drop(agent_events);

    let publish = next_publish(&mut server_events).await;
    assert_eq!(decoded::<StatusReport>(&publish), will);
}

#[test]
fn cells_survive_the_trip() {
    // Not a broker test: a guard that the test crate sees the same cell grid as the agent.
    let cell = Cell::containing(31.2304, 121.4737, CellSize::Km1).unwrap();
    assert_eq!((cell.lat_idx(), cell.lon_idx()), (3123, 12147));
}
