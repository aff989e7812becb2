//! Relabelling: rules compiled to SQL and run by the database, for every vehicle or for the
//! ones whose data changed.
//!
//! A relabel runs in five reported steps of one transaction: profiles (the features), tier
//! scores and tiers, label groups, strategies, and each vehicle's labels and first action in
//! one row (what lists and exports read). Percentile tiers rank the whole population with window
//! functions, and a full relabel keeps each distribution as rank points (`rank_points`); a
//! partial relabel ranks its vehicles against those points with one index probe each, so its
//! cost does not grow with the population. For the same data both give the same tier while a
//! distribution has at most 4,096 distinct values, and within one in 4,096 of the population
//! beyond. On PostgreSQL relabels run one at a time (`Isolation::Snapshot`).

use super::features::{FEATURES, PROFILES_SQL, feature};
use super::rules::{Condition, Rules};
use crate::store::{Dialect, Isolation, Statement, Store, StoreError, Value};

/// The tables a relabel writes: the live ones, or the shadow ones of a preview.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tables {
    /// Features.
    pub profiles: &'static str,
    /// Tier scores.
    pub tier_scores: &'static str,
    /// Labels.
    pub labels: &'static str,
    /// Next-best actions.
    pub actions: &'static str,
    /// Every vehicle's labels in one row.
    pub vehicle_labels: &'static str,
    /// The distributions a partial relabel ranks against.
    pub rank_points: &'static str,
}

/// The tables in force.
pub const LIVE: Tables = Tables {
    profiles: "profiles",
    tier_scores: "tier_scores",
    labels: "labels",
    actions: "actions",
    vehicle_labels: "vehicle_labels",
    rank_points: "rank_points",
};

/// The shadow tables of `rules check`.
pub const PREVIEW: Tables = Tables {
    profiles: "preview_profiles",
    tier_scores: "preview_tier_scores",
    labels: "preview_labels",
    actions: "preview_actions",
    vehicle_labels: "preview_vehicle_labels",
    rank_points: "preview_rank_points",
};

/// Which vehicles to relabel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every vehicle in the registry.
    All,
    /// One vehicle.
    Vin(String),
    /// Vehicles whose agents sent something since this time (UTC seconds).
    ReceivedSince(i64),
}

/// The labelling day: what "today" is for a relabel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day {
    /// Days since 1970-01-01.
    pub number: i64,
    /// Its year.
    pub year: i64,
    /// Its month, 1-12.
    pub month: i64,
}

impl Day {
    /// The day `number` days after 1970-01-01.
    pub fn from_number(number: i64) -> Day {
        let date = jiff::civil::date(1970, 1, 1)
            .checked_add(jiff::Span::new().days(number))
            .unwrap_or(jiff::civil::date(1970, 1, 1));
        Day {
            number,
            year: i64::from(date.year()),
            month: i64::from(date.month()),
        }
    }

    /// Today, UTC.
    pub fn today() -> Day {
        let seconds = jiff::Timestamp::now().as_second();
        Day::from_number(seconds.div_euclid(86_400))
    }

    /// Today in the dealer's time zone (the agents' zone, in which their days are counted).
    pub fn today_in(zone: &str) -> Day {
        match jiff::tz::TimeZone::get(zone) {
            Ok(tz) => Day::of_date(jiff::Timestamp::now().to_zoned_datetime(tz).date()),
            Err(_) => Day::today(),
        }
    }

    /// The day of a calendar date.
    pub fn of_date(date: jiff::civil::Date) -> Day {
        Day::from_number(i64::from((date - jiff::civil::date(1970, 1, 1)).get_days()))
    }
}

/// One finished step of a relabel, for progress output.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// 1-based step number.
    pub number: usize,
    /// Steps in all.
    pub of: usize,
    /// What it did.
    pub name: &'static str,
    /// Rows it wrote.
    pub rows: u64,
    /// How long it took, seconds.
    pub seconds: f64,
}

