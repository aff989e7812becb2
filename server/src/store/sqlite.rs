//! The SQLite back-end: one file, WAL, a writer and a reader connection.
//!
//! `synchronous = FULL`: the server acknowledges an envelope only after its commit, and the
//! agent then deletes it, so a commit must survive a power cut. Ingest batches many envelopes
//! per commit, so the fsync costs little.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::Connection;

use super::{Backend, Dialect, Isolation, Row, Statement, StepSender, StoreError, Value};

/// The SQLite back-end.
#[derive(Debug, Clone)]
pub struct Sqlite {
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
}

/// SQLite numbers parameters `?1`; our SQL says `$1`.
fn sqlite_sql(sql: &str) -> Cow<'_, str> {
    if sql.contains('$') {
        Cow::Owned(sql.replace('$', "?"))
    } else {
        Cow::Borrowed(sql)
    }
}

impl Sqlite {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Sqlite, StoreError> {
        let path = path.as_ref().to_owned();
        let error = |source| StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let connect = || -> Result<Connection, rusqlite::Error> {
            let conn = Connection::open(&path)?;
            conn.busy_timeout(std::time::Duration::from_secs(30))?;
            // A relabel of a large population rewrites millions of rows: with SQLite's 2 MB
            // default page cache it spends most of its time re-reading pages, so each
            // connection gets 64 MB. Sorts stay in temporary files: in memory they left a
            // server at 1.3 GB of RSS after relabelling a million customers.
            conn.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF; \
                 PRAGMA cache_size = -65536;",
            )?;
            Ok(conn)
        };
        let writer = connect().map_err(error)?;
        let reader = connect().map_err(error)?;
        Ok(Sqlite {
            path,
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    fn error(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
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

    async fn execute_steps(
        &self,
        steps: Vec<Vec<Statement>>,
        // One writer at a time: a write transaction's statements see one state whatever this says.
        _isolation: Isolation,
        progress: StepSender,
    ) -> Result<Vec<Vec<u64>>, StoreError> {
        self.blocking(move |db| {
            let mut conn = db
                .writer
                .lock()
                .map_err(|_| StoreError::Worker("writer lock poisoned".into()))?;
            let tx = conn.transaction().map_err(|e| db.error(e))?;
            let mut all = Vec::with_capacity(steps.len());
            for (index, statements) in steps.iter().enumerate() {
                let started = std::time::Instant::now();
                let mut affected = Vec::with_capacity(statements.len());
                for statement in statements {
                    let mut prepared = tx
                        .prepare_cached(&sqlite_sql(&statement.sql))
                        .map_err(|e| db.error(e))?;
                    let count = prepared
                        .execute(rusqlite::params_from_iter(statement.params.iter()))
                        .map_err(|e| db.error(e))?;
                    affected.push(count as u64);
                }
                // Nobody listening is fine: progress is for people.
                let _ = progress.send((index, affected.clone(), started.elapsed().as_secs_f64()));
                all.push(affected);
            }
            tx.commit().map_err(|e| db.error(e))?;
            Ok(all)
        })
        .await
    }

    async fn query(
        &self,
        sql: Cow<'static, str>,
        params: Vec<Value>,
    ) -> Result<Vec<Row>, StoreError> {
        self.blocking(move |db| {
            let conn = db
                .reader
                .lock()
                .map_err(|_| StoreError::Worker("reader lock poisoned".into()))?;
            let mut prepared = conn
                .prepare_cached(&sqlite_sql(&sql))
                .map_err(|e| db.error(e))?;
            let columns = prepared.column_count();
            let mut rows = prepared
                .query(rusqlite::params_from_iter(params.iter()))
                .map_err(|e| db.error(e))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| db.error(e))? {
                let mut values = Vec::with_capacity(columns);
                for index in 0..columns {
                    values.push(Value::from_sqlite(
                        row.get_ref(index).map_err(|e| db.error(e))?,
                    ));
                }
                out.push(values);
            }
            Ok(out)
        })
        .await
    }

    async fn migrate(&self, migrations: &[(i64, &'static str, String)]) -> Result<(), StoreError> {
        let migrations = migrations.to_vec();
        self.blocking(move |db| {
            let mut conn = db.writer.lock().map_err(|_| StoreError::Worker("writer lock poisoned".into()))?;
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
