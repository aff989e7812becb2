//! Relabelling, for every vehicle or for the ones whose data changed.
//!
//! A relabel runs in three reported steps. It reads the registry and each table of the
//! vehicles' history once and computes every vehicle's features ([`Inputs`]); ranks the
//! population's tier parts ([`Assigner::new`]); then assigns each customer's labels and ranked
//! actions ([`Assigner::customer`]) and writes them as it goes, one `vehicle_labels` row per
//! vehicle in one transaction (`Store::execute_stream`): its labels, where each came from,
//! its actions and its features. The words that explain them are stored once per rules file
//! ([`Catalog`](super::catalog::Catalog)).
//!
//! A full relabel keeps each tier distribution as rank points (`rank_points`); a partial one
//! ranks its vehicles against them ([`Assigner::with_points`]), so its cost does not grow with
//! the population. For the same data both give the same tier while a distribution has at most
//! 4,096 distinct values, and within one in 4,096 of the population beyond.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ahash::AHashMap;

use super::assign::{Assigned, Assigner, Context, Points, Subject, part_features, rank_value};
use super::features::{DayRow, FEATURES, Inputs, Places, encode};
use super::rules::{CHANNELS, Rules};
use crate::store::{Cells, Dialect, Statement, Store, StoreError, Value, insert_rows};

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
/// `features` its features as of the day ([`super::features::encode`]).
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

/// Builds `vehicle_labels` rows ([`VEHICLE_LABELS`]) with what every row shares prepared
/// once: each label's `group=value` text and its place in (group, value) order. (Formatting
/// each row's pieces afresh took twice as long as assigning its labels.)
struct Rows {
    assigner: Arc<Assigner>,
    /// Per label value: its text, and its rank in (group, value) order.
    pairs: Vec<(String, usize)>,
    day: i64,
    fingerprint: String,
}

impl Rows {
    fn new(assigner: Arc<Assigner>, day: i64, fingerprint: String) -> Rows {
        let values = assigner.label_values();
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&a, &b| values[a].cmp(&values[b]));
        let mut pairs: Vec<(String, usize)> = values
            .iter()
            .map(|(g, v)| (format!("{g}={v}"), 0))
            .collect();
        for (rank, &index) in order.iter().enumerate() {
            pairs[index].1 = rank;
        }
        Rows {
            assigner,
            pairs,
            day,
            fingerprint,
        }
    }

    fn row(&self, subject: &Subject, assigned: &Assigned) -> Vec<Value> {
        use std::fmt::Write;
        let mut labels: Vec<&super::assign::Label> = assigned
            .labels
            .iter()
            .filter(|l| l.value < self.pairs.len())
            .collect();
        labels.sort_unstable_by_key(|l| self.pairs[l.value].1);
        let (mut text, mut sources) = (String::with_capacity(256), String::with_capacity(96));
        for (i, label) in labels.iter().enumerate() {
            if i > 0 {
                text.push(' ');
                sources.push(' ');
            }
            text.push_str(&self.pairs[label.value].0);
            label.source.encode_into(&mut sources);
        }
        let strategies = &self.assigner.rules().strategies;
        let mut actions = String::with_capacity(96);
        for (i, a) in assigned.actions.iter().enumerate() {
            if i > 0 {
                actions.push(' ');
            }
            let _ = write!(
                actions,
                "{}/{}/{}/{}",
                a.rank,
                strategies[a.strategy].name,
                a.channel.map_or("-", |c| CHANNELS[c]),
                a.status.as_str()
            );
        }
        let first = assigned.actions.first().filter(|a| a.rank == 1);
        vec![
            subject.vin.as_str().into(),
            text.into(),
            sources.into(),
            actions.into(),
            first.map_or(Value::Null, |a| strategies[a.strategy].name.as_str().into()),
            first
                .and_then(|a| a.channel)
                .map_or(Value::Null, |c| CHANNELS[c].into()),
            first.map_or(Value::Null, |a| a.status.as_str().into()),
            self.day.into(),
            self.fingerprint.as_str().into(),
            Value::Bytes(encode(&subject.features)),
        ]
    }
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
    /// Per customer: campaigns sent up to the day, answered, and sent within the contact
    /// period.
    campaigns: AHashMap<Box<str>, (i64, i64, i64)>,
}

