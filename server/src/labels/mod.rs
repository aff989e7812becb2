//! Customer labels and aftermarket strategies, from rules a dealer can read and change.
//!
//! * [`rules`]: the rules file (label groups, percentile tiers, strategies), checked at load.
//! * [`features`]: the per-vehicle features rules may use, computed in the server from each
//!   vehicle's registry facts and history.
//! * [`engine`]: full and partial relabels: read, rank, assign, write one row per vehicle.
//! * [`eval`]: conditions evaluated in the server, one vehicle at a time, with SQL's meaning.
//! * [`assign`]: a customer's labels and next-best actions from features and distributions.
//! * [`mod@catalog`]: the rules' words, by which stored labels and actions explain themselves.

pub mod assign;
pub mod catalog;
pub mod engine;
pub mod eval;
pub mod features;
pub mod rules;

use std::collections::BTreeMap;
use std::fmt;

use crate::store::{Store, StoreError};
use engine::{Day, PREVIEW, Scope};
use rules::Rules;

/// The catalog of the rules with this fingerprint, as a relabel stored it; kept in memory
/// once read (a vehicle's page reads it on every lookup, and catalogs never change).
pub async fn catalog(
    store: &Store,
    fingerprint: &str,
) -> Result<Option<std::sync::Arc<catalog::Catalog>>, StoreError> {
    use std::sync::{Arc, LazyLock, Mutex};
    static CACHE: LazyLock<Mutex<BTreeMap<String, Arc<catalog::Catalog>>>> =
        LazyLock::new(Default::default);
    if let Some(found) = CACHE.lock().ok().and_then(|c| c.get(fingerprint).cloned()) {
        return Ok(Some(found));
    }
    let Some(text) = store
        .query(
            "SELECT catalog FROM rule_catalogs WHERE fingerprint = $1",
            vec![fingerprint.into()],
        )
        .await?
        .first()
        .and_then(|row| row[0].text().map(str::to_owned))
    else {
        return Ok(None);
    };
    let catalog: catalog::Catalog = serde_json::from_str(&text)
        .map_err(|e| StoreError::Data(format!("the catalog of rules {fingerprint}: {e}")))?;
    let catalog = Arc::new(catalog);
    if let Ok(mut cache) = CACHE.lock() {
        // A server meets a handful of rules files in its life; a bound all the same.
        if cache.len() >= 64 {
            cache.clear();
        }
        cache.insert(fingerprint.to_owned(), Arc::clone(&catalog));
    }
    Ok(Some(catalog))
}

/// How a changed rules file would move customers between labels and strategies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preview {
    /// Per (group, label): (now, with the new rules, gained, lost).
    pub labels: BTreeMap<(String, String), Change>,
    /// Per strategy: the same, over vehicles with the strategy among their actions.
    pub strategies: BTreeMap<String, Change>,
}

/// Counts before and after.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Change {
    /// Vehicles with it now.
    pub now: u64,
    /// Vehicles with it under the new rules.
    pub new: u64,
    /// Vehicles that would get it.
    pub gained: u64,
    /// Vehicles that would lose it.
    pub lost: u64,
}

impl Preview {
    /// Counts one vehicle: its labels and strategies now (`old`) and under the new rules.
    fn add(&mut self, old: Option<&catalog::Stored>, new: Option<&catalog::Stored>) {
        let labels = |s: Option<&catalog::Stored>| -> std::collections::BTreeSet<(String, String)> {
            s.map(|s| {
                s.labels
                    .iter()
                    .map(|(g, v, _)| (g.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
        };
        let strategies = |s: Option<&catalog::Stored>| -> std::collections::BTreeSet<String> {
            s.map(|s| s.actions.iter().map(|a| a.strategy.clone()).collect())
                .unwrap_or_default()
        };
        let (before, after) = (labels(old), labels(new));
        for key in before.union(&after) {
            let change = self.labels.entry(key.clone()).or_default();
            count(change, before.contains(key), after.contains(key));
        }
        let (before, after) = (strategies(old), strategies(new));
        for key in before.union(&after) {
            let change = self.strategies.entry(key.clone()).or_default();
            count(change, before.contains(key), after.contains(key));
        }
    }
}

fn count(change: &mut Change, before: bool, after: bool) {
    change.now += u64::from(before);
    change.new += u64::from(after);
    change.gained += u64::from(after && !before);
    change.lost += u64::from(before && !after);
}

/// Runs `rules` into the shadow tables and compares them with the labels in force, vehicle
/// by vehicle in one pass over both.
pub async fn preview(store: &Store, rules: &Rules, day: Day) -> Result<Preview, StoreError> {
    engine::relabel_into(store, rules, &PREVIEW, &Scope::All, day, |_| {}).await?;
    let preview = std::sync::Arc::new(std::sync::Mutex::new(Preview::default()));
    let into = std::sync::Arc::clone(&preview);
    store
        .scan(
            "SELECT n.labels, n.sources, n.actions, o.labels, o.sources, o.actions \
             FROM preview_vehicle_labels n LEFT JOIN vehicle_labels o ON o.vin = n.vin \
             UNION ALL SELECT NULL, NULL, NULL, o.labels, o.sources, o.actions FROM vehicle_labels o \
             WHERE NOT EXISTS (SELECT 1 FROM preview_vehicle_labels n WHERE n.vin = o.vin)",
            vec![],
            move |cells| {
                let stored = |first: usize| -> Result<Option<catalog::Stored>, StoreError> {
                    let Some(labels) = cells.text(first)? else {
                        return Ok(None);
                    };
                    let sources = cells.text(first + 1)?.unwrap_or_default();
                    let actions = cells.text(first + 2)?.unwrap_or_default();
                    Ok(Some(catalog::Stored::parse(&labels, &sources, &actions)))
                };
                let (new, old) = (stored(0)?, stored(3)?);
                into.lock()
                    .map_err(|_| StoreError::Worker("preview state poisoned".into()))?
                    .add(old.as_ref(), new.as_ref());
                Ok(())
            },
        )
        .await?;
    let preview = preview
        .lock()
        .map_err(|_| StoreError::Worker("preview state poisoned".into()))?
        .clone();
    Ok(preview)
}

impl fmt::Display for Preview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<24} {:<24} {:>8} {:>8} {:>8} {:>8}",
            "group", "label", "now", "new", "gained", "lost"
        )?;
        for ((group, value), c) in &self.labels {
            writeln!(
                f,
                "{group:<24} {value:<24} {:>8} {:>8} {:>+8} {:>8}",
                c.now,
                c.new,
                c.gained as i64,
                -(c.lost as i64)
            )?;
        }
        writeln!(
            f,
            "\n{:<49} {:>8} {:>8} {:>8} {:>8}",
            "strategy", "now", "new", "gained", "lost"
        )?;
        for (strategy, c) in &self.strategies {
            writeln!(
                f,
                "{strategy:<49} {:>8} {:>8} {:>+8} {:>8}",
                c.now,
                c.new,
                c.gained as i64,
                -(c.lost as i64)
            )?;
        }
        Ok(())
    }
}
