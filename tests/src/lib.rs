//! Helpers for drivetag's end-to-end tests: where the real services are, and what to say when
//! they are not there.
//!
//! Tests that need the machine's Mosquitto or PostgreSQL read their addresses from
//! `DRIVETAG_TEST_MQTT_URL` (default `mqtt://127.0.0.1:1883`) and `DRIVETAG_TEST_DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`). When a service is unreachable the test
//! fails and says how to start it; only `DRIVETAG_TEST_SERVICES=skip` turns such tests into
//! announced skips.

pub mod process;

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Environment variable with the test broker's URL.
pub const MQTT_URL_VAR: &str = "DRIVETAG_TEST_MQTT_URL";
/// Environment variable with the test PostgreSQL URL.
pub const DATABASE_URL_VAR: &str = "DRIVETAG_TEST_DATABASE_URL";
/// Set to `skip` to skip, loudly, the tests that need external services.
pub const SERVICES_VAR: &str = "DRIVETAG_TEST_SERVICES";

/// Host and port of the test broker.
pub fn mqtt_broker() -> (String, u16) {
    let url = std::env::var(MQTT_URL_VAR).unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .unwrap_or(&url);
    match rest.rsplit_once(':') {
        Some((host, port)) => (
            host.to_owned(),
            port.parse()
                .unwrap_or_else(|_| panic!("{MQTT_URL_VAR}={url}: the port is not a number")),
        ),
        None => (rest.to_owned(), 1883),
    }
}

/// URL of the test PostgreSQL database.
pub fn database_url() -> String {
    std::env::var(DATABASE_URL_VAR)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Checks that the real Mosquitto answers. Returns `None`, after saying so, only when the
/// user asked to skip service tests; otherwise an unreachable broker fails the test.
pub fn require_mosquitto(test: &str) -> Option<(String, u16)> {
    let (host, port) = mqtt_broker();
    require(
        test,
        "Mosquitto",
        &format!("{host}:{port}"),
        MQTT_URL_VAR,
        "mosquitto -d -c /etc/mosquitto/mosquitto.conf",
    )
    .then_some((host, port))
}

/// Checks that the real PostgreSQL answers, as [`require_mosquitto`] does for the broker.
pub fn require_postgres(test: &str) -> Option<String> {
    let url = database_url();
    let address = url
        .split('@')
        .next_back()
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("127.0.0.1:5432")
        .to_owned();
    require(
        test,
        "PostgreSQL",
        &address,
        DATABASE_URL_VAR,
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    )
    .then_some(url)
}

fn require(test: &str, service: &str, address: &str, var: &str, start: &str) -> bool {
    if std::env::var(SERVICES_VAR).as_deref() == Ok("skip") {
        eprintln!("SKIPPED {test}: {SERVICES_VAR}=skip, so {service} at {address} was not used");
        return false;
    }
    let reachable = address
        .to_socket_addrs()
        .ok()
        .into_iter()
        .flatten()
        .any(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    assert!(
        reachable,
        "{test}: {service} is not reachable at {address}. Start it (`{start}`), point {var} at \
         another one, or set {SERVICES_VAR}=skip to skip the tests that need it"
    );
    true
}

/// A name unique to this test run, for device ids and client ids that must not collide with
/// another run on the same broker.
pub fn unique(prefix: &str) -> String {
    // Tests of one process run in parallel and the clock can tick coarser than they start: the
    // counter keeps two names apart (CI once saw two tests try to create one schema).
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{nanos}-{n}", std::process::id())
}

/// A PostgreSQL store in a fresh schema of its own, or `None` when service tests are skipped.
pub async fn postgres_store(test: &str) -> Option<drivetag_server::store::Store> {
    let url = require_postgres(test)?;
    let schema = unique("t").replace('-', "_");
    let backend = drivetag_server::store::postgres::Postgres::connect(&url, Some(&schema))
        .unwrap_or_else(|error| panic!("{test}: PostgreSQL at {url}: {error}"));
    Some(
        drivetag_server::store::Store::new(std::sync::Arc::new(backend))
            .await
            .unwrap_or_else(|error| panic!("{test}: PostgreSQL at {url}: {error}")),
    )
}

/// The URL of a fresh PostgreSQL schema of its own (for a server that opens the database by
/// URL), or `None` when service tests are skipped.
pub async fn postgres_schema_url(test: &str) -> Option<String> {
    let url = require_postgres(test)?;
    let schema = unique("t").replace('-', "_");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("{test}: PostgreSQL at {url}: {error}"));
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap_or_else(|error| panic!("{test}: creating schema {schema}: {error}"));
    let separator = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{separator}options=-csearch_path%3D{schema}"))
}

/// A SQLite store in a temporary directory that lives as long as the returned guard.
pub async fn sqlite_store() -> (drivetag_server::store::Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("drivetag.sqlite").display());
    let store = drivetag_server::store::Store::open(&url)
        .await
        .expect("a SQLite store");
    (store, dir)
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// The recorded drives beside the checkout (`../shared/data`), or `DRIVETAG_DATA_DIR`.
pub fn data_file(name: &str) -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("DRIVETAG_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data"))
        });
    let path = dir.join(name);
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: {} not found (set DRIVETAG_DATA_DIR)",
            path.display()
        );
        None
    }
}
