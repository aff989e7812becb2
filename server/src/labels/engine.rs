//! Relabelling, for every vehicle or for the ones whose data changed.
//!
//! A relabel runs in three reported steps. It reads the registry and each table of the
//! vehicles' history once and computes every vehicle's features ([`Inputs`]); ranks the
//! population's tier parts ([`Assigner::new`]); then assigns each customer's labels and ranked
//! actions ([`Assigner::customer`]) and writes them as it goes, one `vehicle_labels` row per
//! vehicle in one transaction ([`Store::execute_stream`]): its labels, where each came from,
//! its actions and its features. The words that explain them are stored once per rules file
//! ([`Catalog`]).
//!
//! A full relabel keeps each tier distribution as rank points (`rank_points`); a partial one
//! ranks its vehicles against them ([`Assigner::with_points`]), so its cost does not grow with
//! the population. For the same data both give the same tier while a distribution has at most
//! 4,096 distinct values, and within one in 4,096 of the population beyond.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::borrow::Cow;

use super::assign::{Assigned, Assigner, Context, Points, Subject, rank_value};
use super::catalog::Catalog;
use super::features::{DayRow, FEATURES, Inputs, encode};
use super::rules::{CHANNELS, Rules};
use crate::store::{Cells, Dialect, Isolation, Statement, Store, StoreError, Value, insert_rows};

/// The tables a relabel writes: the live ones, or the shadow ones of a preview.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tables {
    /// Every vehicle's labels, actions and features in one row.
    pub vehicle_labels: &'static str,
    /// The distributions a partial relabel ranks against.
    pub rank_points: &'static str,
}

/// The tables in force.
pub const LIVE: Tables = Tables {
    vehicle_labels: "vehicle_labels",
    rank_points: "rank_points",
};

/// The shadow tables of `rules check`.
pub const PREVIEW: Tables = Tables {
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

/// The value of the rank point that holds a distribution's size.
const SIZE_POINT: f64 = 1e308;

/// The columns of a `vehicle_labels` row, with their PostgreSQL types. `labels` holds the
/// vehicle's `group=value` pairs sorted by group and value, separated by single spaces;
/// `sources` where each came from, in the same order ([`super::assign::Source::encode`]);
/// `actions` its ranked actions as `rank/strategy/channel/status` (channel `-` without one),
/// separated by spaces; `first_*` the customer's first action, on the vehicle it is for;
/// `features` the features as of the day ([`super::features::encode`]).
const VEHICLE_LABELS: [(&str, &str); 10] = [
    ("vin", "text"),
    ("labels", "text"),
    ("sources", "text"),
    ("actions", "text"),
    ("first_strategy", "text"),
    ("first_channel", "text"),
    ("first_status", "text"),
    ("labelled_day", "bigint"),
    ("rules", "text"),
    ("features", "bytea"),
];

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
        Value::Bytes(encode(&subject.features)),
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

/// One vehicle as a relabel reads it.
struct Vehicle {
    vin: Box<str>,
    customer: Option<Box<str>>,
    store_id: Option<i64>,
    device_id: Option<Box<str>>,
    consents: [bool; CHANNELS.len()],
    inputs: Inputs,
}

/// Everything a relabel reads, by vehicle.
#[derive(Default)]
struct Gathered {
    vehicles: Vec<Vehicle>,
    by_vin: HashMap<Box<str>, u32>,
    by_device: HashMap<Box<str>, u32>,
    /// Per customer: campaigns sent up to the day, answered, and sent within the contact
    /// period.
    campaigns: HashMap<Box<str>, (i64, i64, i64)>,
}

impl Gathered {
    fn by_vin(&mut self, vin: Option<Cow<'_, str>>) -> Option<&mut Vehicle> {
        let position = *self.by_vin.get(vin?.as_ref())?;
        self.vehicles.get_mut(position as usize)
    }

    fn by_device(&mut self, device: Option<Cow<'_, str>>) -> Option<&mut Vehicle> {
        let position = *self.by_device.get(device?.as_ref())?;
        self.vehicles.get_mut(position as usize)
    }

    /// A vehicle's features as of `day`.
    fn features(&self, vehicle: &Vehicle, day: Day, rules: &Rules) -> Vec<Option<f64>> {
        let mut inputs_campaigns = (0, 0);
        if let Some((sent, answered, _)) = vehicle
            .customer
            .as_ref()
            .and_then(|c| self.campaigns.get(c))
        {
            inputs_campaigns = (*sent, *answered);
        }
        let mut features = vehicle.inputs.features(
            day.number,
            day.year,
            rules.settings.service_interval_km,
            rules.settings.service_interval_months,
            inputs_campaigns,
        );
        features[0] = None;
        features
    }
}

fn lock(state: &Mutex<Gathered>) -> Result<std::sync::MutexGuard<'_, Gathered>, StoreError> {
    state
        .lock()
        .map_err(|_| StoreError::Worker("relabel state poisoned".into()))
}

