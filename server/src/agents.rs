//! The configuration the server pushes to every agent: default thresholds, the dealer's
//! stores and points of interest, the cell size and time zone.
//!
//! The revision increases whenever the content changes (new stores or POIs, new settings),
//! kept in the database so that several server instances agree on it.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU32, Ordering};

use drivetag_shared::CellSize;
use drivetag_shared::codec;
use drivetag_shared::wire::{
    AgentConfig, ConfigUpdate, Poi, PoiKind, Position, Store as AgentStore,
};

use crate::store::{Store, StoreError};

/// What the server's configuration file says about agents.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentDefaults {
    /// IANA time zone of the agents' local-time features.
    pub time_zone: String,
    /// Cell size of places that leave the car, metres.
    pub cell_size_m: u32,
}

/// The current configuration update for agents.
#[derive(Debug)]
pub struct AgentConfigs {
    current: RwLock<ConfigUpdate>,
    revision: AtomicU32,
}

fn poi_kind(kind: &str) -> PoiKind {
    match kind {
        "own_store" => PoiKind::OwnStore,
        "competitor_dealer" => PoiKind::CompetitorDealer,
        "independent_repair" => PoiKind::IndependentRepair,
        "premium" => PoiKind::Premium,
        "charging" => PoiKind::Charging,
        _ => PoiKind::Other,
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AgentConfigs {
    /// Builds the configuration from the registry, bumping the revision if it changed.
    pub async fn load(store: &Store, defaults: &AgentDefaults) -> Result<AgentConfigs, StoreError> {
        let configs = AgentConfigs {
            current: RwLock::new(ConfigUpdate {
                revision: 0,
                issued_s: 0,
                config: AgentConfig::default(),
            }),
            revision: AtomicU32::new(0),
        };
        configs.refresh(store, defaults).await?;
        Ok(configs)
    }

    /// Rebuilds the configuration; returns the revision in force.
    pub async fn refresh(
        &self,
        store: &Store,
        defaults: &AgentDefaults,
    ) -> Result<u32, StoreError> {
        let config = AgentConfig {
            precision: CellSize::at_least_m(defaults.cell_size_m),
            time_zone: defaults.time_zone.clone(),
            stores: store
                .stores()
                .await?
                .into_iter()
                .map(|s| AgentStore {
                    id: u32::try_from(s.id).unwrap_or(0),
                    position: Position::from_degrees(s.lat, s.lon),
                    radius_m: s.radius_m.round().max(1.0) as u32,
                })
                .collect(),
            pois: store
                .pois()
                .await?
                .into_iter()
                .map(|p| Poi {
                    id: u32::try_from(p.id).unwrap_or(0),
                    kind: poi_kind(&p.kind),
                    position: Position::from_degrees(p.lat, p.lon),
                    radius_m: p.radius_m.round().max(1.0) as u32,
                })
                .collect(),
            ..AgentConfig::default()
        };
        let mut hasher = DefaultHasher::new();
        codec::encode(&ConfigUpdate {
            revision: 0,
            issued_s: 0,
            config: config.clone(),
        })
        .hash(&mut hasher);
        let fingerprint = format!("{:016x}", hasher.finish());
        let mut revision: u32 = store
            .meta("agent_config_revision")
            .await?
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        if store.meta("agent_config_fingerprint").await?.as_deref() != Some(fingerprint.as_str()) {
            revision += 1;
            store
                .set_meta("agent_config_revision", &revision.to_string())
                .await?;
            store
                .set_meta("agent_config_fingerprint", &fingerprint)
                .await?;
        }
        if let Ok(mut current) = self.current.write() {
            *current = ConfigUpdate {
                revision,
                issued_s: now_s(),
                config,
            };
        }
        self.revision.store(revision, Ordering::Relaxed);
        Ok(revision)
    }

    /// The revision in force.
    pub fn revision(&self) -> u32 {
        self.revision.load(Ordering::Relaxed)
    }

    /// The update to publish.
    pub fn update(&self) -> ConfigUpdate {
        self.current
            .read()
            .map(|current| current.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }
}