impl Gathered {
    /// A vehicle's features as of `day`, with the rules' default service intervals.
    fn features(&self, vehicle: &Vehicle, day: Day, intervals: (f64, f64)) -> Vec<Option<f64>> {
        let campaigns = vehicle
            .customer
            .as_ref()
            .and_then(|c| self.campaigns.get(c))
            .map_or((0, 0), |(sent, answered, _)| (*sent, *answered));
        vehicle
            .inputs
            .features(day.number, day.year, intervals.0, intervals.1, campaigns)
    }
}

/// Where a vehicle sits in [`Gathered::vehicles`], by VIN and by device, and its store (kept
/// here too: the store-distance scan reads it while the other chain holds the vehicles).
#[derive(Default)]
struct Index {
    by_vin: AHashMap<Key, u32>,
    by_device: AHashMap<Key, u32>,
    stores: Vec<Option<i64>>,
}

impl Index {
    fn vin(&self, vin: Option<Cow<'_, str>>) -> Option<usize> {
        self.by_vin.get(&Key::new(&vin?)).map(|p| *p as usize)
    }

    fn device(&self, device: Option<Cow<'_, str>>) -> Option<usize> {
        self.by_device.get(&Key::new(&device?)).map(|p| *p as usize)
    }
}

/// The longest key [`Key`] holds inline: a VIN is 17 bytes.
const INLINE_KEY: usize = 23;

/// A VIN or device id as a key of [`Index`], held in the map itself when it fits. A relabel
/// looks up millions of them among a million: with the keys as strings elsewhere, each lookup
/// also missed the cache on the string (about a twentieth of a relabel's CPU).
#[derive(Debug, PartialEq, Eq, Hash)]
enum Key {
    Inline(u8, [u8; INLINE_KEY]),
    Heap(Box<str>),
}

impl Key {
    fn new(text: &str) -> Key {
        let bytes = text.as_bytes();
        if bytes.len() <= INLINE_KEY {
            let mut inline = [0; INLINE_KEY];
            inline[..bytes.len()].copy_from_slice(bytes);
            Key::Inline(bytes.len() as u8, inline)
        } else {
            Key::Heap(text.into())
        }
    }
}

