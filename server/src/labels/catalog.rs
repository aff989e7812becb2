//! What labels and actions say of themselves, kept apart from them.
//!
//! A relabel stores one row per vehicle: its labels, and for each label only where it came
//! from (a tier's score and rank, or a rule's position in its group). The words (the rule as
//! written, why, the title of a strategy) live once per rules file in a [`Catalog`], stored
//! under the rules' fingerprint; a vehicle's page renders each label's explanation from the
//! catalog of the rules that labelled it and the vehicle's features.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::assign::Source;
use super::rules::Rules;

/// A tier's words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierEntry {
    /// The tier's group.
    pub group: String,
    /// The rule in words: what it measures and its levels' shares.
    pub rule: String,
}

/// A group rule's words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleEntry {
    /// The label it gives.
    pub value: String,
    /// The condition as written.
    pub rule: String,
    /// Why, in words.
    pub why: String,
    /// The features the condition reads, in order of first use.
    pub features: Vec<String>,
}

/// A label group's words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupEntry {
    /// The group.
    pub name: String,
    /// Its rules, in file order.
    pub rules: Vec<RuleEntry>,
}

/// A strategy's words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyEntry {
    /// Its name.
    pub name: String,
    /// Higher first.
    pub priority: i64,
    /// Its title and condition, as an action's reason.
    pub reason: String,
}

/// Everything a rules file says of its labels and strategies in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// The rules' fingerprint ([`Rules::fingerprint`]).
    pub fingerprint: String,
    /// Percentile tiers.
    pub tiers: Vec<TierEntry>,
    /// Label groups.
    pub groups: Vec<GroupEntry>,
    /// Strategies.
    pub strategies: Vec<StrategyEntry>,
}

impl Catalog {
    /// The catalog of `rules`.
    pub fn of(rules: &Rules) -> Catalog {
        Catalog {
            fingerprint: rules.fingerprint(),
            tiers: rules
                .tiers
                .iter()
                .map(|tier| {
                    let shares: Vec<String> = tier
                        .levels
                        .iter()
                        .map(|(v, s)| format!("{v} {s} %"))
                        .collect();
                    TierEntry {
                        group: tier.group.clone(),
                        rule: format!(
                            "percentile tier by {}: {}",
                            tier.description,
                            shares.join(", ")
                        ),
                    }
                })
                .collect(),
            groups: rules
                .groups
                .iter()
                .map(|group| GroupEntry {
                    name: group.name.clone(),
                    rules: group
                        .rules
                        .iter()
                        .map(|rule| RuleEntry {
                            value: rule.value.clone(),
                            rule: rule.when.text.clone(),
                            why: rule.explain.clone(),
                            features: rule.when.features.iter().map(|f| (*f).to_owned()).collect(),
                        })
                        .collect(),
                })
                .collect(),
            strategies: rules
                .strategies
                .iter()
                .map(|s| StrategyEntry {
                    name: s.name.clone(),
                    priority: s.priority,
                    reason: format!("{}: {}", s.title, s.when.text),
                })
                .collect(),
        }
    }

    /// Every label group, tiers and groups alike, sorted: an export's columns.
    pub fn group_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tiers
            .iter()
            .map(|t| t.group.clone())
            .chain(self.groups.iter().map(|g| g.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The strategy called `name`.
    pub fn strategy(&self, name: &str) -> Option<&StrategyEntry> {
        self.strategies.iter().find(|s| s.name == name)
    }

    /// A label's rule in words and its evidence: for a tier its score, rank and population;
    /// for a rule why, and the features it read with their values (`feature(name)`).
    pub fn explain(
        &self,
        group: &str,
        source: &Source,
        feature: &dyn Fn(&str) -> Value,
    ) -> (String, Value) {
        match source {
            Source::Tier { score, rank, of } => {
                match self.tiers.iter().find(|t| t.group == group) {
                    Some(tier) => (
                        tier.rule.clone(),
                        json!({ "score": score, "rank": rank, "of": of }),
                    ),
                    None => (String::new(), Value::Null),
                }
            }
            Source::Rule(r) => {
                let Some(rule) = self
                    .groups
                    .iter()
                    .find(|g| g.name == group)
                    .and_then(|g| g.rules.get(*r))
                else {
                    return (String::new(), Value::Null);
                };
                let mut evidence = Map::new();
                evidence.insert("why".into(), Value::String(rule.why.clone()));
                for name in &rule.features {
                    evidence.insert(name.clone(), feature(name));
                }
                (rule.rule.clone(), Value::Object(evidence))
            }
        }
    }
}

impl Source {
    /// As stored beside a label: `r{index}` for a rule, `t{score}/{rank}/{of}` for a tier
    /// (the score in Rust's shortest exact decimal, so it reads back bit for bit).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.encode_into(&mut out);
        out
    }

    /// [`Source::encode`], appended to `out`.
    pub fn encode_into(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = match self {
            Source::Rule(r) => write!(out, "r{r}"),
            Source::Tier { score, rank, of } => write!(out, "t{score}/{rank}/{of}"),
        };
    }

    /// Reads back what [`Source::encode`] wrote.
    pub fn decode(text: &str) -> Option<Source> {
        if let Some(index) = text.strip_prefix('r') {
            return index.parse().ok().map(Source::Rule);
        }
        let mut parts = text.strip_prefix('t')?.split('/');
        let score = parts.next()?.parse().ok()?;
        let rank = parts.next()?.parse().ok()?;
        let of = parts.next()?.parse().ok()?;
        parts
            .next()
            .is_none()
            .then_some(Source::Tier { score, rank, of })
    }
}

/// One action as a `vehicle_labels` row stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAction {
    /// 1 for the customer's first action.
    pub rank: i64,
    /// The strategy.
    pub strategy: String,
    /// The channel, if one has the customer's consent.
    pub channel: Option<String>,
    /// planned, capped or no_channel.
    pub status: String,
}

