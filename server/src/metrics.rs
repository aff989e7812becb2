//! Prometheus metrics, served at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// MQTT messages received on uplink topics.
    pub messages_in: Counter,
    /// Envelopes stored for the first time.
    pub stored: Counter,
    /// Envelopes received again (resends).
    pub duplicates: Counter,
    /// Payloads kept in the dead-letter table, by reason.
    pub dead_letters: Family<Vec<(String, String)>, Counter>,
    /// Acknowledgements published.
    pub acks: Counter,
    /// Status reports received.
    pub status_reports: Counter,
    /// Seconds from the agent creating an envelope to the server storing it, latest batch.
    pub lag_seconds: Gauge,
    /// Envelopes per stored batch.
    pub batch_size: Histogram,
    /// Store errors (batches that will be retried by the agents).
    pub store_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("drivetag");
        let metrics = Metrics {
            registry: Registry::default(),
            messages_in: Counter::default(),
            stored: Counter::default(),
            duplicates: Counter::default(),
            dead_letters: Family::default(),
            acks: Counter::default(),
            status_reports: Counter::default(),
            lag_seconds: Gauge::default(),
            batch_size: Histogram::new([1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0]),
            store_errors: Counter::default(),
        };
        registry.register(
            "messages_in",
            "MQTT messages received on uplink topics",
            metrics.messages_in.clone(),
        );
        registry.register(
            "envelopes_stored",
            "Envelopes stored for the first time",
            metrics.stored.clone(),
        );
        registry.register(
            "envelopes_duplicate",
            "Envelopes received again and stored once",
            metrics.duplicates.clone(),
        );
        registry.register(
            "dead_letters",
            "Payloads kept in the dead-letter table, by reason",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "acks_published",
            "Acknowledgements published to agents",
            metrics.acks.clone(),
        );
        registry.register(
            "status_reports",
            "Agent status reports received",
            metrics.status_reports.clone(),
        );
        registry.register(
            "ingest_lag_seconds",
            "Seconds from an agent creating an envelope to its storage, latest batch",
            metrics.lag_seconds.clone(),
        );
        registry.register(
            "ingest_batch_size",
            "Envelopes per stored batch",
            metrics.batch_size.clone(),
        );
        registry.register(
            "store_errors",
            "Batches the store refused; agents send them again",
            metrics.store_errors.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// Counts a dead letter.
    pub fn dead_letter(&self, reason: &str) {
        self.dead_letters
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
