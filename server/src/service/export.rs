//! Streamed exports of labelled vehicles and their customers, as CSV or NDJSON.
//!
//! Rows are read in pages of [`PAGE`] by VIN, so memory stays flat however many rows there
//! are; the first CSV line names every column. A fleet's or a store's export holds only its own
//! rows: the pages are read through the caller's scope.

use std::borrow::Cow;

use tokio::task::JoinHandle;

use super::access::Caller;
use super::read::{ExportRow, ReadError};
use crate::store::{Store, StoreError};

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
    /// The next page, read while the current one is written.
    next: Option<JoinHandle<Result<Vec<ExportRow>, ReadError>>>,
    /// Rows written so far.
    pub rows: u64,
}

impl Drop for Export {
    fn drop(&mut self) {
        if let Some(next) = self.next.take() {
            next.abort();
        }
    }
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
        // Sorted bytewise, as `ExportRow::labels_by_group` searches them (a database's
        // collation may order them otherwise).
        let mut groups = store.label_groups().await?;
        groups.sort();
        Ok(Export {
            store,
            caller,
            filter,
            format,
            groups,
            after: String::new(),
            started: false,
            done: false,
            next: None,
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

    /// A row's values, in the order of [`Export::columns`], borrowed where they can be: an
    /// export writes millions of them.
    fn values<'a>(&'a self, row: &'a ExportRow) -> Vec<Cow<'a, str>> {
        let v = &row.vehicle;
        let text = |value: &'a Option<String>| Cow::Borrowed(value.as_deref().unwrap_or_default());
        let mut out = Vec::with_capacity(FIXED.len() + self.groups.len() + TAIL.len());
        out.extend([
            Cow::Borrowed(v.vin.as_str()),
            text(&v.device_id),
            Cow::Borrowed(v.make.as_str()),
            Cow::Borrowed(v.model.as_str()),
            Cow::Owned(v.model_year.to_string()),
            Cow::Borrowed(v.energy.as_str()),
            Cow::Borrowed(v.price_class.as_str()),
            text(&v.customer_id),
            text(&row.customer_name),
            text(&v.fleet_id),
            v.store_id
                .map_or(Cow::Borrowed(""), |s| Cow::Owned(s.to_string())),
        ]);
        out.extend(row.labels_by_group(&self.groups));
        out.push(text(&row.first_action));
        out.push(text(&row.first_channel));
        out.push(text(&row.first_status));
        out
    }

    /// Starts reading the page after `self.after`, on its own task so that the database reads
    /// it while the current page is formatted and sent (each takes a core).
    fn fetch(&self) -> JoinHandle<Result<Vec<ExportRow>, ReadError>> {
        let (store, caller, filter, after) = (
            self.store.clone(),
            self.caller.clone(),
            self.filter.clone(),
            self.after.clone(),
        );
        tokio::spawn(async move {
            store
                .export_page(&caller, filter.as_deref(), &after, PAGE)
                .await
        })
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
            .next
            .take()
            .unwrap_or_else(|| self.fetch())
            .await
            .map_err(|error| StoreError::Worker(error.to_string()))??;
        if page.len() < PAGE {
            self.done = true;
        }
        if let Some(last) = page.last() {
            self.after = last.vehicle.vin.clone();
        }
        if !self.done {
            self.next = Some(self.fetch());
        }
        match self.format {
            Format::Csv => {
                let mut writer = csv::Writer::from_writer(&mut out);
                for row in &page {
                    let _ = writer.write_record(self.values(row).iter().map(|v| v.as_bytes()));
                }
                let _ = writer.flush();
            }
            Format::Ndjson => {
                // Keys in the order of the CSV's columns.
                let columns = self.columns();
                for row in &page {
                    out.push(b'{');
                    for (index, (column, value)) in columns.iter().zip(self.values(row)).enumerate()
                    {
                        if index > 0 {
                            out.push(b',');
                        }
                        let _ = serde_json::to_writer(&mut out, column);
                        out.push(b':');
                        let _ = serde_json::to_writer(&mut out, value.as_ref());
                    }
                    out.extend_from_slice(b"}\n");
                }
            }
        }
        self.rows += page.len() as u64;
        Ok(Some(out))
    }
}