/// A vehicle's labels and actions as a `vehicle_labels` row stores them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stored {
    /// (group, label, where it came from), sorted by group and label.
    pub labels: Vec<(String, String, Option<Source>)>,
    /// Its actions, best first.
    pub actions: Vec<StoredAction>,
}

impl Stored {
    /// Reads the `labels`, `sources` and `actions` columns; a malformed part is skipped.
    pub fn parse(labels: &str, sources: &str, actions: &str) -> Stored {
        let mut sources = sources.split(' ');
        Stored {
            labels: labels
                .split(' ')
                .filter(|l| !l.is_empty())
                .filter_map(|pair| {
                    let source = sources.next().and_then(Source::decode);
                    let (group, value) = pair.split_once('=')?;
                    Some((group.to_owned(), value.to_owned(), source))
                })
                .collect(),
            actions: actions
                .split(' ')
                .filter_map(|action| {
                    let mut parts = action.splitn(4, '/');
                    let rank = parts.next()?.parse().ok()?;
                    let strategy = parts.next()?.to_owned();
                    let channel = parts.next()?;
                    let status = parts.next()?.to_owned();
                    Some(StoredAction {
                        rank,
                        strategy,
                        channel: (channel != "-").then(|| channel.to_owned()),
                        status,
                    })
                })
                .collect(),
        }
    }

    /// The label of `group`, if it has one (the first, for an additive group).
    pub fn label(&self, group: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(g, _, _)| g == group)
            .map(|(_, v, _)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_read_back_bit_for_bit() {
        for source in [
            Source::Rule(0),
            Source::Rule(17),
            Source::Tier {
                score: 0.1 + 0.2,
                rank: 3,
                of: 1_000_000,
            },
            Source::Tier {
                score: -0.0,
                rank: 1,
                of: 1,
            },
        ] {
            assert_eq!(Source::decode(&source.encode()), Some(source.clone()));
        }
        for bad in ["", "r", "rx", "t1/2", "t1/2/3/4", "x1", "t/1/2"] {
            assert_eq!(Source::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn stored_rows_read_back() {
        let stored = Stored::parse(
            "a=x b=y b=z",
            "t0.5/1/2 r0 r3",
            "1/win_back/sms/planned 3/tyres/-/no_channel",
        );
        assert_eq!(stored.labels.len(), 3);
        assert_eq!(
            stored.labels[2],
            ("b".into(), "z".into(), Some(Source::Rule(3)))
        );
        assert_eq!(stored.label("b"), Some("y"));
        assert_eq!(
            stored.actions,
            [
                StoredAction {
                    rank: 1,
                    strategy: "win_back".into(),
                    channel: Some("sms".into()),
                    status: "planned".into()
                },
                StoredAction {
                    rank: 3,
                    strategy: "tyres".into(),
                    channel: None,
                    status: "no_channel".into()
                }
            ]
        );
        assert_eq!(Stored::parse("", "", ""), Stored::default());
    }

    #[test]
    fn the_catalog_explains_in_the_rules_own_words() {
        let rules = Rules::defaults();
        let catalog = Catalog::of(&rules);
        let round: Catalog =
            serde_json::from_str(&serde_json::to_string(&catalog).unwrap()).unwrap();
        assert_eq!(round, catalog);
        let group = &rules.groups[0];
        let (rule, evidence) =
            catalog.explain(&group.name, &Source::Rule(0), &|name| json!(name.len()));
        assert_eq!(rule, group.rules[0].when.text);
        assert_eq!(evidence["why"], json!(group.rules[0].explain));
        for feature in &group.rules[0].when.features {
            assert_eq!(evidence[*feature], json!(feature.len()));
        }
        let tier = &rules.tiers[0];
        let (rule, evidence) = catalog.explain(
            &tier.group,
            &Source::Tier {
                score: 0.5,
                rank: 2,
                of: 4,
            },
            &|_| Value::Null,
        );
        assert!(rule.starts_with("percentile tier by "), "{rule}");
        assert_eq!(evidence, json!({"score": 0.5, "rank": 2, "of": 4}));
        assert_eq!(
            catalog
                .explain("nope", &Source::Rule(0), &|_| Value::Null)
                .1,
            Value::Null
        );
    }
}
