//! Labels and next-best actions for one customer's vehicles, from their features and the
//! population's distributions: pure logic, no I/O.
//!
//! This is the relabel's work done in the server rather than in SQL, with the same answers as
//! [`super::engine`] (a test holds them to it on a generated population): percentile tiers
//! from each part's distribution, exclusive and additive groups, then strategies ranked per
//! customer with channels and contact caps.
//!
//! The population is ranked first, one tier part at a time: the caller yields each vehicle's
//! features in a fixed order (customer by customer), and the assigner keeps a score and a rank
//! per vehicle and tier (16 bytes), not the features. Then the caller streams the vehicles again
//! in the same order, a customer's vehicles together, and gets their labels and actions.

use std::borrow::Cow;

use super::catalog::Catalog;
use super::eval::{Program, Slot, Val, Vehicle};
use super::features::{CONTEXT, FEATURES};
use super::rules::{CHANNELS, Group, LabelRule, Rules};

/// NULL ranks lowest in a tier part, as `COALESCE(feature, -1e18)` does in SQL.
const MISSING: f64 = -1e18;

/// One vehicle's inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    /// The VIN.
    pub vin: String,
    /// Its owner, if known: strategies are ranked and capped per customer.
    pub customer: Option<String>,
    /// Whether it has a device (push needs one).
    pub has_device: bool,
    /// Features by their index in [`FEATURES`]; the text feature `energy` is in `energy`.
    pub features: Vec<Option<f64>>,
    /// The power train.
    pub energy: Option<String>,
    /// The owner's consent per channel of [`CHANNELS`] (all false without an owner).
    pub consents: [bool; CHANNELS.len()],
    /// Contacts the owner had within the contact-cap period.
    pub recent_contacts: u32,
}

impl Subject {
    /// The feature with this index in [`FEATURES`], as a condition reads it.
    pub fn feature(&self, index: usize) -> Val<'_> {
        if index == 0 {
            return self
                .energy
                .as_deref()
                .map_or(Val::Null, |e| Val::Text(Cow::Borrowed(e)));
        }
        self.features
            .get(index)
            .copied()
            .flatten()
            .map_or(Val::Null, Val::Real)
    }
}

/// The labelling-time values: `today`, `current_month`, `current_year`.
pub type Context = [i64; CONTEXT.len()];

/// Where a label came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A percentile tier: the score, how many scored at least as much, of how many.
    Tier {
        /// The weighted sum of the parts' percentile ranks.
        score: f64,
        /// Vehicles scoring at least as much, this one included.
        rank: usize,
        /// The population.
        of: usize,
    },
    /// The rule with this index in its group.
    Rule(usize),
}

/// A label: its index in [`Rules::label_values`], and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// Index into [`Rules::label_values`].
    pub value: usize,
    /// Why.
    pub source: Source,
}

/// Whether a contact is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Within the customer's contact cap.
    Planned,
    /// Beyond it.
    Capped,
    /// No channel with the customer's consent.
    NoChannel,
}

impl Status {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Planned => "planned",
            Status::Capped => "capped",
            Status::NoChannel => "no_channel",
        }
    }
}

/// A next-best action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// Index into [`Rules::strategies`].
    pub strategy: usize,
    /// 1 for the customer's first action.
    pub rank: usize,
    /// Index into [`CHANNELS`].
    pub channel: Option<usize>,
    /// Whether it is planned.
    pub status: Status,
}

/// One vehicle's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Assigned {
    /// Its labels, tiers first, then groups in file order.
    pub labels: Vec<Label>,
    /// Its actions, best first.
    pub actions: Vec<Action>,
}

/// A distribution kept as rank points: up to [`RANK_POINTS`] values, each with how many of
/// the population were below it, and the population's size. A partial relabel ranks its
/// vehicles against the points of the last full relabel, as the full one would have, within
/// one in 4,096 of the population (exactly while there are at most 4,096 distinct values).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Points {
    /// Values, ascending.
    pub values: Vec<f64>,
    /// For each value, how many were below it.
    pub below: Vec<u64>,
    /// The population.
    pub size: u64,
}

