//! What the API and exports read: vehicles, customers, labels with their explanations,
//! next-best actions, distributions. Every query takes the [`Caller`], whose scope it applies.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::access::Caller;
use super::filter::{self, FilterError};
use crate::labels::catalog::Stored;
use crate::labels::rules::CHANNELS;
use crate::store::{Row, Store, StoreError, Value};

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The label filter is not one.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A page of results and where the next one starts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// A vehicle in a list.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct VehicleSummary {
    /// VIN.
    pub vin: String,
    /// The head unit, when it has drivetag.
    pub device_id: Option<String>,
    /// Make.
    pub make: String,
    /// Model.
    pub model: String,
    /// Model year.
    pub model_year: i64,
    /// ice, hev, phev or ev.
    pub energy: String,
    /// economy, mid, premium or luxury.
    pub price_class: String,
    /// Owner or main driver.
    pub customer_id: Option<String>,
    /// Fleet.
    pub fleet_id: Option<String>,
    /// Store.
    pub store_id: Option<i64>,
    /// Labels as `group=label`.
    pub labels: Vec<String>,
}

/// A label with why it was given.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LabelView {
    /// Its group.
    pub group: String,
    /// The label.
    pub value: String,
    /// The rule that gave it, as written in the rules file.
    pub rule: String,
    /// The features the rule read with their values, or a tier's score, rank and population.
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
    /// The labelling day, YYYY-MM-DD.
    pub labelled: String,
}

/// One next-best action.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ActionView {
    /// The strategy.
    pub strategy: String,
    /// Its priority (higher first).
    pub priority: i64,
    /// 1 = do this first.
    pub rank: i64,
    /// The channel the customer consented to, if any.
    pub channel: Option<String>,
    /// planned, capped (contact cap reached) or no_channel (no consent).
    pub status: String,
    /// What it offers and why it applies.
    pub reason: String,
}

/// A vehicle with its features, labels and actions.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct VehicleDetail {
    /// The vehicle.
    pub vehicle: VehicleSummary,
    /// The features at the last labelling (absent before the first).
    #[schema(value_type = Object)]
    pub features: serde_json::Value,
    /// Labels with explanations.
    pub labels: Vec<LabelView>,
    /// Next-best actions, best first.
    pub actions: Vec<ActionView>,
}

/// A customer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CustomerView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Phone.
    pub phone: String,
    /// E-mail.
    pub email: String,
    /// WeChat id.
    pub wechat: String,
    /// Channels the customer consented to.
    pub opt_in: Vec<String>,
    /// Birthday month.
    pub birthday_month: Option<i64>,
    /// Home store.
    pub home_store_id: Option<i64>,
    /// Fleet.
    pub fleet_id: Option<String>,
    /// Their vehicles the caller may see.
    pub vehicles: Vec<String>,
}

/// A customer's vehicles with labels and actions.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CustomerLabels {
    /// The customer.
    pub customer_id: String,
    /// Each vehicle's labels and actions.
    pub vehicles: Vec<VehicleDetail>,
}

/// A dead letter, for admins.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeadLetterView {
    /// Id.
    pub id: i64,
    /// Received, UTC seconds.
    pub received_s: i64,
    /// Topic.
    pub topic: String,
    /// Device, when known.
    pub device_id: Option<String>,
    /// Sequence number, when known.
    pub seq: Option<i64>,
    /// Reason code.
    pub reason: String,
    /// Detail.
    pub detail: String,
    /// Payload size, bytes.
    pub bytes: usize,
    /// The first 64 bytes, hex.
    pub head_hex: String,
}

fn text(row: &Row, i: usize) -> String {
    row.get(i)
        .and_then(Value::text)
        .unwrap_or_default()
        .to_owned()
}

fn opt_text(row: &Row, i: usize) -> Option<String> {
    row.get(i).and_then(Value::text).map(str::to_owned)
}

fn day_text(day: i64) -> String {
    (jiff::civil::date(1970, 1, 1) + jiff::Span::new().days(day)).to_string()
}

