//! The server's configuration file (TOML).
//!
//! Every key has a default, so an empty file is a valid configuration: an embedded broker and
//! a SQLite file, nothing to install. `deploy/server.example.toml` lists every key with its
//! unit and default, and a test keeps the two in step.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The HTTP API.
    pub http: HttpConfig,
    /// The MQTT connection, or the embedded broker.
    pub mqtt: MqttConfig,
    /// Where summaries, the registry and labels are stored.
    pub database: DatabaseConfig,
    /// How envelopes are stored.
    pub ingest: IngestConfig,
    /// What every agent is told.
    pub agents: AgentsConfig,
    /// Labelling.
    pub labels: LabelsConfig,
}

/// Labelling.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabelsConfig {
    /// The rules file. Empty (the default): the shipped rules (`drivetag-server rules defaults`).
    pub rules: PathBuf,
    /// Vehicles that sent new data are relabelled this often, seconds. Default 60.
    pub interval_s: u64,
    /// Every vehicle is relabelled, and percentile tiers re-ranked, this often, hours.
    /// Default 24.
    pub full_every_h: u64,
}

impl Default for LabelsConfig {
    fn default() -> Self {
        LabelsConfig {
            rules: PathBuf::new(),
            interval_s: 60,
            full_every_h: 24,
        }
    }
}

/// How envelopes are stored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Most envelopes stored in one transaction. Default 500: large enough that the commit's
    /// fsync is shared by many, small enough that acknowledgements come within milliseconds.
    pub batch_max: usize,
    /// Batches stored at once, each from its own share of the devices (a device's summaries
    /// always in one lane, in order). Default 2: with PostgreSQL one batch's round trips leave
    /// the database waiting; with SQLite the second lane decodes while the first commits.
    pub lanes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            batch_max: 500,
            lanes: 2,
        }
    }
}

/// What every agent is told, besides the dealer's stores and POIs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// IANA time zone for the agents' local hours and days. Default "UTC".
    pub time_zone: String,
    /// Edge of the cells in which places leave the car, metres. Default 1000.
    pub cell_size_m: u32,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            time_zone: "UTC".into(),
            cell_size_m: 1000,
        }
    }
}

/// The HTTP API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on. Default `127.0.0.1:8080`: local only until you put a TLS proxy in
    /// front of it.
    pub listen: SocketAddr,
    /// Requests per second each API key may make (bursts of twice as many). Default 50.
    pub rate_per_s: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            rate_per_s: 50,
        }
    }
}

/// The MQTT connection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// An external broker, `mqtt://host:port` (e.g. Mosquitto or EMQX). Empty (the default):
    /// start the embedded broker.
    pub url: String,
    /// Where the embedded broker listens. Default `127.0.0.1:1884`, beside a system Mosquitto
    /// that usually holds 1883.
    pub embedded_listen: SocketAddr,
    /// The server's MQTT client id. Empty (the default): `drivetag-server-` and a random
    /// suffix, so several instances never take each other's session.
    pub client_id: String,
    /// User name for the broker. Empty: none.
    pub username: String,
    /// Password for `username`.
    pub password: String,
    /// Subscribe with `$share/{share_group}/...` so several instances split the uplinks.
    /// Default true.
    pub shared_subscription: bool,
    /// The shared-subscription group; every instance of one deployment uses the same. Default
    /// "drivetag". Two deployments on one broker need two groups.
    pub share_group: String,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: String::new(),
            embedded_listen: SocketAddr::from(([127, 0, 0, 1], 1884)),
            client_id: String::new(),
            username: String::new(),
            password: String::new(),
            shared_subscription: true,
            share_group: drivetag_shared::topics::SHARE_GROUP.into(),
        }
    }
}

/// Where data is stored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (the default, `sqlite://drivetag.sqlite`) or
    /// `postgres://user@host:port/db` for several server instances.
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://drivetag.sqlite".into(),
        }
    }
}

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration; the message names line and key.
    #[error("config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error, with line and column.
        source: Box<toml::de::Error>,
    },
}

impl ServerConfig {
    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_lists_the_defaults() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/server.example.toml"
        ));
        assert_eq!(ServerConfig::load(path).unwrap(), ServerConfig::default());
    }

    #[test]
    fn unknown_keys_name_the_line() {
        let error = ServerConfig::parse(
            "[http]\nlisten = \"127.0.0.1:1\"\nport = 2\n",
            Path::new("s.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("line 3") && error.contains("port"),
            "{error}"
        );
    }
}
