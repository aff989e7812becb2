//! The files in `deploy/` do what they say: with `deploy/mosquitto/drivetag.acl` and per-device
//! passwords, a head unit may publish only under its own device id, may not read another's
//! acknowledgements, and nobody gets in without a password; the server still receives and
//! acknowledges.
#![allow(clippy::unwrap_used)] // Tests may panic on what they did not expect.

use std::path::Path;
use std::time::Duration;

use drivetag_server::config::ServerConfig;
use drivetag_server::store::conformance::{incoming, trip};
use drivetag_shared::DeviceId;
use drivetag_shared::codec;
use drivetag_shared::topics::{self, Channel};
use drivetag_shared::wire::{Ack, UpKind};
use drivetag_tests::process::PrivateMosquitto;
use drivetag_tests::{free_port, require_mosquitto};
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS};

fn passwd(file: &Path, user: &str, password: &str) {
    let status = std::process::Command::new("mosquitto_passwd")
        .arg("-b")
        .arg(file)
        .args([user, password])
        .status()
        .expect("mosquitto_passwd (Debian package mosquitto)");
    assert!(status.success());
}

fn client(user: &str, password: Option<&str>, port: u16) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(user, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(10));
    if let Some(password) = password {
        options.set_credentials(user, password);
    }
    AsyncClient::new(options, 64)
}

/// The next packet that matters, or `None` after 3 s of silence.
async fn next(events: &mut EventLoop) -> Option<Result<Packet, ConnectionError>> {
    loop {
        match tokio::time::timeout(Duration::from_secs(3), events.poll()).await {
            Err(_) => return None,
            Ok(Ok(Event::Incoming(
                packet @ (Packet::Publish(_) | Packet::SubAck(_) | Packet::ConnAck(_)),
            ))) => {
                return Some(Ok(packet));
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Some(Err(error)),
        }
    }
}

/// Waits for the server's ack of `seq`, skipping the CONNACK and SUBACKs.
async fn acked(events: &mut EventLoop, seq: u64) -> bool {
    while let Some(packet) = next(events).await {
        if let Ok(Packet::Publish(publish)) = packet {
            let ack: Ack = codec::decode(&publish.payload).unwrap();
            if ack.stored.iter().any(|r| (r.first..=r.last).contains(&seq)) {
                return true;
            }
        }
    }
    false
}

fn up(device: &str) -> String {
    topics::topic_for(&DeviceId::new(device).unwrap(), Channel::Up(UpKind::Trip))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mosquitto_acl_lets_a_device_publish_only_under_its_own_id() {
    if require_mosquitto("the_mosquitto_acl_lets_a_device_publish_only_under_its_own_id").is_none()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("drivetag.passwd");
    std::fs::write(&passwords, "").unwrap();
    passwd(&passwords, "drivetag-server", "server-secret");
    passwd(&passwords, "hu-acl-a", "secret-a");
    passwd(&passwords, "hu-acl-b", "secret-b");
    let acl = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/mosquitto/drivetag.acl");
    let port = free_port();
    let config = dir.path().join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nacl_file {}\n",
            passwords.display(),
            acl.canonicalize().unwrap().display()
        ),
    )
    .unwrap();
    let _broker = PrivateMosquitto::with_config(&config, port);

    let mut server = ServerConfig::default();
    server.database.url = format!("sqlite://{}", dir.path().join("s.sqlite").display());
    server.http.listen = "127.0.0.1:0".parse().unwrap();
    server.mqtt.url = format!("mqtt://127.0.0.1:{port}");
    server.mqtt.username = "drivetag-server".into();
    server.mqtt.password = "server-secret".into();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let (running, _) = drivetag_server::serve::start(&server, shutdown)
        .await
        .unwrap();

    // Device A, with its own password, subscribes to its acks and sends its own trip.
    let (a, mut a_events) = client("hu-acl-a", Some("secret-a"), port);
    a.subscribe(
        topics::topic_for(&DeviceId::new("hu-acl-a").unwrap(), Channel::Ack),
        QoS::AtLeastOnce,
    )
    .await
    .unwrap();
    // A may not listen to B's acknowledgements.
    a.subscribe(
        topics::topic_for(&DeviceId::new("hu-acl-b").unwrap(), Channel::Ack),
        QoS::AtLeastOnce,
    )
    .await
    .unwrap();
    // Mosquitto grants a denied subscription in its SUBACK (MQTT 3.1.1) but delivers nothing:
    // checked below, once B has been acknowledged.
    let mut subacks = 0;
    while subacks < 2 {
        match next(&mut a_events).await {
            Some(Ok(Packet::SubAck(_))) => subacks += 1,
            Some(Ok(_)) => {}
            other => panic!("device A: {other:?}"),
        }
    }

    let own = incoming("hu-acl-a", 1, trip(1_000)).payload;
    a.publish(up("hu-acl-a"), QoS::AtLeastOnce, false, own)
        .await
        .unwrap();
    assert!(
        acked(&mut a_events, 1).await,
        "A's own trip was not acknowledged"
    );

    // A forges a trip for B, under B's topic: the broker drops it.
    let forged = incoming("hu-acl-b", 1, trip(2_000)).payload;
    a.publish(up("hu-acl-b"), QoS::AtLeastOnce, false, forged)
        .await
        .unwrap();
    // A's next own trip arrives after it, so the forged one had its chance.
    let own = incoming("hu-acl-a", 2, trip(1_500)).payload;
    a.publish(up("hu-acl-a"), QoS::AtLeastOnce, false, own)
        .await
        .unwrap();
    assert!(
        acked(&mut a_events, 2).await,
        "A's second trip was not acknowledged"
    );
    let store = &running.store;
    assert_eq!(store.sequence_numbers("hu-acl-a").await.unwrap(), [1, 2]);
    assert!(store.sequence_numbers("hu-acl-b").await.unwrap().is_empty());
    assert_eq!(store.counts().await.unwrap().envelopes, 2);

    // B sends its own trip and gets its ack; A, subscribed to B's acks, sees none of it.
    let (b, mut b_events) = client("hu-acl-b", Some("secret-b"), port);
    b.subscribe(
        topics::topic_for(&DeviceId::new("hu-acl-b").unwrap(), Channel::Ack),
        QoS::AtLeastOnce,
    )
    .await
    .unwrap();
    let own = incoming("hu-acl-b", 1, trip(3_000)).payload;
    b.publish(up("hu-acl-b"), QoS::AtLeastOnce, false, own)
        .await
        .unwrap();
    assert!(
        acked(&mut b_events, 1).await,
        "B's own trip was not acknowledged"
    );
    assert_eq!(store.sequence_numbers("hu-acl-b").await.unwrap(), [1]);
    let b_acks = topics::topic_for(&DeviceId::new("hu-acl-b").unwrap(), Channel::Ack);
    while let Some(packet) = next(&mut a_events).await {
        if let Ok(Packet::Publish(publish)) = packet {
            assert_ne!(publish.topic, b_acks, "A read B's acknowledgement");
        }
    }

    // No password, or a wrong one: refused at the door.
    for password in [None, Some("secret-b")] {
        let (_, mut events) = client("hu-acl-a", password, port);
        match next(&mut events).await {
            Some(Err(ConnectionError::ConnectionRefused(_))) => {}
            other => panic!("password {password:?}: {other:?}"),
        }
    }
    let _ = stop.send(true);
}
