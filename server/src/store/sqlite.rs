//! The SQLite back-end: one file, WAL, one writer connection and a pool of readers.
//!
//! `synchronous = FULL`: the server acknowledges an envelope only after its commit, and the
//! agent then deletes it, so a commit must survive a power cut. Ingest batches many envelopes
//! per commit, so the fsync costs little.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use async_trait::async_trait;
use rusqlite::Connection;

use super::{
    Backend, Cells, ChunkSender, Dialect, Encode, RelabelGuard, Row, Statement, StatementReceiver,
    StoreError, Value,
};

/// The SQLite back-end.
#[derive(Debug, Clone)]
pub struct Sqlite {
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Readers>,
}

/// Reader connections, opened as concurrent queries need them, up to `max`.
///
/// In WAL mode readers never block each other or the writer; with one shared reader
/// connection, 64 API clients spent a third of the server's CPU waking each other up on its
/// lock (tools/bench/README.md).
#[derive(Debug)]
struct Readers {
    pool: Mutex<Pool>,
    returned: Condvar,
    max: usize,
}

/// The connections not on loan, and how many are open in all.
#[derive(Debug)]
struct Pool {
    idle: Vec<Connection>,
    opened: usize,
}

/// A reader connection on loan; it goes back to the pool when dropped.
struct Reader<'a> {
    connection: Option<Connection>,
    readers: &'a Readers,
}

impl std::ops::Deref for Reader<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // Present from construction until drop.
        self.connection.as_ref().expect("reader connection on loan")
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.readers.lock().idle.push(connection);
            self.readers.returned.notify_one();
        }
    }
}

impl Readers {
    fn lock(&self) -> MutexGuard<'_, Pool> {
        // A panic while the list was held cannot leave it half-changed: push and pop only.
        self.pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(
        &self,
        open: impl FnOnce() -> Result<Connection, rusqlite::Error>,
    ) -> Result<Reader<'_>, rusqlite::Error> {
        let mut pool = self.lock();
        let connection = loop {
            if let Some(connection) = pool.idle.pop() {
                break connection;
            }
            if pool.opened < self.max {
                pool.opened += 1;
                drop(pool);
                break open().inspect_err(|_| self.lock().opened -= 1)?;
            }
            pool = self
                .returned
                .wait(pool)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        };
        Ok(Reader {
            connection: Some(connection),
            readers: self,
        })
    }
}

/// SQLite numbers parameters `?1`; our SQL says `$1`.
fn sqlite_sql(sql: &str) -> Cow<'_, str> {
    if sql.contains('$') {
        Cow::Owned(sql.replace('$', "?"))
    } else {
        Cow::Borrowed(sql)
    }
}

/// How long a relabel waits for the one before it (a full relabel of a million customers
/// takes well under a minute).
const RELABEL_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

const WRITER_CACHE_MIB: i64 = 64;
/// Bytes per page of a new database file.
const PAGE_SIZE: u32 = 8192;
const READER_CACHE_MIB: i64 = 16;

/// Opens one connection to the file at `path` with the server's settings and a page cache
/// of `cache_mib`.
fn connect(path: &Path, cache_mib: i64) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    // Sorts stay in temporary files: in memory they left a server at 1.3 GB of RSS after
    // relabelling a million customers. Pages of 8 KiB: a full relabel rewrites a row of about
    // 700 bytes per vehicle, and with SQLite's 4 KiB default it spent a fifth more time
    // allocating, balancing and logging pages (`tools/bench/README.md`). The size only takes
    // on a new file; an older one keeps its pages until someone runs VACUUM.
    conn.execute_batch(&format!(
        "PRAGMA page_size = {PAGE_SIZE}; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
         PRAGMA foreign_keys = OFF; \
         PRAGMA cache_size = -{};",
        cache_mib * 1024
    ))?;
    // The API's queries vary with filters and page sizes; with the default 16 cached
    // statements they were prepared again and again (about 6 % of the server's CPU).
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

impl Sqlite {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Sqlite, StoreError> {
        let path = path.as_ref().to_owned();
        let error = |source| StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        // A relabel of a large population rewrites millions of rows: with SQLite's 2 MB
        // default page cache it spends most of its time re-reading pages, so the writer gets
        // 64 MB. Readers look up a few rows each and have the OS's file cache behind them.
        let writer = connect(&path, WRITER_CACHE_MIB).map_err(error)?;
        // The first reader opens now, so a file that cannot be read fails here, not on the
        // first request.
        let reader = connect(&path, READER_CACHE_MIB).map_err(error)?;
        let max = std::thread::available_parallelism().map_or(2, |n| n.get() * 2);
        Ok(Sqlite {
            path,
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(Readers {
                pool: Mutex::new(Pool {
                    idle: vec![reader],
                    opened: 1,
                }),
                returned: Condvar::new(),
                max,
            }),
        })
    }

