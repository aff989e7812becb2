//! Relabelling, for every vehicle or for the ones whose data changed.
//!
//! A relabel runs in four reported steps. The database builds the features (`profiles`, one
//! set-based statement); the server reads them back and ranks the population's tier parts
//! ([`Assigner::new`]), then assigns each customer's labels and ranked actions
//! ([`Assigner::customer`]) as the rows stream past, and writes one `vehicle_labels` row per
//! vehicle in one transaction: its labels, where each came from, and its actions. The words
//! that explain them are stored once per rules file ([`Catalog`]).
//!
//! A full relabel keeps each tier distribution as rank points (`rank_points`); a partial one
//! ranks its vehicles against them ([`Assigner::with_points`]), so its cost does not grow with
//! the population. For the same data both give the same tier while a distribution has at most
//! 4,096 distinct values, and within one in 4,096 of the population beyond.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::assign::{Assigned, Assigner, Context, Points, Subject, rank_value};
use super::catalog::Catalog;
use super::features::{FEATURES, PROFILES_SQL};
use super::rules::{CHANNELS, Rules};
use crate::store::{Cells, Dialect, Isolation, Statement, Store, StoreError, Value, insert_rows};

/// The tables a relabel writes: the live ones, or the shadow ones of a preview.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tables {
    /// Features.
    pub profiles: &'static str,
    /// Every vehicle's labels and actions in one row.
    pub vehicle_labels: &'static str,
    /// The distributions a partial relabel ranks against.
    pub rank_points: &'static str,
}

/// The tables in force.
pub const LIVE: Tables = Tables {
    profiles: "profiles",
    vehicle_labels: "vehicle_labels",
    rank_points: "rank_points",
};

