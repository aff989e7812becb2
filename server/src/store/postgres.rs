//! The PostgreSQL back-end, for several server instances on one database.
//!
//! Statements of one transaction are sent pipelined: tokio-postgres writes them all before
//! waiting for the answers, so a batch of envelopes costs a few round trips, not one each.

use std::borrow::Cow;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::TryStreamExt;
use futures::future::try_join_all;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, NoTls};

use super::{
    Backend, Cells, ChunkSender, Dialect, Encode, RelabelGuard, Row, Statement, StatementReceiver,
    StoreError, Value,
};

/// The PostgreSQL back-end.
#[derive(Clone)]
pub struct Postgres {
    pool: Pool,
    schema: Option<String>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("schema", &self.schema)
            .finish()
    }
}

/// Keeps every server's migrations from running at once.
const MIGRATION_LOCK: i64 = 0x6472_6976_6574_6167; // "drivetag"

impl Postgres {
    /// A pool for `url` (`postgres://user@host:port/db`). With `schema`, every connection works
    /// in that schema (created if missing): tests get a fresh schema each.
    pub fn connect(url: &str, schema: Option<&str>) -> Result<Postgres, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|error: tokio_postgres::Error| StoreError::Pool(error.to_string()))?;
        if let Some(schema) = schema {
            config.options(format!("-c search_path={schema}"));
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(8)
            .build()
            .map_err(|error| StoreError::Pool(error.to_string()))?;
        Ok(Postgres {
            pool,
            schema: schema.map(str::to_owned),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|error| StoreError::Pool(error.to_string()))
    }
}

/// Prepares every statement of a transaction first, so they can then go out pipelined.
async fn prepare_all(
    tx: &deadpool_postgres::Transaction<'_>,
    statements: &[Statement],
) -> Result<Vec<tokio_postgres::Statement>, tokio_postgres::Error> {
    let mut prepared = Vec::with_capacity(statements.len());
    for statement in statements {
        prepared.push(tx.prepare_cached(&statement.sql).await?);
    }
    Ok(prepared)
}