fn int(cells: &dyn Cells, index: usize) -> Result<Option<i64>, StoreError> {
    Ok(cells.real(index)?.map(|v| v as i64))
}

/// Reads the inputs of the vehicles in `scope`: the registry, then each table of the
/// vehicles' history in one pass (visits before days: the km since a service count from it).
async fn gather(
    store: &Store,
    scope: &Scope,
    day: Day,
    rules: &Rules,
) -> Result<Gathered, StoreError> {
    let state = Arc::new(Mutex::new(Gathered::default()));
    let today = day.number;
    let (select, params) = scope_sql(scope, "v.vin", 1);
    let within = |column: &str, of: &str| -> (String, Vec<Value>) {
        match scope {
            Scope::All => ("1 = 1".to_owned(), vec![]),
            _ => {
                let (inner, params) = scope_sql(scope, "v2.vin", 1);
                (
                    format!("{column} IN (SELECT v2.{of} FROM vehicles v2 WHERE {inner})"),
                    params,
                )
            }
        }
    };
    let consents: String = CHANNELS
        .iter()
        .map(|c| format!(", CASE WHEN c.{c}_opt_in THEN 1 ELSE 0 END"))
        .collect();
    let into = Arc::clone(&state);
    store
        .scan(
            format!(
                "SELECT v.vin, v.customer_id, v.store_id, v.device_id, v.energy, v.price_class, \
                 v.model_year, v.purchase_day, v.warranty_end_day, v.service_interval_km, \
                 v.service_interval_months, c.birthday_month, c.referrals{consents} \
                 FROM vehicles v LEFT JOIN customers c ON c.id = v.customer_id WHERE {select}"
            ),
            params,
            move |cells| {
                let text = |i: usize| -> Result<Option<Box<str>>, StoreError> {
                    Ok(cells.text(i)?.map(|t| t.into()))
                };
                let mut consents = [false; CHANNELS.len()];
                for (c, consent) in consents.iter_mut().enumerate() {
                    *consent = int(cells, 13 + c)? == Some(1);
                }
                let mut inputs = Inputs::default();
                inputs.energy = text(4)?.unwrap_or_default().into();
                inputs.price_class = text(5)?.unwrap_or_default().into();
                inputs.model_year = int(cells, 6)?.unwrap_or(0);
                inputs.purchase_day = int(cells, 7)?;
                inputs.warranty_end_day = int(cells, 8)?;
                inputs.service_interval_km = int(cells, 9)?;
                inputs.service_interval_months = int(cells, 10)?;
                inputs.birthday_month = int(cells, 11)?;
                inputs.referrals = int(cells, 12)?.unwrap_or(0);
                let vehicle = Vehicle {
                    vin: text(0)?.unwrap_or_default(),
                    customer: text(1)?,
                    store_id: int(cells, 2)?,
                    device_id: text(3)?,
                    consents,
                    inputs,
                };
                let mut g = lock(&into)?;
                let position = g.vehicles.len() as u32;
                g.by_vin.insert(vehicle.vin.clone(), position);
                if let Some(device) = &vehicle.device_id {
                    g.by_device.insert(device.clone(), position);
                }
                g.vehicles.push(vehicle);
                Ok(())
            },
        )
        .await?;

    let (scope_vin, params) = within("vin", "vin");
    let into = Arc::clone(&state);
    store
        .scan(
            format!(
                "SELECT vin, visit_day, spend_cents, kind, odometer_km FROM service_visits \
                 WHERE visit_day <= {today} AND {scope_vin}"
            ),
            params,
            move |cells| {
                let (day, spend, odometer) = (int(cells, 1)?, int(cells, 2)?, int(cells, 4)?);
                let kind = cells.text(3)?.map(|k| k.into_owned()).unwrap_or_default();
                if let (Some(v), Some(day)) = (lock(&into)?.by_vin(cells.text(0)?), day) {
                    v.inputs
                        .visit(today, day, spend.unwrap_or(0), &kind, odometer);
                }
                Ok(())
            },
        )
        .await?;

    let (scope_customer, params) = within("customer_id", "customer_id");
    let since = today - i64::from(rules.settings.contact_period_days);
    let into = Arc::clone(&state);
    store
        .scan(
            format!(
                "SELECT customer_id, sent_day, CASE WHEN responded THEN 1 ELSE 0 END \
                 FROM campaign_responses WHERE {scope_customer}"
            ),
            params,
            move |cells| {
                let Some(customer) = cells.text(0)? else {
                    return Ok(());
                };
                let (sent_day, responded) = (int(cells, 1)?, int(cells, 2)? == Some(1));
                let mut g = lock(&into)?;
                let entry = g.campaigns.entry(customer.into()).or_default();
                if sent_day.is_some_and(|d| d <= today) {
                    entry.0 += 1;
                    entry.1 += i64::from(responded);
                }
                if sent_day.is_some_and(|d| d > since) {
                    entry.2 += 1;
                }
                Ok(())
            },
        )
        .await?;

    let (scope_device, params) = within("device_id", "device_id");
    let into = Arc::clone(&state);
    store
        .scan(
            format!("SELECT device_id, odometer_m FROM reported_vehicles WHERE {scope_device}"),
            params.clone(),
            move |cells| {
                let odometer = int(cells, 1)?;
                if let Some(v) = lock(&into)?.by_device(cells.text(0)?) {
                    v.inputs.reported_odometer_m = odometer;
                }
                Ok(())
            },
        )
        .await?;

    let into = Arc::clone(&state);
    store
        .scan(
            format!(
                "SELECT device_id, local_day, distance_m, trips, long_trips, driving_s, moving_s, \
                 night_pct, commute_trips, harsh_accel + harsh_brake + harsh_corner, overspeed_s, \
                 score, odometer_m FROM days WHERE local_day <= {today} AND {scope_device}"
            ),
            params.clone(),
            move |cells| {
                let n = |i: usize| -> Result<i64, StoreError> { Ok(int(cells, i)?.unwrap_or(0)) };
                let row = DayRow {
                    local_day: n(1)?,
                    distance_m: n(2)?,
                    trips: n(3)?,
                    long_trips: n(4)?,
                    driving_s: n(5)?,
                    moving_s: n(6)?,
                    night_pct: n(7)?,
                    commute_trips: n(8)?,
                    harsh: n(9)?,
                    overspeed_s: n(10)?,
                    score: n(11)?,
                    odometer_m: int(cells, 12)?,
                };
                if let Some(v) = lock(&into)?.by_device(cells.text(0)?) {
                    v.inputs.day(today, &row);
                }
                Ok(())
            },
        )
        .await?;

    let into = Arc::clone(&state);
    store
        .scan(
            format!(
                "SELECT device_id, from_local_day, store_id, home_distance_m FROM store_distances \
                 WHERE {scope_device}"
            ),
            params.clone(),
            move |cells| {
                let (from, store_id, distance) = (int(cells, 1)?, int(cells, 2)?, int(cells, 3)?);
                if let (Some(v), Some(from), Some(store_id), Some(distance)) = (
                    lock(&into)?.by_device(cells.text(0)?),
                    from,
                    store_id,
                    distance,
                ) {
                    let own = v.store_id;
                    v.inputs.store_distance(from, store_id, distance, own);
                }
                Ok(())
            },
        )
        .await?;

    let into = Arc::clone(&state);
    store
        .scan(
            format!(
                "SELECT device_id, kind, visits, last_local_day FROM poi_visits \
                 WHERE last_local_day > {} AND {scope_device}",
                today - 90
            ),
            params,
            move |cells| {
                let kind = cells.text(1)?.map(|k| k.into_owned()).unwrap_or_default();
                let (visits, last) = (int(cells, 2)?.unwrap_or(0), int(cells, 3)?.unwrap_or(0));
                if let Some(v) = lock(&into)?.by_device(cells.text(0)?) {
                    v.inputs.poi(today, &kind, visits, last);
                }
                Ok(())
            },
        )
        .await?;
    let gathered = std::mem::take(&mut *lock(&state)?);
    Ok(gathered)
}