/// Most rank points kept per distribution.
pub const RANK_POINTS: usize = 4096;

impl Points {
    /// The points of `sorted` (ascending): every distinct value while there are at most
    /// [`RANK_POINTS`], else every k-th.
    fn of_sorted(sorted: impl Iterator<Item = f64>) -> Points {
        let mut distinct: Vec<(f64, u64)> = Vec::new();
        let mut size = 0;
        for value in sorted {
            if distinct.last().is_none_or(|(last, _)| *last != value) {
                distinct.push((value, size));
            }
            size += 1;
        }
        let m = distinct.len();
        let step = if m <= RANK_POINTS {
            1
        } else {
            m / RANK_POINTS + 1
        };
        let (values, below) = distinct.into_iter().step_by(step).unzip();
        Points {
            values,
            below,
            size,
        }
    }

    /// How many of the population were below `value` (the size when none was at or above it).
    pub fn below(&self, value: f64) -> u64 {
        let at = self.values.partition_point(|v| *v < value);
        self.below.get(at).copied().unwrap_or(self.size)
    }
}

/// How vehicles get their tier scores and ranks.
#[derive(Debug)]
enum Ranks {
    /// Per tier, per vehicle in population order: its score, and how many vehicles scored at
    /// least as much (itself included); with each part's and each score's points.
    Population {
        ranked: Vec<Vec<(f64, u32)>>,
        size: usize,
        parts: Vec<(String, Points)>,
        scores: Vec<Points>,
    },
    /// Per tier, its parts' points and its scores' points, from a full relabel.
    Points {
        parts: Vec<Vec<Option<Points>>>,
        scores: Vec<Option<Points>>,
    },
}

/// Rules compiled for assignment, with the population's distributions.
#[derive(Debug)]
pub struct Assigner {
    rules: Rules,
    context: Context,
    ranks: Ranks,
    groups: Vec<Vec<Program>>,
    strategies: Vec<Program>,
    /// Per strategy, its channels as indices into [`CHANNELS`].
    channels: Vec<Vec<usize>>,
    /// Per label value, its exclusive group's index, if it has one.
    exclusive_of: Vec<Option<usize>>,
    /// Index of each (group, value) pair's label value, per group rule.
    rule_labels: Vec<Vec<usize>>,
    /// Index of each tier level's label value.
    tier_labels: Vec<Vec<usize>>,
    /// Every label's group and value ([`Rules::label_values`]).
    values: Vec<(String, String)>,
    /// How many exclusive groups there are.
    exclusive_count: usize,
    /// The rules in words.
    catalog: Catalog,
}

fn feature_index(name: &str) -> Option<usize> {
    FEATURES.iter().position(|f| f.name == name)
}

fn feature_slot(name: &str) -> Option<Slot> {
    if let Some(i) = feature_index(name) {
        return Some(Slot::Feature(i));
    }
    CONTEXT
        .iter()
        .position(|(c, _)| *c == name)
        .map(Slot::Context)
}

struct Features<'a> {
    subject: &'a Subject,
    context: &'a Context,
}

impl Vehicle for Features<'_> {
    fn get(&self, slot: Slot) -> Val<'_> {
        match slot {
            Slot::Feature(i) => self.subject.feature(i),
            Slot::Context(i) => Val::Int(self.context[i]),
            Slot::Label(_) | Slot::Group(_) => Val::Null,
        }
    }
}

struct Labelled<'a> {
    features: Features<'a>,
    has: &'a [bool],
    /// Per exclusive group, its label value's text.
    groups: &'a [Option<&'a str>],
}

impl Vehicle for Labelled<'_> {
    fn get(&self, slot: Slot) -> Val<'_> {
        match slot {
            Slot::Label(i) => Val::Bool(self.has[i]),
            Slot::Group(i) => self.groups[i].map_or(Val::Null, |g| Val::Text(Cow::Borrowed(g))),
            other => self.features.get(other),
        }
    }
}

