//! Storage: one domain interface, [`Store`], over two SQL back-ends, SQLite (the default, one
//! file) and PostgreSQL (several server instances).
//!
//! The domain code — which rows an envelope becomes, how a registry import upserts — is
//! written once here against the small [`Backend`] trait, which only runs statements in a
//! transaction and queries. The SQL uses `$1`-style parameters and the subset both databases
//! share (`ON CONFLICT`, window functions); the schema in `migrations/` is one template with
//! typed placeholders. `conformance` holds the checks both back-ends must pass.
//!
//! **Architecture Invariant:** every write is idempotent: an envelope is keyed by
//! `(device_id, seq)`, a later summary of a period replaces an earlier one, an older one never
//! replaces a newer one, whatever order they arrive in.

pub mod conformance;
mod ingest;
pub mod postgres;
pub mod registry;
pub mod sqlite;
pub mod synthetic;
pub mod value;

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use drivetag_shared::wire::Envelope;

pub use registry::{
    CampaignResponse, Customer, Fleet, Import, Poi, PriceClass, RegistryIds, ServiceVisit,
    StoreRow, Vehicle, VisitKind,
};
pub use value::Value;

/// The SQL dialect of a back-end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Dialect {
    /// The scalar function of the smaller of two values.
    pub fn least(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MIN",
            Dialect::Postgres => "LEAST",
        }
    }

    /// The scalar function of the larger of two values.
    pub fn greatest(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MAX",
            Dialect::Postgres => "GREATEST",
        }
    }

    /// The aggregate joining texts with a separator (`f(text, sep ORDER BY ...)`).
    pub fn string_agg(self) -> &'static str {
        match self {
            Dialect::Sqlite => "group_concat",
            Dialect::Postgres => "string_agg",
        }
    }
}

/// One SQL statement with its parameters (`$1`, `$2`... in the text).
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The SQL: mostly constant text, generated for labelling rules.
    pub sql: Cow<'static, str>,
    /// The parameters, in order.
    pub params: Vec<Value>,
}

impl Statement {
    /// A statement.
    pub fn new(sql: impl Into<Cow<'static, str>>, params: Vec<Value>) -> Self {
        Statement {
            sql: sql.into(),
            params,
        }
    }
}

/// A row of query results.
pub type Row = Vec<Value>;

/// The text in `row[i]`, owned; empty when it is not text.
fn owned_text(row: &Row, i: usize) -> String {
    row.get(i)
        .and_then(Value::text)
        .unwrap_or_default()
        .to_owned()
}

/// Statements inserting `rows` into `table`, whose `columns` are given with their PostgreSQL
/// types: multi-row `VALUES` of up to 500 rows on SQLite (within its limit of host
/// parameters), `INSERT ... SELECT * FROM UNNEST($1::type[], ...)` of up to 10,000 rows on
/// PostgreSQL, where each statement costs a round trip and a parse.
pub(crate) fn insert_rows(
    dialect: Dialect,
    table: &str,
    columns: &[(&str, &str)],
    rows: Vec<Vec<Value>>,
) -> Vec<Statement> {
    let names = columns
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = Vec::new();
    match dialect {
        Dialect::Sqlite => {
            // The text of a full chunk is the same every time: made once per table and columns
            // (a handful in all) and kept for the process, so chunks borrow it, uncopied.
            static FULL: std::sync::LazyLock<std::sync::Mutex<HashMap<String, &'static str>>> =
                std::sync::LazyLock::new(Default::default);
            let mut rows = rows.into_iter().peekable();
            while rows.peek().is_some() {
                let chunk: Vec<Vec<Value>> = rows.by_ref().take(500).collect();
                let values = |n: usize| {
                    use std::fmt::Write;
                    let mut sql = format!("INSERT INTO {table} ({names}) VALUES ");
                    for r in 0..n {
                        sql.push_str(if r == 0 { "(" } else { ", (" });
                        for c in 0..columns.len() {
                            let sep = if c == 0 { "" } else { ", " };
                            let _ = write!(sql, "{sep}${}", r * columns.len() + c + 1);
                        }
                        sql.push(')');
                    }
                    sql
                };
                let sql: Cow<'static, str> = match FULL.lock() {
                    Ok(mut full) if chunk.len() == 500 => Cow::Borrowed(
                        full.entry(format!("{table} ({names})"))
                            .or_insert_with(|| values(500).leak()),
                    ),
                    _ => values(chunk.len()).into(),
                };
                out.push(Statement::new(sql, chunk.into_iter().flatten().collect()));
            }
        }
        Dialect::Postgres => {
            let arrays = columns
                .iter()
                .enumerate()
                .map(|(i, (_, ty))| format!("${}::{ty}[]", i + 1))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("INSERT INTO {table} ({names}) SELECT * FROM UNNEST({arrays})");
            let mut rows = rows.into_iter().peekable();
            while rows.peek().is_some() {
                let mut arrays: Vec<Vec<Value>> = vec![Vec::new(); columns.len()];
                for row in rows.by_ref().take(10_000) {
                    for (array, value) in arrays.iter_mut().zip(row) {
                        array.push(value);
                    }
                }
                out.push(Statement::new(
                    sql.clone(),
                    arrays.into_iter().map(Value::Array).collect(),
                ));
            }
        }
    }
    out
}

