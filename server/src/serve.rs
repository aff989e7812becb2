//! `drivetag-server serve`: broker (embedded or external), store, ingest and HTTP, until
//! Ctrl-C or SIGTERM.

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::agents::{AgentConfigs, AgentDefaults};
use crate::broker;
use crate::config::ServerConfig;
use crate::http::{AppState, router};
use crate::ingest::{self, IngestSettings};
use crate::metrics::Metrics;
use crate::store::Store;

/// What a running server listens on.
#[derive(Debug, Clone)]
pub struct Running {
    /// The HTTP API.
    pub http: SocketAddr,
    /// The broker agents should use.
    pub mqtt: (String, u16),
    /// The store.
    pub store: Store,
    /// Configurations for agents.
    pub configs: Arc<AgentConfigs>,
}

/// Host and port from `mqtt://host:port`.
pub fn parse_mqtt_url(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .with_context(|| format!("mqtt.url {url:?} must start with mqtt://"))?
        .trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((host, port)) => Ok((
            host.to_owned(),
            port.parse()
                .with_context(|| format!("mqtt.url {url:?}: bad port"))?,
        )),
        None => Ok((rest.to_owned(), 1883)),
    }
}

/// Starts everything and returns once it is listening; it runs until `shutdown` turns true.
pub async fn start(
    config: &ServerConfig,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(Running, tokio::task::JoinHandle<()>)> {
    let store = Store::open(&config.database.url)
        .await
        .with_context(|| format!("database {}", config.database.url))?;
    info!(database = %config.database.url, "Store ready.");
    // Agents use `(host, port)`; ingest connects with MQTT v5 to `ingest_at`, which for the
    // embedded broker is a listener of its own (rumqttd takes each protocol on its own port).
    let ((host, port), ingest_at) = if config.mqtt.url.is_empty() {
        let broker = broker::start(config.mqtt.embedded_listen)?;
        info!(listen = %broker.address, v5_listen = %broker.v5_address, "Embedded MQTT broker started.");
        (
            (broker.address.ip().to_string(), broker.address.port()),
            (broker.v5_address.ip().to_string(), broker.v5_address.port()),
        )
    } else {
        let address = parse_mqtt_url(&config.mqtt.url)?;
        (address.clone(), address)
    };
    let metrics = Arc::new(Metrics::default());
    let defaults = AgentDefaults {
        time_zone: config.agents.time_zone.clone(),
        cell_size_m: config.agents.cell_size_m,
    };
    let configs = Arc::new(AgentConfigs::load(&store, &defaults).await?);
    let client_id = if config.mqtt.client_id.is_empty() {
        format!(
            "drivetag-server-{:08x}",
            RandomState::new().hash_one(std::process::id()) as u32
        )
    } else {
        config.mqtt.client_id.clone()
    };
    let mut options = ingest::mqtt_options(&client_id, &ingest_at.0, ingest_at.1);
    if !config.mqtt.username.is_empty() {
        options.set_credentials(config.mqtt.username.clone(), config.mqtt.password.clone());
    }
    let settings = IngestSettings {
        options,
        share_group: config
            .mqtt
            .shared_subscription
            .then(|| config.mqtt.share_group.clone()),
        batch_max: config.ingest.batch_max.max(1),
        lanes: config.ingest.lanes.max(1),
    };
    let (ready_tx, mut ready) = watch::channel(false);
    let ingest_task = tokio::spawn({
        let (store, metrics, configs, shutdown) = (
            store.clone(),
            metrics.clone(),
            configs.clone(),
            shutdown.clone(),
        );
        async move {
            if let Err(error) =
                ingest::run(settings, store, metrics, configs, ready_tx, shutdown).await
            {
                warn!(%error, "Ingest stopped.");
            }
        }
    });
    // Report ready once the broker confirms the subscription; an external broker that is down
    // is retried in the background, and agents keep their summaries until then.
    if tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|ready| *ready))
        .await
        .is_err()
    {
        warn!(broker = %format!("{}:{}", ingest_at.0, ingest_at.1), "The broker has not answered yet; ingest keeps trying.");
    }
    let rules = if config.labels.rules.as_os_str().is_empty() {
        crate::labels::rules::Rules::defaults()
    } else {
        let path = &config.labels.rules;
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        crate::labels::rules::Rules::parse(&text, &path.display().to_string())?
    };
    tokio::spawn(crate::labeller::run(
        store.clone(),
        rules,
        config.agents.time_zone.clone(),
        Duration::from_secs(config.labels.interval_s),
        Duration::from_secs(config.labels.full_every_h.saturating_mul(3600)),
        shutdown.clone(),
    ));
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| {
            format!(
                "the HTTP API cannot listen on {}: choose another http.listen",
                config.http.listen
            )
        })?;
    let http = listener.local_addr()?;
    info!(listen = %http, "HTTP API ready.");
    let app = router(AppState::new(
        store.clone(),
        metrics,
        config.http.rate_per_s,
    ));
    let mut http_shutdown = shutdown;
    let server = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_shutdown.changed().await;
            })
            .await;
        if let Err(error) = result {
            warn!(%error, "The HTTP server stopped.");
        }
        let _ = ingest_task.await;
    });
    Ok((
        Running {
            http,
            mqtt: (host, port),
            store,
            configs,
        },
        server,
    ))
}
