//! The rules file: label groups, percentile tiers and strategies, as a marketer reads and
//! edits them (TOML, conditions in SQL expression syntax).
//!
//! Conditions are parsed by `sqlparser` (maintained by the Apache DataFusion project) and then
//! checked against a closed list of constructs and the catalogue of features: an unknown feature
//! is an error with its line, never a silent zero. A checked condition is one tree
//! (`eval::Node`) with two readings of one meaning: SQL for the database ([`Condition::sql`],
//! what [`super::engine`] runs), and a program the server evaluates per vehicle
//! ([`super::eval::Program`], what [`super::assign`] runs; a test holds the two to the same
//! answers). A general expression
//! engine (zen-engine, cel-interpreter, rhai) was not needed: the language is a small subset
//! of SQL that a marketer already reads, and compiled once it evaluates every rule and
//! strategy of the shipped file for a million vehicles in about 3 s (`assign_bench`).

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use super::eval::Node;
use super::features::{CONTEXT, feature};

/// The rules that ship with drivetag.
pub const DEFAULT_RULES: &str = include_str!("../../rules/default.toml");

/// The contact channels, as written in rules.
pub const CHANNELS: [&str; 6] = ["push", "sms", "wechat", "email", "phone", "mail"];

/// Why a rules file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct RulesError {
    /// The file's name, for messages.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: u32,
    settings: Settings,
    #[serde(default)]
    tiers: Vec<RawTier>,
    #[serde(default)]
    groups: Vec<RawGroup>,
    #[serde(default)]
    strategies: Vec<RawStrategy>,
}

/// Numbers the rules use besides conditions.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Service interval by distance when the vehicle has none, km.
    pub service_interval_km: f64,
    /// Service interval by time when the vehicle has none, months.
    pub service_interval_months: f64,
    /// At most this many contacts per customer per period.
    pub max_contacts: u32,
    /// The contact-cap period, days.
    pub contact_period_days: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    group: toml::Spanned<String>,
    #[serde(default)]
    description: String,
    levels: Vec<RawLevel>,
    parts: Vec<RawPart>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLevel {
    value: toml::Spanned<String>,
    share_pct: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPart {
    feature: toml::Spanned<String>,
    weight: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: toml::Spanned<String>,
    exclusive: bool,
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    value: toml::Spanned<String>,
    when: toml::Spanned<String>,
    #[serde(default)]
    explain: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStrategy {
    name: toml::Spanned<String>,
    title: String,
    when: toml::Spanned<String>,
    priority: i64,
    channels: Vec<toml::Spanned<String>>,
}

/// A percentile tier group.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    /// The group name.
    pub group: String,
    /// What it measures.
    pub description: String,
    /// Levels from the top, with their share of the population in percent (adding to 100).
    pub levels: Vec<(String, u32)>,
    /// Features and weights of the score.
    pub parts: Vec<(&'static str, f64)>,
}

/// A checked condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// As written.
    pub text: String,
    tree: Node<String>,
    /// Features it reads, in order of first use.
    pub features: Vec<&'static str>,
}

/// One rule of a label group.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelRule {
    /// The label it gives.
    pub value: String,
    /// When.
    pub when: Condition,
    /// Why, in words.
    pub explain: String,
}

/// A label group.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// Whether the first rule that holds gives the only label.
    pub exclusive: bool,
    /// Its rules, in order.
    pub rules: Vec<LabelRule>,
}

/// A strategy.
#[derive(Debug, Clone, PartialEq)]
pub struct Strategy {
    /// Its name.
    pub name: String,
    /// What it offers, in words.
    pub title: String,
    /// When it applies (features and labels).
    pub when: Condition,
    /// Higher first.
    pub priority: i64,
    /// Channels in order of preference.
    pub channels: Vec<String>,
}

/// A checked rules file.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Settings.
    pub settings: Settings,
    /// Percentile tiers.
    pub tiers: Vec<Tier>,
    /// Label groups.
    pub groups: Vec<Group>,
    /// Strategies.
    pub strategies: Vec<Strategy>,
}