/// A result row read in place: a back-end's values lent to an [`Encode`] without copies.
pub trait Cells {
    /// Column `index` as text; `None` when it is NULL. Numbers come as their decimal text.
    fn text(&self, index: usize) -> Result<Option<Cow<'_, str>>, StoreError>;
    /// Column `index` as a number; `None` when it is NULL. Text is an error.
    fn real(&self, index: usize) -> Result<Option<f64>, StoreError>;
}

/// An [`Encode`] that hands each row to a function and encodes nothing: [`Store::scan`].
struct Each<F>(F);

impl<F: FnMut(&dyn Cells) -> Result<(), StoreError> + Send> Encode for Each<F> {
    fn row(&mut self, cells: &dyn Cells) -> Result<(), StoreError> {
        (self.0)(cells)
    }

    fn take(&mut self, _: usize) -> Option<Vec<u8>> {
        None
    }
}

/// Turns query rows into bytes (CSV, NDJSON...) for [`Backend::query_encoded`].
pub trait Encode: Send {
    /// Encodes one row.
    fn row(&mut self, cells: &dyn Cells) -> Result<(), StoreError>;
    /// Hands over what has been encoded once it is at least `min` bytes (`min` = 0 at the end:
    /// whatever is left, if anything).
    fn take(&mut self, min: usize) -> Option<Vec<u8>>;
}

/// Holds [`Backend::relabel_lock`] until dropped (a locked file, or the PostgreSQL session that
/// holds the lock: closing it releases the lock even if the process dies).
pub struct RelabelGuard(#[allow(dead_code)] Box<dyn Send + Sync>);

impl RelabelGuard {
    /// A guard holding `held` until it drops.
    pub(crate) fn new(held: impl Send + Sync + 'static) -> RelabelGuard {
        RelabelGuard(Box::new(held))
    }
}

impl std::fmt::Debug for RelabelGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelabelGuard")
    }
}

/// What [`Backend::execute_stream`] reads its statements from.
pub type StatementReceiver = tokio::sync::mpsc::Receiver<Result<Statement, StoreError>>;

/// Where [`Backend::query_encoded`] sends its chunks.
pub type ChunkSender = tokio::sync::mpsc::Sender<Vec<u8>>;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused.
    #[error("sqlite {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The error.
        source: rusqlite::Error,
    },
    /// PostgreSQL refused.
    #[error("postgres: {}", postgres_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be had.
    #[error("postgres pool: {0}")]
    Pool(String),
    /// A database URL is not one we know.
    #[error("database url {0:?} is neither sqlite://PATH nor postgres://...")]
    Url(String),
    /// A blocking task died.
    #[error("store worker failed: {0}")]
    Worker(String),
    /// A stored value is not what the schema promises.
    #[error("stored data is inconsistent: {0}")]
    Data(String),
}

/// A PostgreSQL error with the server's own message, code and detail (the driver's `Display`
/// says only "db error").
fn postgres_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(": {detail}"));
            }
            text
        }
        None => error.to_string(),
    }
}