/// The value a vehicle ranks by in a tier part: NULL lowest.
pub fn rank_value(feature: Option<f64>) -> f64 {
    feature.unwrap_or(MISSING)
}

/// The column of feature `index` over `subjects`, as [`Assigner::new`] reads it.
pub fn column(subjects: &[Subject], index: usize) -> Vec<f64> {
    subjects
        .iter()
        .map(|s| rank_value(s.features.get(index).copied().flatten()))
        .collect()
}

/// The names tier distributions are kept under: `part:{feature}` and `tier:{group}`.
pub fn part_name(feature: &str) -> String {
    format!("part:{feature}")
}

/// See [`part_name`].
pub fn tier_name(group: &str) -> String {
    format!("tier:{group}")
}

/// Each tier's part features as indices into [`FEATURES`].
pub(crate) fn part_features(rules: &Rules) -> Result<Vec<Vec<usize>>, String> {
    rules
        .tiers
        .iter()
        .map(|tier| {
            tier.parts
                .iter()
                .map(|(feature, _)| {
                    feature_index(feature).ok_or_else(|| format!("no feature {feature}"))
                })
                .collect::<Result<_, _>>()
        })
        .collect()
}

impl Assigner {
    /// Compiles `rules` and ranks the population: `column(feature)` gives every vehicle's
    /// value of that feature (index into [`FEATURES`], NULL as [`rank_value`] has it), always
    /// in the same order, and a vehicle's position in that order is how
    /// [`Assigner::customer`] finds its ranks. Only the tiers' part features are asked for.
    pub fn new(
        rules: &Rules,
        context: Context,
        column: impl Fn(usize) -> Vec<f64> + Sync,
    ) -> Result<Assigner, String> {
        let features = part_features(rules)?;
        let mut parts: Vec<(String, Points)> = Vec::new();
        let mut ranked = Vec::new();
        let mut scores = Vec::new();
        // Tiers rank apart from each other: two threads, half the tiers each.
        let tiers: Vec<(&super::rules::Tier, &Vec<usize>)> =
            rules.tiers.iter().zip(&features).collect();
        let half = tiers.len().div_ceil(2).max(1);
        let column = &column;
        let results: Vec<_> = std::thread::scope(|scope| {
            let workers: Vec<_> = tiers
                .chunks(half)
                .map(|chunk| {
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .map(|(tier, features)| rank_tier(tier, features, column))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect()
        });
        if results.len() != rules.tiers.len() {
            return Err("a tier's ranking failed".to_owned());
        }
        for (tier_ranked, tier_parts, tier_scores) in results {
            for (name, points) in tier_parts {
                if !parts.iter().any(|(n, _)| *n == name) {
                    parts.push((name, points));
                }
            }
            ranked.push(tier_ranked);
            scores.push(tier_scores);
        }
        let size = ranked.first().map_or(0, Vec::len);
        Assigner::compile(
            rules,
            context,
            Ranks::Population {
                ranked,
                size,
                parts,
                scores,
            },
        )
    }

    /// Compiles `rules` to rank vehicles against the distributions of a full relabel
    /// (by [`part_name`] and [`tier_name`]), for a partial relabel: a vehicle's position is
    /// then unused. A distribution not on record ranks everyone at 0, first of one.
    pub fn with_points(
        rules: &Rules,
        context: Context,
        points: &std::collections::HashMap<String, Points>,
    ) -> Result<Assigner, String> {
        let parts = rules
            .tiers
            .iter()
            .map(|tier| {
                tier.parts
                    .iter()
                    .map(|(feature, _)| points.get(&part_name(feature)).cloned())
                    .collect()
            })
            .collect();
        let scores = rules
            .tiers
            .iter()
            .map(|tier| points.get(&tier_name(&tier.group)).cloned())
            .collect();
        Assigner::compile(rules, context, Ranks::Points { parts, scores })
    }

    /// The distributions of a population ranked by [`Assigner::new`], by name, for partial
    /// relabels to rank against; none for an assigner built [`Assigner::with_points`].
    pub fn distributions(&self) -> Vec<(String, &Points)> {
        match &self.ranks {
            Ranks::Population { parts, scores, .. } => parts
                .iter()
                .map(|(name, points)| (name.clone(), points))
                .chain(
                    self.rules
                        .tiers
                        .iter()
                        .zip(scores)
                        .map(|(tier, points)| (tier_name(&tier.group), points)),
                )
                .collect(),
            Ranks::Points { .. } => Vec::new(),
        }
    }

    /// The rules it assigns by.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    fn compile(rules: &Rules, context: Context, ranks: Ranks) -> Result<Assigner, String> {
        let values = rules.label_values();
        let exclusive = rules.exclusive_groups();
        let index_of = |group: &str, value: &str| {
            values
                .iter()
                .position(|(g, v)| *g == group && *v == value)
                .ok_or_else(|| format!("no label {group}={value}"))
        };
        let label_slot = |name: &str| {
            feature_slot(name)
                .or_else(|| values.iter().position(|(_, v)| *v == name).map(Slot::Label))
                .or_else(|| exclusive.iter().position(|g| *g == name).map(Slot::Group))
        };
        Ok(Assigner {
            rules: rules.clone(),
            context,
            ranks,
            groups: per_rule(rules, |_, rule| Program::compile(&rule.when, &feature_slot))?,
            strategies: rules
                .strategies
                .iter()
                .map(|s| Program::compile(&s.when, &label_slot))
                .collect::<Result<_, _>>()?,
            channels: rules
                .strategies
                .iter()
                .map(|s| {
                    s.channels
                        .iter()
                        .filter_map(|c| CHANNELS.iter().position(|k| k == c))
                        .collect()
                })
                .collect(),
            exclusive_of: values
                .iter()
                .map(|(g, _)| exclusive.iter().position(|e| e == g))
                .collect(),
            rule_labels: per_rule(rules, |group, rule| index_of(&group.name, &rule.value))?,
            tier_labels: rules
                .tiers
                .iter()
                .map(|tier| {
                    tier.levels
                        .iter()
                        .map(|(value, _)| index_of(&tier.group, value))
                        .collect::<Result<_, _>>()
                })
                .collect::<Result<_, _>>()?,
            values: values
                .iter()
                .map(|(g, v)| ((*g).to_owned(), (*v).to_owned()))
                .collect(),
            exclusive_count: exclusive.len(),
            catalog: Catalog::of(rules),
        })
    }

    /// What a label says of itself, as a vehicle's page shows it: the rule in words, and the
    /// evidence (the features the rule read, with their values; for a tier its score, rank and
    /// population), from the rules' [`Catalog`].
    pub fn explain(&self, label: &Label, subject: &Subject) -> (String, serde_json::Value) {
        let group = self.values.get(label.value).map_or("", |(g, _)| g.as_str());
        self.catalog
            .explain(group, &label.source, &|name| match feature_index(name)
                .map(|i| subject.feature(i))
            {
                Some(Val::Text(text)) => serde_json::Value::String(text.into_owned()),
                Some(Val::Real(v)) => serde_json::json!(v),
                _ => serde_json::Value::Null,
            })
    }

    /// Its rules' words.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Every label's group and value, by index ([`Rules::label_values`]).
    pub fn label_values(&self) -> &[(String, String)] {
        &self.values
    }

    /// The level a rank gives: a tie takes the position of its last member, so a level never
    /// holds more than its share.
    fn level(&self, tier: usize, rank: usize, of: usize) -> usize {
        let levels = &self.rules.tiers[tier].levels;
        let mut cumulative = 0;
        for (index, (_, share)) in levels.iter().enumerate() {
            cumulative += *share as usize;
            if index + 1 == levels.len() || rank * 100 <= cumulative * of {
                return index;
            }
        }
        levels.len() - 1
    }

    /// A vehicle's score in a tier, how many scored at least as much (itself included), and
    /// of how many.
    fn tier_rank(&self, tier: usize, position: usize, subject: &Subject) -> (f64, usize, usize) {
        match &self.ranks {
            Ranks::Population { ranked, size, .. } => {
                let (score, rank) = ranked[tier][position];
                (score, rank as usize, *size)
            }
            Ranks::Points { parts, scores } => {
                // As the full relabel's PERCENT_RANK would give: the share of the others
                // below; the vehicle's own earlier value may be among the points, hence the
                // cap at n - 1.
                let mut score = 0.0;
                for (part, ((feature, weight), points)) in self.rules.tiers[tier]
                    .parts
                    .iter()
                    .zip(&parts[tier])
                    .enumerate()
                {
                    let value = rank_value(
                        feature_index(feature)
                            .and_then(|i| subject.features.get(i).copied().flatten()),
                    );
                    let share = match points {
                        Some(p) if p.size > 1 => {
                            p.below(value).min(p.size - 1) as f64 / (p.size - 1) as f64
                        }
                        _ => 0.0,
                    };
                    let term = weight * share;
                    score = if part == 0 { term } else { score + term };
                }
                match &scores[tier] {
                    Some(p) => {
                        let rank = p.size.saturating_sub(p.below(score)).max(1);
                        (score, rank as usize, p.size as usize)
                    }
                    None => (score, 1, 1),
                }
            }
        }
    }

    /// The labels of the vehicle at `position` in the population.
    pub fn labels(&self, position: usize, subject: &Subject) -> Vec<Label> {
        let mut labels = Vec::new();
        for tier in 0..self.rules.tiers.len() {
            let (score, rank, of) = self.tier_rank(tier, position, subject);
            labels.push(Label {
                value: self.tier_labels[tier][self.level(tier, rank, of)],
                source: Source::Tier { score, rank, of },
            });
        }
        let features = Features {
            subject,
            context: &self.context,
        };
        for (g, group) in self.rules.groups.iter().enumerate() {
            for (r, program) in self.groups[g].iter().enumerate() {
                if !program.holds(&features) {
                    continue;
                }
                let value = self.rule_labels[g][r];
                if !labels.iter().any(|l| l.value == value) {
                    labels.push(Label {
                        value,
                        source: Source::Rule(r),
                    });
                }
                if group.exclusive {
                    break;
                }
            }
        }
        labels
    }

    /// The labels and ranked actions of one customer's vehicles (or of one vehicle without a
    /// customer), each with its position in the population: strategies are ranked across the
    /// customer's vehicles, best first, and only as many as the contact cap leaves room for
    /// are planned.
    pub fn customer(&self, vehicles: &[(usize, &Subject)]) -> Vec<Assigned> {
        // (priority, strategy name, vin) sorts the customer's actions as SQL ranks them.
        let mut candidates: Vec<(usize, usize, Option<usize>)> = Vec::new();
        let mut out: Vec<Assigned> = Vec::with_capacity(vehicles.len());
        for (v, &(position, subject)) in vehicles.iter().enumerate() {
            let labels = self.labels(position, subject);
            let mut has = vec![false; self.values.len()];
            let mut groups: Vec<Option<&str>> = vec![None; self.exclusive_count];
            for label in &labels {
                has[label.value] = true;
                if let Some(g) = self.exclusive_of[label.value] {
                    groups[g] = Some(&self.values[label.value].1);
                }
            }
            let vehicle = Labelled {
                features: Features {
                    subject,
                    context: &self.context,
                },
                has: &has,
                groups: &groups,
            };
            for (s, program) in self.strategies.iter().enumerate() {
                if program.holds(&vehicle) {
                    let channel = self.channels[s].iter().copied().find(|&c| {
                        subject.consents[c] && (CHANNELS[c] != "push" || subject.has_device)
                    });
                    candidates.push((v, s, channel));
                }
            }
            out.push(Assigned {
                labels,
                actions: Vec::new(),
            });
        }
        let strategies = &self.rules.strategies;
        candidates.sort_by(|a, b| {
            strategies[b.1]
                .priority
                .cmp(&strategies[a.1].priority)
                .then_with(|| strategies[a.1].name.cmp(&strategies[b.1].name))
                .then_with(|| vehicles[a.0].1.vin.cmp(&vehicles[b.0].1.vin))
        });
        let room = (self.rules.settings.max_contacts as usize)
            .saturating_sub(vehicles.first().map_or(0, |s| s.1.recent_contacts as usize));
        let mut with_channel = 0;
        for (rank, (v, strategy, channel)) in candidates.into_iter().enumerate() {
            let status = match channel {
                None => Status::NoChannel,
                Some(_) => {
                    with_channel += 1;
                    if with_channel <= room {
                        Status::Planned
                    } else {
                        Status::Capped
                    }
                }
            };
            out[v].actions.push(Action {
                strategy,
                rank: rank + 1,
                channel,
                status,
            });
        }
        out
    }
}

/// `f` of every rule, by group.
fn per_rule<T>(
    rules: &Rules,
    f: impl Fn(&Group, &LabelRule) -> Result<T, String>,
) -> Result<Vec<Vec<T>>, String> {
    rules
        .groups
        .iter()
        .map(|group| group.rules.iter().map(|rule| f(group, rule)).collect())
        .collect()
}

/// Every vehicle's score and rank in one tier, by sorting rather than by searching: each part
/// is sorted once and walked to give every vehicle its percentile rank, then the scores are
/// sorted once and walked to give the ranks. (A binary search per vehicle and part misses
/// the cache at nearly every step: 15 s for a million vehicles, against about 2 s this way.)
/// Also returns each part's points and the scores' points.
#[allow(clippy::type_complexity)]
fn rank_tier(
    tier: &super::rules::Tier,
    features: &[usize],
    column: &(impl Fn(usize) -> Vec<f64> + Sync),
) -> (Vec<(f64, u32)>, Vec<(String, Points)>, Points) {
    let mut scores: Vec<f64> = Vec::new();
    let mut parts = Vec::new();
    for (part, ((name, weight), &feature)) in tier.parts.iter().zip(features).enumerate() {
        let mut values: Vec<(f64, u32)> = column(feature)
            .into_iter()
            .enumerate()
            .map(|(i, value)| (value, i as u32))
            .collect();
        values.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        parts.push((
            part_name(name),
            Points::of_sorted(values.iter().map(|v| v.0)),
        ));
        let n = values.len();
        if part == 0 {
            scores = vec![0.0; n];
        }
        let mut below = 0;
        for k in 0..n {
            if k > 0 && values[k].0 != values[k - 1].0 {
                below = k;
            }
            // SQL's PERCENT_RANK: the share of the others below; weighted terms are summed in
            // the file's order, so the sums are the same to the last bit as a partial
            // relabel's.
            let term = if n < 2 {
                weight * 0.0
            } else {
                weight * (below as f64 / (n - 1) as f64)
            };
            let score = &mut scores[values[k].1 as usize];
            *score = if part == 0 { term } else { *score + term };
        }
    }
    let n = scores.len();
    let mut order: Vec<(f64, u32)> = scores
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, i as u32))
        .collect();
    order.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let points = Points::of_sorted(order.iter().rev().map(|o| o.0));
    let mut ranked = vec![(0.0, 0); n];
    let mut start = 0;
    while start < n {
        // A tie takes the position of its last member.
        let mut end = start + 1;
        while end < n && order[end].0 == order[start].0 {
            end += 1;
        }
        for &(score, i) in &order[start..end] {
            ranked[i as usize] = (score, end as u32);
        }
        start = end;
    }
    (ranked, parts, points)
}

#[cfg(test)]
mod tests;
