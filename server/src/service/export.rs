//! Streamed exports of labelled vehicles and their customers, as CSV or NDJSON.
//!
//! Rows are read in pages of [`PAGE`] by VIN, so memory stays flat however many rows there
//! are; the first CSV line names every column. A fleet's or a store's export holds only its own
//! rows: the pages are read through the caller's scope.

use super::access::Caller;
use super::read::{ExportRow, ReadError};
use crate::store::Store;

/// Vehicles per page.
pub const PAGE: usize = 5_000;

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

/// An export in progress.
#[derive(Debug)]
pub struct Export {
    store: Store,
    caller: Caller,
    filter: Option<String>,
    format: Format,
    groups: Vec<String>,
    after: String,
    started: bool,
    done: bool,
    /// Rows written so far.
    pub rows: u64,
}

impl Export {
    /// Prepares an export; checks the filter before the first byte is sent.
    pub async fn start(
        store: Store,
        caller: Caller,
        filter: Option<String>,
        format: Format,
    ) -> Result<Export, ReadError> {
        if let Some(text) = filter.as_deref().filter(|f| !f.trim().is_empty()) {
            super::filter::compile(text, 1)?;
        }
        let groups = store.label_groups().await?;
        Ok(Export {
            store,
            caller,
            filter,
            format,
            groups,
            after: String::new(),
            started: false,
            done: false,
            rows: 0,
        })
    }

    /// The column names, in order.
    pub fn columns(&self) -> Vec<String> {
        FIXED
            .iter()
            .map(|c| (*c).to_owned())
            .chain(self.groups.iter().cloned())
            .chain(TAIL.iter().map(|c| (*c).to_owned()))
            .collect()
    }

    fn values(&self, row: &ExportRow) -> Vec<String> {
        let v = &row.vehicle;
        let mut out = vec![
            v.vin.clone(),
            v.device_id.clone().unwrap_or_default(),
            v.make.clone(),
            v.model.clone(),
            v.model_year.to_string(),
            v.energy.clone(),
            v.price_class.clone(),
            v.customer_id.clone().unwrap_or_default(),
            row.customer_name.clone().unwrap_or_default(),
            v.fleet_id.clone().unwrap_or_default(),
            v.store_id.map(|s| s.to_string()).unwrap_or_default(),
        ];
        out.extend(
            self.groups
                .iter()
                .map(|g| row.labels.get(g).cloned().unwrap_or_default()),
        );
        out.push(row.first_action.clone().unwrap_or_default());
        out.push(row.first_channel.clone().unwrap_or_default());
        out.push(row.first_status.clone().unwrap_or_default());
        out
    }

    /// The next chunk of output, or `None` when the export is complete.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        if self.done {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(PAGE * 160);
        if !self.started && self.format == Format::Csv {
            let mut writer = csv::Writer::from_writer(&mut out);
            let _ = writer.write_record(self.columns());
            let _ = writer.flush();
        }
        self.started = true;
        let page = self
            .store
            .export_page(&self.caller, self.filter.as_deref(), &self.after, PAGE)
            .await?;
        if page.len() < PAGE {
            self.done = true;
        }
        if let Some(last) = page.last() {
            self.after = last.vehicle.vin.clone();
        }
        match self.format {
            Format::Csv => {
                let mut writer = csv::Writer::from_writer(&mut out);
                for row in &page {
                    let _ = writer.write_record(self.values(row));
                }
                let _ = writer.flush();
            }
            Format::Ndjson => {
                let columns = self.columns();
                for row in &page {
                    let object: serde_json::Map<String, serde_json::Value> = columns
                        .iter()
                        .cloned()
                        .zip(self.values(row).into_iter().map(serde_json::Value::from))
                        .collect();
                    let _ = serde_json::to_writer(&mut out, &object);
                    out.push(b'\n');
                }
            }
        }
        self.rows += page.len() as u64;
        Ok(Some(out))
    }
}