/// What a back-end does: run statements in one transaction, and query.
#[async_trait]
pub trait Backend: Send + Sync + Debug {
    /// Its dialect.
    fn dialect(&self) -> Dialect;
    /// Runs `statements` in one transaction (on PostgreSQL READ COMMITTED: each statement
    /// sees what was committed before it began, so a conflicting insert waits and then does
    /// nothing); returns the rows each changed.
    async fn execute(&self, statements: Vec<Statement>) -> Result<Vec<u64>, StoreError>;
    /// Runs the statements that arrive on `statements` in one transaction, as they arrive,
    /// and commits when the channel closes: a write too large to hold in memory at once (a
    /// relabel's million rows). An `Err` from the sender rolls it back and is returned.
    /// Returns the rows changed.
    async fn execute_stream(&self, statements: StatementReceiver) -> Result<u64, StoreError>;
    /// Takes the relabel lock, held until the guard drops: one relabel at a time across every
    /// server and command on the database, from its first read to its commit (a relabel that
    /// read before another wrote would otherwise overwrite newer labels with older ones).
    async fn relabel_lock(&self) -> Result<RelabelGuard, StoreError>;
    /// Runs `statements` in one transaction (READ COMMITTED) and returns the rows each one
    /// returned (`RETURNING`). Only the PostgreSQL back-end implements it: [`Store::ingest`]
    /// uses it there to write a batch with one statement per table and still learn which
    /// envelopes were new; the default refuses.
    async fn execute_returning(
        &self,
        statements: Vec<Statement>,
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        let _ = statements;
        Err(StoreError::Worker(format!(
            "the {:?} back-end cannot return rows from a write",
            self.dialect()
        )))
    }
    /// Runs a query.
    async fn query(
        &self,
        sql: Cow<'static, str>,
        params: Vec<Value>,
    ) -> Result<Vec<Row>, StoreError>;
    /// Runs several queries, in order, and returns each one's rows: a page that needs a few
    /// queries pays for one trip to the database. SQLite runs them on one reader in one read
    /// transaction, so they see one state; the default runs them one by one.
    async fn query_batch(
        &self,
        queries: Vec<(Cow<'static, str>, Vec<Value>)>,
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        let mut out = Vec::with_capacity(queries.len());
        for (sql, params) in queries {
            out.push(self.query(sql, params).await?);
        }
        Ok(out)
    }
    /// Runs a query and encodes its rows as they come, sending chunks of about `chunk` bytes
    /// to `out`: results of millions of rows in flat memory and without a copy of each value
    /// (exports). One statement, so it reads one snapshot. Stops early, without an error,
    /// when `out` is closed (the reader went away). Returns the rows encoded.
    async fn query_encoded(
        &self,
        sql: Cow<'static, str>,
        params: Vec<Value>,
        encode: Box<dyn Encode>,
        chunk: usize,
        out: ChunkSender,
    ) -> Result<u64, StoreError>;
    /// Applies the migrations it has not applied yet, in order, each in a transaction, with
    /// concurrent servers kept from applying the same one twice.
    async fn migrate(&self, migrations: &[(i64, &'static str, String)]) -> Result<(), StoreError>;
}

/// One envelope as received, decoded and ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The envelope.
    pub envelope: Envelope,
    /// Its bytes as they arrived.
    pub payload: Vec<u8>,
    /// When the server received it, UTC seconds.
    pub received_s: u64,
}

/// What storing one envelope did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// New: stored now.
    Stored,
    /// Already stored (a resend).
    Duplicate,
}

/// A payload that cannot be stored, kept with why.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// When it arrived, UTC seconds.
    pub received_s: u64,
    /// Its topic.
    pub topic: String,
    /// The device, when the topic or header says.
    pub device_id: Option<String>,
    /// The sequence number, when the header says.
    pub seq: Option<u64>,
    /// A stable code: `topic`, `truncated`, `unknown_version`, `malformed`,
    /// `device_mismatch`, `kind_mismatch`, `trailing_bytes`.
    pub reason: String,
    /// What exactly was wrong.
    pub detail: String,
    /// The bytes.
    pub payload: Vec<u8>,
}

/// The latest status an agent reported.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRecord {
    /// The device.
    pub device_id: String,
    /// Online or offline.
    pub online: bool,
    /// When the agent made the report, UTC seconds.
    pub created_s: u64,
    /// When the server received it, UTC seconds.
    pub received_s: u64,
    /// The health, as JSON.
    pub health: String,
}

