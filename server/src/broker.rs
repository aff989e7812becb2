//! The embedded MQTT broker (rumqttd), so a first run needs nothing installed.
//!
//! It listens for MQTT 3.1.1 clients, the agents, on one address (default `127.0.0.1:1884`,
//! leaving 1883 to a system Mosquitto), and for MQTT v5 clients, the server's own ingest, on a
//! free port of 127.0.0.1: rumqttd takes each protocol version on a listener of its own. Both
//! listeners feed one router, so messages cross between versions, and the router handles
//! sessions, QoS 1, retained messages, last wills and shared subscriptions the same for both.
//! rumqttd does not expire sessions (MQTT v5 "Session Expiry Interval"): a persistent session
//! stays until a clean start under the same client id or the broker stops. For production,
//! point the server and the agents at Mosquitto or EMQX instead (see `deploy/`).

use std::net::{SocketAddr, TcpListener};

/// Why the broker cannot start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The address is taken.
    #[error(
        "the embedded MQTT broker cannot listen on {address}: {source}. Another broker (or a \
         second drivetag-server) is using it: stop it, choose another port with \
         mqtt.embedded_listen, or use that broker with mqtt.url = \"mqtt://{address}\""
    )]
    InUse {
        /// The address.
        address: SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
    /// rumqttd refused the configuration.
    #[error("the embedded MQTT broker: {0}")]
    Config(String),
}

/// A running embedded broker. It lives as long as the process.
#[derive(Debug, Clone, Copy)]
pub struct Broker {
    /// Where it listens for MQTT 3.1.1 (agents).
    pub address: SocketAddr,
    /// Where it listens for MQTT v5 (the server's ingest), on 127.0.0.1.
    pub v5_address: SocketAddr,
}

/// A free TCP port on 127.0.0.1, for tests that need the broker's address before it starts.
pub fn free_local_address() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// Starts the broker on `address` (MQTT 3.1.1) and a free local port (MQTT v5) in a thread of
/// its own.
pub fn start(address: SocketAddr) -> Result<Broker, BrokerError> {
    // rumqttd reports a taken port only inside its thread; find out first, clearly.
    drop(TcpListener::bind(address).map_err(|source| BrokerError::InUse { address, source })?);
    // Only this process connects here, so any free port will do; nobody needs to configure it.
    let v5_address = free_local_address().map_err(|error| {
        BrokerError::Config(format!(
            "no free local port for the MQTT v5 listener: {error}"
        ))
    })?;
    let text = format!(
        r#"
id = 0
[router]
id = 0
max_connections = 100010
max_outgoing_packet_count = 1000
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "{address}"
next_connection_delay_ms = 0
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 262144
max_inflight_count = 1000
dynamic_filters = true
[v5.1]
name = "v5-1"
listen = "{v5_address}"
next_connection_delay_ms = 0
[v5.1.connections]
connection_timeout_ms = 60000
max_payload_size = 262144
max_inflight_count = 1000
dynamic_filters = true
"#
    );
    let config: rumqttd::Config =
        toml::from_str(&text).map_err(|error| BrokerError::Config(error.to_string()))?;
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(error) = broker.start() {
                tracing::error!(%error, "The embedded MQTT broker stopped.");
            }
        })
        .map_err(|error| BrokerError::Config(error.to_string()))?;
    // Wait until both listeners take MQTT connections, so clients do not race its start.
    for (listen, v5) in [(address, false), (v5_address, true)] {
        let mut listening = false;
        for _ in 0..200 {
            if probe(listen, v5).is_ok() {
                listening = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if !listening {
            return Err(BrokerError::Config(format!(
                "the embedded broker did not start listening on {listen}"
            )));
        }
    }
    Ok(Broker {
        address,
        v5_address,
    })
}

/// Connects to `listen` as an MQTT client (v5 or 3.1.1), waits for the CONNACK and closes the
/// connection. A bare TCP connection would do to see the port open, but rumqttd logs one that
/// closes before its CONNECT as an error; so does a DISCONNECT packet ("already gone"). A close
/// after the CONNACK is what it logs at info.
fn probe(listen: SocketAddr, v5: bool) -> std::io::Result<()> {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicU64, Ordering};
    // Never the same client id twice: rumqttd 0.20 panics, and poisons its will registry for
    // every later connection on the listener, when a client id comes back after its last
    // connection's will task ended (bytebeamio/rumqtt#1062, fix pending in #1066). A probe
    // whose CONNACK came late under load and was retried hit it in CI.
    static PROBES: AtomicU64 = AtomicU64::new(0);
    let client_id = format!(
        "drivetag-probe-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    );
    let timeout = std::time::Duration::from_secs(1);
    let mut stream = std::net::TcpStream::connect_timeout(&listen, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut connect = bytes::BytesMut::new();
    if v5 {
        rumqttc::v5::mqttbytes::v5::Connect {
            keep_alive: 10,
            client_id,
            clean_start: true,
            properties: None,
        }
        .write(&None, &None, &mut connect)
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    } else {
        rumqttc::mqttbytes::v4::Connect::new(client_id)
            .write(&mut connect)
            .map_err(|error| std::io::Error::other(error.to_string()))?;
    }
    stream.write_all(&connect)?;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte)?;
    // A CONNACK is packet type 2.
    if byte[0] >> 4 != 2 {
        return Err(std::io::Error::other("no CONNACK"));
    }
    // Read all of it (remaining length, then the rest): closing with bytes unread sends a
    // reset, which rumqttd logs as an error too.
    let (mut remaining, mut shift) = (0usize, 0);
    loop {
        stream.read_exact(&mut byte)?;
        remaining |= usize::from(byte[0] & 0x7f) << shift;
        shift += 7;
        if byte[0] & 0x80 == 0 || shift > 21 {
            break;
        }
    }
    std::io::copy(
        &mut (&mut stream).take(remaining as u64),
        &mut std::io::sink(),
    )?;
    Ok(())
}
