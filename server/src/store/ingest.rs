//! Which rows an envelope becomes, and the SQL that stores them.
//!
//! Each table is described once ([`TABLES`]): its columns, key and what a row does to a stored
//! row with the same key. From that come two plans with the same result:
//!
//! - [`statements`]: one statement per row, for SQLite, where a prepared statement costs a
//!   function call;
//! - [`batch_statements`]: one statement per table for a whole batch, with every column passed
//!   as an array and unpacked by `UNNEST`, for PostgreSQL, where each statement costs a parse,
//!   a plan and a round of the protocol (a row at a time it managed 63 µs a message).

use std::collections::HashMap;
use std::sync::LazyLock;

use drivetag_shared::Cell;
use drivetag_shared::wire::{PlaceRole, Uplink};

use super::{Incoming, Statement, Value};

/// A cell as text: `size:lat_idx:lon_idx`, e.g. `Km1:4814:1155`.
pub(crate) fn cell_text(cell: &Cell) -> String {
    format!("{:?}:{}:{}", cell.size(), cell.lat_idx(), cell.lon_idx())
}

fn csv<T: ToString>(values: &[T]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A column's PostgreSQL type, for the casts of `UNNEST($n::type[])`.
#[derive(Debug, Clone, Copy)]
enum Ty {
    Text,
    Int,
    Bytes,
}

impl Ty {
    fn sql(self) -> &'static str {
        match self {
            Ty::Text => "text",
            Ty::Int => "bigint",
            Ty::Bytes => "bytea",
        }
    }
}

/// What a row does to a stored row with the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnConflict {
    /// Nothing: the stored row stays (an envelope or a trip is stored once).
    Keep,
    /// Replaces it when the row's `seq` is higher (a later summary of the same period).
    Newer,
}

/// One table that envelopes write to.
#[derive(Debug)]
struct Table {
    name: &'static str,
    /// Columns in the order rows give their values.
    columns: &'static [(&'static str, Ty)],
    /// The primary key, a prefix of `columns`.
    key: usize,
    on_conflict: OnConflict,
}

impl Table {
    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn conflict_clause(&self) -> String {
        let key = self.columns[..self.key]
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ");
        match self.on_conflict {
            OnConflict::Keep => format!("ON CONFLICT ({key}) DO NOTHING"),
            OnConflict::Newer => {
                let set = self.columns[self.key..]
                    .iter()
                    .map(|(name, _)| format!("{name} = excluded.{name}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "ON CONFLICT ({key}) DO UPDATE SET {set} WHERE excluded.seq > {}.seq",
                    self.name
                )
            }
        }
    }

    /// `INSERT ... VALUES ($1, ...)`: one row.
    fn row_sql(&self) -> String {
        let values = (1..=self.columns.len())
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ");
        match self.period_columns() {
            Some((device, period, seq)) => format!(
                "INSERT INTO {name} ({}) SELECT {values} WHERE NOT EXISTS (SELECT 1 FROM {name} o \
                 WHERE o.device_id = ${device} AND o.from_local_day = ${period} AND o.seq > ${seq}) {}",
                self.column_list(),
                self.conflict_clause(),
                name = self.name,
            ),
            None => format!(
                "INSERT INTO {} ({}) VALUES ({values}) {}",
                self.name,
                self.column_list(),
                self.conflict_clause()
            ),
        }
    }

    /// For a table a places summary replaces as a whole: the 1-based positions of its device,
    /// period and seq columns. Its rows are written only while no newer summary's rows hold
    /// the period: an older summary arriving late must not add the places the newer one no
    /// longer has. (A newer summary with no places at all leaves no row to compare with.)
    fn period_columns(&self) -> Option<(usize, usize, usize)> {
        if !PERIOD_TABLES.iter().any(|&t| TABLES[t].name == self.name) {
            return None;
        }
        Some((
            self.column("device_id")? + 1,
            self.column("from_local_day")? + 1,
            self.column("seq")? + 1,
        ))
    }

    /// The 0-based position of the column `name`.
    fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|(column, _)| *column == name)
    }

    /// `INSERT ... SELECT * FROM UNNEST($1::type[], ...)`: every row of a batch, one array per
    /// column.
    fn batch_sql(&self) -> String {
        let arrays = self
            .columns
            .iter()
            .enumerate()
            .map(|(n, (_, ty))| format!("${}::{}[]", n + 1, ty.sql()))
            .collect::<Vec<_>>()
            .join(", ");
        let returning = if self.name == "envelopes" {
            // Which envelopes were new: the ack tells stored from duplicate.
            " RETURNING device_id, seq"
        } else {
            ""
        };
        let guard = if self.period_columns().is_some() {
            format!(
                " AS n ({}) WHERE NOT EXISTS (SELECT 1 FROM {name} o WHERE o.device_id = n.device_id \
                 AND o.from_local_day = n.from_local_day AND o.seq > n.seq)",
                self.column_list(),
                name = self.name
            )
        } else {
            String::new()
        };
        format!(
            "INSERT INTO {} ({}) SELECT * FROM UNNEST({arrays}){guard} {}{returning}",
            self.name,
            self.column_list(),
            self.conflict_clause()
        )
    }

    fn seq_column(&self) -> usize {
        self.column("seq").unwrap_or(0)
    }
}

