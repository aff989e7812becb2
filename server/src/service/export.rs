//! Streamed exports of labelled vehicles and their customers, as CSV or NDJSON.
//!
//! One query reads every row, by VIN; each row is encoded where the database holds it and
//! the bytes go out in chunks while the next are read, so memory stays flat however many rows
//! there are. The first CSV line names every column. A fleet's or a store's export holds only its own
//! rows: the pages are read through the caller's scope.

use std::borrow::Cow;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::access::Caller;
use super::read::ReadError;
use crate::store::{Cells, Encode, Store, StoreError};

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Ndjson,
}

impl Format {
    /// The MIME type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Ndjson => "application/x-ndjson",
        }
    }
}

const FIXED: [&str; 11] = [
    "vin",
    "device_id",
    "make",
    "model",
    "model_year",
    "energy",
    "price_class",
    "customer_id",
    "customer_name",
    "fleet_id",
    "store_id",
];
const TAIL: [&str; 3] = ["first_action", "first_channel", "first_status"];

/// Bytes per chunk sent to the client.
const CHUNK: usize = 256 * 1024;

/// An export in progress: one query, run by the store on its own task, whose rows are encoded
/// where the database holds them and come out here in chunks.
#[derive(Debug)]
pub struct Export {
    columns: Vec<String>,
    chunks: mpsc::Receiver<Vec<u8>>,
    query: Option<JoinHandle<Result<u64, StoreError>>>,
    /// Rows written, known once the export is complete.
    pub rows: u64,
}

impl Drop for Export {
    fn drop(&mut self) {
        // Closing the channel stops the query at its next chunk.
        self.chunks.close();
    }
}

impl Export {
    /// Starts an export; checks the filter before the first byte is sent.
    pub async fn start(
        store: Store,
        caller: Caller,
        filter: Option<String>,
        format: Format,
    ) -> Result<Export, ReadError> {
        Export::start_chunked(store, caller, filter, format, CHUNK).await
    }

    /// [`Export::start`] with chunks of about `chunk` bytes rather than 256 kB.
    pub async fn start_chunked(
        store: Store,
        caller: Caller,
        filter: Option<String>,
        format: Format,
        chunk: usize,
    ) -> Result<Export, ReadError> {
        let (sql, params) = store.export_query(&caller, filter.as_deref())?;
        // Sorted bytewise, as `Encoder::row` searches them (a database's collation may order
        // them otherwise).
        let mut groups = store.label_groups().await?;
        groups.sort();
        let columns: Vec<String> = FIXED
            .iter()
            .map(|c| (*c).to_owned())
            .chain(groups.iter().cloned())
            .chain(TAIL.iter().map(|c| (*c).to_owned()))
            .collect();
        let encoder = Encoder::new(format, groups, &columns, chunk);
        // Two chunks queued: the query encodes the next while the current one is sent.
        let (sender, chunks) = mpsc::channel(2);
        let query = tokio::spawn(async move {
            store
                .query_encoded(sql, params, Box::new(encoder), chunk, sender)
                .await
        });
        Ok(Export {
            columns,
            chunks,
            query: Some(query),
            rows: 0,
        })
    }

    /// The column names, in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The next chunk of output, or `None` when the export is complete.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        if let Some(chunk) = self.chunks.recv().await {
            return Ok(Some(chunk));
        }
        // The query has sent its last chunk: did it finish or fail?
        if let Some(query) = self.query.take() {
            self.rows = query
                .await
                .map_err(|error| StoreError::Worker(error.to_string()))??;
        }
        Ok(None)
    }
}

/// Encodes export rows as CSV or NDJSON, reusing its buffers from row to row.
struct Encoder {
    /// Label groups, sorted bytewise.
    groups: Vec<String>,
    /// Each group's labels of the current row, `;`-joined.
    slots: Vec<String>,
    sink: Sink,
    /// Bytes to hand over at a time, about.
    chunk: usize,
}

