//! The agent's configuration file (TOML).
//!
//! Every key has a default, so an empty file is a valid configuration;
//! `deploy/agent.example.toml` lists every key with its unit and default, and a test keeps
//! the two in step.

use std::path::{Path, PathBuf};

use drivetag_shared::{DeviceId, wire::EnergyType};
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentFileConfig {
    /// The head unit's identity: its topics, its envelopes and its broker login.
    pub device_id: String,
    /// The vehicle the head unit is built into.
    pub vehicle: VehicleConfig,
    /// The broker connection.
    pub mqtt: MqttConfig,
    /// The store-and-forward outbox.
    pub outbox: OutboxConfig,
}

impl Default for AgentFileConfig {
    fn default() -> Self {
        AgentFileConfig {
            device_id: "hu-0001".into(),
            vehicle: VehicleConfig::default(),
            mqtt: MqttConfig::default(),
            outbox: OutboxConfig::default(),
        }
    }
}

/// What the car is. A head unit maker fills this in at the factory or reads it from the CAN bus.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VehicleConfig {
    /// Vehicle identification number.
    pub vin: String,
    /// Manufacturer.
    pub make: String,
    /// Model.
    pub model: String,
    /// Model year.
    pub model_year: u16,
    /// `ice`, `hev`, `phev` or `ev`.
    pub energy: EnergyName,
}

impl Default for VehicleConfig {
    fn default() -> Self {
        VehicleConfig {
            vin: String::new(),
            make: String::new(),
            model: String::new(),
            model_year: 2024,
            energy: EnergyName::Ice,
        }
    }
}

/// Power train as written in the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnergyName {
    /// Internal combustion engine.
    Ice,
    /// Hybrid electric.
    Hev,
    /// Plug-in hybrid electric.
    Phev,
    /// Battery electric.
    Ev,
}

impl From<EnergyName> for EnergyType {
    fn from(name: EnergyName) -> Self {
        match name {
            EnergyName::Ice => EnergyType::Ice,
            EnergyName::Hev => EnergyType::Hev,
            EnergyName::Phev => EnergyType::Phev,
            EnergyName::Ev => EnergyType::Ev,
        }
    }
}

/// The broker connection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `mqtt://host:port`, or `mqtts://host:port` for TLS. Default: the server's embedded
    /// broker on this machine, `mqtt://127.0.0.1:1884`.
    pub url: String,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: "mqtt://127.0.0.1:1884".into(),
        }
    }
}

/// The store-and-forward outbox.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// The SQLite file. Default `drivetag-outbox.sqlite` in the working directory.
    pub path: PathBuf,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            path: "drivetag-outbox.sqlite".into(),
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
    /// A value is out of range.
    #[error("config {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl AgentFileConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks configuration text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: AgentFileConfig =
            toml::from_str(text).map_err(|source| ConfigError::Parse {
                path: path.to_owned(),
                source: Box::new(source),
            })?;
        config.device().map_err(|error| ConfigError::Invalid {
            path: path.to_owned(),
            reason: format!("device_id: {error}"),
        })?;
        Ok(config)
    }

    /// The device id, checked.
    pub fn device(&self) -> Result<DeviceId, drivetag_shared::device::DeviceIdError> {
        DeviceId::new(self.device_id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_lists_the_defaults() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/agent.example.toml"
        ));
        let config = AgentFileConfig::load(path).unwrap();
        assert_eq!(config, AgentFileConfig::default());
    }

    #[test]
    fn an_empty_file_is_the_default() {
        let config = AgentFileConfig::parse("", Path::new("empty.toml")).unwrap();
        assert_eq!(config, AgentFileConfig::default());
    }

    #[test]
    fn unknown_keys_name_the_line() {
        let error = AgentFileConfig::parse(
            "[mqtt]\nurl = \"mqtt://x:1\"\nport = 1\n",
            Path::new("a.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("a.toml"), "{error}");
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("port"), "{error}");
    }

    #[test]
    fn a_bad_device_id_is_refused() {
        let error = AgentFileConfig::parse("device_id = \"car/1\"", Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("device_id"), "{error}");
    }
}