use Ty::{Int, Text};

const ENVELOPES: usize = 0;
const TRIPS: usize = 1;
const DAYS: usize = 2;
const STYLES: usize = 3;
const PLACES: usize = 4;
const STORE_DISTANCES: usize = 5;
const POI_VISITS: usize = 6;
const REPORTED_VEHICLES: usize = 7;

/// Tables replaced as a whole for one device and period by a newer places summary.
const PERIOD_TABLES: [usize; 3] = [PLACES, STORE_DISTANCES, POI_VISITS];

const TABLES: [Table; 8] = [
    Table {
        name: "envelopes",
        columns: &[
            ("device_id", Text),
            ("seq", Int),
            ("kind", Text),
            ("created_s", Int),
            ("received_s", Int),
            ("payload", Ty::Bytes),
        ],
        key: 2,
        on_conflict: OnConflict::Keep,
    },
    Table {
        name: "trips",
        columns: &[
            ("device_id", Text),
            ("seq", Int),
            ("start_s", Int),
            ("start_hour_of_week", Int),
            ("duration_s", Int),
            ("distance_m", Int),
            ("moving_s", Int),
            ("max_speed_cms", Int),
            ("band_0_30", Int),
            ("band_30_60", Int),
            ("band_60_90", Int),
            ("band_90_120", Int),
            ("band_120", Int),
            ("night_pct", Int),
            ("harsh_accel", Int),
            ("harsh_brake", Int),
            ("harsh_corner", Int),
            ("accel_p01_cms2", Int),
            ("accel_p99_cms2", Int),
            ("lateral_p99_cms2", Int),
            ("speed_cv_pct", Int),
            ("overspeed_s", Int),
            ("score", Int),
            ("start_cell", Text),
            ("end_cell", Text),
        ],
        key: 2,
        on_conflict: OnConflict::Keep,
    },
    Table {
        name: "days",
        columns: &[
            ("device_id", Text),
            ("local_day", Int),
            ("seq", Int),
            ("utc_offset_min", Int),
            ("distance_m", Int),
            ("trips", Int),
            ("long_trips", Int),
            ("driving_s", Int),
            ("moving_s", Int),
            ("night_pct", Int),
            ("driving_min_by_hour", Text),
            ("commute_trips", Int),
            ("max_speed_cms", Int),
            ("harsh_accel", Int),
            ("harsh_brake", Int),
            ("harsh_corner", Int),
            ("overspeed_s", Int),
            ("score", Int),
            ("odometer_m", Int),
            ("fuel_ml", Int),
            ("soc_used_permille", Int),
        ],
        key: 2,
        on_conflict: OnConflict::Newer,
    },
    Table {
        name: "styles",
        columns: &[
            ("device_id", Text),
            ("from_local_day", Int),
            ("seq", Int),
            ("days", Int),
            ("source", Text),
            ("trips", Int),
            ("distance_m", Int),
            ("moving_s", Int),
            ("harsh_accel", Int),
            ("harsh_brake", Int),
            ("harsh_corner", Int),
            ("overspeed_s", Int),
            ("accel_p01_cms2", Int),
            ("accel_p99_cms2", Int),
            ("lateral_p99_cms2", Int),
            ("speed_cv_pct", Int),
            ("accel_score", Int),
            ("brake_score", Int),
            ("corner_score", Int),
            ("speed_score", Int),
            ("score", Int),
        ],
        key: 2,
        on_conflict: OnConflict::Newer,
    },
    Table {
        name: "places",
        columns: &[
            ("device_id", Text),
            ("from_local_day", Int),
            ("rank", Int),
            ("seq", Int),
            ("days", Int),
            ("cell", Text),
            ("role", Text),
            ("visits", Int),
            ("dwell_s", Int),
            ("dwell_pct_by_hour", Text),
        ],
        key: 3,
        on_conflict: OnConflict::Keep,
    },
    Table {
        name: "store_distances",
        columns: &[
            ("device_id", Text),
            ("from_local_day", Int),
            ("store_id", Int),
            ("seq", Int),
            ("home_distance_m", Int),
        ],
        key: 3,
        on_conflict: OnConflict::Keep,
    },
    Table {
        name: "poi_visits",
        columns: &[
            ("device_id", Text),
            ("from_local_day", Int),
            ("poi_id", Int),
            ("kind", Text),
            ("seq", Int),
            ("visits", Int),
            ("dwell_s", Int),
            ("last_local_day", Int),
        ],
        key: 4,
        on_conflict: OnConflict::Keep,
    },
    Table {
        name: "reported_vehicles",
        columns: &[
            ("device_id", Text),
            ("seq", Int),
            ("vin", Text),
            ("make", Text),
            ("model", Text),
            ("model_year", Int),
            ("energy", Text),
            ("odometer_m", Int),
            ("agent_version", Text),
        ],
        key: 1,
        on_conflict: OnConflict::Newer,
    },
];