/// Where an [`Encoder`] writes, by format.
enum Sink {
    /// A CSV writer into a buffer (boxed: it carries its own state, 376 bytes).
    Csv(Box<csv::Writer<Vec<u8>>>),
    /// NDJSON lines, with each column's key, `"name":`, ready to copy.
    Ndjson { out: Vec<u8>, keys: Vec<Vec<u8>> },
}

impl Encoder {
    fn new(format: Format, groups: Vec<String>, columns: &[String], chunk: usize) -> Encoder {
        let sink = match format {
            Format::Csv => {
                let mut writer = csv::Writer::from_writer(Vec::with_capacity(chunk * 2));
                // A header row is written even when no row follows.
                let _ = writer.write_record(columns);
                Sink::Csv(Box::new(writer))
            }
            Format::Ndjson => Sink::Ndjson {
                out: Vec::with_capacity(chunk * 2),
                keys: columns
                    .iter()
                    .map(|column| {
                        let mut key = serde_json::to_vec(column).unwrap_or_default();
                        key.push(b':');
                        key
                    })
                    .collect(),
            },
        };
        Encoder {
            slots: vec![String::new(); groups.len()],
            groups,
            sink,
            chunk,
        }
    }

    /// Splits a `vehicle_labels` text (`group=value`, space-separated) into the slots, one
    /// pass however many groups.
    fn split_labels(&mut self, labels: &str) {
        for slot in &mut self.slots {
            slot.clear();
        }
        for (group, value) in labels.split(' ').filter_map(|l| l.split_once('=')) {
            if let Ok(index) = self.groups.binary_search_by(|g| g.as_str().cmp(group)) {
                let slot = &mut self.slots[index];
                if !slot.is_empty() {
                    slot.push(';');
                }
                slot.push_str(value);
            }
        }
    }
}

impl Encode for Encoder {
    fn row(&mut self, cells: &dyn Cells) -> Result<(), StoreError> {
        let labels = FIXED.len();
        self.split_labels(cells.text(labels)?.as_deref().unwrap_or_default());
        let mut fixed: [Cow<'_, str>; FIXED.len()] = Default::default();
        for (index, value) in fixed.iter_mut().enumerate() {
            *value = cells.text(index)?.unwrap_or_default();
        }
        let mut tail: [Cow<'_, str>; TAIL.len()] = Default::default();
        for (index, value) in tail.iter_mut().enumerate() {
            *value = cells.text(labels + 1 + index)?.unwrap_or_default();
        }
        let values = fixed
            .iter()
            .map(|v| v.as_ref())
            .chain(self.slots.iter().map(String::as_str))
            .chain(tail.iter().map(|v| v.as_ref()));
        let failed = |error: &dyn std::fmt::Display| StoreError::Worker(format!("export: {error}"));
        match &mut self.sink {
            Sink::Csv(writer) => writer.write_record(values).map_err(|e| failed(&e))?,
            Sink::Ndjson { out, keys } => {
                out.push(b'{');
                for (index, (key, value)) in keys.iter().zip(values).enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(key);
                    serde_json::to_writer(&mut *out, value).map_err(|e| failed(&e))?;
                }
                out.extend_from_slice(b"}\n");
            }
        }
        Ok(())
    }

    fn take(&mut self, min: usize) -> Option<Vec<u8>> {
        // Called after every row: the fresh buffer is made only when one is handed over.
        let capacity = self.chunk * 2;
        let bytes = match &mut self.sink {
            Sink::Csv(writer) => {
                // The writer keeps up to 8 kB of its own; swapping in a fresh one flushes it.
                if min > 0 && writer.get_ref().len() < min {
                    return None;
                }
                let fresh = csv::Writer::from_writer(Vec::with_capacity(capacity));
                std::mem::replace(&mut **writer, fresh).into_inner().ok()?
            }
            Sink::Ndjson { out, .. } => {
                if out.len() < min {
                    return None;
                }
                std::mem::replace(out, Vec::with_capacity(capacity))
            }
        };
        (!bytes.is_empty()).then_some(bytes)
    }
}