/// Counts for health checks and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Envelopes stored.
    pub envelopes: u64,
    /// Dead letters kept.
    pub dead_letters: u64,
    /// Trips.
    pub trips: u64,
    /// Days.
    pub days: u64,
    /// Vehicles in the registry.
    pub vehicles: u64,
    /// Customers in the registry.
    pub customers: u64,
}

/// The store: domain operations over a back-end.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

/// The schema's versions, in order.
const MIGRATIONS: [(i64, &str, &str); 7] = [
    (1, "init", include_str!("migrations/0001_init.sql")),
    (2, "labels", include_str!("migrations/0002_labels.sql")),
    (3, "api_keys", include_str!("migrations/0003_api_keys.sql")),
    (
        4,
        "vehicle_labels",
        include_str!("migrations/0004_vehicle_labels.sql"),
    ),
    (
        5,
        "rank_points",
        include_str!("migrations/0005_rank_points.sql"),
    ),
    (
        6,
        "device_collation",
        include_str!("migrations/0006_device_collation.sql"),
    ),
    (
        7,
        "assigned_labels",
        include_str!("migrations/0007_assigned_labels.sql"),
    ),
];

fn render(template: &str, dialect: Dialect) -> String {
    // `{postgres}` starts a line only PostgreSQL runs: SQLite reads it as a comment.
    let pairs: [(&str, &str); 7] = match dialect {
        Dialect::Sqlite => [
            ("{postgres}", "--"),
            ("{id}", "INTEGER PRIMARY KEY"),
            ("{int}", "INTEGER"),
            ("{real}", "REAL"),
            ("{bool}", "INTEGER"),
            ("{bytes}", "BLOB"),
            ("{string_agg}", dialect.string_agg()),
        ],
        Dialect::Postgres => [
            ("{postgres}", ""),
            ("{id}", "BIGSERIAL PRIMARY KEY"),
            ("{int}", "BIGINT"),
            ("{real}", "DOUBLE PRECISION"),
            ("{bool}", "BOOLEAN"),
            ("{bytes}", "BYTEA"),
            ("{string_agg}", dialect.string_agg()),
        ],
    };
    pairs
        .iter()
        .fold(template.to_owned(), |sql, (from, to)| sql.replace(from, to))
}

impl Store {
    /// A store over `backend`, migrated to the current schema.
    pub async fn new(backend: Arc<dyn Backend>) -> Result<Store, StoreError> {
        let dialect = backend.dialect();
        let migrations: Vec<(i64, &'static str, String)> = MIGRATIONS
            .iter()
            .map(|(version, name, template)| (*version, *name, render(template, dialect)))
            .collect();
        backend.migrate(&migrations).await?;
        Ok(Store { backend })
    }

    /// Opens the store a URL names: `sqlite://PATH` or `postgres://...`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let backend: Arc<dyn Backend> = if let Some(path) = url.strip_prefix("sqlite://") {
            Arc::new(sqlite::Sqlite::open(path)?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Arc::new(postgres::Postgres::connect(url, None)?)
        } else {
            return Err(StoreError::Url(url.to_owned()));
        };
        Store::new(backend).await
    }

    /// The back-end's dialect.
    pub fn dialect(&self) -> Dialect {
        self.backend.dialect()
    }

    /// Runs a query; for the service layer, never for HTTP handlers.
    pub(crate) async fn query(
        &self,
        sql: impl Into<Cow<'static, str>>,
        params: Vec<Value>,
    ) -> Result<Vec<Row>, StoreError> {
        self.backend.query(sql.into(), params).await
    }