/// The SQL of every table, rendered once.
struct Rendered {
    row: Vec<String>,
    batch: Vec<String>,
    /// Deletes of a period's rows older than a places summary, one row at a time.
    delete_row: Vec<String>,
    /// The same for a batch, one array per column (device, period, seq).
    delete_batch: Vec<String>,
}

static SQL: LazyLock<Rendered> = LazyLock::new(|| Rendered {
    row: TABLES.iter().map(Table::row_sql).collect(),
    batch: TABLES.iter().map(Table::batch_sql).collect(),
    delete_row: PERIOD_TABLES
        .iter()
        .map(|&t| {
            format!(
                "DELETE FROM {} WHERE device_id = $1 AND from_local_day = $2 AND seq < $3",
                TABLES[t].name
            )
        })
        .collect(),
    delete_batch: PERIOD_TABLES
        .iter()
        .map(|&t| {
            format!(
                "DELETE FROM {name} USING UNNEST($1::text[], $2::bigint[], $3::bigint[])
                     AS newer (device_id, from_local_day, seq)
                 WHERE {name}.device_id = newer.device_id
                     AND {name}.from_local_day = newer.from_local_day AND {name}.seq < newer.seq",
                name = TABLES[t].name
            )
        })
        .collect(),
});

/// The rows one envelope becomes.
struct EnvelopeRows {
    /// `(table, values in column order)`; the envelope's own row first.
    rows: Vec<(usize, Vec<Value>)>,
    /// For a places summary: `(device, period, seq)`, whose older rows it replaces.
    replaces: Option<[Value; 3]>,
}