/// The shadow tables of `rules check`.
pub const PREVIEW: Tables = Tables {
    profiles: "preview_profiles",
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

/// Step 1: profiles.
pub fn profile_statements(
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

/// The value of the rank point that holds a distribution's size.
const SIZE_POINT: f64 = 1e308;

/// The columns of a `vehicle_labels` row, with their PostgreSQL types. `labels` holds the
/// vehicle's `group=value` pairs sorted by group and value, separated by single spaces;
/// `sources` where each came from, in the same order ([`super::assign::Source::encode`]);
/// `actions` its ranked actions as `rank/strategy/channel/status` (channel `-` without one),
/// separated by spaces; `first_*` the customer's first action, on the vehicle it is for.
const VEHICLE_LABELS: [(&str, &str); 9] = [
    ("vin", "text"),
    ("labels", "text"),
    ("sources", "text"),
    ("actions", "text"),
    ("first_strategy", "text"),
    ("first_channel", "text"),
    ("first_status", "text"),
    ("labelled_day", "bigint"),
    ("rules", "text"),
];

/// The features `rules` read, tier parts and conditions alike, as indices into [`FEATURES`]
/// (`energy`, the text one, is always read).
fn used_features(rules: &Rules) -> Vec<usize> {
    let mut names: Vec<&str> = rules
        .tiers
        .iter()
        .flat_map(|t| t.parts.iter().map(|(f, _)| *f))
        .collect();
    for group in &rules.groups {
        for rule in &group.rules {
            names.extend(rule.when.features.iter().copied());
        }
    }
    for strategy in &rules.strategies {
        names.extend(strategy.when.features.iter().copied());
    }
    let mut used: Vec<usize> = FEATURES
        .iter()
        .enumerate()
        .filter(|(i, f)| *i > 0 && names.contains(&f.name))
        .map(|(i, _)| i)
        .collect();
    used.dedup();
    used
}

/// One customer's vehicles waiting for the rest of them (rows come in no particular order).
type Waiting = HashMap<String, Vec<(usize, Subject)>>;

/// What the second pass keeps while rows stream past.
struct Pass {
    assigner: Arc<Assigner>,
    /// A vehicle's position in the first pass, for a full relabel.
    positions: Option<HashMap<Box<str>, u32>>,
    /// Customers with more than one vehicle in scope, and how many.
    multi: HashMap<String, usize>,
    waiting: Waiting,
    features: Vec<usize>,
    rows: Vec<Vec<Value>>,
    day: i64,
    fingerprint: String,
}

impl Pass {
    fn row(&mut self, cells: &dyn Cells) -> Result<(), StoreError> {
        let text = |i: usize| -> Result<Option<String>, StoreError> {
            Ok(cells.text(i)?.map(|t| t.into_owned()))
        };
        let vin = text(0)?.ok_or_else(|| StoreError::Data("a profile without a VIN".into()))?;
        let mut consents = [false; CHANNELS.len()];
        for (c, consent) in consents.iter_mut().enumerate() {
            *consent = cells.real(4 + c)? == Some(1.0);
        }
        let first = 4 + CHANNELS.len();
        let mut features = vec![None; FEATURES.len()];
        for (k, &index) in self.features.iter().enumerate() {
            features[index] = cells.real(first + 1 + k)?;
        }
        let subject = Subject {
            customer: text(1)?,
            has_device: cells.real(2)? == Some(1.0),
            recent_contacts: cells.real(3)?.unwrap_or(0.0) as u32,
            energy: text(first)?,
            features,
            consents,
            vin,
        };
        let position = match &self.positions {
            Some(positions) => match positions.get(subject.vin.as_str()) {
                Some(p) => *p as usize,
                None => {
                    return Err(StoreError::Data(format!(
                        "vehicle {} appeared during the relabel; run it again",
                        subject.vin
                    )));
                }
            },
            None => 0,
        };
        match subject
            .customer
            .as_ref()
            .and_then(|c| self.multi.get(c).copied())
        {
            Some(count) => {
                let customer = subject.customer.clone().unwrap_or_default();
                let group = self.waiting.entry(customer.clone()).or_default();
                group.push((position, subject));
                if group.len() >= count
                    && let Some(group) = self.waiting.remove(&customer)
                {
                    self.assign(&group);
                }
            }
            None => self.assign(&[(position, subject)]),
        }
        Ok(())
    }

    fn assign(&mut self, group: &[(usize, Subject)]) {
        let vehicles: Vec<(usize, &Subject)> = group.iter().map(|(p, s)| (*p, s)).collect();
        let assigned = self.assigner.customer(&vehicles);
        for ((_, subject), assigned) in group.iter().zip(assigned) {
            let row = vehicle_row(
                &self.assigner,
                subject,
                &assigned,
                self.day,
                &self.fingerprint,
            );
            self.rows.push(row);
        }
    }

    /// Vehicles whose customer's other vehicles never came (their profiles went meanwhile).
    fn finish(&mut self) {
        let waiting: Vec<Vec<(usize, Subject)>> = self.waiting.drain().map(|(_, g)| g).collect();
        for group in waiting {
            self.assign(&group);
        }
    }
}

/// A vehicle's `vehicle_labels` row ([`VEHICLE_LABELS`]).
fn vehicle_row(
    assigner: &Assigner,
    subject: &Subject,
    assigned: &Assigned,
    day: i64,
    fingerprint: &str,
) -> Vec<Value> {
    let values = assigner.label_values();
    let mut labels: Vec<(&str, &str, String)> = assigned
        .labels
        .iter()
        .filter_map(|l| {
            let (group, value) = values.get(l.value)?;
            Some((group.as_str(), value.as_str(), l.source.encode()))
        })
        .collect();
    labels.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let strategies = &assigner.rules().strategies;
    let actions: Vec<String> = assigned
        .actions
        .iter()
        .map(|a| {
            format!(
                "{}/{}/{}/{}",
                a.rank,
                strategies[a.strategy].name,
                a.channel.map_or("-", |c| CHANNELS[c]),
                a.status.as_str()
            )
        })
        .collect();
    let first = assigned.actions.first().filter(|a| a.rank == 1);
    vec![
        subject.vin.clone().into(),
        labels
            .iter()
            .map(|(g, v, _)| format!("{g}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
            .into(),
        labels
            .iter()
            .map(|(_, _, s)| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
            .into(),
        actions.join(" ").into(),
        first.map_or(Value::Null, |a| strategies[a.strategy].name.clone().into()),
        first
            .and_then(|a| a.channel)
            .map_or(Value::Null, |c| CHANNELS[c].into()),
        first.map_or(Value::Null, |a| a.status.as_str().into()),
        day.into(),
        fingerprint.into(),
    ]
}

/// The rank points of the last full relabel, by name.
async fn load_points(store: &Store, table: &str) -> Result<HashMap<String, Points>, StoreError> {
    let mut points: HashMap<String, Points> = HashMap::new();
    for row in store
        .query(
            format!("SELECT name, value, below FROM {table} ORDER BY name, value"),
            vec![],
        )
        .await?
    {
        let name = row.first().and_then(Value::text).unwrap_or_default();
        let value = row.get(1).and_then(Value::real).unwrap_or(0.0);
        let below = row.get(2).and_then(Value::int).unwrap_or(0).max(0) as u64;
        let entry = points.entry(name.to_owned()).or_default();
        if value >= SIZE_POINT {
            entry.size = below;
        } else {
            entry.values.push(value);
            entry.below.push(below);
        }
    }
    Ok(points)
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
    const STEPS: usize = 4;
    let mut report = |number: usize, name: &'static str, rows: u64, started: std::time::Instant| {
        progress(&Step {
            number,
            of: STEPS,
            name,
            rows,
            seconds: started.elapsed().as_secs_f64(),
        })
    };
    let dialect = store.dialect();

    // 1. The features, in the database. On one snapshot: the scope (vehicles with new data)
    // must not grow between the delete and the insert while ingest commits.
    let started = std::time::Instant::now();
    let affected = store
        .execute_steps(
            vec![profile_statements(rules, t, dialect, scope, day)],
            Isolation::Snapshot,
            |_, _, _| {},
        )
        .await?;
    let vehicles = affected
        .first()
        .and_then(|s| s.get(1))
        .copied()
        .unwrap_or(0);
    report(1, "profiles", vehicles, started);

    // 2. The distributions: a full relabel ranks the population from its tier parts, a
    // partial one ranks against the points the last full one kept.
    let started = std::time::Instant::now();
    let context: Context = [day.number, day.month, day.year];
    let (assigner, positions) = if *scope == Scope::All {
        let parts: Vec<usize> = {
            let mut parts: Vec<usize> = rules
                .tiers
                .iter()
                .flat_map(|t| t.parts.iter())
                .filter_map(|(f, _)| FEATURES.iter().position(|x| x.name == *f))
                .collect();
            parts.sort_unstable();
            parts.dedup();
            parts
        };
        let columns: Vec<String> = parts.iter().map(|&i| FEATURES[i].name.to_owned()).collect();
        let read = Arc::new(Mutex::new((
            HashMap::<Box<str>, u32>::new(),
            vec![Vec::<f64>::new(); parts.len()],
        )));
        let into = Arc::clone(&read);
        store
            .scan(
                format!(
                    "SELECT vin{} FROM {}",
                    columns.iter().map(|c| format!(", {c}")).collect::<String>(),
                    t.profiles
                ),
                vec![],
                move |cells| {
                    let mut guard = into
                        .lock()
                        .map_err(|_| StoreError::Worker("relabel state poisoned".into()))?;
                    let (positions, columns) = &mut *guard;
                    let vin = cells.text(0)?.unwrap_or_default();
                    let position = positions.len() as u32;
                    positions.insert(vin.into(), position);
                    for (k, column) in columns.iter_mut().enumerate() {
                        column.push(rank_value(cells.real(1 + k)?));
                    }
                    Ok(())
                },
            )
            .await?;
        let (positions, columns) = std::mem::take(
            &mut *read
                .lock()
                .map_err(|_| StoreError::Worker("relabel state poisoned".into()))?,
        );
        let assigner = Assigner::new(rules, context, |feature| {
            parts
                .iter()
                .position(|&p| p == feature)
                .map(|k| columns[k].clone())
                .unwrap_or_default()
        })
        .map_err(StoreError::Data)?;
        (assigner, Some(positions))
    } else {
        let points = load_points(store, t.rank_points).await?;
        let assigner = Assigner::with_points(rules, context, &points).map_err(StoreError::Data)?;
        (assigner, None)
    };
    report(
        2,
        "ranks",
        positions.as_ref().map_or(0, |p| p.len() as u64),
        started,
    );

    // 3. Labels and actions, customer by customer, as the profiles stream past.
    let started = std::time::Instant::now();
    let (select, params) = scope_sql(scope, "p.vin", 1);
    let mut multi: HashMap<String, usize> = HashMap::new();
    for row in store
        .query(
            format!(
                "SELECT p.customer_id, COUNT(*) FROM {} p WHERE p.customer_id IS NOT NULL AND {select} \
                 GROUP BY p.customer_id HAVING COUNT(*) > 1",
                t.profiles
            ),
            params.clone(),
        )
        .await?
    {
        if let (Some(customer), Some(n)) = (row[0].text(), row[1].int()) {
            multi.insert(customer.to_owned(), n as usize);
        }
    }
    let features = used_features(rules);
    let fingerprint = rules.fingerprint();
    let assigner = Arc::new(assigner);
    let pass = Arc::new(Mutex::new(Pass {
        assigner: Arc::clone(&assigner),
        positions,
        multi,
        waiting: HashMap::new(),
        features: features.clone(),
        rows: Vec::new(),
        day: day.number,
        fingerprint: fingerprint.clone(),
    }));
    let consents: Vec<String> = CHANNELS
        .iter()
        .map(|c| format!(", CASE WHEN c.{c}_opt_in THEN 1 ELSE 0 END"))
        .collect();
    let since = day.number - i64::from(rules.settings.contact_period_days);
    let sql = format!(
        "SELECT p.vin, p.customer_id, CASE WHEN p.device_id IS NULL THEN 0 ELSE 1 END, \
         (SELECT COUNT(*) FROM campaign_responses cr WHERE cr.customer_id = p.customer_id AND cr.sent_day > {since})\
         {}, p.energy{} \
         FROM {} p LEFT JOIN customers c ON c.id = p.customer_id WHERE {select}",
        consents.concat(),
        features
            .iter()
            .map(|&i| format!(", p.{}", FEATURES[i].name))
            .collect::<String>(),
        t.profiles,
    );
    let into = Arc::clone(&pass);
    store
        .scan(sql, params, move |cells| {
            into.lock()
                .map_err(|_| StoreError::Worker("relabel state poisoned".into()))?
                .row(cells)
        })
        .await?;
    let rows = {
        let mut pass = pass
            .lock()
            .map_err(|_| StoreError::Worker("relabel state poisoned".into()))?;
        pass.finish();
        std::mem::take(&mut pass.rows)
    };
    let labelled = rows.len() as u64;
    report(3, "labels", labelled, started);

    // 4. One transaction: readers see the old labels or the new ones, never half of each.
    let started = std::time::Instant::now();
    let mut statements = vec![delete_from(t.vehicle_labels, scope)];
    statements.extend(insert_rows(
        dialect,
        t.vehicle_labels,
        &VEHICLE_LABELS,
        rows,
    ));
    if *scope == Scope::All {
        statements.push(Statement::new(
            format!("DELETE FROM {}", t.rank_points),
            vec![],
        ));
        let mut points = Vec::new();
        for (name, p) in assigner.distributions() {
            for (value, below) in p.values.iter().zip(&p.below) {
                points.push(vec![
                    name.clone().into(),
                    (*value).into(),
                    (*below as i64).into(),
                ]);
            }
            points.push(vec![name.into(), SIZE_POINT.into(), (p.size as i64).into()]);
        }
        statements.extend(insert_rows(
            dialect,
            t.rank_points,
            &[("name", "text"), ("value", "float8"), ("below", "bigint")],
            points,
        ));
    }
    let catalog = serde_json::to_string(&Catalog::of(rules))
        .map_err(|e| StoreError::Data(format!("the rules' catalog: {e}")))?;
    statements.push(Statement::new(
        "INSERT INTO rule_catalogs (fingerprint, catalog) VALUES ($1, $2) ON CONFLICT (fingerprint) DO NOTHING",
        vec![fingerprint.into(), catalog.into()],
    ));
    store
        .execute_steps(vec![statements], Isolation::Statement, |_, _, _| {})
        .await?;
    report(4, "write", labelled, started);
    Ok(vehicles)
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

/// Every feature name, for `rules features`.
pub fn feature_names() -> impl Iterator<Item = (&'static str, bool, &'static str)> {
    FEATURES.iter().map(|f| (f.name, f.text, f.description))
}