    /// Runs several queries in one trip; see [`Backend::query_batch`].
    pub(crate) async fn query_batch(
        &self,
        queries: Vec<(Cow<'static, str>, Vec<Value>)>,
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        self.backend.query_batch(queries).await
    }

    /// Runs a query whose rows `encode` turns into chunks sent to `out`; for the service
    /// layer's exports. See [`Backend::query_encoded`].
    pub(crate) async fn query_encoded(
        &self,
        sql: impl Into<Cow<'static, str>>,
        params: Vec<Value>,
        encode: Box<dyn Encode>,
        chunk: usize,
        out: ChunkSender,
    ) -> Result<u64, StoreError> {
        self.backend
            .query_encoded(sql.into(), params, encode, chunk, out)
            .await
    }

    /// Runs a query and hands each row, in place, to `each`: millions of rows in flat memory
    /// (what `each` keeps of them is its own affair). One statement, so one snapshot. Returns
    /// the rows read.
    pub(crate) async fn scan(
        &self,
        sql: impl Into<Cow<'static, str>>,
        params: Vec<Value>,
        each: impl FnMut(&dyn Cells) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<u64, StoreError> {
        let (out, _open) = tokio::sync::mpsc::channel(1);
        self.backend
            .query_encoded(sql.into(), params, Box::new(Each(each)), usize::MAX, out)
            .await
    }

    /// Takes the relabel lock; see [`Backend::relabel_lock`].
    pub(crate) async fn relabel_lock(&self) -> Result<RelabelGuard, StoreError> {
        self.backend.relabel_lock().await
    }

    /// Runs the statements sent on `statements` in one transaction; see
    /// [`Backend::execute_stream`].
    pub(crate) async fn execute_stream(
        &self,
        statements: StatementReceiver,
    ) -> Result<u64, StoreError> {
        self.backend.execute_stream(statements).await
    }

    /// Runs statements in one transaction; for the service layer.
    pub(crate) async fn execute(&self, statements: Vec<Statement>) -> Result<Vec<u64>, StoreError> {
        self.backend.execute(statements).await
    }

    /// Stores a batch of envelopes in one transaction; duplicates are recognised, not stored
    /// twice. Returns one outcome per envelope, in order.
    pub async fn ingest(&self, batch: &[Incoming]) -> Result<Vec<Outcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        match self.dialect() {
            Dialect::Sqlite => self.ingest_row_by_row(batch).await,
            Dialect::Postgres => self.ingest_by_table(batch).await,
        }
    }

    /// SQLite: a prepared statement per row costs a function call, and the rows each changed
    /// tell which envelopes were new.
    async fn ingest_row_by_row(&self, batch: &[Incoming]) -> Result<Vec<Outcome>, StoreError> {
        let mut statements = Vec::with_capacity(batch.len() * 2);
        let mut envelope_rows = Vec::with_capacity(batch.len());
        for incoming in batch {
            envelope_rows.push(statements.len());
            ingest::statements(incoming, &mut statements);
        }
        let affected = self.backend.execute(statements).await?;
        Ok(envelope_rows
            .into_iter()
            .map(|index| {
                if affected.get(index).copied().unwrap_or(0) > 0 {
                    Outcome::Stored
                } else {
                    Outcome::Duplicate
                }
            })
            .collect())
    }

    /// PostgreSQL: a statement costs a parse, a plan and a protocol round, so the batch goes as
    /// one statement per table, columns as arrays; the envelope insert returns which
    /// `(device, seq)` were new. Of several copies of one envelope in the batch, the first is
    /// the one stored, as row by row.
    async fn ingest_by_table(&self, batch: &[Incoming]) -> Result<Vec<Outcome>, StoreError> {
        let returned = self
            .backend
            .execute_returning(ingest::batch_statements(batch))
            .await?;
        let mut new: HashSet<(&str, i64)> = returned
            .first()
            .into_iter()
            .flatten()
            .filter_map(|row| Some((row.first()?.text()?, row.get(1)?.int()?)))
            .collect();
        Ok(batch
            .iter()
            .map(|incoming| {
                let key = (
                    incoming.envelope.device.as_str(),
                    i64::try_from(incoming.envelope.seq).unwrap_or(i64::MAX),
                );
                // Removed once taken, so a later copy counts as a duplicate.
                if new.remove(&key) {
                    Outcome::Stored
                } else {
                    Outcome::Duplicate
                }
            })
            .collect())
    }

    /// Keeps payloads that cannot be stored.
    pub async fn dead_letter(&self, letters: &[DeadLetter]) -> Result<(), StoreError> {
        let statements = letters
            .iter()
            .map(|letter| {
                Statement::new(
                    "INSERT INTO dead_letters (received_s, topic, device_id, seq, reason, detail, payload)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    vec![
                        letter.received_s.into(),
                        letter.topic.clone().into(),
                        letter.device_id.clone().into(),
                        letter.seq.into(),
                        letter.reason.clone().into(),
                        letter.detail.clone().into(),
                        letter.payload.clone().into(),
                    ],
                )
            })
            .collect();
        self.backend.execute(statements).await.map(|_| ())
    }

