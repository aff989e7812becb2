//! Customer labels and aftermarket strategies, from rules a dealer can read and change.
//!
//! * [`rules`]: the rules file (label groups, percentile tiers, strategies), checked at load.
//! * [`features`]: the per-vehicle features rules may use, built in the database.
//! * [`engine`]: rules compiled to SQL; full and partial relabels.
//! * [`eval`]: conditions evaluated in the server, one vehicle at a time, with SQL's meaning.
//! * [`assign`]: a customer's labels and next-best actions from features and distributions.

pub mod assign;
pub mod engine;
pub mod eval;
pub mod features;
pub mod rules;

use std::collections::BTreeMap;
use std::fmt;

use crate::store::{Store, StoreError, Value};
use engine::{Day, PREVIEW, Scope};
use rules::Rules;

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

async fn counts(
    store: &Store,
    sql: &'static str,
) -> Result<Vec<(String, String, u64)>, StoreError> {
    Ok(store
        .query(sql, vec![])
        .await?
        .into_iter()
        .map(|row| {
            (
                row[0].text().unwrap_or_default().to_owned(),
                row.get(1)
                    .and_then(Value::text)
                    .unwrap_or_default()
                    .to_owned(),
                row.last().and_then(Value::int).unwrap_or(0) as u64,
            )
        })
        .collect())
}

/// Runs `rules` into the shadow tables and compares them with the labels in force.
pub async fn preview(store: &Store, rules: &Rules, day: Day) -> Result<Preview, StoreError> {
    engine::relabel_into(store, rules, &PREVIEW, &Scope::All, day, |_| {}).await?;
    let mut preview = Preview::default();
    for (group, value, n) in counts(
        store,
        "SELECT grp, value, COUNT(*) FROM labels GROUP BY grp, value",
    )
    .await?
    {
        preview.labels.entry((group, value)).or_default().now = n;
    }
    for (group, value, n) in counts(
        store,
        "SELECT grp, value, COUNT(*) FROM preview_labels GROUP BY grp, value",
    )
    .await?
    {
        preview.labels.entry((group, value)).or_default().new = n;
    }
    for (group, value, n) in counts(
        store,
        "SELECT n.grp, n.value, COUNT(*) FROM preview_labels n LEFT JOIN labels o \
         ON o.vin = n.vin AND o.grp = n.grp AND o.value = n.value WHERE o.vin IS NULL GROUP BY n.grp, n.value",
    )
    .await?
    {
        preview.labels.entry((group, value)).or_default().gained = n;
    }
    for (group, value, n) in counts(
        store,
        "SELECT o.grp, o.value, COUNT(*) FROM labels o LEFT JOIN preview_labels n \
         ON o.vin = n.vin AND o.grp = n.grp AND o.value = n.value WHERE n.vin IS NULL GROUP BY o.grp, o.value",
    )
    .await?
    {
        preview.labels.entry((group, value)).or_default().lost = n;
    }
    for (strategy, _, n) in counts(
        store,
        "SELECT strategy, COUNT(*) FROM actions GROUP BY strategy",
    )
    .await?
    {
        preview.strategies.entry(strategy).or_default().now = n;
    }
    for (strategy, _, n) in counts(
        store,
        "SELECT strategy, COUNT(*) FROM preview_actions GROUP BY strategy",
    )
    .await?
    {
        preview.strategies.entry(strategy).or_default().new = n;
    }
    for (strategy, _, n) in counts(
        store,
        "SELECT n.strategy, COUNT(*) FROM preview_actions n LEFT JOIN actions o \
         ON o.vin = n.vin AND o.strategy = n.strategy WHERE o.vin IS NULL GROUP BY n.strategy",
    )
    .await?
    {
        preview.strategies.entry(strategy).or_default().gained = n;
    }
    for (strategy, _, n) in counts(
        store,
        "SELECT o.strategy, COUNT(*) FROM actions o LEFT JOIN preview_actions n \
         ON o.vin = n.vin AND o.strategy = n.strategy WHERE n.vin IS NULL GROUP BY o.strategy",
    )
    .await?
    {
        preview.strategies.entry(strategy).or_default().lost = n;
    }
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