fn lock<T>(state: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, StoreError> {
    state
        .lock()
        .map_err(|_| StoreError::Worker("relabel state poisoned".into()))
}

fn int(cells: &dyn Cells, index: usize) -> Result<Option<i64>, StoreError> {
    Ok(cells.real(index)?.map(|v| v as i64))
}

/// What a gather reads, one query per table, each with its parameters; the first column of
/// every history query is its key (VIN, customer or device).
struct Queries {
    registry: (String, Vec<Value>),
    visits: (String, Vec<Value>),
    days: (String, Vec<Value>),
    campaigns: (String, Vec<Value>),
    reported: (String, Vec<Value>),
    store_distances: (String, Vec<Value>),
    poi: (String, Vec<Value>),
}

/// The registry's columns, read by [`vehicle_of`].
fn registry_sql(select: &str) -> String {
    let consents: String = CHANNELS
        .iter()
        .map(|c| format!(", CASE WHEN c.{c}_opt_in THEN 1 ELSE 0 END"))
        .collect();
    format!(
        "SELECT v.vin, v.customer_id, v.store_id, v.device_id, v.energy, v.price_class, \
         v.model_year, v.purchase_day, v.warranty_end_day, v.service_interval_km, \
         v.service_interval_months, c.birthday_month, c.referrals{consents} \
         FROM vehicles v LEFT JOIN customers c ON c.id = v.customer_id WHERE {select}"
    )
}

impl Queries {
    /// The queries of the vehicles in `scope` as of `today`; the day filters, [`Inputs`]' own,
    /// are pushed down to the database.
    fn new(scope: &Scope, today: i64) -> Queries {
        let visits_day = format!("visit_day <= {today} AND ");
        let days_day = format!("local_day <= {today} AND ");
        let poi_day = format!("last_local_day > {} AND ", today - 90);
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
        let (select, params) = scope_sql(scope, "v.vin", 1);
        let (vin, vin_params) = within("vin", "vin");
        let (device, device_params) = within("device_id", "device_id");
        let (customer, customer_params) = within("customer_id", "customer_id");
        Queries {
            registry: (registry_sql(&select), params),
            visits: (
                format!(
                    "SELECT vin, visit_day, spend_cents, kind, odometer_km FROM service_visits \
                     WHERE {visits_day}{vin}"
                ),
                vin_params,
            ),
            days: (
                format!(
                    "SELECT device_id, local_day, distance_m, trips, long_trips, driving_s, moving_s, \
                     night_pct, commute_trips, harsh_accel + harsh_brake + harsh_corner, overspeed_s, \
                     score, odometer_m FROM days WHERE {days_day}{device}"
                ),
                device_params.clone(),
            ),
            campaigns: (
                format!(
                    "SELECT customer_id, sent_day, CASE WHEN responded THEN 1 ELSE 0 END \
                     FROM campaign_responses WHERE {customer}"
                ),
                customer_params,
            ),
            reported: (
                format!("SELECT device_id, odometer_m FROM reported_vehicles WHERE {device}"),
                device_params.clone(),
            ),
            store_distances: (
                format!(
                    "SELECT device_id, from_local_day, store_id, home_distance_m FROM store_distances \
                     WHERE {device}"
                ),
                device_params.clone(),
            ),
            poi: (
                format!(
                    "SELECT device_id, kind, visits, last_local_day FROM poi_visits \
                     WHERE {poi_day}{device}"
                ),
                device_params,
            ),
        }
    }
}

/// A registry row as a vehicle with its facts.
fn vehicle_of(cells: &dyn Cells) -> Result<Vehicle, StoreError> {
    let text =
        |i: usize| -> Result<Option<Box<str>>, StoreError> { Ok(cells.text(i)?.map(|t| t.into())) };
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
    Ok(Vehicle {
        vin: text(0)?.unwrap_or_default(),
        customer: text(1)?,
        store_id: int(cells, 2)?,
        device_id: text(3)?,
        consents,
        inputs,
    })
}

/// A workshop-visit row into its vehicle's inputs.
fn add_visit(cells: &dyn Cells, today: i64, inputs: &mut Inputs) -> Result<(), StoreError> {
    let (day, spend, odometer) = (int(cells, 1)?, int(cells, 2)?, int(cells, 4)?);
    let kind = cells.text(3)?;
    if let Some(day) = day {
        let kind = kind.as_deref().unwrap_or_default();
        inputs.visit(today, day, spend.unwrap_or(0), kind, odometer);
    }
    Ok(())
}

/// A day-summary row into its vehicle's inputs.
fn add_day(cells: &dyn Cells, today: i64, inputs: &mut Inputs) -> Result<(), StoreError> {
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
    inputs.day(today, &row);
    Ok(())
}

/// A campaign-response row into its customer's counts: sent up to the day, answered, and sent
/// after `since` (within the contact period).
fn add_campaign(
    cells: &dyn Cells,
    today: i64,
    since: i64,
    counts: &mut (i64, i64, i64),
) -> Result<(), StoreError> {
    let (sent_day, responded) = (int(cells, 1)?, int(cells, 2)? == Some(1));
    if sent_day.is_some_and(|d| d <= today) {
        counts.0 += 1;
        counts.1 += i64::from(responded);
    }
    if sent_day.is_some_and(|d| d > since) {
        counts.2 += 1;
    }
    Ok(())
}

/// A reported-vehicle row into its vehicle's places.
fn add_reported(cells: &dyn Cells, places: &mut Places) -> Result<(), StoreError> {
    places.reported_odometer_m = int(cells, 1)?;
    Ok(())
}

/// A store-distance row into its vehicle's places; `own` is the vehicle's store.
fn add_store_distance(
    cells: &dyn Cells,
    own: Option<i64>,
    places: &mut Places,
) -> Result<(), StoreError> {
    if let (Some(from), Some(store_id), Some(distance)) =
        (int(cells, 1)?, int(cells, 2)?, int(cells, 3)?)
    {
        places.store_distance(from, store_id, distance, own);
    }
    Ok(())
}

/// A POI-visit row into its vehicle's places.
fn add_poi(cells: &dyn Cells, today: i64, places: &mut Places) -> Result<(), StoreError> {
    let kind = cells.text(1)?;
    let (visits, last) = (int(cells, 2)?.unwrap_or(0), int(cells, 3)?.unwrap_or(0));
    places.poi(today, kind.as_deref().unwrap_or_default(), visits, last);
    Ok(())
}

/// The vehicles of a registry query with their owners, and where each sits.
async fn registry(
    store: &Store,
    (sql, params): (String, Vec<Value>),
    count: usize,
) -> Result<(Vec<Vehicle>, Index), StoreError> {
    let registry = Arc::new(Mutex::new((
        Vec::<Vehicle>::with_capacity(count),
        Index {
            by_vin: AHashMap::with_capacity(count),
            by_device: AHashMap::with_capacity(count),
            stores: Vec::with_capacity(count),
        },
    )));
    let into = Arc::clone(&registry);
    store
        .scan(sql, params, move |cells| {
            let vehicle = vehicle_of(cells)?;
            let mut guard = lock(&into)?;
            let (vehicles, index) = &mut *guard;
            let position = vehicles.len() as u32;
            index.by_vin.insert(Key::new(&vehicle.vin), position);
            if let Some(device) = &vehicle.device_id {
                index.by_device.insert(Key::new(device), position);
            }
            index.stores.push(vehicle.store_id);
            vehicles.push(vehicle);
            Ok(())
        })
        .await?;
    let taken = std::mem::take(&mut *lock(&registry)?);
    Ok(taken)
}

/// One registry after the other: the second's positions follow the first's.
fn merge(low: (Vec<Vehicle>, Index), high: (Vec<Vehicle>, Index)) -> (Vec<Vehicle>, Index) {
    let (mut vehicles, mut index) = low;
    let (more, other) = high;
    let offset = vehicles.len() as u32;
    let shift = |map: AHashMap<Key, u32>| map.into_iter().map(move |(k, p)| (k, p + offset));
    // Each map on a thread of its own: half a million keys re-inserted into each, on the way
    // from reading the registry to reading the history (0.8 s of CPU in one thread).
    std::thread::scope(|scope| {
        scope.spawn(|| index.by_vin.extend(shift(other.by_vin)));
        scope.spawn(|| index.by_device.extend(shift(other.by_device)));
        vehicles.extend(more);
    });
    index.stores.extend(other.stores);
    (vehicles, index)
}

/// A scan's row function for a history table: finds the row's vehicle by its key in column 0
/// (`key`: [`Index::vin`] or [`Index::device`]) and hands the row, the index with the vehicle's
/// position, and its entry in `into` to `add`. Rows of vehicles out of the relabel are skipped.
fn each_vehicle<T: Send + 'static>(
    index: &Arc<Index>,
    into: &Arc<Mutex<Vec<T>>>,
    key: fn(&Index, Option<Cow<'_, str>>) -> Option<usize>,
    add: impl Fn(&dyn Cells, (&Index, usize), &mut T) -> Result<(), StoreError> + Send + 'static,
) -> impl FnMut(&dyn Cells) -> Result<(), StoreError> + Send + 'static {
    let (index, into) = (Arc::clone(index), Arc::clone(into));
    move |cells| {
        if let Some(p) = key(&index, cells.text(0)?) {
            add(cells, (&index, p), &mut lock(&into)?[p])?;
        }
        Ok(())
    }
}