    fn error(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// A reader connection from the pool, opened if none is idle and the pool has room.
    fn reader(&self) -> Result<Reader<'_>, StoreError> {
        self.readers
            .get(|| connect(&self.path, READER_CACHE_MIB))
            .map_err(|e| self.error(e))
    }

    /// Runs one query on `conn` and copies out its rows.
    fn rows(&self, conn: &Connection, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let mut prepared = conn
            .prepare_cached(&sqlite_sql(sql))
            .map_err(|e| self.error(e))?;
        let columns = prepared.column_count();
        let mut rows = prepared
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(|e| self.error(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.error(e))? {
            let mut values = Vec::with_capacity(columns);
            for index in 0..columns {
                values.push(Value::from_sqlite(
                    row.get_ref(index).map_err(|e| self.error(e))?,
                ));
            }
            out.push(values);
        }
        Ok(out)
    }

    /// The writer connection, held until the guard drops.
    fn writer(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.writer
            .lock()
            .map_err(|_| StoreError::Worker("writer lock poisoned".into()))
    }

    /// Runs one statement in `tx`; returns the rows it changed.
    fn run(
        &self,
        tx: &rusqlite::Transaction<'_>,
        statement: &Statement,
    ) -> Result<u64, StoreError> {
        let mut prepared = tx
            .prepare_cached(&sqlite_sql(&statement.sql))
            .map_err(|e| self.error(e))?;
        let count = prepared
            .execute(rusqlite::params_from_iter(statement.params.iter()))
            .map_err(|e| self.error(e))?;
        Ok(count as u64)
    }

    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Sqlite) -> Result<T, StoreError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || work(&this))
            .await
            .map_err(|error| StoreError::Worker(error.to_string()))?
    }
}

#[async_trait]
impl Backend for Sqlite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn execute(&self, statements: Vec<Statement>) -> Result<Vec<u64>, StoreError> {
        self.blocking(move |db| {
            let mut conn = db.writer()?;
            let tx = conn.transaction().map_err(|e| db.error(e))?;
            let affected = statements
                .iter()
                .map(|statement| db.run(&tx, statement))
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit().map_err(|e| db.error(e))?;
            Ok(affected)
        })
        .await
    }

    async fn relabel_lock(&self) -> Result<RelabelGuard, StoreError> {
        // An exclusive transaction on a small SQLite file beside the database: it serialises
        // relabels of other processes too (a `relabel` command while `serve` runs), and the
        // lock goes with the connection, or with the process.
        let path = self.path.with_extension("relabel-lock");
        tokio::task::spawn_blocking(move || {
            let error = |e: rusqlite::Error| StoreError::Sqlite {
                path: path.display().to_string(),
                source: e,
            };
            let conn = Connection::open(&path).map_err(error)?;
            conn.busy_timeout(RELABEL_LOCK_WAIT).map_err(error)?;
            conn.execute_batch("BEGIN EXCLUSIVE").map_err(error)?;
            Ok(RelabelGuard::new(std::sync::Mutex::new(conn)))
        })
        .await
        .map_err(|error| StoreError::Worker(error.to_string()))?
    }

    async fn execute_stream(&self, mut statements: StatementReceiver) -> Result<u64, StoreError> {
        self.blocking(move |db| {
            let mut conn = db.writer()?;
            // Dropped without a commit, it rolls back.
            let tx = conn.transaction().map_err(|e| db.error(e))?;
            let mut changed = 0;
            while let Some(statement) = statements.blocking_recv() {
                changed += db.run(&tx, &statement?)?;
            }
            tx.commit().map_err(|e| db.error(e))?;
            Ok(changed)
        })
        .await
    }

    async fn query(
        &self,
        sql: Cow<'static, str>,
        params: Vec<Value>,
    ) -> Result<Vec<Row>, StoreError> {
        self.blocking(move |db| {
            let conn = db.reader()?;
            db.rows(&conn, &sql, &params)
        })
        .await
    }

    async fn query_batch(
        &self,
        queries: Vec<(Cow<'static, str>, Vec<Value>)>,
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        self.blocking(move |db| {
            let conn = db.reader()?;
            // One read transaction: every query sees the same commit.
            let tx = conn.unchecked_transaction().map_err(|e| db.error(e))?;
            let all = queries
                .iter()
                .map(|(sql, params)| db.rows(&tx, sql, params))
                .collect::<Result<Vec<_>, _>>()?;
            tx.finish().map_err(|e| db.error(e))?;
            Ok(all)
        })
        .await
    }

    async fn query_encoded(
        &self,
        sql: Cow<'static, str>,
        params: Vec<Value>,
        mut encode: Box<dyn Encode>,
        chunk: usize,
        out: ChunkSender,
    ) -> Result<u64, StoreError> {
        // On one blocking thread from the first row to the last: the rows' values are read
        // where SQLite holds them and chunks wait for the reader of `out`, so a slow client
        // slows the query rather than filling memory.
        self.blocking(move |db| {
            let conn = db.reader()?;
            let mut prepared = conn
                .prepare_cached(&sqlite_sql(&sql))
                .map_err(|e| db.error(e))?;
            let mut rows = prepared
                .query(rusqlite::params_from_iter(params.iter()))
                .map_err(|e| db.error(e))?;
            let mut count = 0;
            while let Some(row) = rows.next().map_err(|e| db.error(e))? {
                encode.row(&SqliteCells { row, db })?;
                count += 1;
                if let Some(bytes) = encode.take(chunk) {
                    if out.blocking_send(bytes).is_err() {
                        return Ok(count);
                    }
                }
            }
            if let Some(bytes) = encode.take(0) {
                let _ = out.blocking_send(bytes);
            }
            Ok(count)
        })
        .await
    }

    async fn migrate(&self, migrations: &[(i64, &'static str, String)]) -> Result<(), StoreError> {
        let migrations = migrations.to_vec();
        self.blocking(move |db| {
            let mut conn = db.writer()?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_s INTEGER NOT NULL)",
            )
            .map_err(|e| db.error(e))?;
            for (version, name, sql) in migrations {
                // IMMEDIATE takes the write lock first, so two servers never both apply it.
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(|e| db.error(e))?;
                let applied: i64 = tx
                    .query_row("SELECT count(*) FROM schema_migrations WHERE version = ?1", [version], |r| r.get(0))
                    .map_err(|e| db.error(e))?;
                if applied == 0 {
                    tx.execute_batch(&sql).map_err(|e| db.error(e))?;
                    tx.execute(
                        "INSERT INTO schema_migrations (version, name, applied_s) VALUES (?1, ?2, strftime('%s','now'))",
                        rusqlite::params![version, name],
                    )
                    .map_err(|e| db.error(e))?;
                }
                tx.commit().map_err(|e| db.error(e))?;
            }
            Ok(())
        })
        .await
    }
}

