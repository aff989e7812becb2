//! The SQL engine drivetag labelled with before the assigner, kept as the test's oracle: the
//! same rules compiled to SQL over `profiles`, for a whole population, into tables of its own.
//! A label per row with its rule and evidence, an action per row.

use crate::labels::engine::Day;
use crate::labels::features::feature;
use crate::labels::rules::{Condition, Rules};
use crate::store::{Dialect, Statement, Value};

/// The oracle's tables, created by [`create`].
#[derive(Debug, Clone, Copy)]
pub struct Tables {
    pub profiles: &'static str,
    pub tier_scores: &'static str,
    pub labels: &'static str,
    pub actions: &'static str,
}

pub const ORACLE: Tables = Tables {
    profiles: "profiles",
    tier_scores: "oracle_tier_scores",
    labels: "oracle_labels",
    actions: "oracle_actions",
};

/// Its tables.
pub fn create() -> Vec<Statement> {
    [
        "CREATE TABLE oracle_tier_scores (vin TEXT NOT NULL, grp TEXT NOT NULL, score REAL NOT NULL, PRIMARY KEY (vin, grp))",
        "CREATE TABLE oracle_labels (vin TEXT NOT NULL, grp TEXT NOT NULL, value TEXT NOT NULL, rule TEXT NOT NULL, \
         evidence TEXT NOT NULL, labelled_day INTEGER NOT NULL, PRIMARY KEY (vin, grp, value))",
        "CREATE TABLE oracle_actions (vin TEXT NOT NULL, customer_id TEXT, strategy TEXT NOT NULL, priority INTEGER NOT NULL, \
         rank INTEGER NOT NULL, channel TEXT, status TEXT NOT NULL, reason TEXT NOT NULL, labelled_day INTEGER NOT NULL, \
         PRIMARY KEY (vin, strategy))",
    ]
    .into_iter()
    .map(|sql| Statement::new(sql, vec![]))
    .collect()
}

/// Every statement of a full relabel's tiers, groups and strategies, in order.
pub fn statements(rules: &Rules, dialect: Dialect, day: Day) -> Vec<Statement> {
    let t = &ORACLE;
    let mut out = tier_statements(rules, t, day);
    out.extend(group_statements(rules, t, day));
    out.extend(strategy_statements(rules, t, dialect, day));
    out
}