fn rows(incoming: &Incoming) -> EnvelopeRows {
    let envelope = &incoming.envelope;
    let device = Value::from(envelope.device.as_str());
    let seq = Value::from(envelope.seq);
    let mut rows = vec![(
        ENVELOPES,
        vec![
            device.clone(),
            seq.clone(),
            envelope.body.kind().as_str().into(),
            envelope.created_s.into(),
            incoming.received_s.into(),
            incoming.payload.clone().into(),
        ],
    )];
    let mut replaces = None;
    match &envelope.body {
        Uplink::Trip(t) => rows.push((
            TRIPS,
            vec![
                device,
                seq,
                t.start_s.into(),
                t.start_local_hour_of_week.into(),
                t.duration_s.into(),
                t.distance_m.into(),
                t.moving_s.into(),
                t.max_speed_cms.into(),
                t.speed_band_pct[0].into(),
                t.speed_band_pct[1].into(),
                t.speed_band_pct[2].into(),
                t.speed_band_pct[3].into(),
                t.speed_band_pct[4].into(),
                t.night_pct.into(),
                t.harsh_accel.into(),
                t.harsh_brake.into(),
                t.harsh_corner.into(),
                t.accel_p01_cms2.into(),
                t.accel_p99_cms2.into(),
                t.lateral_p99_cms2.into(),
                t.speed_cv_pct.into(),
                t.overspeed_s.into(),
                t.score.into(),
                cell_text(&t.start_cell).into(),
                cell_text(&t.end_cell).into(),
            ],
        )),
        Uplink::Day(d) => rows.push((
            DAYS,
            vec![
                device,
                d.local_day.into(),
                seq,
                d.utc_offset_min.into(),
                d.distance_m.into(),
                d.trips.into(),
                d.long_trips.into(),
                d.driving_s.into(),
                d.moving_s.into(),
                d.night_pct.into(),
                csv(&d.driving_min_by_local_hour).into(),
                d.commute_trips.into(),
                d.max_speed_cms.into(),
                d.harsh_accel.into(),
                d.harsh_brake.into(),
                d.harsh_corner.into(),
                d.overspeed_s.into(),
                d.score.into(),
                d.odometer_m.into(),
                d.energy.as_ref().map(|e| e.fuel_ml).into(),
                d.energy.as_ref().map(|e| e.soc_used_permille).into(),
            ],
        )),
        Uplink::Style(s) => rows.push((
            STYLES,
            vec![
                device,
                s.from_local_day.into(),
                seq,
                s.days.into(),
                format!("{:?}", s.source).to_lowercase().into(),
                s.trips.into(),
                s.distance_m.into(),
                s.moving_s.into(),
                s.harsh_accel.into(),
                s.harsh_brake.into(),
                s.harsh_corner.into(),
                s.overspeed_s.into(),
                s.accel_p01_cms2.into(),
                s.accel_p99_cms2.into(),
                s.lateral_p99_cms2.into(),
                s.speed_cv_pct.into(),
                s.accel_score.into(),
                s.brake_score.into(),
                s.corner_score.into(),
                s.speed_score.into(),
                s.score.into(),
            ],
        )),
        Uplink::Places(p) => {
            let period = Value::from(p.from_local_day);
            replaces = Some([device.clone(), period.clone(), seq.clone()]);
            for (rank, place) in p.places.iter().enumerate() {
                rows.push((
                    PLACES,
                    vec![
                        device.clone(),
                        period.clone(),
                        (rank as u64).into(),
                        seq.clone(),
                        p.days.into(),
                        cell_text(&place.cell).into(),
                        match place.role {
                            PlaceRole::Home => "home",
                            PlaceRole::Work => "work",
                            PlaceRole::Other => "other",
                        }
                        .into(),
                        place.visits.into(),
                        place.dwell_s.into(),
                        csv(&place.dwell_pct_by_local_hour).into(),
                    ],
                ));
            }
            for store in &p.stores {
                rows.push((
                    STORE_DISTANCES,
                    vec![
                        device.clone(),
                        period.clone(),
                        store.store_id.into(),
                        seq.clone(),
                        store.home_distance_m.into(),
                    ],
                ));
            }
            for visit in &p.poi_visits {
                rows.push((
                    POI_VISITS,
                    vec![
                        device.clone(),
                        period.clone(),
                        visit.poi_id.into(),
                        visit.kind.as_str().into(),
                        seq.clone(),
                        visit.visits.into(),
                        visit.dwell_s.into(),
                        visit.last_local_day.into(),
                    ],
                ));
            }
        }
        Uplink::Vehicle(v) => rows.push((
            REPORTED_VEHICLES,
            vec![
                device,
                seq,
                v.vin.clone().into(),
                v.make.clone().into(),
                v.model.clone().into(),
                v.model_year.into(),
                v.energy.as_str().into(),
                v.odometer_m.into(),
                v.agent_version.clone().into(),
            ],
        )),
    }
    EnvelopeRows { rows, replaces }
}

/// Appends the statements that store `incoming`, one per row. The first one inserts the
/// envelope; it changes no row for a duplicate.
pub(super) fn statements(incoming: &Incoming, out: &mut Vec<Statement>) {
    let EnvelopeRows { rows, replaces } = rows(incoming);
    let mut rows = rows.into_iter();
    if let Some((table, values)) = rows.next() {
        out.push(Statement::new(SQL.row[table].as_str(), values));
    }
    // A newer summary of the period replaces an older one; an older one arriving late deletes
    // nothing, and its inserts find the newer rows and write nothing (`period_columns`).
    if let Some(replaces) = replaces {
        for sql in &SQL.delete_row {
            out.push(Statement::new(sql.as_str(), replaces.to_vec()));
        }
    }
    for (table, values) in rows {
        out.push(Statement::new(SQL.row[table].as_str(), values));
    }
}

/// A key value, hashable (a [`Value`] holds floats).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum KeyPart {
    Null,
    Int(i64),
    Text(String),
}

fn key_part(value: &Value) -> KeyPart {
    match value {
        Value::Text(text) => KeyPart::Text(text.clone()),
        Value::Null => KeyPart::Null,
        other => other
            .int()
            .map_or_else(|| KeyPart::Text(format!("{other:?}")), KeyPart::Int),
    }
}

fn key_of(values: &[Value], columns: usize) -> Vec<KeyPart> {
    values[..columns].iter().map(key_part).collect()
}