/// Reads the inputs of the vehicles in `scope`: the registry, then each table of the
/// vehicles' history once, in two chains at a time (each scan on a connection of its own):
/// visits then days (the km since a service count from the last visit), and campaigns,
/// reported vehicles, store distances and POI visits.
async fn gather(
    store: &Store,
    scope: &Scope,
    day: Day,
    contact_period_days: u32,
) -> Result<Gathered, StoreError> {
    let today = day.number;
    let queries = Queries::new(scope, today);
    let (select, params) = scope_sql(scope, "v.vin", 1);
    // Sized once: growing a million vehicles' inputs moved them about several times.
    let count = store
        .query(
            format!("SELECT COUNT(*) FROM vehicles v WHERE {select}"),
            params,
        )
        .await?
        .first()
        .and_then(|row| row[0].int())
        .unwrap_or(0)
        .max(0) as usize;
    // Half the registry each on two connections, when there is enough of it to pay.
    let (vehicles, index) = if *scope == Scope::All && count >= 100_000 {
        let median: Value = store
            .query(
                format!(
                    "SELECT vin FROM vehicles ORDER BY vin LIMIT 1 OFFSET {}",
                    count / 2
                ),
                vec![],
            )
            .await?
            .first()
            .and_then(|row| row.first().cloned())
            .unwrap_or(Value::Null);
        let (low, high) = tokio::try_join!(
            registry(
                store,
                (registry_sql("v.vin < $1"), vec![median.clone()]),
                count
            ),
            registry(
                store,
                (registry_sql("v.vin >= $1"), vec![median]),
                count / 2 + 1
            ),
        )?;
        merge(low, high)
    } else {
        registry(store, queries.registry.clone(), count).await?
    };
    let n = vehicles.len();
    let index = Arc::new(index);
    let history = Arc::new(Mutex::new(vehicles));
    let places = Arc::new(Mutex::new(vec![Places::default(); n]));
    let campaigns = Arc::new(Mutex::new(AHashMap::<Box<str>, (i64, i64, i64)>::new()));

    let Queries {
        visits,
        days,
        campaigns: campaign_query,
        reported,
        store_distances,
        poi,
        ..
    } = queries;
    let visits_and_days = {
        let (index, history) = (Arc::clone(&index), Arc::clone(&history));
        async move {
            store
                .scan(
                    visits.0,
                    visits.1,
                    each_vehicle(&index, &history, Index::vin, move |cells, _, vehicle| {
                        add_visit(cells, today, &mut vehicle.inputs)
                    }),
                )
                .await?;
            store
                .scan(
                    days.0,
                    days.1,
                    each_vehicle(&index, &history, Index::device, move |cells, _, vehicle| {
                        add_day(cells, today, &mut vehicle.inputs)
                    }),
                )
                .await?;
            Ok::<(), StoreError>(())
        }
    };
    let since = today - i64::from(contact_period_days);
    let the_rest = {
        let into = Arc::clone(&campaigns);
        let (index, places) = (Arc::clone(&index), Arc::clone(&places));
        async move {
            store
                .scan(campaign_query.0, campaign_query.1, move |cells| {
                    let Some(customer) = cells.text(0)? else {
                        return Ok(());
                    };
                    let mut campaigns = lock(&into)?;
                    let counts = match campaigns.get_mut(customer.as_ref()) {
                        Some(counts) => counts,
                        None => campaigns.entry(customer.as_ref().into()).or_default(),
                    };
                    add_campaign(cells, today, since, counts)
                })
                .await?;
            let device = Index::device;
            store
                .scan(
                    reported.0,
                    reported.1,
                    each_vehicle(&index, &places, device, |cells, _, places| {
                        add_reported(cells, places)
                    }),
                )
                .await?;
            store
                .scan(
                    store_distances.0,
                    store_distances.1,
                    each_vehicle(&index, &places, device, |cells, (index, p), places| {
                        add_store_distance(cells, index.stores[p], places)
                    }),
                )
                .await?;
            store
                .scan(
                    poi.0,
                    poi.1,
                    each_vehicle(&index, &places, device, move |cells, _, places| {
                        add_poi(cells, today, places)
                    }),
                )
                .await?;
            Ok::<(), StoreError>(())
        }
    };
    tokio::try_join!(visits_and_days, the_rest)?;
    let mut vehicles = std::mem::take(&mut *lock(&history)?);
    for (vehicle, places) in vehicles.iter_mut().zip(lock(&places)?.iter()) {
        vehicle.inputs.places = *places;
    }
    let campaigns = std::mem::take(&mut *lock(&campaigns)?);
    Ok(Gathered {
        vehicles,
        campaigns,
    })
}