fn sql_text(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn json_text(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A label's evidence as SQL text building JSON: the features the rule read, their values.
fn evidence(condition: &Condition, why: &str) -> String {
    let mut parts = vec![format!(
        "'{{\"why\":\"{}\"'",
        json_text(why).replace('\'', "''")
    )];
    for name in &condition.features {
        let is_text = feature(name).is_some_and(|f| f.text);
        let value = if is_text {
            format!("COALESCE('\"' || p.{name} || '\"', 'null')")
        } else {
            format!("COALESCE(CAST(p.{name} AS TEXT), 'null')")
        };
        parts.push(format!("',\"{name}\":' || {value}"));
    }
    parts.push("'}'".to_owned());
    parts.join(" || ")
}

/// A condition as SQL over features in `alias`, with labelling-time values filled in; with
/// `labels`, label names are columns of `alias` too (strategies), else errors (labels).
fn condition_sql(condition: &Condition, day: Day, alias: &str, labels: bool) -> String {
    condition
        .sql(&mut |name| {
            Ok(match name {
                "today" => day.number.to_string(),
                "current_month" => day.month.to_string(),
                "current_year" => day.year.to_string(),
                name if feature(name).is_some() => format!("{alias}.{name}"),
                // Strategies only: labels were checked at load.
                name if labels => format!("{alias}.{name}"),
                name => return Err(format!("unknown name {name}")),
            })
        })
        .unwrap_or_else(|_| "(1 = 0)".to_owned())
}

/// Tier scores and tier labels, by window functions over the whole population.
fn tier_statements(rules: &Rules, t: &Tables, day: Day) -> Vec<Statement> {
    let (profiles, tier_scores, labels) = (t.profiles, t.tier_scores, t.labels);
    let mut out = Vec::new();
    // A missing value ranks lowest.
    let low = "-1e18";
    for tier in &rules.tiers {
        let group = sql_text(&tier.group);
        let terms: Vec<String> = tier
            .parts
            .iter()
            .map(|(f, w)| format!("({w}) * PERCENT_RANK() OVER (ORDER BY COALESCE({f}, {low}))"))
            .collect();
        out.push(Statement::new(
            format!(
                "INSERT INTO {tier_scores} (vin, grp, score) SELECT vin, {group}, {} FROM {profiles}",
                terms.join(" + ")
            ),
            vec![],
        ));
        // Levels by position among the population, best first. A tie takes the position of
        // its last member.
        let mut cumulative = 0;
        let mut cases = Vec::new();
        for (index, (value, share)) in tier.levels.iter().enumerate() {
            cumulative += share;
            if index + 1 == tier.levels.len() {
                cases.push(format!("ELSE {}", sql_text(value)));
            } else {
                cases.push(format!(
                    "WHEN r * 100 <= {cumulative} * n THEN {}",
                    sql_text(value)
                ));
            }
        }
        let shares: Vec<String> = tier
            .levels
            .iter()
            .map(|(v, s)| format!("{v} {s} %"))
            .collect();
        let rule = sql_text(&format!(
            "percentile tier by {}: {}",
            tier.description,
            shares.join(", ")
        ));
        let ranked = format!(
            "SELECT vin, score, COUNT(*) OVER (ORDER BY score DESC) AS r, COUNT(*) OVER () AS n \
             FROM {tier_scores} WHERE grp = {group}"
        );
        out.push(Statement::new(
            format!(
                "INSERT INTO {labels} (vin, grp, value, rule, evidence, labelled_day) \
                 SELECT vin, {group}, CASE {} END, {rule}, \
                 '{{\"score\":' || CAST(score AS TEXT) || ',\"rank\":' || CAST(r AS TEXT) || ',\"of\":' || CAST(n AS TEXT) || '}}', $1 \
                 FROM ({ranked}) ranked",
                cases.join(" ")
            ),
            vec![day.number.into()],
        ));
    }
    out
}

/// Step 3: label groups.
fn group_statements(rules: &Rules, t: &Tables, day: Day) -> Vec<Statement> {
    let (profiles, labels) = (t.profiles, t.labels);
    let mut out = Vec::new();
    let (select, params) = ("1 = 1", Vec::<Value>::new());
    let day_param = params.len() + 1;
    let with_day = |mut p: Vec<Value>| {
        p.push(day.number.into());
        p
    };
    for group in &rules.groups {
        let name = sql_text(&group.name);
        if group.exclusive {
            let mut values = Vec::new();
            let mut texts = Vec::new();
            let mut evidences = Vec::new();
            for rule in &group.rules {
                let when = condition_sql(&rule.when, day, "p", false);
                values.push(format!("WHEN {when} THEN {}", sql_text(&rule.value)));
                texts.push(format!("WHEN {when} THEN {}", sql_text(&rule.when.text)));
                evidences.push(format!(
                    "WHEN {when} THEN {}",
                    evidence(&rule.when, &rule.explain)
                ));
            }
            out.push(Statement::new(
                format!(
                    "INSERT INTO {labels} (vin, grp, value, rule, evidence, labelled_day) \
                     SELECT vin, {name}, value, rule, evidence, ${day_param} FROM ( \
                     SELECT p.vin, CASE {} END AS value, CASE {} END AS rule, CASE {} END AS evidence \
                     FROM {profiles} p WHERE {select}) x WHERE value IS NOT NULL",
                    values.join(" "),
                    texts.join(" "),
                    evidences.join(" ")
                ),
                with_day(params.clone()),
            ));
        } else {
            for rule in &group.rules {
                out.push(Statement::new(
                    format!(
                        "INSERT INTO {labels} (vin, grp, value, rule, evidence, labelled_day) \
                         SELECT p.vin, {name}, {}, {}, {}, ${day_param} FROM {profiles} p \
                         WHERE {select} AND {} ON CONFLICT DO NOTHING",
                        sql_text(&rule.value),
                        sql_text(&rule.when.text),
                        evidence(&rule.when, &rule.explain),
                        condition_sql(&rule.when, day, "p", false),
                    ),
                    with_day(params.clone()),
                ));
            }
        }
    }
    out
}

/// Step 4: strategies as ranked next-best actions.
fn strategy_statements(rules: &Rules, t: &Tables, dialect: Dialect, day: Day) -> Vec<Statement> {
    let (profiles, labels, actions) = (t.profiles, t.labels, t.actions);
    let (select, params) = ("1 = 1", Vec::<Value>::new());
    let pivot_scope = "1 = 1";
    // The labels pivot to one row per vehicle as bit masks (62 labels to a mask): one
    // aggregate per row instead of one per label value, which made the pivot the slowest part
    // of a full relabel.
    let values = rules.label_values();
    let bit = |index: usize| (format!("l.m{}", index / 62), 1_i64 << (index % 62));
    let aggregate = match dialect {
        Dialect::Sqlite => "SUM",
        Dialect::Postgres => "BIT_OR",
    };
    let mut masks = Vec::new();
    for (chunk, pairs) in values.chunks(62).enumerate() {
        let mut by_group: Vec<(&str, Vec<String>)> = Vec::new();
        for (offset, (group, value)) in pairs.iter().enumerate() {
            let when = format!(
                "WHEN {} THEN {}",
                sql_text(value),
                bit(chunk * 62 + offset).1
            );
            match by_group.iter_mut().find(|(g, _)| g == group) {
                Some((_, whens)) => whens.push(when),
                None => by_group.push((group, vec![when])),
            }
        }
        let cases: Vec<String> = by_group
            .iter()
            .map(|(group, whens)| {
                format!(
                    "WHEN {} THEN CASE value {} ELSE 0 END",
                    sql_text(group),
                    whens.join(" ")
                )
            })
            .collect();
        masks.push(format!(
            "{aggregate}(CAST(CASE grp {} ELSE 0 END AS BIGINT)) AS m{chunk}",
            cases.join(" ")
        ));
    }
    let pivot = format!(
        "SELECT vin, {} FROM {labels} WHERE {pivot_scope} GROUP BY vin",
        masks.join(", ")
    );
    let has = |index: usize| {
        let (mask, bit) = bit(index);
        format!("(({mask} & {bit}) <> 0)")
    };
    let mut label_columns = Vec::new();
    for group in rules.exclusive_groups() {
        let whens: Vec<String> = values
            .iter()
            .enumerate()
            .filter(|(_, (g, _))| *g == group)
            .map(|(index, (_, value))| format!("WHEN {} THEN {}", has(index), sql_text(value)))
            .collect();
        label_columns.push(format!("CASE {} END AS {group}", whens.join(" ")));
    }
    for (index, (_, value)) in values.iter().enumerate() {
        label_columns.push(format!("{} AS {value}", has(index)));
    }
    let settings = &rules.settings;
    let room = format!(
        "{} - (SELECT COUNT(*) FROM campaign_responses cr WHERE cr.customer_id = p.customer_id AND cr.sent_day > {})",
        settings.max_contacts,
        day.number - i64::from(settings.contact_period_days)
    );
    let mut channels: Vec<&str> = Vec::new();
    for strategy in &rules.strategies {
        for channel in &strategy.channels {
            if !channels.contains(&channel.as_str()) {
                channels.push(channel);
            }
        }
    }
    // Every strategy reads one row per vehicle holding its features, its labels as columns,
    // its owner's consents and contact room: built once, then filtered per strategy.
    let mut base_columns = vec!["p.*".to_owned(), format!("{room} AS room")];
    base_columns.extend(
        channels
            .iter()
            .map(|channel| format!("c.{channel}_opt_in AS {channel}_opt_in")),
    );
    base_columns.extend(label_columns);
    let base = format!(
        "SELECT {} FROM l JOIN {profiles} p ON p.vin = l.vin LEFT JOIN customers c ON c.id = p.customer_id \
         WHERE {select}",
        base_columns.join(", ")
    );
    let mut parts = Vec::new();
    for strategy in &rules.strategies {
        let channel: Vec<String> = strategy
            .channels
            .iter()
            .map(|channel| {
                let consent = format!("b.{channel}_opt_in");
                let test = if channel == "push" {
                    format!("b.device_id IS NOT NULL AND {consent}")
                } else {
                    consent
                };
                format!("WHEN {test} THEN {}", sql_text(channel))
            })
            .collect();
        parts.push(format!(
            "SELECT b.vin, b.customer_id, {} AS strategy, {} AS priority, CASE {} END AS channel, b.room, {} AS reason \
             FROM b WHERE {}",
            sql_text(&strategy.name),
            strategy.priority,
            channel.join(" "),
            sql_text(&format!("{}: {}", strategy.title, strategy.when.text)),
            condition_sql(&strategy.when, day, "b", true),
        ));
    }
    let mut statements = Vec::new();
    if parts.is_empty() {
        return statements;
    }
    let day_param = params.len() + 1;
    let mut all = params;
    all.push(day.number.into());
    statements.push(Statement::new(
        format!(
            "INSERT INTO {actions} (vin, customer_id, strategy, priority, rank, channel, status, reason, labelled_day) \
             WITH l AS ({pivot}), b AS MATERIALIZED ({base}) \
             SELECT vin, customer_id, strategy, priority, rank, channel, \
                 CASE WHEN channel IS NULL THEN 'no_channel' WHEN channel_rank <= room THEN 'planned' ELSE 'capped' END, \
                 reason, ${day_param} \
             FROM (SELECT a.*, \
                 ROW_NUMBER() OVER (PARTITION BY COALESCE(a.customer_id, a.vin) ORDER BY a.priority DESC, a.strategy) AS rank, \
                 ROW_NUMBER() OVER (PARTITION BY COALESCE(a.customer_id, a.vin), CASE WHEN a.channel IS NULL THEN 1 ELSE 0 END \
                     ORDER BY a.priority DESC, a.strategy) AS channel_rank \
                 FROM ({}) a) ranked",
            parts.join(" UNION ALL ")
        ),
        all,
    ));
    statements
}