fn seq_of(values: &[Value], table: &Table) -> i64 {
    values
        .get(table.seq_column())
        .and_then(Value::int)
        .unwrap_or(i64::MIN)
}

/// The places summary of one device and period that a batch writes: its seq, its
/// `(device, period, seq)` and its rows by table.
type Winner = (i64, [Value; 3], Vec<(usize, Vec<Value>)>);

/// The statements that store a whole batch: at most one per table, plus the deletes of places
/// summaries that newer ones replace. The first statement inserts the envelopes and returns
/// `(device_id, seq)` of each one that was new.
///
/// The result is the one the row-at-a-time [`statements`] give, in any arrival order:
/// of several rows of one batch that replace each other (`OnConflict::Newer`, or places
/// summaries of one device and period), only the one with the highest `seq` is written, the
/// first of equals, which is what applying them in turn leaves. Rows go in key order, so two
/// servers writing overlapping batches take their row locks in the same order and do not
/// deadlock.
pub(super) fn batch_statements(batch: &[Incoming]) -> Vec<Statement> {
    let mut by_table: Vec<Vec<Vec<Value>>> = vec![Vec::new(); TABLES.len()];
    // Per device and period, the places summary that wins.
    let mut periods: HashMap<Vec<KeyPart>, Winner> = HashMap::new();
    for incoming in batch {
        let EnvelopeRows { rows, replaces } = rows(incoming);
        match replaces {
            None => {
                for (table, values) in rows {
                    by_table[table].push(values);
                }
            }
            Some(replaces) => {
                let mut rows = rows.into_iter();
                if let Some((table, values)) = rows.next() {
                    by_table[table].push(values);
                }
                let seq = replaces[2].int().unwrap_or(i64::MIN);
                let key = key_of(&replaces, 2);
                let rows: Vec<_> = rows.collect();
                match periods.get(&key) {
                    Some((winner, _, _)) if *winner >= seq => {}
                    _ => {
                        periods.insert(key, (seq, replaces, rows));
                    }
                }
            }
        }
    }
    let mut deletes: Vec<[Value; 3]> = Vec::with_capacity(periods.len());
    for (_, (_, replaces, rows)) in periods {
        deletes.push(replaces);
        for (table, values) in rows {
            by_table[table].push(values);
        }
    }

    let mut out = Vec::with_capacity(TABLES.len() + PERIOD_TABLES.len());
    // The envelopes first, even when the batch has none: the caller reads its result.
    out.push(batch_insert(
        ENVELOPES,
        std::mem::take(&mut by_table[ENVELOPES]),
    ));
    if !deletes.is_empty() {
        deletes.sort_by_key(|replaces| key_of(replaces, 2));
        let columns: Vec<Value> = (0..3)
            .map(|column| Value::Array(deletes.iter().map(|d| d[column].clone()).collect()))
            .collect();
        for sql in &SQL.delete_batch {
            out.push(Statement::new(sql.as_str(), columns.clone()));
        }
    }
    for (table, rows) in by_table.into_iter().enumerate() {
        if !rows.is_empty() {
            out.push(batch_insert(table, rows));
        }
    }
    out
}

/// One `INSERT ... SELECT * FROM UNNEST(...)` of `rows` into `table`, in key order, replacing
/// rows collapsed to the newest of each key.
fn batch_insert(table: usize, mut rows: Vec<Vec<Value>>) -> Statement {
    let spec = &TABLES[table];
    // Stable: of equal keys the first to arrive stays first.
    rows.sort_by_cached_key(|values| key_of(values, spec.key));
    if spec.on_conflict == OnConflict::Newer {
        // PostgreSQL refuses to update one row twice in a statement; the newest is the one
        // that would have stayed.
        let mut newest: Vec<Vec<Value>> = Vec::with_capacity(rows.len());
        for values in rows {
            match newest.last_mut() {
                Some(last) if key_of(last, spec.key) == key_of(&values, spec.key) => {
                    if seq_of(&values, spec) > seq_of(last, spec) {
                        *last = values;
                    }
                }
                _ => newest.push(values),
            }
        }
        rows = newest;
    }
    let mut columns: Vec<Vec<Value>> = (0..spec.columns.len())
        .map(|_| Vec::with_capacity(rows.len()))
        .collect();
    for values in rows {
        for (column, value) in columns.iter_mut().zip(values) {
            column.push(value);
        }
    }
    Statement::new(
        SQL.batch[table].as_str(),
        columns.into_iter().map(Value::Array).collect(),
    )
}

#[cfg(test)]
mod tests;