    /// Records an agent's status unless a newer one is already stored.
    pub async fn record_status(&self, status: &StatusRecord) -> Result<(), StoreError> {
        self.backend
            .execute(vec![Statement::new(
                "INSERT INTO device_status (device_id, online, created_s, received_s, health)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (device_id) DO UPDATE SET online = excluded.online,
                     created_s = excluded.created_s, received_s = excluded.received_s,
                     health = excluded.health
                 WHERE excluded.created_s >= device_status.created_s",
                vec![
                    status.device_id.clone().into(),
                    status.online.into(),
                    status.created_s.into(),
                    status.received_s.into(),
                    status.health.clone().into(),
                ],
            )])
            .await
            .map(|_| ())
    }

    /// How many of each thing the store holds.
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        let rows = self
            .query(
                "SELECT (SELECT count(*) FROM envelopes), (SELECT count(*) FROM dead_letters),
                        (SELECT count(*) FROM trips), (SELECT count(*) FROM days),
                        (SELECT count(*) FROM vehicles), (SELECT count(*) FROM customers)",
                vec![],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Data("no count row".into()))?;
        let get = |i: usize| row.get(i).and_then(Value::int).unwrap_or(0) as u64;
        Ok(Counts {
            envelopes: get(0),
            dead_letters: get(1),
            trips: get(2),
            days: get(3),
            vehicles: get(4),
            customers: get(5),
        })
    }

    /// The sequence numbers stored for a device, ascending.
    pub async fn sequence_numbers(&self, device_id: &str) -> Result<Vec<u64>, StoreError> {
        Ok(self
            .query(
                "SELECT seq FROM envelopes WHERE device_id = $1 ORDER BY seq",
                vec![device_id.into()],
            )
            .await?
            .iter()
            .filter_map(|row| row.first().and_then(Value::int))
            .map(|seq| seq as u64)
            .collect())
    }

    /// The sequence numbers stored for a device, in the order they were stored.
    pub async fn sequence_numbers_in_arrival_order(
        &self,
        device_id: &str,
    ) -> Result<Vec<u64>, StoreError> {
        let sql = match self.dialect() {
            Dialect::Sqlite => "SELECT seq FROM envelopes WHERE device_id = $1 ORDER BY rowid",
            // PostgreSQL keeps no insertion order; receive time and seq are the best it has.
            Dialect::Postgres => {
                "SELECT seq FROM envelopes WHERE device_id = $1 ORDER BY received_s, seq"
            }
        };
        Ok(self
            .query(sql, vec![device_id.into()])
            .await?
            .iter()
            .filter_map(|row| row.first().and_then(Value::int))
            .map(|seq| seq as u64)
            .collect())
    }

    /// The dead letters, oldest first, as (reason, device, seq).
    pub async fn dead_letters(
        &self,
    ) -> Result<Vec<(String, Option<String>, Option<u64>)>, StoreError> {
        Ok(self
            .query(
                "SELECT reason, device_id, seq FROM dead_letters ORDER BY id",
                vec![],
            )
            .await?
            .into_iter()
            .map(|row| {
                (
                    owned_text(&row, 0),
                    row[1].text().map(str::to_owned),
                    row[2].int().map(|s| s as u64),
                )
            })
            .collect())
    }

    /// A stored setting of the server's own.
    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .query("SELECT value FROM meta WHERE key = $1", vec![key.into()])
            .await?
            .first()
            .and_then(|row| row[0].text().map(str::to_owned)))
    }

    /// Stores a setting of the server's own.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.backend
            .execute(vec![Statement::new(
                "INSERT INTO meta (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                vec![key.into(), value.into()],
            )])
            .await
            .map(|_| ())
    }
}

/// Reading labels back, for the service layer and tests.
impl Store {
    /// Every vehicle's stored labels and actions, by VIN.
    pub async fn stored_labels(
        &self,
    ) -> Result<std::collections::BTreeMap<String, crate::labels::catalog::Stored>, StoreError>
    {
        Ok(self
            .query(
                "SELECT vin, labels, sources, actions FROM vehicle_labels",
                vec![],
            )
            .await?
            .into_iter()
            .map(|row| {
                let stored = crate::labels::catalog::Stored::parse(
                    &owned_text(&row, 1),
                    &owned_text(&row, 2),
                    &owned_text(&row, 3),
                );
                (owned_text(&row, 0), stored)
            })
            .collect())
    }