/// Rows per statement of a relabel's write.
fn chunk_rows(dialect: Dialect) -> usize {
    match dialect {
        Dialect::Sqlite => 500,
        Dialect::Postgres => 5_000,
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
    const STEPS: usize = 3;
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

    // 1. The features' inputs, one pass over each table.
    let started = std::time::Instant::now();
    let gathered = gather(store, scope, day, rules).await?;
    let vehicles = gathered.vehicles.len() as u64;
    report(1, "features", vehicles, started);

    // 2. The distributions: a full relabel ranks the population from its tier parts, a
    // partial one ranks against the points the last full one kept.
    let started = std::time::Instant::now();
    let context: Context = [day.number, day.month, day.year];
    let assigner = if *scope == Scope::All {
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
        let mut columns = vec![Vec::with_capacity(gathered.vehicles.len()); parts.len()];
        for vehicle in &gathered.vehicles {
            let features = gathered.features(vehicle, day, rules);
            for (column, &part) in columns.iter_mut().zip(&parts) {
                column.push(rank_value(features[part]));
            }
        }
        Assigner::new(rules, context, |feature| {
            parts
                .iter()
                .position(|&p| p == feature)
                .map(|k| columns[k].clone())
                .unwrap_or_default()
        })
        .map_err(StoreError::Data)?
    } else {
        let points = load_points(store, t.rank_points).await?;
        Assigner::with_points(rules, context, &points).map_err(StoreError::Data)?
    };
    report(2, "ranks", vehicles, started);

    // 3. Labels and actions, customer by customer, written as they are made: one
    // transaction, so readers see the old labels or the new ones, never half of each.
    let started = std::time::Instant::now();
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let write = store.execute_stream(receiver, Isolation::Snapshot);
    let produce = async move {
        let send = |statement: Statement| sender.send(Ok(statement));
        if send(delete_from(t.vehicle_labels, scope)).await.is_err() {
            return;
        }
        let fingerprint = rules.fingerprint();
        let n = gathered.vehicles.len();
        // Each customer's vehicles in a chain from the first, so a customer's actions are
        // ranked and capped together.
        let mut first: HashMap<&str, u32> = HashMap::new();
        let mut next = vec![u32::MAX; n];
        let mut last: HashMap<&str, u32> = HashMap::new();
        for (p, vehicle) in gathered.vehicles.iter().enumerate() {
            if let Some(customer) = vehicle.customer.as_deref() {
                first.entry(customer).or_insert(p as u32);
                if let Some(previous) = last.insert(customer, p as u32) {
                    next[previous as usize] = p as u32;
                }
            }
        }
        drop(last);
        let mut labels = Vec::new();
        let chunk = chunk_rows(dialect);
        for (p, vehicle) in gathered.vehicles.iter().enumerate() {
            if vehicle
                .customer
                .as_deref()
                .is_some_and(|c| first.get(c) != Some(&(p as u32)))
            {
                continue;
            }
            let mut group = vec![p];
            while let Some(&after) = group.last().map(|&q| &next[q]) {
                if after == u32::MAX {
                    break;
                }
                group.push(after as usize);
            }
            let subjects: Vec<(usize, Subject)> = group
                .iter()
                .map(|&q| {
                    let v = &gathered.vehicles[q];
                    let recent = v
                        .customer
                        .as_ref()
                        .and_then(|c| gathered.campaigns.get(c))
                        .map_or(0, |c| c.2);
                    (
                        q,
                        Subject {
                            vin: v.vin.to_string(),
                            customer: v.customer.as_deref().map(str::to_owned),
                            has_device: v.device_id.is_some(),
                            features: gathered.features(v, day, rules),
                            energy: Some(v.inputs.energy.clone()),
                            consents: v.consents,
                            recent_contacts: recent as u32,
                        },
                    )
                })
                .collect();
            let refs: Vec<(usize, &Subject)> = subjects.iter().map(|(q, s)| (*q, s)).collect();
            for ((_, subject), assigned) in subjects.iter().zip(assigner.customer(&refs)) {
                labels.push(vehicle_row(
                    &assigner,
                    subject,
                    &assigned,
                    day.number,
                    &fingerprint,
                ));
            }
            if labels.len() >= chunk {
                for statement in insert_rows(
                    dialect,
                    t.vehicle_labels,
                    &VEHICLE_LABELS,
                    std::mem::take(&mut labels),
                ) {
                    if send(statement).await.is_err() {
                        return;
                    }
                }
            }
        }
        let mut tail = insert_rows(dialect, t.vehicle_labels, &VEHICLE_LABELS, labels);
        if *scope == Scope::All {
            tail.push(Statement::new(
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
            tail.extend(insert_rows(
                dialect,
                t.rank_points,
                &[("name", "text"), ("value", "float8"), ("below", "bigint")],
                points,
            ));
        }
        match serde_json::to_string(&Catalog::of(rules)) {
            Ok(catalog) => tail.push(Statement::new(
                "INSERT INTO rule_catalogs (fingerprint, catalog) VALUES ($1, $2) \
                 ON CONFLICT (fingerprint) DO NOTHING",
                vec![fingerprint.into(), catalog.into()],
            )),
            Err(e) => {
                let _ = sender
                    .send(Err(StoreError::Data(format!("the rules' catalog: {e}"))))
                    .await;
                return;
            }
        }
        for statement in tail {
            if send(statement).await.is_err() {
                return;
            }
        }
    };
    // The sender goes with the producer: when it is done, the write commits.
    let (written, ()) = tokio::join!(write, produce);
    written?;
    report(3, "labels", vehicles, started);
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
