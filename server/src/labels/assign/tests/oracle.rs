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
    profiles: "oracle_profiles",
    tier_scores: "oracle_tier_scores",
    labels: "oracle_labels",
    actions: "oracle_actions",
};

/// Its tables.
pub fn create() -> Vec<Statement> {
    let features: String = crate::labels::features::FEATURES
        .iter()
        .skip(1)
        .map(|f| format!(", {} REAL", f.name))
        .collect();
    let profiles = format!(
        "CREATE TABLE oracle_profiles (vin TEXT PRIMARY KEY, customer_id TEXT, store_id INTEGER, \
         fleet_id TEXT, device_id TEXT, labelled_day INTEGER NOT NULL, energy TEXT NOT NULL{features})"
    );
    std::iter::once(profiles.as_str()).chain([
        "CREATE TABLE oracle_tier_scores (vin TEXT NOT NULL, grp TEXT NOT NULL, score REAL NOT NULL, PRIMARY KEY (vin, grp))",
        "CREATE TABLE oracle_labels (vin TEXT NOT NULL, grp TEXT NOT NULL, value TEXT NOT NULL, rule TEXT NOT NULL, \
         evidence TEXT NOT NULL, labelled_day INTEGER NOT NULL, PRIMARY KEY (vin, grp, value))",
        "CREATE TABLE oracle_actions (vin TEXT NOT NULL, customer_id TEXT, strategy TEXT NOT NULL, priority INTEGER NOT NULL, \
         rank INTEGER NOT NULL, channel TEXT, status TEXT NOT NULL, reason TEXT NOT NULL, labelled_day INTEGER NOT NULL, \
         PRIMARY KEY (vin, strategy))",
    ])
    .map(|sql| Statement::new(sql.to_owned(), vec![]))
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

/// Builds `profiles` rows, as drivetag did in SQL before it gathered inputs in the server. Parameters: `$1` today (day number),
/// `$2` the current year, `$3` the default service interval in km, `$4` in months.
/// `{scope}` is replaced by a condition on `v.vin`.
const PROFILES_SQL: &str = r#"
INSERT INTO {profiles} (vin, customer_id, store_id, fleet_id, device_id, labelled_day, energy,
    price_class_rank, vehicle_age_years, is_ev, is_electrified, days_since_purchase,
    warranty_days_left, service_visits_total, service_visits_12m, months_since_service, spend_12m,
    spend_total, care_spend_12m, odometer_km, km_since_service, service_interval_km,
    service_interval_months, days_to_service_due, birthday_month, referrals, campaigns_sent,
    campaigns_responded, campaign_response_rate, telematics, days_since_seen, km_30d, km_per_day,
    trips_30d, days_driven_30d, long_trips_90d, night_share_30d, weekend_share_30d,
    commute_trips_30d, commute_share_30d, driving_hours_per_day, driving_score, harsh_per_100km,
    overspeed_share, home_store_distance_km, competitor_visits_90d, repair_shop_visits_90d,
    own_store_visits_90d, premium_visits_90d, charging_visits_90d)
SELECT vin, customer_id, store_id, fleet_id, device_id, $1, energy,
    price_class_rank, vehicle_age_years, is_ev, is_electrified, days_since_purchase,
    warranty_days_left, service_visits_total, service_visits_12m, months_since_service, spend_12m,
    spend_total, care_spend_12m, odometer_km, km_since_service, service_interval_km,
    service_interval_months,
    CASE
        WHEN days_by_km IS NULL THEN days_by_time
        WHEN days_by_time IS NULL THEN days_by_km
        WHEN days_by_km < days_by_time THEN days_by_km
        ELSE days_by_time
    END,
    birthday_month, referrals, campaigns_sent, campaigns_responded, campaign_response_rate,
    telematics, days_since_seen, km_30d, km_per_day, trips_30d, days_driven_30d, long_trips_90d,
    night_share_30d, weekend_share_30d, commute_trips_30d, commute_share_30d,
    driving_hours_per_day, driving_score, harsh_per_100km, overspeed_share,
    home_store_distance_km, competitor_visits_90d, repair_shop_visits_90d, own_store_visits_90d,
    premium_visits_90d, charging_visits_90d
FROM (
    SELECT b.*,
        CASE WHEN base_day IS NULL THEN NULL
             ELSE base_day + service_interval_months * 30.44 - $1 END AS days_by_time,
        CASE WHEN km_since_service IS NULL OR km_per_day IS NULL OR km_per_day <= 0 THEN NULL
             ELSE (service_interval_km - km_since_service) / km_per_day END AS days_by_km
    FROM (
        SELECT v.vin, v.customer_id, v.store_id, v.fleet_id, v.device_id, v.energy,
            CAST(CASE v.price_class WHEN 'economy' THEN 0 WHEN 'mid' THEN 1
                 WHEN 'premium' THEN 2 WHEN 'luxury' THEN 3 END AS {real}) AS price_class_rank,
            CAST($2 - v.model_year AS {real}) AS vehicle_age_years,
            CAST(CASE WHEN v.energy = 'ev' THEN 1 ELSE 0 END AS {real}) AS is_ev,
            CAST(CASE WHEN v.energy IN ('hev', 'phev', 'ev') THEN 1 ELSE 0 END AS {real}) AS is_electrified,
            CAST($1 - v.purchase_day AS {real}) AS days_since_purchase,
            CAST(v.warranty_end_day - $1 AS {real}) AS warranty_days_left,
            CAST(COALESCE(sv.visits_total, 0) AS {real}) AS service_visits_total,
            CAST(COALESCE(sv.visits_12m, 0) AS {real}) AS service_visits_12m,
            CAST($1 - sv.last_day AS {real}) / 30.44 AS months_since_service,
            CAST(COALESCE(sv.spend_12m, 0) AS {real}) / 100.0 AS spend_12m,
            CAST(COALESCE(sv.spend_total, 0) AS {real}) / 100.0 AS spend_total,
            CAST(COALESCE(sv.care_12m, 0) AS {real}) / 100.0 AS care_spend_12m,
            CAST(CASE
                WHEN d.odometer_m IS NOT NULL AND (rv.odometer_m IS NULL OR d.odometer_m >= rv.odometer_m) THEN d.odometer_m / 1000.0
                WHEN rv.odometer_m IS NOT NULL AND rv.odometer_m > 0 THEN rv.odometer_m / 1000.0
                ELSE sv.last_odometer END AS {real}) AS odometer_km,
            CAST(CASE
                WHEN sv.last_odometer IS NOT NULL AND d.odometer_m IS NOT NULL THEN d.odometer_m / 1000.0 - sv.last_odometer
                ELSE (SELECT SUM(dd.distance_m) FROM days dd
                      WHERE dd.device_id = v.device_id
                        AND dd.local_day > COALESCE(sv.last_day, v.purchase_day, $1 - 90)
                        AND dd.local_day <= $1) / 1000.0 END AS {real}) AS km_since_service,
            COALESCE(sv.last_day, v.purchase_day) AS base_day,
            CAST(COALESCE(v.service_interval_km, $3) AS {real}) AS service_interval_km,
            CAST(COALESCE(v.service_interval_months, $4) AS {real}) AS service_interval_months,
            CAST(c.birthday_month AS {real}) AS birthday_month,
            CAST(COALESCE(c.referrals, 0) AS {real}) AS referrals,
            CAST(COALESCE(cr.sent, 0) AS {real}) AS campaigns_sent,
            CAST(COALESCE(cr.responded, 0) AS {real}) AS campaigns_responded,
            CASE WHEN COALESCE(cr.sent, 0) = 0 THEN NULL
                 ELSE CAST(cr.responded AS {real}) / cr.sent END AS campaign_response_rate,
            CAST(CASE WHEN d.m90 > 0 THEN 1 ELSE 0 END AS {real}) AS telematics,
            CAST($1 - d.last_day AS {real}) AS days_since_seen,
            CAST(COALESCE(d.m30, 0) AS {real}) / 1000.0 AS km_30d,
            CASE WHEN d.first_day IS NULL THEN NULL
                 ELSE CAST(d.m90 AS {real}) / 1000.0 / ($1 - d.first_day + 1) END AS km_per_day,
            CAST(COALESCE(d.trips30, 0) AS {real}) AS trips_30d,
            CAST(COALESCE(d.days_driven30, 0) AS {real}) AS days_driven_30d,
            CAST(COALESCE(d.long90, 0) AS {real}) AS long_trips_90d,
            CASE WHEN COALESCE(d.driving30, 0) = 0 THEN NULL
                 ELSE CAST(d.night30 AS {real}) / 100.0 / d.driving30 END AS night_share_30d,
            CASE WHEN COALESCE(d.m30, 0) = 0 THEN NULL
                 ELSE CAST(d.weekend_m30 AS {real}) / d.m30 END AS weekend_share_30d,
            CAST(COALESCE(d.commute30, 0) AS {real}) AS commute_trips_30d,
            CASE WHEN COALESCE(d.trips30, 0) = 0 THEN NULL
                 ELSE CAST(d.commute30 AS {real}) / d.trips30 END AS commute_share_30d,
            CAST(COALESCE(d.driving30, 0) AS {real}) / 30.0 / 3600.0 AS driving_hours_per_day,
            CASE WHEN COALESCE(d.m90, 0) = 0 THEN NULL
                 ELSE CAST(d.score_weighted AS {real}) / d.m90 END AS driving_score,
            CASE WHEN COALESCE(d.m90, 0) = 0 THEN NULL
                 ELSE CAST(d.harsh90 AS {real}) * 100000.0 / d.m90 END AS harsh_per_100km,
            CASE WHEN COALESCE(d.moving90, 0) = 0 THEN NULL
                 ELSE CAST(d.overspeed90 AS {real}) / d.moving90 END AS overspeed_share,
            CAST(sd.home_distance_m AS {real}) / 1000.0 AS home_store_distance_km,
            CAST(COALESCE(pv.competitor, 0) AS {real}) AS competitor_visits_90d,
            CAST(COALESCE(pv.repair, 0) AS {real}) AS repair_shop_visits_90d,
            CAST(COALESCE(pv.own, 0) AS {real}) AS own_store_visits_90d,
            CAST(COALESCE(pv.premium, 0) AS {real}) AS premium_visits_90d,
            CAST(COALESCE(pv.charging, 0) AS {real}) AS charging_visits_90d
        FROM vehicles v
        LEFT JOIN customers c ON c.id = v.customer_id
        LEFT JOIN (
            SELECT vin, COUNT(*) AS visits_total,
                SUM(CASE WHEN visit_day > $1 - 365 THEN 1 ELSE 0 END) AS visits_12m,
                MAX(visit_day) AS last_day,
                SUM(CASE WHEN visit_day > $1 - 365 THEN spend_cents ELSE 0 END) AS spend_12m,
                SUM(spend_cents) AS spend_total,
                SUM(CASE WHEN visit_day > $1 - 365 AND kind IN ('accessories', 'detailing')
                         THEN spend_cents ELSE 0 END) AS care_12m,
                MAX(odometer_km) AS last_odometer
            FROM service_visits WHERE visit_day <= $1 AND {scope_vin} GROUP BY vin
        ) sv ON sv.vin = v.vin
        LEFT JOIN (
            SELECT customer_id, COUNT(*) AS sent,
                SUM(CASE WHEN responded THEN 1 ELSE 0 END) AS responded
            FROM campaign_responses WHERE sent_day <= $1 AND {scope_customer} GROUP BY customer_id
        ) cr ON cr.customer_id = v.customer_id
        LEFT JOIN reported_vehicles rv ON rv.device_id = v.device_id
        LEFT JOIN (
            SELECT device_id,
                SUM(CASE WHEN local_day > $1 - 30 THEN distance_m ELSE 0 END) AS m30,
                SUM(CASE WHEN local_day > $1 - 30 THEN trips ELSE 0 END) AS trips30,
                SUM(CASE WHEN local_day > $1 - 30 AND trips > 0 THEN 1 ELSE 0 END) AS days_driven30,
                SUM(distance_m) AS m90,
                SUM(long_trips) AS long90,
                SUM(CASE WHEN local_day > $1 - 30 THEN night_pct * driving_s ELSE 0 END) AS night30,
                SUM(CASE WHEN local_day > $1 - 30 THEN driving_s ELSE 0 END) AS driving30,
                SUM(CASE WHEN local_day > $1 - 30 AND (local_day + 3) % 7 >= 5
                         THEN distance_m ELSE 0 END) AS weekend_m30,
                SUM(CASE WHEN local_day > $1 - 30 THEN commute_trips ELSE 0 END) AS commute30,
                SUM(score * distance_m) AS score_weighted,
                SUM(harsh_accel + harsh_brake + harsh_corner) AS harsh90,
                SUM(overspeed_s) AS overspeed90,
                SUM(moving_s) AS moving90,
                MIN(local_day) AS first_day,
                MAX(local_day) AS last_day,
                MAX(odometer_m) AS odometer_m
            FROM days WHERE local_day > $1 - 90 AND local_day <= $1 AND {scope_device} GROUP BY device_id
        ) d ON d.device_id = v.device_id
        LEFT JOIN (
            SELECT s.device_id, s.store_id, s.home_distance_m FROM store_distances s
            WHERE {scope_s_device} AND s.from_local_day = (SELECT MAX(s2.from_local_day) FROM store_distances s2
                                      WHERE s2.device_id = s.device_id)
        ) sd ON sd.device_id = v.device_id AND sd.store_id = v.store_id
        LEFT JOIN (
            SELECT device_id,
                SUM(CASE WHEN kind = 'competitor_dealer' THEN visits ELSE 0 END) AS competitor,
                SUM(CASE WHEN kind = 'independent_repair' THEN visits ELSE 0 END) AS repair,
                SUM(CASE WHEN kind = 'own_store' THEN visits ELSE 0 END) AS own,
                SUM(CASE WHEN kind = 'premium' THEN visits ELSE 0 END) AS premium,
                SUM(CASE WHEN kind = 'charging' THEN visits ELSE 0 END) AS charging
            FROM poi_visits WHERE last_local_day > $1 - 90 AND {scope_device} GROUP BY device_id
        ) pv ON pv.device_id = v.device_id
        WHERE {scope}
    ) b
) f
"#;

fn real(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "REAL",
        Dialect::Postgres => "DOUBLE PRECISION",
    }
}

/// Features as SQL computed them: a `profiles` row for every vehicle, into `table`.
pub fn profile_statement(rules: &Rules, table: &str, dialect: Dialect, day: Day) -> Statement {
    let sql = PROFILES_SQL
        .replace("{real}", real(dialect))
        .replace("{scope_vin}", "1 = 1")
        .replace("{scope_customer}", "1 = 1")
        .replace("{scope_device}", "1 = 1")
        .replace("{scope_s_device}", "1 = 1")
        .replace("{scope}", "1 = 1")
        .replace("{profiles}", table);
    Statement::new(
        sql,
        vec![
            day.number.into(),
            day.year.into(),
            rules.settings.service_interval_km.into(),
            rules.settings.service_interval_months.into(),
        ],
    )
}