fn sql_text(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn json_text(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The SQL condition selecting the vehicles in scope, on a column `column`, with its parameter
/// (numbered `$n`).
fn scope_sql(scope: &Scope, column: &str, n: usize) -> (String, Vec<Value>) {
    match scope {
        Scope::All => ("1 = 1".to_owned(), vec![]),
        Scope::Vin(vin) => (format!("{column} = ${n}"), vec![vin.clone().into()]),
        Scope::ReceivedSince(since) => (
            format!(
                "{column} IN (SELECT vin FROM vehicles WHERE device_id IN \
                 (SELECT device_id FROM envelopes WHERE received_s >= ${n}))"
            ),
            vec![(*since).into()],
        ),
    }
}

/// Deletes the rows of the vehicles in scope from `table`; everything, without a condition,
/// for a full relabel (SQLite then empties the table at once instead of row by row).
fn delete_from(table: &str, scope: &Scope) -> Statement {
    match scope {
        Scope::All => Statement::new(format!("DELETE FROM {table}"), vec![]),
        _ => {
            let (condition, params) = scope_sql(scope, "vin", 1);
            Statement::new(format!("DELETE FROM {table} WHERE {condition}"), params)
        }
    }
}

fn real(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "REAL",
        Dialect::Postgres => "DOUBLE PRECISION",
    }
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

/// Step 1: profiles.
fn profile_statements(
    rules: &Rules,
    t: &Tables,
    dialect: Dialect,
    scope: &Scope,
    day: Day,
) -> Vec<Statement> {
    let (select, mut params) = scope_sql(scope, "v.vin", 5);
    let mut all = vec![
        day.number.into(),
        day.year.into(),
        rules.settings.service_interval_km.into(),
        rules.settings.service_interval_months.into(),
    ];
    all.append(&mut params);
    // The aggregates over visits, responses, days and places read only the vehicles in scope:
    // a vehicle's partial relabel otherwise aggregated every vehicle's rows first (3.6-3.9 s
    // at 1,000,000). A full relabel reads everything anyway, without the semi-joins.
    let within = |column: &str, of: &str| match scope {
        Scope::All => "1 = 1".to_owned(),
        _ => {
            let (inner, _) = scope_sql(scope, "v2.vin", 5);
            format!("{column} IN (SELECT v2.{of} FROM vehicles v2 WHERE {inner})")
        }
    };
    let sql = PROFILES_SQL
        .replace("{real}", real(dialect))
        .replace("{scope_vin}", &within("vin", "vin"))
        .replace("{scope_customer}", &within("customer_id", "customer_id"))
        .replace("{scope_device}", &within("device_id", "device_id"))
        .replace("{scope_s_device}", &within("s.device_id", "device_id"))
        .replace("{scope}", &select)
        .replace("{profiles}", t.profiles);
    vec![delete_from(t.profiles, scope), Statement::new(sql, all)]
}

/// Most rank points kept per distribution.
const RANK_POINTS: usize = 4096;

/// The value of the rank point that holds a distribution's size.
const SIZE_POINT: &str = "1e308";

/// Writes the rank points of the values of `expr` in `from` (with `where_` applied) under
/// `name`: every distinct value while there are at most [`RANK_POINTS`] of them, else every
/// k-th, each with how many rows are below it, and the size at [`SIZE_POINT`].
fn rank_points(table: &str, name: &str, expr: &str, from: &str, where_: &str) -> Statement {
    let name = sql_text(name);
    Statement::new(
        format!(
            "INSERT INTO {table} (name, value, below) \
             SELECT {name}, v, below FROM ( \
               SELECT v, below, ROW_NUMBER() OVER (ORDER BY v) AS i, COUNT(*) OVER () AS m FROM ( \
                 SELECT v, CAST(SUM(c) OVER (ORDER BY v) - c AS BIGINT) AS below FROM ( \
                   SELECT {expr} AS v, COUNT(*) AS c FROM {from} WHERE {where_} GROUP BY 1) g) d) s \
             WHERE m <= {RANK_POINTS} OR (i - 1) % (m / {RANK_POINTS} + 1) = 0 \
             UNION ALL SELECT {name}, {SIZE_POINT}, COUNT(*) FROM {from} WHERE {where_}"
        ),
        vec![],
    )
}

/// SQL for how many of the last full relabel's population were below `value` in the
/// distribution `name`, and the population's size. Exact while a distribution has at most
/// [`RANK_POINTS`] distinct values; beyond, it errs up by at most one in 4,096 of the
/// population.
fn below_sql(table: &str, name: &str, value: &str) -> (String, String) {
    let name = sql_text(name);
    (
        format!(
            "(SELECT below FROM {table} WHERE name = {name} AND value >= {value} ORDER BY value LIMIT 1)"
        ),
        format!("(SELECT below FROM {table} WHERE name = {name} AND value = {SIZE_POINT})"),
    )
}

/// Step 2: tier scores and tier labels.
///
/// A full relabel ranks everyone with window functions and keeps the distributions as rank
/// points; a partial one ranks its vehicles against those points: the population as of the last
/// full relabel, the vehicle's own earlier values included, so its rank may differ from a full
/// relabel's by one.
fn tier_statements(
    rules: &Rules,
    t: &Tables,
    dialect: Dialect,
    scope: &Scope,
    day: Day,
) -> Vec<Statement> {
    let (profiles, tier_scores, labels, points) =
        (t.profiles, t.tier_scores, t.labels, t.rank_points);
    // Every label of the vehicles in scope goes: the tiers and the groups write them anew in
    // the same transaction.
    let mut out = vec![delete_from(labels, scope), delete_from(tier_scores, scope)];
    // A missing value ranks lowest.
    let low = "-1e18";
    if *scope == Scope::All {
        out.insert(2, Statement::new(format!("DELETE FROM {points}"), vec![]));
        let features: std::collections::BTreeSet<&str> = rules
            .tiers
            .iter()
            .flat_map(|tier| tier.parts.iter().map(|(f, _)| *f))
            .collect();
        for feature in features {
            out.push(rank_points(
                points,
                &format!("part:{feature}"),
                &format!("COALESCE({feature}, {low})"),
                profiles,
                "1 = 1",
            ));
        }
    }
    for tier in &rules.tiers {
        let group = sql_text(&tier.group);
        let score = match scope {
            Scope::All => {
                let terms: Vec<String> = tier
                    .parts
                    .iter()
                    .map(|(f, w)| {
                        format!("({w}) * PERCENT_RANK() OVER (ORDER BY COALESCE({f}, {low}))")
                    })
                    .collect();
                Statement::new(
                    format!(
                        "INSERT INTO {tier_scores} (vin, grp, score) SELECT vin, {group}, {} FROM {profiles}",
                        terms.join(" + ")
                    ),
                    vec![],
                )
            }
            _ => {
                // PERCENT_RANK: the share of the others below, (below) / (n - 1); the
                // vehicle's own earlier value may be among the points, hence the cap at n - 1.
                let terms: Vec<String> = tier
                    .parts
                    .iter()
                    .map(|(f, w)| {
                        let (below, n) =
                            below_sql(points, &format!("part:{f}"), &format!("COALESCE(p.{f}, {low})"));
                        format!(
                            "({w}) * COALESCE({}(COALESCE({below}, {n}), {n} - 1) * 1.0 / NULLIF({n} - 1, 0), 0)",
                            dialect.least()
                        )
                    })
                    .collect();
                let (select, params) = scope_sql(scope, "p.vin", 1);
                Statement::new(
                    format!(
                        "INSERT INTO {tier_scores} (vin, grp, score) SELECT p.vin, {group}, {} FROM {profiles} p WHERE {select}",
                        terms.join(" + ")
                    ),
                    params,
                )
            }
        };
        out.push(score);
        if *scope == Scope::All {
            out.push(rank_points(
                points,
                &format!("tier:{}", tier.group),
                "score",
                tier_scores,
                &format!("grp = {group}"),
            ));
        }
        // Levels by position among the population, best first. A tie takes the position of
        // its last member (r counts everyone scoring at least as much), so a level never holds
        // more than its share: a crowd tied at zero is not "top 30 %".
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
        let ranked = match scope {
            Scope::All => format!(
                "SELECT vin, score, COUNT(*) OVER (ORDER BY score DESC) AS r, COUNT(*) OVER () AS n \
                 FROM {tier_scores} WHERE grp = {group}"
            ),
            _ => {
                let (select, _) = scope_sql(scope, "t.vin", 1);
                // r counts everyone scoring at least as much, the vehicle itself included.
                let (below, n) = below_sql(points, &format!("tier:{}", tier.group), "t.score");
                format!(
                    "SELECT t.vin, t.score, COALESCE({}(1, {n} - COALESCE({below}, {n})), 1) AS r, \
                     COALESCE({n}, 1) AS n \
                     FROM {tier_scores} t WHERE t.grp = {group} AND {select}",
                    dialect.greatest()
                )
            }
        };
        let params = match scope {
            Scope::All => vec![day.number.into()],
            _ => {
                let mut p = scope_sql(scope, "x", 1).1;
                p.push(day.number.into());
                p
            }
        };
        let day_param = params.len();
        out.push(Statement::new(
            format!(
                "INSERT INTO {labels} (vin, grp, value, rule, evidence, labelled_day) \
                 SELECT vin, {group}, CASE {} END, {rule}, \
                 '{{\"score\":' || CAST(score AS TEXT) || ',\"rank\":' || CAST(r AS TEXT) || ',\"of\":' || CAST(n AS TEXT) || '}}', ${day_param} \
                 FROM ({ranked}) ranked",
                cases.join(" ")
            ),
            params,
        ));
    }
    out
}

/// Step 3: label groups.
fn group_statements(rules: &Rules, t: &Tables, scope: &Scope, day: Day) -> Vec<Statement> {
    let (profiles, labels) = (t.profiles, t.labels);
    let mut out = Vec::new();
    let (select, params) = scope_sql(scope, "p.vin", 1);
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
fn strategy_statements(
    rules: &Rules,
    t: &Tables,
    dialect: Dialect,
    scope: &Scope,
    day: Day,
) -> Vec<Statement> {
    let (profiles, labels, actions) = (t.profiles, t.labels, t.actions);
    let (select, params) = scope_sql(scope, "p.vin", 1);
    let (pivot_scope, _) = scope_sql(scope, "vin", 1);
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
    let mut statements = vec![delete_from(actions, scope)];
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

/// Step 5: each vehicle's labels and first action in one row, for lists and exports.
fn list_statements(t: &Tables, dialect: Dialect, scope: &Scope) -> Vec<Statement> {
    let (select, params) = scope_sql(scope, "vin", 1);
    vec![
        delete_from(t.vehicle_labels, scope),
        Statement::new(
            format!(
                "INSERT INTO {} (vin, labels, first_strategy, first_channel, first_status) \
                 SELECT l.vin, l.labels, a.strategy, a.channel, a.status \
                 FROM (SELECT vin, {}(grp || '=' || value, ' ' ORDER BY grp, value) AS labels \
                       FROM {} WHERE {select} GROUP BY vin) l \
                 LEFT JOIN {} a ON a.vin = l.vin AND a.rank = 1",
                t.vehicle_labels,
                dialect.string_agg(),
                t.labels,
                t.actions,
            ),
            params,
        ),
    ]
}

/// The statements of a relabel, step by step; all of them run in one transaction.
pub fn plan(
    rules: &Rules,
    t: &Tables,
    dialect: Dialect,
    scope: &Scope,
    day: Day,
) -> Vec<(&'static str, Vec<Statement>)> {
    vec![
        (
            "profiles",
            profile_statements(rules, t, dialect, scope, day),
        ),
        ("tiers", tier_statements(rules, t, dialect, scope, day)),
        ("labels", group_statements(rules, t, scope, day)),
        (
            "strategies",
            strategy_statements(rules, t, dialect, scope, day),
        ),
        ("label lists", list_statements(t, dialect, scope)),
    ]
}

/// Relabels the vehicles in `scope` as of `day`, reporting each step.
pub async fn relabel(
    store: &Store,
    rules: &Rules,
    scope: &Scope,
    day: Day,
    progress: impl FnMut(&Step),
) -> Result<u64, StoreError> {
    let started = jiff::Timestamp::now().as_second();
    let vehicles = relabel_into(store, rules, &LIVE, scope, day, progress).await?;
    if *scope == Scope::All {
        LastFull {
            at_s: started,
            rules: rules.fingerprint(),
        }
        .save(store)
        .await?;
    }
    Ok(vehicles)
}

/// When the last full relabel began, and with which rules ([`Rules::fingerprint`]): a server
/// that restarts does not relabel a million vehicles again when nothing calls for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastFull {
    /// UTC seconds.
    pub at_s: i64,
    /// The rules' fingerprint.
    pub rules: String,
}

impl LastFull {
    const KEY: &'static str = "labels.last_full";

    /// The record, if there is one (and it can be read).
    pub async fn load(store: &Store) -> Result<Option<LastFull>, StoreError> {
        Ok(store.meta(Self::KEY).await?.and_then(|text| {
            let (at, rules) = text.split_once(' ')?;
            Some(LastFull {
                at_s: at.parse().ok()?,
                rules: rules.to_owned(),
            })
        }))
    }

    /// Records it (a full relabel does; so may a test standing in for another server).
    pub async fn save(&self, store: &Store) -> Result<(), StoreError> {
        store
            .set_meta(Self::KEY, &format!("{} {}", self.at_s, self.rules))
            .await
    }
}

/// Relabels into `tables` (the live ones, or a preview's shadow ones).
pub async fn relabel_into(
    store: &Store,
    rules: &Rules,
    t: &Tables,
    scope: &Scope,
    day: Day,
    mut progress: impl FnMut(&Step),
) -> Result<u64, StoreError> {
    let steps = plan(rules, t, store.dialect(), scope, day);
    let of = steps.len();
    let names: Vec<&'static str> = steps.iter().map(|(name, _)| *name).collect();
    let deletes: Vec<usize> = steps
        .iter()
        .map(|(_, statements)| {
            statements
                .iter()
                .take_while(|s| s.sql.starts_with("DELETE"))
                .count()
        })
        .collect();
    let mut vehicles = 0;
    // One transaction: readers see the old labels or the new ones, never half of each. On one
    // snapshot: the scope (vehicles with new data) must not grow between a step's delete and
    // a later step's insert while ingest commits.
    store
        .execute_steps(
            steps
                .into_iter()
                .map(|(_, statements)| statements)
                .collect(),
            Isolation::Snapshot,
            |index, affected, seconds| {
                let rows: u64 = affected.iter().skip(deletes[index]).sum();
                if index == 0 {
                    vehicles = rows;
                }
                progress(&Step {
                    number: index + 1,
                    of,
                    name: names[index],
                    rows,
                    seconds,
                });
            },
        )
        .await?;
    Ok(vehicles)
}

/// Every feature name, for `rules features`.
pub fn feature_names() -> impl Iterator<Item = (&'static str, bool, &'static str)> {
    FEATURES.iter().map(|f| (f.name, f.text, f.description))
}