/// Builds `$first, $first+1, ...` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A vehicle's features as its labels keep them, as a JSON object by feature name with the
/// labelling day.
fn features_json(labelled_day: i64, values: &[Option<f64>], energy: &str) -> serde_json::Value {
    let mut map = crate::labels::features::to_json(values, energy);
    map.insert("labelled".into(), day_text(labelled_day).into());
    serde_json::Value::Object(map)
}

/// A vehicle's columns, with its labels from `vehicle_labels` (joined as `vl` by
/// [`VEHICLES`]).
const VEHICLE_COLUMNS: &str = "v.vin, v.device_id, v.make, v.model, v.model_year, v.energy, v.price_class, v.customer_id, v.fleet_id, v.store_id, vl.labels";

/// Vehicles with their labels in one row: what [`VEHICLE_COLUMNS`] reads from.
const VEHICLES: &str = "vehicles v LEFT JOIN vehicle_labels vl ON vl.vin = v.vin";

/// Moves the text out of `row[i]`: lists and exports turn millions of cells into views.
fn take_text(row: &mut Row, i: usize) -> Option<String> {
    match row.get_mut(i) {
        Some(Value::Text(text)) => Some(std::mem::take(text)),
        _ => None,
    }
}

/// A vehicle from the [`VEHICLE_COLUMNS`] at the start of `row`, whose texts it takes.
fn vehicle(row: &mut Row) -> VehicleSummary {
    VehicleSummary {
        vin: take_text(row, 0).unwrap_or_default(),
        device_id: take_text(row, 1),
        make: take_text(row, 2).unwrap_or_default(),
        model: take_text(row, 3).unwrap_or_default(),
        model_year: row[4].int().unwrap_or(0),
        energy: take_text(row, 5).unwrap_or_default(),
        price_class: take_text(row, 6).unwrap_or_default(),
        customer_id: take_text(row, 7),
        fleet_id: take_text(row, 8),
        store_id: row[9].int(),
        labels: row
            .get(10)
            .and_then(Value::text)
            .map(|labels| {
                labels
                    .split(' ')
                    .filter(|label| !label.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Most items per page.
pub const MAX_PAGE: usize = 500;

impl Store {
    /// Vehicles the caller may see, by VIN, filtered by labels, a page after `after`.
    pub async fn list_vehicles(
        &self,
        caller: &Caller,
        label_filter: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<VehicleSummary>, ReadError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let (scope, mut params) = caller.vehicle_scope(1);
        let filter = match label_filter.filter(|f| !f.trim().is_empty()) {
            Some(text) => {
                let compiled = filter::compile(text, params.len() + 1)?;
                params.extend(compiled.params);
                compiled.sql
            }
            None => "1 = 1".to_owned(),
        };
        params.push(after.unwrap_or("").into());
        let after_param = params.len();
        params.push((limit as i64 + 1).into());
        let sql = format!(
            "SELECT {VEHICLE_COLUMNS} FROM {VEHICLES} WHERE {scope} AND {filter} AND v.vin > ${after_param} \
             ORDER BY v.vin LIMIT ${}",
            after_param + 1
        );
        let rows = self.query(sql, params).await?;
        let more = rows.len() > limit;
        let items: Vec<VehicleSummary> = rows
            .into_iter()
            .take(limit)
            .map(|mut row| vehicle(&mut row))
            .collect();
        let next = more.then(|| items.last().map(|v| v.vin.clone())).flatten();
        Ok(Page { items, next })
    }

    /// One vehicle with features, labels and actions, if the caller may see it.
    pub async fn vehicle_detail(
        &self,
        caller: &Caller,
        vin: &str,
    ) -> Result<Option<VehicleDetail>, StoreError> {
        let (scope, mut params) = caller.vehicle_scope(2);
        let mut all = vec![Value::from(vin)];
        all.append(&mut params);
        let by_vin = || vec![Value::from(vin)];
        // One trip for the two: 64 clients' lookups spent much of their time handing queries to
        // the database's threads one at a time. (Computing the features here instead of
        // keeping them took seven queries more and put the p99 at 24-38 ms.)
        let mut results = self
            .query_batch(vec![
                (
                    format!("SELECT {VEHICLE_COLUMNS} FROM {VEHICLES} WHERE v.vin = $1 AND {scope}")
                        .into(),
                    all,
                ),
                (
                    "SELECT labels, sources, actions, labelled_day, rules, features FROM vehicle_labels WHERE vin = $1"
                        .into(),
                    by_vin(),
                ),
            ])
            .await?
            .into_iter();
        let mut next = || results.next().unwrap_or_default();
        // Out of the caller's scope, the other result is dropped unseen.
        let Some(mut row) = next().into_iter().next() else {
            return Ok(None);
        };
        let summary = vehicle(&mut row);
        let (features, labels, actions) = match next().into_iter().next() {
            Some(row) => {
                let labelled = row[3].int().unwrap_or(0);
                let catalog = crate::labels::catalog(self, &text(&row, 4)).await?;
                let values = crate::labels::features::decode(row[5].bytes().unwrap_or_default());
                let features = features_json(labelled, &values, &summary.energy);
                let (labels, actions) = Store::explained(&row, catalog, &features);
                (features, labels, actions)
            }
            None => (serde_json::Value::Null, Vec::new(), Vec::new()),
        };
        Ok(Some(VehicleDetail {
            vehicle: summary,
            features,
            labels,
            actions,
        }))
    }

    /// A `vehicle_labels` row's labels with their explanations and its actions with their
    /// reasons, in the words of the rules that gave them (their catalog) and with the values of
    /// the vehicle's features.
    fn explained(
        row: &Row,
        catalog: Option<std::sync::Arc<crate::labels::catalog::Catalog>>,
        features: &serde_json::Value,
    ) -> (Vec<LabelView>, Vec<ActionView>) {
        let stored = Stored::parse(&text(row, 0), &text(row, 1), &text(row, 2));
        let labelled = day_text(row[3].int().unwrap_or(0));
        let feature = |name: &str| features.get(name).cloned().unwrap_or_default();
        let labels = stored
            .labels
            .into_iter()
            .map(|(group, value, source)| {
                let (rule, evidence) = match (&catalog, source) {
                    (Some(catalog), Some(source)) => catalog.explain(&group, &source, &feature),
                    _ => (String::new(), serde_json::Value::Null),
                };
                LabelView {
                    group,
                    value,
                    rule,
                    evidence,
                    labelled: labelled.clone(),
                }
            })
            .collect();
        let actions = stored
            .actions
            .into_iter()
            .map(|action| {
                let entry = catalog.as_ref().and_then(|c| c.strategy(&action.strategy));
                ActionView {
                    priority: entry.map_or(0, |e| e.priority),
                    reason: entry.map(|e| e.reason.clone()).unwrap_or_default(),
                    strategy: action.strategy,
                    rank: action.rank,
                    channel: action.channel,
                    status: action.status,
                }
            })
            .collect();
        (labels, actions)
    }

    /// Customers the caller may see, filtered by their vehicles' labels.
    pub async fn list_customers(
        &self,
        caller: &Caller,
        label_filter: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<CustomerView>, ReadError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let (scope, mut params) = caller.customer_scope(1);
        let filter = match label_filter.filter(|f| !f.trim().is_empty()) {
            Some(text) => {
                // PostgreSQL refuses a parameter the SQL does not use: bind the vehicle scope
                // only with the filter that uses it.
                let (vscope, vparams) = caller.vehicle_scope(params.len() + 1);
                params.extend(vparams);
                let compiled = filter::compile(text, params.len() + 1)?;
                params.extend(compiled.params);
                format!(
                    "EXISTS (SELECT 1 FROM vehicles v WHERE v.customer_id = c.id AND {vscope} AND {})",
                    compiled.sql
                )
            }
            None => "1 = 1".to_owned(),
        };
        params.push(after.unwrap_or("").into());
        let after_param = params.len();
        params.push((limit as i64 + 1).into());
        let sql = format!(
            "SELECT c.id FROM customers c WHERE {scope} AND {filter} AND c.id > ${after_param} ORDER BY c.id LIMIT ${}",
            after_param + 1
        );
        let ids: Vec<String> = self
            .query(sql, params)
            .await?
            .iter()
            .map(|row| text(row, 0))
            .collect();
        let next = (ids.len() > limit)
            .then(|| ids.get(limit - 1).cloned())
            .flatten();
        let items = self.customers(caller, &ids[..ids.len().min(limit)]).await?;
        Ok(Page { items, next })
    }

    /// One customer, if the caller may see them.
    pub async fn customer(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Option<CustomerView>, StoreError> {
        Ok(self.customers(caller, &[id.to_owned()]).await?.pop())
    }

    /// The customers among `ids` the caller may see, in the order of `ids`: two queries
    /// however many there are (a page of 50 was 100 round trips).
    async fn customers(
        &self,
        caller: &Caller,
        ids: &[String],
    ) -> Result<Vec<CustomerView>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let id_params: Vec<Value> = ids.iter().map(|id| Value::from(id.as_str())).collect();
        let in_ids = placeholders(1, ids.len());
        let (scope, params) = caller.customer_scope(ids.len() + 1);
        let mut all = id_params.clone();
        all.extend(params);
        // The opt-ins in the order of the rules' channels, from column 5.
        const AFTER_OPT_INS: usize = 5 + CHANNELS.len();
        let opt_ins: String = CHANNELS.iter().map(|c| format!("c.{c}_opt_in, ")).collect();
        let sql = format!(
            "SELECT c.id, c.name, c.phone, c.email, c.wechat, {opt_ins}\
             c.birthday_month, c.home_store_id, c.fleet_id \
             FROM customers c WHERE c.id IN ({in_ids}) AND {scope}"
        );
        let (vscope, vparams) = caller.vehicle_scope(ids.len() + 1);
        let mut params = id_params;
        params.extend(vparams);
        let vehicles_sql = format!(
            "SELECT v.customer_id, v.vin FROM vehicles v WHERE v.customer_id IN ({in_ids}) AND {vscope} \
             ORDER BY v.customer_id, v.vin"
        );
        let mut results = self
            .query_batch(vec![(sql.into(), all), (vehicles_sql.into(), params)])
            .await?
            .into_iter();
        let rows = results.next().unwrap_or_default();
        let mut vehicles: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in results.next().unwrap_or_default() {
            vehicles
                .entry(text(&row, 0))
                .or_default()
                .push(text(&row, 1));
        }
        let mut by_id: BTreeMap<String, CustomerView> = rows
            .iter()
            .map(|row| {
                let id = text(row, 0);
                let opt_in = CHANNELS
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| row[5 + i].bool().unwrap_or(false))
                    .map(|(_, c)| (*c).to_owned())
                    .collect();
                let view = CustomerView {
                    vehicles: vehicles.remove(&id).unwrap_or_default(),
                    id: id.clone(),
                    name: text(row, 1),
                    phone: text(row, 2),
                    email: text(row, 3),
                    wechat: text(row, 4),
                    opt_in,
                    birthday_month: row[AFTER_OPT_INS].int(),
                    home_store_id: row[AFTER_OPT_INS + 1].int(),
                    fleet_id: opt_text(row, AFTER_OPT_INS + 2),
                };
                (id, view)
            })
            .collect();
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    /// A customer's vehicles with labels, explanations and actions.
    pub async fn customer_labels(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Option<CustomerLabels>, StoreError> {
        let Some(customer) = self.customer(caller, id).await? else {
            return Ok(None);
        };
        let mut vehicles = Vec::new();
        for vin in &customer.vehicles {
            if let Some(detail) = self.vehicle_detail(caller, vin).await? {
                vehicles.push(detail);
            }
        }
        Ok(Some(CustomerLabels {
            customer_id: customer.id,
            vehicles,
        }))
    }

    /// How many of the store's vehicles carry each label, by group; `None` if the caller may
    /// not see the store.
    pub async fn label_distribution(
        &self,
        caller: &Caller,
        store_id: i64,
    ) -> Result<Option<BTreeMap<String, BTreeMap<String, i64>>>, StoreError> {
        match &caller.role {
            super::access::Role::Admin => {}
            super::access::Role::Store(own) if *own == store_id => {}
            _ => return Ok(None),
        }
        let exists = self
            .query("SELECT 1 FROM stores WHERE id = $1", vec![store_id.into()])
            .await?;
        if exists.is_empty() {
            return Ok(None);
        }
        // Counted here from each vehicle's row of labels, read in one pass.
        let counts = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<
            String,
            BTreeMap<String, i64>,
        >::new()));
        let into = std::sync::Arc::clone(&counts);
        self.scan(
            "SELECT vl.labels FROM vehicles v JOIN vehicle_labels vl ON vl.vin = v.vin WHERE v.store_id = $1",
            vec![store_id.into()],
            move |cells| {
                let labels = cells.text(0)?.unwrap_or_default();
                let mut counts = into
                    .lock()
                    .map_err(|_| StoreError::Worker("distribution state poisoned".into()))?;
                for (group, value) in labels.split(' ').filter_map(|l| l.split_once('=')) {
                    *counts
                        .entry(group.to_owned())
                        .or_default()
                        .entry(value.to_owned())
                        .or_default() += 1;
                }
                Ok(())
            },
        )
        .await?;
        let groups = std::mem::take(
            &mut *counts
                .lock()
                .map_err(|_| StoreError::Worker("distribution state poisoned".into()))?,
        );
        Ok(Some(groups))
    }

    /// Dead letters, newest first, a page before `before` (an id).
    pub async fn dead_letter_page(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Page<DeadLetterView>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let rows = self
            .query(
                "SELECT id, received_s, topic, device_id, seq, reason, detail, payload FROM dead_letters \
                 WHERE id < $1 ORDER BY id DESC LIMIT $2",
                vec![before.unwrap_or(i64::MAX).into(), (limit as i64 + 1).into()],
            )
            .await?;
        let items: Vec<DeadLetterView> = rows
            .iter()
            .take(limit)
            .map(|row| {
                let payload = row[7].bytes().unwrap_or_default();
                DeadLetterView {
                    id: row[0].int().unwrap_or(0),
                    received_s: row[1].int().unwrap_or(0),
                    topic: text(row, 2),
                    device_id: opt_text(row, 3),
                    seq: row[4].int(),
                    reason: text(row, 5),
                    detail: text(row, 6),
                    bytes: payload.len(),
                    head_hex: payload
                        .iter()
                        .take(64)
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                }
            })
            .collect();
        let next = (rows.len() > limit)
            .then(|| items.last().map(|d| d.id.to_string()))
            .flatten();
        Ok(Page { items, next })
    }

    /// The label groups in use, for export columns.
    pub async fn label_groups(&self) -> Result<Vec<String>, StoreError> {
        // The groups of the rules that labelled everyone last (or, before any full relabel,
        // of the rules that labelled some vehicle): every group is a column, even one that no
        // vehicle has a label of.
        let fingerprint = match crate::labels::engine::LastFull::load(self).await? {
            Some(last) => Some(last.rules),
            None => self
                .query("SELECT rules FROM vehicle_labels LIMIT 1", vec![])
                .await?
                .first()
                .map(|row| text(row, 0)),
        };
        let Some(fingerprint) = fingerprint else {
            return Ok(Vec::new());
        };
        Ok(crate::labels::catalog(self, &fingerprint)
            .await?
            .map(|c| c.group_names())
            .unwrap_or_default())
    }

    /// The query of an export: every vehicle in the caller's scope that matches the filter,
    /// with its customer, labels and first action, by VIN; its columns are all text, in the
    /// order of `export::FIXED`, then the label text, then `export::TAIL`.
    pub fn export_query(
        &self,
        caller: &Caller,
        label_filter: Option<&str>,
    ) -> Result<(String, Vec<Value>), ReadError> {
        let (scope, mut params) = caller.vehicle_scope(1);
        let filter = match label_filter.filter(|f| !f.trim().is_empty()) {
            Some(text) => {
                let compiled = filter::compile(text, params.len() + 1)?;
                params.extend(compiled.params);
                compiled.sql
            }
            None => "1 = 1".to_owned(),
        };
        let sql = format!(
            "SELECT v.vin, v.device_id, v.make, v.model, CAST(v.model_year AS TEXT), v.energy, \
             v.price_class, v.customer_id, c.name, v.fleet_id, CAST(v.store_id AS TEXT), \
             vl.labels, vl.first_strategy, vl.first_channel, vl.first_status \
             FROM {VEHICLES} LEFT JOIN customers c ON c.id = v.customer_id \
             WHERE {scope} AND {filter} ORDER BY v.vin"
        );
        Ok((sql, params))
    }
}