/// Rows per statement of a relabel's write.
fn chunk_rows(dialect: Dialect) -> usize {
    match dialect {
        Dialect::Sqlite => 500,
        Dialect::Postgres => 5_000,
    }
}

/// The rules' default service intervals, km and months.
fn intervals(rules: &Rules) -> (f64, f64) {
    (
        rules.settings.service_interval_km,
        rules.settings.service_interval_months,
    )
}

/// Every vehicle's features as of `day`, as a full relabel computes them, by VIN; for tests.
#[cfg(test)]
pub(crate) async fn all_features(
    store: &Store,
    day: Day,
    intervals: (f64, f64),
) -> Result<std::collections::BTreeMap<String, Vec<Option<f64>>>, StoreError> {
    let gathered = gather(store, &Scope::All, day, 0).await?;
    Ok(gathered
        .vehicles
        .iter()
        .map(|v| (v.vin.to_string(), gathered.features(v, day, intervals)))
        .collect())
}

/// Threads that assign labels and build rows while the database writes.
const WORKERS: usize = 2;

/// What the threads of a relabel's last step share: the inputs, the ranks, and each
/// customer's vehicles in a chain from the first, so a customer's actions are ranked and
/// capped together.
struct Producer {
    gathered: Gathered,
    rows: Rows,
    day: Day,
    table: &'static str,
    dialect: Dialect,
    /// The next vehicle of the same customer, or `u32::MAX`.
    next: Vec<u32>,
    /// The first vehicle of each customer (and every vehicle without one), in order.
    heads: Vec<u32>,
}