fn params(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

fn row_values(row: &tokio_postgres::Row) -> Result<Row, StoreError> {
    (0..row.len())
        .map(|index| Value::from_pg(row, index).map_err(StoreError::from))
        .collect()
}

/// Serialises relabels across servers ([`Backend::relabel_lock`]).
const RELABEL_LOCK: i64 = MIGRATION_LOCK + 1;

/// A READ COMMITTED transaction on `client`.
async fn begin(
    client: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>, StoreError> {
    Ok(client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await?)
}

#[async_trait]
impl Backend for Postgres {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn execute(&self, statements: Vec<Statement>) -> Result<Vec<u64>, StoreError> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let prepared = prepare_all(&tx, &statements).await?;
        // Pipelined: the statements go out together and run in order.
        let futures = statements
            .iter()
            .zip(&prepared)
            .map(|(statement, prepared)| {
                let tx = &tx;
                async move { tx.execute(prepared, &params(&statement.params)).await }
            });
        let affected = try_join_all(futures).await?;
        tx.commit().await?;
        Ok(affected)
    }

    async fn relabel_lock(&self) -> Result<RelabelGuard, StoreError> {
        // A session of its own, out of the pool: the guard closes it when it drops, and the
        // server releases a session's locks when it closes, even if this process died.
        let client = deadpool_postgres::Object::take(self.client().await?);
        client
            .execute("SELECT pg_advisory_lock($1)", &[&RELABEL_LOCK])
            .await?;
        Ok(RelabelGuard::new(client))
    }

    async fn execute_stream(&self, mut statements: StatementReceiver) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let mut changed = 0;
        while let Some(statement) = statements.recv().await {
            // An error drops `tx`, which rolls back.
            let statement = statement?;
            let prepared = tx.prepare_cached(&statement.sql).await?;
            changed += tx.execute(&prepared, &params(&statement.params)).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn execute_returning(
        &self,
        statements: Vec<Statement>,
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        let mut client = self.client().await?;
        let tx = begin(&mut client).await?;
        let prepared = prepare_all(&tx, &statements).await?;
        // Pipelined, as in `execute`.
        let futures = statements
            .iter()
            .zip(&prepared)
            .map(|(statement, prepared)| {
                let tx = &tx;
                async move { tx.query(prepared, &params(&statement.params)).await }
            });
        let results = try_join_all(futures).await?;
        tx.commit().await?;
        results
            .iter()
            .map(|rows| rows.iter().map(row_values).collect())
            .collect()
    }

    async fn query(
        &self,
        sql: Cow<'static, str>,
        values: Vec<Value>,
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(&sql).await?;
        let rows = client.query(&statement, &params(&values)).await?;
        rows.iter().map(row_values).collect()
    }

    async fn query_batch(
        &self,
        queries: Vec<(Cow<'static, str>, Vec<Value>)>,
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        let client = self.client().await?;
        let mut prepared = Vec::with_capacity(queries.len());
        for (sql, _) in &queries {
            prepared.push(client.prepare_cached(sql).await?);
        }
        // Pipelined on one connection: one round trip's wait for all of them.
        let results = try_join_all(queries.iter().zip(&prepared).map(
            |((_, values), statement)| {
                let client = &client;
                async move { client.query(statement, &params(values)).await }
            },
        ))
        .await?;
        results
            .iter()
            .map(|rows| rows.iter().map(row_values).collect())
            .collect()
    }

    async fn query_encoded(
        &self,
        sql: Cow<'static, str>,
        values: Vec<Value>,
        mut encode: Box<dyn Encode>,
        chunk: usize,
        out: ChunkSender,
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(&sql).await?;
        // Rows are read off the socket as they are encoded: the driver's channel is bounded,
        // so a slow reader of `out` holds the query back instead of filling memory.
        let rows = client.query_raw(&statement, params(&values)).await?;
        futures::pin_mut!(rows);
        let mut count = 0;
        while let Some(row) = rows.try_next().await? {
            encode.row(&PgCells(&row))?;
            count += 1;
            if let Some(bytes) = encode.take(chunk) {
                if out.send(bytes).await.is_err() {
                    return Ok(count);
                }
            }
        }
        if let Some(bytes) = encode.take(0) {
            let _ = out.send(bytes).await;
        }
        Ok(count)
    }

    async fn migrate(&self, migrations: &[(i64, &'static str, String)]) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        if let Some(schema) = &self.schema {
            // Under the migration lock: two servers creating one schema at once make
            // `IF NOT EXISTS` fail with a duplicate key.
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .await?;
            tx.commit().await?;
        }
        for (version, name, sql) in migrations {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version BIGINT PRIMARY KEY, name TEXT NOT NULL,
                     applied_s BIGINT NOT NULL DEFAULT extract(epoch from now())::bigint)",
            )
            .await?;
            let applied = tx
                .query_opt(
                    "SELECT 1 FROM schema_migrations WHERE version = $1",
                    &[version],
                )
                .await?;
            if applied.is_none() {
                tx.batch_execute(sql).await?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    &[version, name],
                )
                .await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }
}

/// A PostgreSQL row lent to an [`Encode`].
struct PgCells<'a>(&'a tokio_postgres::Row);

impl Cells for PgCells<'_> {
    fn text(&self, index: usize) -> Result<Option<Cow<'_, str>>, StoreError> {
        let column = self
            .0
            .columns()
            .get(index)
            .ok_or_else(|| StoreError::Data(format!("no column {index} in the result")))?;
        if column.type_() == &tokio_postgres::types::Type::TEXT
            || column.type_() == &tokio_postgres::types::Type::VARCHAR
        {
            return Ok(self.0.try_get::<_, Option<&str>>(index)?.map(Cow::Borrowed));
        }
        Ok(match Value::from_pg(self.0, index)? {
            Value::Null => None,
            Value::Int(v) => Some(v.to_string().into()),
            Value::Real(v) => Some(v.to_string().into()),
            Value::Bool(v) => Some(v.to_string().into()),
            Value::Text(v) => Some(v.into()),
            other => {
                return Err(StoreError::Data(format!(
                    "column {} is {other:?}, not text",
                    column.name()
                )));
            }
        })
    }

    fn real(&self, index: usize) -> Result<Option<f64>, StoreError> {
        let ty = self.0.columns().get(index).map(|c| c.type_().clone());
        Ok(match ty {
            Some(tokio_postgres::types::Type::FLOAT8) => self.0.try_get::<_, Option<f64>>(index)?,
            Some(tokio_postgres::types::Type::INT8) => {
                self.0.try_get::<_, Option<i64>>(index)?.map(|v| v as f64)
            }
            Some(tokio_postgres::types::Type::INT4) => {
                self.0.try_get::<_, Option<i32>>(index)?.map(f64::from)
            }
            _ => match Value::from_pg(self.0, index)? {
                Value::Null => None,
                other => Some(other.real().ok_or_else(|| {
                    StoreError::Data(format!("column {index} is {other:?}, not a number"))
                })?),
            },
        })
    }
}