/// What an identifier in a condition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name<'a> {
    /// A feature ([`super::features::FEATURES`]).
    Feature(&'static str),
    /// A labelling-time value: `today`, `current_month`, `current_year`.
    Context(&'static str),
    /// A label, as yes or no (strategies only).
    Label(&'a str),
    /// An exclusive group or tier, as its text value (strategies only).
    Group(&'a str),
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

struct Source<'a> {
    name: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn error(&self, offset: usize, message: impl Into<String>) -> RulesError {
        let line = self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1;
        RulesError {
            file: self.name.to_owned(),
            line,
            message: message.into(),
        }
    }
}

impl Rules {
    /// A short digest of the rules as parsed (not of the file's layout or comments): equal
    /// rules, equal fingerprints. The labeller compares it with the one of the last full
    /// relabel to know whether the stored labels came from these rules.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("{self:?}").as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The rules that ship with drivetag.
    pub fn defaults() -> Rules {
        Rules::parse(DEFAULT_RULES, "default rules").expect("the shipped rules are valid")
    }

    /// Parses and checks a rules file; `name` is used in errors.
    pub fn parse(text: &str, name: &str) -> Result<Rules, RulesError> {
        let source = Source { name, text };
        let raw: RawFile = toml::from_str(text).map_err(|error| {
            let offset = error.span().map_or(0, |span| span.start);
            source.error(offset, error.message().to_owned())
        })?;
        if raw.version != 1 {
            return Err(source.error(
                0,
                format!(
                    "version {} is unknown; this server reads version 1",
                    raw.version
                ),
            ));
        }
        let mut names: HashMap<String, &'static str> = HashMap::new();
        let claim = |names: &mut HashMap<String, &'static str>,
                     name: &toml::Spanned<String>,
                     what: &'static str|
         -> Result<(), RulesError> {
            let text = name.get_ref();
            if !is_identifier(text) {
                return Err(source.error(
                    name.span().start,
                    format!("{what} {text:?} must be lower-case letters, digits and _"),
                ));
            }
            if feature(text).is_some() || CONTEXT.iter().any(|(c, _)| c == text) {
                return Err(source.error(
                    name.span().start,
                    format!("{what} {text:?} is already the name of a feature"),
                ));
            }
            if let Some(earlier) = names.insert(text.clone(), what) {
                return Err(source.error(
                    name.span().start,
                    format!("{what} {text:?} is already a {earlier}"),
                ));
            }
            Ok(())
        };

        let mut tiers = Vec::new();
        for raw_tier in &raw.tiers {
            claim(&mut names, &raw_tier.group, "group")?;
            let mut levels = Vec::new();
            for level in &raw_tier.levels {
                claim(&mut names, &level.value, "label")?;
                levels.push((level.value.get_ref().clone(), level.share_pct));
            }
            let total: u32 = levels.iter().map(|(_, share)| share).sum();
            if total != 100 || levels.is_empty() {
                return Err(source.error(
                    raw_tier.group.span().start,
                    format!(
                        "the levels of {} add up to {total} %, not 100 %",
                        raw_tier.group.get_ref()
                    ),
                ));
            }
            let mut parts = Vec::new();
            for part in &raw_tier.parts {
                let found = feature(part.feature.get_ref())
                    .filter(|f| !f.text)
                    .ok_or_else(|| source.error(part.feature.span().start, format!(
                        "unknown numeric feature {:?}; see `drivetag-server rules features`", part.feature.get_ref()
                    )))?;
                if !part.weight.is_finite() {
                    return Err(
                        source.error(part.feature.span().start, "a weight must be a number")
                    );
                }
                parts.push((found.name, part.weight));
            }
            if parts.is_empty() {
                return Err(source.error(
                    raw_tier.group.span().start,
                    "a tier needs at least one part",
                ));
            }
            tiers.push(Tier {
                group: raw_tier.group.get_ref().clone(),
                description: raw_tier.description.clone(),
                levels,
                parts,
            });
        }

        let mut exclusive_groups: BTreeSet<String> =
            tiers.iter().map(|t| t.group.clone()).collect();
        let mut groups = Vec::new();
        for raw_group in &raw.groups {
            claim(&mut names, &raw_group.name, "group")?;
            if raw_group.exclusive {
                exclusive_groups.insert(raw_group.name.get_ref().clone());
            }
            let mut rules = Vec::new();
            for rule in &raw_group.rules {
                // A label may appear in several rules of one exclusive group (two ways to get it).
                if !names.contains_key(rule.value.get_ref()) {
                    claim(&mut names, &rule.value, "label")?;
                } else if names.get(rule.value.get_ref()) != Some(&"label") {
                    return Err(source.error(
                        rule.value.span().start,
                        format!("{:?} is already a group", rule.value.get_ref()),
                    ));
                }
                let when = condition(&source, &rule.when, &|name| match name {
                    name if feature(name).is_some() => feature(name).map(|f| Name::Feature(f.name)),
                    name => CONTEXT
                        .iter()
                        .find(|(c, _)| *c == name)
                        .map(|(c, _)| Name::Context(c)),
                })?;
                rules.push(LabelRule {
                    value: rule.value.get_ref().clone(),
                    when,
                    explain: rule.explain.clone(),
                });
            }
            groups.push(Group {
                name: raw_group.name.get_ref().clone(),
                exclusive: raw_group.exclusive,
                rules,
            });
        }

        let labels: BTreeSet<String> = names
            .iter()
            .filter(|(_, what)| **what == "label")
            .map(|(name, _)| name.clone())
            .collect();
        let mut strategies = Vec::new();
        let mut strategy_names = BTreeSet::new();
        for raw_strategy in &raw.strategies {
            let name = raw_strategy.name.get_ref();
            if !is_identifier(name) || !strategy_names.insert(name.clone()) {
                return Err(source.error(
                    raw_strategy.name.span().start,
                    format!("strategy {name:?} must be a unique lower-case name"),
                ));
            }
            let when = condition(&source, &raw_strategy.when, &|name| {
                if let Some(f) = feature(name) {
                    Some(Name::Feature(f.name))
                } else if let Some((c, _)) = CONTEXT.iter().find(|(c, _)| *c == name) {
                    Some(Name::Context(c))
                } else if labels.contains(name) {
                    labels.get(name).map(|l| Name::Label(l.as_str()))
                } else {
                    exclusive_groups.get(name).map(|g| Name::Group(g.as_str()))
                }
            })?;
            let mut channels = Vec::new();
            for channel in &raw_strategy.channels {
                if !CHANNELS.contains(&channel.get_ref().as_str()) {
                    return Err(source.error(
                        channel.span().start,
                        format!(
                            "channel {:?} is not one of {}",
                            channel.get_ref(),
                            CHANNELS.join(", ")
                        ),
                    ));
                }
                channels.push(channel.get_ref().clone());
            }
            if channels.is_empty() {
                return Err(source.error(
                    raw_strategy.name.span().start,
                    "a strategy needs at least one channel",
                ));
            }
            strategies.push(Strategy {
                name: name.clone(),
                title: raw_strategy.title.clone(),
                when,
                priority: raw_strategy.priority,
                channels,
            });
        }
        if raw.settings.max_contacts == 0 || raw.settings.contact_period_days == 0 {
            return Err(source.error(
                0,
                "settings: max_contacts and contact_period_days must be at least 1",
            ));
        }
        Ok(Rules {
            settings: raw.settings,
            tiers,
            groups,
            strategies,
        })
    }

    /// Every label value, tiers first, in file order.
    pub fn label_values(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for tier in &self.tiers {
            out.extend(
                tier.levels
                    .iter()
                    .map(|(value, _)| (tier.group.as_str(), value.as_str())),
            );
        }
        for group in &self.groups {
            for rule in &group.rules {
                if !out
                    .iter()
                    .any(|(g, v)| *g == group.name && *v == rule.value)
                {
                    out.push((group.name.as_str(), rule.value.as_str()));
                }
            }
        }
        out
    }

    /// The exclusive groups and tiers by name.
    pub fn exclusive_groups(&self) -> Vec<&str> {
        self.tiers
            .iter()
            .map(|t| t.group.as_str())
            .chain(
                self.groups
                    .iter()
                    .filter(|g| g.exclusive)
                    .map(|g| g.name.as_str()),
            )
            .collect()
    }
}

/// Parses and checks one condition; `resolve` says what a name is, or that it is unknown.
fn condition<'a>(
    source: &Source<'_>,
    text: &toml::Spanned<String>,
    resolve: &dyn Fn(&str) -> Option<Name<'a>>,
) -> Result<Condition, RulesError> {
    // The condition's first character: `when = "..."` spans include the quote.
    let at = text.span().start + 1;
    let expr = Parser::new(&GenericDialect {})
        .try_with_sql(text.get_ref())
        .and_then(|mut parser| {
            let expr = parser.parse_expr()?;
            parser.expect_token(&sqlparser::tokenizer::Token::EOF)?;
            Ok(expr)
        })
        .map_err(|error| source.error(at, format!("in {:?}: {error}", text.get_ref())))?;
    let in_text = |message: String| source.error(at, format!("in {:?}: {message}", text.get_ref()));
    let tree = Node::parse(&expr).map_err(in_text)?;
    let mut features = Vec::new();
    for name in tree.names() {
        let found = resolve(name).ok_or_else(|| {
            in_text(format!(
                "unknown name {name:?}; features are listed by `drivetag-server rules features`"
            ))
        })?;
        if let Name::Feature(f) = found {
            features.push(f);
        }
    }
    Ok(Condition {
        text: text.get_ref().clone(),
        tree,
        features,
    })
}

impl Condition {
    /// The condition as a tree of names, for [`super::eval::Program::compile`].
    pub(crate) fn tree(&self) -> &Node<String> {
        &self.tree
    }

    /// The condition as SQL, each name replaced by what `resolve` says. Every operation is
    /// parenthesised, and a division by zero is NULL rather than an error.
    pub fn sql(
        &self,
        resolve: &mut dyn FnMut(&str) -> Result<String, String>,
    ) -> Result<String, String> {
        self.tree.sql(resolve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_rules_are_valid_and_cover_the_domain() {
        let rules = Rules::defaults();
        let groups: Vec<&str> = rules.exclusive_groups();
        for group in [
            "consumption_ability",
            "consumption_status",
            "consumption_quality",
            "promotion_sensitivity",
            "lifecycle",
            "distance",
            "style",
        ] {
            assert!(groups.contains(&group), "{group}");
        }
        let values: Vec<&str> = rules.label_values().iter().map(|(_, v)| *v).collect();
        for value in [
            "apple_blossom",
            "green_apple",
            "yellow_apple",
            "red_apple",
            "golden_apple",
            "lost",
            "within_3km",
            "out_of_town",
            "commuter",
            "long_distance",
            "night_driver",
            "weekend_leisure",
            "high_utilisation",
            "aggressive",
            "smooth",
            "normal",
            "service_due",
            "warranty_ending",
        ] {
            assert!(values.contains(&value), "{value}");
        }
        let strategies: Vec<&str> = rules.strategies.iter().map(|s| s.name.as_str()).collect();
        for strategy in [
            "maintenance_reminder",
            "insurance_safe_driver",
            "brake_tyre_check",
            "extended_warranty",
            "trade_in",
            "win_back",
            "ev_package",
            "road_trip_check",
            "referral_programme",
            "accessories",
            "care_membership",
        ] {
            assert!(strategies.contains(&strategy), "{strategy}");
        }
        assert_eq!(rules.settings.service_interval_km, 5000.0);
        assert_eq!(
            rules.tiers[0].levels,
            [
                ("ability_strong".to_owned(), 30),
                ("ability_medium".to_owned(), 40),
                ("ability_poor".to_owned(), 30)
            ]
        );
    }

    fn error_of(text: &str) -> RulesError {
        Rules::parse(text, "r.toml").unwrap_err()
    }

    const HEAD: &str = "version = 1\n[settings]\nservice_interval_km = 5000\nservice_interval_months = 6\nmax_contacts = 2\ncontact_period_days = 30\n";

    #[test]
    fn an_unknown_feature_is_an_error_with_its_line() {
        let text = format!(
            "{HEAD}[[groups]]\nname = \"usage\"\nexclusive = false\nrules = [\n  {{ value = \"commuter\", when = \"km_30d > 10\" }},\n  {{ value = \"nocturnal\", when = \"night_km > 10\" }},\n]\n"
        );
        let error = error_of(&text);
        assert_eq!(error.line, 12, "{error}");
        assert!(error.message.contains("night_km"), "{error}");
    }

    #[test]
    fn syntax_errors_and_forbidden_constructs_name_the_line() {
        let text = format!(
            "{HEAD}[[groups]]\nname = \"g\"\nexclusive = true\nrules = [{{ value = \"v\", when = \"km_30d >\" }}]\n"
        );
        assert_eq!(error_of(&text).line, 10);
        let text = format!(
            "{HEAD}[[groups]]\nname = \"g\"\nexclusive = true\nrules = [{{ value = \"v\", when = \"km_30d > (SELECT 1)\" }}]\n"
        );
        let error = error_of(&text);
        assert!(error.message.contains("not allowed"), "{error}");
        let text = format!(
            "{HEAD}[[groups]]\nname = \"g\"\nexclusive = true\nrules = [{{ value = \"v\", when = \"km_30d > 1; DROP TABLE customers\" }}]\n"
        );
        assert!(Rules::parse(&text, "r.toml").is_err());
    }

    #[test]
    fn tier_shares_must_add_up_and_names_must_be_unique() {
        let text = format!(
            "{HEAD}[[tiers]]\ngroup = \"t\"\nlevels = [{{ value = \"a\", share_pct = 30 }}, {{ value = \"b\", share_pct = 60 }}]\nparts = [{{ feature = \"km_30d\", weight = 1.0 }}]\n"
        );
        assert!(error_of(&text).message.contains("90 %"));
        let text = format!("{HEAD}[[groups]]\nname = \"km_30d\"\nexclusive = true\nrules = []\n");
        assert!(error_of(&text).message.contains("feature"));
        let text = format!(
            "{HEAD}[[tiers]]\ngroup = \"t\"\nlevels = [{{ value = \"a\", share_pct = 100 }}]\nparts = [{{ feature = \"energy\", weight = 1.0 }}]\n"
        );
        assert!(error_of(&text).message.contains("numeric"));
    }

    #[test]
    fn unknown_keys_and_channels_are_errors() {
        let error = error_of(&format!("{HEAD}colour = \"red\"\n"));
        assert!(error.message.contains("colour"), "{error}");
        let text = format!(
            "{HEAD}[[strategies]]\nname = \"s\"\ntitle = \"S\"\nwhen = \"km_30d > 1\"\npriority = 1\nchannels = [\"pigeon\"]\n"
        );
        let error = error_of(&text);
        assert_eq!(error.line, 12);
        assert!(error.message.contains("pigeon"));
    }

    #[test]
    fn conditions_compile_to_sql_with_safe_division() {
        let text = format!(
            "{HEAD}[[groups]]\nname = \"g\"\nexclusive = true\nrules = [{{ value = \"v\", when = \"km_30d / trips_30d >= 20 AND energy IN ('ev', 'phev') AND NOT (referrals BETWEEN 1 AND 3) AND birthday_month = current_month\" }}]\n"
        );
        let rules = Rules::parse(&text, "r.toml").unwrap();
        let condition = &rules.groups[0].rules[0].when;
        assert_eq!(
            condition.features,
            [
                "km_30d",
                "trips_30d",
                "energy",
                "referrals",
                "birthday_month"
            ]
        );
        let sql = condition.sql(&mut |name| Ok(format!("p.{name}"))).unwrap();
        assert_eq!(
            sql,
            "(((((p.km_30d / NULLIF(p.trips_30d, 0)) >= 20) AND (p.energy IN ('ev', 'phev'))) AND (NOT (p.referrals BETWEEN 1 AND 3))) AND (p.birthday_month = p.current_month))"
        );
    }
}