impl Producer {
    fn new(
        gathered: Gathered,
        assigner: Arc<Assigner>,
        day: Day,
        fingerprint: String,
        table: &'static str,
        dialect: Dialect,
    ) -> Producer {
        let n = gathered.vehicles.len();
        let mut next = vec![u32::MAX; n];
        let mut heads = Vec::with_capacity(n);
        {
            let mut last: AHashMap<&str, u32> = AHashMap::with_capacity(n);
            for (p, vehicle) in gathered.vehicles.iter().enumerate() {
                match vehicle.customer.as_deref() {
                    Some(customer) => match last.insert(customer, p as u32) {
                        Some(previous) => next[previous as usize] = p as u32,
                        None => heads.push(p as u32),
                    },
                    None => heads.push(p as u32),
                }
            }
        }
        Producer {
            gathered,
            rows: Rows::new(assigner, day.number, fingerprint),
            day,
            table,
            dialect,
            next,
            heads,
        }
    }

    /// Assigns the customers whose first vehicles are `heads[range]` and sends their rows,
    /// a chunk at a time. Stops when the receiver has gone (the write failed).
    fn produce(
        &self,
        range: std::ops::Range<usize>,
        sender: &tokio::sync::mpsc::Sender<Result<Statement, StoreError>>,
    ) {
        let assigner = &self.rows.assigner;
        let rules = assigner.rules();
        let chunk = chunk_rows(self.dialect);
        let mut labels = Vec::with_capacity(chunk);
        let flush = |labels: &mut Vec<Vec<Value>>| {
            insert_rows(
                self.dialect,
                self.table,
                &VEHICLE_LABELS,
                std::mem::take(labels),
            )
            .into_iter()
            .all(|statement| sender.blocking_send(Ok(statement)).is_ok())
        };
        for &head in &self.heads[range] {
            let mut group = vec![head as usize];
            while let Some(&after) = group.last().map(|&q| &self.next[q]) {
                if after == u32::MAX {
                    break;
                }
                group.push(after as usize);
            }
            let subjects: Vec<(usize, Subject)> = group
                .iter()
                .map(|&q| {
                    let v = &self.gathered.vehicles[q];
                    let recent = v
                        .customer
                        .as_ref()
                        .and_then(|c| self.gathered.campaigns.get(c))
                        .map_or(0, |c| c.2);
                    (
                        q,
                        Subject {
                            vin: v.vin.to_string(),
                            customer: v.customer.as_deref().map(str::to_owned),
                            has_device: v.device_id.is_some(),
                            features: self.gathered.features(v, self.day, intervals(rules)),
                            energy: Some(v.inputs.energy.clone()),
                            consents: v.consents,
                            recent_contacts: recent as u32,
                        },
                    )
                })
                .collect();
            let refs: Vec<(usize, &Subject)> = subjects.iter().map(|(q, s)| (*q, s)).collect();
            for ((_, subject), assigned) in subjects.iter().zip(assigner.customer(&refs)) {
                labels.push(self.rows.row(subject, &assigned));
            }
            if labels.len() >= chunk && !flush(&mut labels) {
                return;
            }
        }
        flush(&mut labels);
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

    // One relabel at a time, from the first read to the commit.
    let _lock = store.relabel_lock().await?;

    // 1. The features' inputs, one pass over each table.
    let started = std::time::Instant::now();
    let gathered = gather(store, scope, day, rules.settings.contact_period_days).await?;
    let vehicles = gathered.vehicles.len() as u64;
    report(1, "features", vehicles, started);

    // 2. The distributions: a full relabel ranks the population from its tier parts, a
    // partial one ranks against the points the last full one kept.
    let started = std::time::Instant::now();
    let context: Context = [day.number, day.month, day.year];
    let assigner = if *scope == Scope::All {
        let mut parts: Vec<usize> = part_features(rules)
            .map_err(StoreError::Data)?
            .into_iter()
            .flatten()
            .collect();
        parts.sort_unstable();
        parts.dedup();
        // The parts' columns, half the vehicles on each of two threads.
        let column_of = |vehicles: &[Vehicle]| {
            let mut columns = vec![Vec::with_capacity(vehicles.len()); parts.len()];
            for vehicle in vehicles {
                let features = gathered.features(vehicle, day, intervals(rules));
                for (column, &part) in columns.iter_mut().zip(&parts) {
                    column.push(rank_value(features[part]));
                }
            }
            columns
        };
        let (low, high) = gathered.vehicles.split_at(gathered.vehicles.len() / 2);
        let columns = std::thread::scope(|scope| {
            let high = scope.spawn(|| column_of(high));
            let mut columns = column_of(low);
            let high = high
                .join()
                .map_err(|_| StoreError::Worker("the ranks' second thread failed".into()))?;
            for (column, rest) in columns.iter_mut().zip(high) {
                column.extend(rest);
            }
            Ok::<_, StoreError>(columns)
        })?;
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

    // 3. Labels and actions, customer by customer on two threads, written as they are made:
    // one transaction, so readers see the old labels or the new ones, never half of each.
    let started = std::time::Instant::now();
    let (sender, receiver) = tokio::sync::mpsc::channel(8);
    let write = store.execute_stream(receiver);
    let fingerprint = rules.fingerprint();
    let assigner = Arc::new(assigner);
    let produce = async move {
        if sender
            .send(Ok(delete_from(t.vehicle_labels, scope)))
            .await
            .is_err()
        {
            return;
        }
        let producer = Arc::new(Producer::new(
            gathered,
            Arc::clone(&assigner),
            day,
            fingerprint.clone(),
            t.vehicle_labels,
            dialect,
        ));
        let share = producer.heads.len().div_ceil(WORKERS).max(1);
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (producer, sender) = (Arc::clone(&producer), sender.clone());
                tokio::task::spawn_blocking(move || {
                    let len = producer.heads.len();
                    producer.produce((w * share).min(len)..((w + 1) * share).min(len), &sender)
                })
            })
            .collect();
        for worker in workers {
            if let Err(error) = worker.await {
                let _ = sender
                    .send(Err(StoreError::Worker(error.to_string())))
                    .await;
                return;
            }
        }
        let mut tail = Vec::new();
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
        match serde_json::to_string(assigner.catalog()) {
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
            if sender.send(Ok(statement)).await.is_err() {
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