/// An SQLite row lent to an [`Encode`].
struct SqliteCells<'a> {
    row: &'a rusqlite::Row<'a>,
    db: &'a Sqlite,
}

impl Cells for SqliteCells<'_> {
    fn text(&self, index: usize) -> Result<Option<Cow<'_, str>>, StoreError> {
        use rusqlite::types::ValueRef;
        Ok(
            match self.row.get_ref(index).map_err(|e| self.db.error(e))? {
                ValueRef::Null => None,
                ValueRef::Integer(v) => Some(Cow::Owned(v.to_string())),
                ValueRef::Real(v) => Some(Cow::Owned(v.to_string())),
                ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t)),
            },
        )
    }

    fn real(&self, index: usize) -> Result<Option<f64>, StoreError> {
        use rusqlite::types::ValueRef;
        match self.row.get_ref(index).map_err(|e| self.db.error(e))? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(v) => Ok(Some(v as f64)),
            ValueRef::Real(v) => Ok(Some(v)),
            ValueRef::Text(t) | ValueRef::Blob(t) => Err(StoreError::Data(format!(
                "column {index} holds {:?}, not a number",
                String::from_utf8_lossy(t)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_queries_share_a_bounded_pool_of_readers() {
        let path =
            std::env::temp_dir().join(format!("drivetag-readers-{}.sqlite", std::process::id()));
        let db = Sqlite::open(&path).unwrap();
        db.execute(vec![
            Statement::new("CREATE TABLE t (x INTEGER)", vec![]),
            Statement::new("INSERT INTO t VALUES (1), (2), (3)", vec![]),
        ])
        .await
        .unwrap();
        let queries: Vec<_> = (0..64)
            .map(|_| {
                let db = db.clone();
                tokio::spawn(async move { db.query("SELECT SUM(x) FROM t".into(), vec![]).await })
            })
            .collect();
        for query in queries {
            let rows = query.await.unwrap().unwrap();
            assert_eq!(rows[0][0].int(), Some(6));
        }
        let (idle, opened) = {
            let pool = db.readers.lock();
            (pool.idle.len(), pool.opened)
        };
        assert!((1..=db.readers.max).contains(&opened), "{opened} readers");
        // Every connection came back.
        assert_eq!(idle, opened);
        drop(db);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
