//! Values that cross into and out of either database, so the store's SQL is written once.

use bytes::BytesMut;
use postgres_types::{IsNull, ToSql as PgToSql, Type, to_sql_checked};
use rusqlite::types::{ToSqlOutput, ValueRef};

/// One SQL value. Integers are 64-bit everywhere (PostgreSQL columns are `BIGINT`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A boolean (an integer 0/1 in SQLite).
    Bool(bool),
    /// A PostgreSQL array of one type (`$1::bigint[]`), to pass a column of many rows as one
    /// parameter, e.g. to `UNNEST`. SQLite has no arrays and refuses it.
    Array(Vec<Value>),
}

impl Value {
    /// The integer, if it is one (booleans count as 0 and 1).
    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            Value::Bool(b) => Some(i64::from(*b)),
            Value::Real(v) => Some(*v as i64),
            _ => None,
        }
    }

    /// The number as a float, if it is one.
    pub fn real(&self) -> Option<f64> {
        match self {
            Value::Real(v) => Some(*v),
            Value::Int(v) => Some(*v as f64),
            _ => None,
        }
    }

    /// The text, if it is text.
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean (SQLite integers 0 and 1 included).
    pub fn bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Int(v) => Some(*v != 0),
            _ => None,
        }
    }

    /// The bytes, if they are bytes.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<u16> for Value {
    fn from(v: u16) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<u8> for Value {
    fn from(v: u8) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<i16> for Value {
    fn from(v: i16) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Real(v) => ToSqlOutput::Borrowed(ValueRef::Real(*v)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Value::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*b))),
            Value::Array(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "an array parameter is for PostgreSQL only".into(),
                ));
            }
        })
    }
}

impl Value {
    /// Reads an SQLite column.
    pub fn from_sqlite(value: ValueRef<'_>) -> Value {
        match value {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(v) => Value::Int(v),
            ValueRef::Real(v) => Value::Real(v),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
        }
    }

    /// Reads a PostgreSQL column by its type.
    pub fn from_pg(
        row: &tokio_postgres::Row,
        index: usize,
    ) -> Result<Value, tokio_postgres::Error> {
        let ty = row.columns()[index].type_();
        Ok(match *ty {
            Type::INT8 => row
                .try_get::<_, Option<i64>>(index)?
                .map_or(Value::Null, Value::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(index)?
                .map_or(Value::Null, |v| Value::Int(i64::from(v))),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(index)?
                .map_or(Value::Null, |v| Value::Int(i64::from(v))),
            Type::FLOAT8 => row
                .try_get::<_, Option<f64>>(index)?
                .map_or(Value::Null, Value::Real),
            Type::FLOAT4 => row
                .try_get::<_, Option<f32>>(index)?
                .map_or(Value::Null, |v| Value::Real(f64::from(v))),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(index)?
                .map_or(Value::Null, Value::Bool),
            Type::BYTEA => row
                .try_get::<_, Option<Vec<u8>>>(index)?
                .map_or(Value::Null, Value::Bytes),
            // NUMERIC (from sum() or avg() over BIGINT) has no Rust type here: queries CAST it
            // to BIGINT or DOUBLE PRECISION, which both databases understand.
            _ => row
                .try_get::<_, Option<String>>(index)?
                .map_or(Value::Null, Value::Text),
        })
    }
}

impl PgToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            // PostgreSQL infers a parameter's type from where it stands; convert to it, or the
            // bytes of one type would be read as another.
            Value::Int(v) => match *ty {
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => v.to_string().to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Real(v) => match *ty {
                Type::INT8 if v.fract() == 0.0 => (*v as i64).to_sql(ty, out),
                Type::INT4 if v.fract() == 0.0 => (*v as i32).to_sql(ty, out),
                Type::INT8 | Type::INT4 | Type::INT2 => {
                    Err(format!("{v} is not an integer for a {ty} parameter").into())
                }
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Text(s) => s.to_sql(ty, out),
            Value::Bytes(b) => b.to_sql(ty, out),
            Value::Bool(b) => b.to_sql(ty, out),
            Value::Array(values) => match ty.kind() {
                // Each element converts itself to the member type, as a lone parameter does.
                postgres_types::Kind::Array(_) => values.to_sql(ty, out),
                _ => Err(format!("an array for a {ty} parameter").into()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        // Each variant checks its own type in `to_sql`.
        true
    }

    to_sql_checked!();
}