    /// `(vin, value)` of one label group, by VIN.
    pub async fn label_rows(&self, group: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .stored_labels()
            .await?
            .into_iter()
            .flat_map(|(vin, stored)| {
                stored
                    .labels
                    .into_iter()
                    .filter(|(g, _, _)| g == group)
                    .map(move |(_, value, _)| (vin.clone(), value))
            })
            .collect())
    }

    /// `(group, value)` of one vehicle, sorted.
    pub async fn labels_of_vin(&self, vin: &str) -> Result<Vec<(String, String)>, StoreError> {
        let row = self
            .query(
                "SELECT labels FROM vehicle_labels WHERE vin = $1",
                vec![vin.into()],
            )
            .await?;
        let labels = row.first().map(|r| owned_text(r, 0)).unwrap_or_default();
        Ok(crate::labels::catalog::Stored::parse(&labels, "", "")
            .labels
            .into_iter()
            .map(|(g, v, _)| (g, v))
            .collect())
    }

    /// Every vehicle's labels and first action's strategy in one row (`vehicle_labels`), by
    /// VIN.
    pub async fn label_lists(
        &self,
    ) -> Result<std::collections::BTreeMap<String, (String, Option<String>)>, StoreError> {
        Ok(self
            .query(
                "SELECT vin, labels, first_strategy FROM vehicle_labels",
                vec![],
            )
            .await?
            .into_iter()
            .map(|row| {
                (
                    owned_text(&row, 0),
                    (owned_text(&row, 1), row[2].text().map(str::to_owned)),
                )
            })
            .collect())
    }

    /// The evidence of a vehicle's label in `group`, as JSON text, rendered from the catalog
    /// of the rules that gave it and the features kept with the labels.
    pub async fn label_evidence(&self, vin: &str, group: &str) -> Result<String, StoreError> {
        use crate::labels::features::{decode, to_json};
        let Some(row) = self
            .query(
                "SELECT vl.labels, vl.sources, vl.rules, vl.features, v.energy \
                 FROM vehicle_labels vl JOIN vehicles v ON v.vin = vl.vin WHERE vl.vin = $1",
                vec![vin.into()],
            )
            .await?
            .into_iter()
            .next()
        else {
            return Ok(String::new());
        };
        let stored =
            crate::labels::catalog::Stored::parse(&owned_text(&row, 0), &owned_text(&row, 1), "");
        let Some(catalog) = crate::labels::catalog(self, &owned_text(&row, 2)).await? else {
            return Ok(String::new());
        };
        let features = to_json(
            &decode(row[3].bytes().unwrap_or_default()),
            &owned_text(&row, 4),
        );
        let feature = |name: &str| features.get(name).cloned().unwrap_or_default();
        Ok(stored
            .labels
            .iter()
            .find(|(g, _, _)| g == group)
            .and_then(|(g, _, source)| Some(catalog.explain(g, source.as_ref()?, &feature).1))
            .map(|evidence| evidence.to_string())
            .unwrap_or_default())
    }

    /// Tier scores of `group` by vin.
    pub async fn tier_scores(
        &self,
        group: &str,
    ) -> Result<std::collections::BTreeMap<String, f64>, StoreError> {
        use crate::labels::assign::Source;
        Ok(self
            .stored_labels()
            .await?
            .into_iter()
            .filter_map(|(vin, stored)| {
                stored
                    .labels
                    .into_iter()
                    .find_map(|(g, _, source)| match source {
                        Some(Source::Tier { score, .. }) if g == group => {
                            Some((vin.clone(), score))
                        }
                        _ => None,
                    })
            })
            .collect())
    }

    /// Every action as `(vin, strategy, rank, (channel, status))`, by VIN and rank.
    pub async fn action_rows(
        &self,
    ) -> Result<Vec<(String, String, i64, (String, String))>, StoreError> {
        Ok(self
            .stored_labels()
            .await?
            .into_iter()
            .flat_map(|(vin, stored)| {
                stored.actions.into_iter().map(move |a| {
                    (
                        vin.clone(),
                        a.strategy,
                        a.rank,
                        (a.channel.unwrap_or_default(), a.status),
                    )
                })
            })
            .collect())
    }
}
