//! Importing the dealer management system's CSV exports into the registry.
//!
//! Every row is checked on its own: a bad row is reported with its line number and reason and
//! skipped, every good row is imported, in one transaction. References to stores, fleets,
//! customers and vehicles must exist already (or come earlier in the same file for the same
//! kind), so import in this order: stores, pois, fleets, customers, vehicles, service visits,
//! campaign responses.
//!
//! | kind | columns (header required; `?` = may be empty) |
//! |---|---|
//! | `stores` | `id, name, city, lat, lon, radius_m?` |
//! | `pois` | `id, name, kind, lat, lon, radius_m?` (kind: competitor_dealer, independent_repair, premium, charging, other) |
//! | `fleets` | `id, name` |
//! | `customers` | `id, name, phone?, email?, wechat?, opt_in?, birthday_month?, home_store_id?, fleet_id?, referrals?` (opt_in: channels separated by `;`, from push, sms, wechat, email, phone, mail) |
//! | `vehicles` | `vin, device_id?, make, model, model_year, energy, price_class, customer_id?, fleet_id?, store_id?, purchase_date?, warranty_end?, service_interval_km?, service_interval_months?` |
//! | `service_visits` | `vin, store_id, date, spend, kind, odometer_km?` (spend in currency units, e.g. `890.50`) |
//! | `campaign_responses` | `customer_id, campaign, channel, sent_date, responded` |

use std::collections::HashMap;
use std::io::Read;

use crate::store::{
    CampaignResponse, Customer, Fleet, Import, Poi, PriceClass, RegistryIds, ServiceVisit,
    StoreRow, Vehicle, VisitKind, registry::OptIns,
};

/// The kinds of CSV file.
pub const KINDS: [&str; 7] = [
    "stores",
    "pois",
    "fleets",
    "customers",
    "vehicles",
    "service_visits",
    "campaign_responses",
];

/// A row that was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// Its line in the file (the header is line 1).
    pub line: u64,
    /// Why.
    pub reason: String,
}

/// The good rows and the bad ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// Rows to import.
    pub rows: Import,
    /// Rows refused.
    pub bad: Vec<BadRow>,
}

/// A file that cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Not a kind we import.
    #[error("unknown import kind {0:?}; kinds are {KINDS:?}")]
    Kind(String),
    /// The header is missing a column.
    #[error("the header has no {column:?} column (found: {found})")]
    Header {
        /// The missing column.
        column: String,
        /// The header as found.
        found: String,
    },
    /// The header names a column we do not know.
    #[error("the header has an unknown column {0:?}")]
    UnknownColumn(String),
    /// The CSV itself is unreadable.
    #[error("{0}")]
    Csv(String),
}

struct Columns {
    index: HashMap<String, usize>,
}

impl Columns {
    fn get<'r>(&self, record: &'r csv::StringRecord, name: &str) -> &'r str {
        self.index
            .get(name)
            .and_then(|&i| record.get(i))
            .unwrap_or("")
            .trim()
    }
}

type RowResult<T> = Result<T, String>;

fn required<'a>(value: &'a str, name: &str) -> RowResult<&'a str> {
    if value.is_empty() {
        Err(format!("{name} is empty"))
    } else {
        Ok(value)
    }
}

fn number<T: std::str::FromStr>(value: &str, name: &str) -> RowResult<T> {
    value
        .parse()
        .map_err(|_| format!("{name} {value:?} is not a number"))
}

fn optional<T: std::str::FromStr>(value: &str, name: &str) -> RowResult<Option<T>> {
    if value.is_empty() {
        Ok(None)
    } else {
        number(value, name).map(Some)
    }
}

fn date(value: &str, name: &str) -> RowResult<String> {
    value
        .parse::<jiff::civil::Date>()
        .map(|d| d.to_string())
        .map_err(|_| format!("{name} {value:?} is not a date (YYYY-MM-DD)"))
}

fn optional_date(value: &str, name: &str) -> RowResult<Option<String>> {
    if value.is_empty() {
        Ok(None)
    } else {
        date(value, name).map(Some)
    }
}

fn position(lat: &str, lon: &str) -> RowResult<(f64, f64)> {
    let (lat, lon): (f64, f64) = (number(lat, "lat")?, number(lon, "lon")?);
    if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) {
        Ok((lat, lon))
    } else {
        Err(format!("position {lat},{lon} is off the globe"))
    }
}

fn boolean(value: &str, name: &str) -> RowResult<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "y" => Ok(true),
        "0" | "false" | "no" | "n" | "" => Ok(false),
        _ => Err(format!("{name} {value:?} is not yes/no")),
    }
}

fn columns_for(kind: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    // (required, optional)
    Some(match kind {
        "stores" => (&["id", "name", "city", "lat", "lon"], &["radius_m"]),
        "pois" => (&["id", "name", "kind", "lat", "lon"], &["radius_m"]),
        "fleets" => (&["id", "name"], &[]),
        "customers" => (
            &["id", "name"],
            &[
                "phone",
                "email",
                "wechat",
                "opt_in",
                "birthday_month",
                "home_store_id",
                "fleet_id",
                "referrals",
            ],
        ),
        "vehicles" => (
            &[
                "vin",
                "make",
                "model",
                "model_year",
                "energy",
                "price_class",
            ],
            &[
                "device_id",
                "customer_id",
                "fleet_id",
                "store_id",
                "purchase_date",
                "warranty_end",
                "service_interval_km",
                "service_interval_months",
            ],
        ),
        "service_visits" => (
            &["vin", "store_id", "date", "spend", "kind"],
            &["odometer_km"],
        ),
        "campaign_responses" => (
            &[
                "customer_id",
                "campaign",
                "channel",
                "sent_date",
                "responded",
            ],
            &[],
        ),
        _ => return None,
    })
}

/// Parses a CSV export of `kind`, checking references against `ids`.
pub fn parse(kind: &str, input: impl Read, ids: &RegistryIds) -> Result<Parsed, ImportError> {
    let (required_columns, optional_columns) =
        columns_for(kind).ok_or_else(|| ImportError::Kind(kind.to_owned()))?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .comment(Some(b'#'))
        .from_reader(input);
    let header = reader
        .headers()
        .map_err(|e| ImportError::Csv(e.to_string()))?
        .clone();
    let mut index = HashMap::new();
    for (i, name) in header.iter().enumerate() {
        let name = name.trim().to_ascii_lowercase();
        if !required_columns.contains(&name.as_str()) && !optional_columns.contains(&name.as_str())
        {
            return Err(ImportError::UnknownColumn(name));
        }
        index.insert(name, i);
    }
    for column in required_columns {
        if !index.contains_key(*column) {
            return Err(ImportError::Header {
                column: (*column).to_owned(),
                found: header.iter().collect::<Vec<_>>().join(","),
            });
        }
    }
    let columns = Columns { index };
    let mut ids = ids.clone();
    let mut bad = Vec::new();
    let mut rows = empty(kind);
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                bad.push(BadRow {
                    line: error.position().map_or(0, |p| p.line()),
                    reason: error.to_string(),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if let Err(reason) = row(&mut rows, &columns, &record, &mut ids) {
            bad.push(BadRow { line, reason });
        }
    }
    Ok(Parsed { rows, bad })
}

fn empty(kind: &str) -> Import {
    match kind {
        "stores" => Import::Stores(Vec::new()),
        "pois" => Import::Pois(Vec::new()),
        "fleets" => Import::Fleets(Vec::new()),
        "customers" => Import::Customers(Vec::new()),
        "vehicles" => Import::Vehicles(Vec::new()),
        "service_visits" => Import::ServiceVisits(Vec::new()),
        _ => Import::CampaignResponses(Vec::new()),
    }
}

fn store_ref(value: &str, ids: &RegistryIds) -> RowResult<Option<i64>> {
    let id: Option<i64> = optional(value, "store id")?;
    match id {
        Some(id) if !ids.stores.contains(&id) => Err(format!("store {id} is not in the registry")),
        other => Ok(other),
    }
}

fn text_ref(
    value: &str,
    known: &std::collections::HashSet<String>,
    what: &str,
) -> RowResult<Option<String>> {
    if value.is_empty() {
        Ok(None)
    } else if known.contains(value) {
        Ok(Some(value.to_owned()))
    } else {
        Err(format!("{what} {value:?} is not in the registry"))
    }
}

fn row(
    rows: &mut Import,
    c: &Columns,
    r: &csv::StringRecord,
    ids: &mut RegistryIds,
) -> RowResult<()> {
    match rows {
        Import::Stores(out) => {
            let id: i64 = number(required(c.get(r, "id"), "id")?, "id")?;
            let (lat, lon) = position(c.get(r, "lat"), c.get(r, "lon"))?;
            out.push(StoreRow {
                id,
                name: required(c.get(r, "name"), "name")?.to_owned(),
                city: required(c.get(r, "city"), "city")?.to_owned(),
                lat,
                lon,
                radius_m: optional(c.get(r, "radius_m"), "radius_m")?.unwrap_or(150.0),
            });
            ids.stores.insert(id);
        }
        Import::Pois(out) => {
            let kind = required(c.get(r, "kind"), "kind")?;
            if ![
                "competitor_dealer",
                "independent_repair",
                "premium",
                "charging",
                "other",
            ]
            .contains(&kind)
            {
                return Err(format!(
                    "kind {kind:?} is not competitor_dealer, independent_repair, premium, charging or other"
                ));
            }
            let (lat, lon) = position(c.get(r, "lat"), c.get(r, "lon"))?;
            out.push(Poi {
                id: number(required(c.get(r, "id"), "id")?, "id")?,
                name: required(c.get(r, "name"), "name")?.to_owned(),
                kind: kind.to_owned(),
                lat,
                lon,
                radius_m: optional(c.get(r, "radius_m"), "radius_m")?.unwrap_or(150.0),
            });
        }
        Import::Fleets(out) => {
            let id = required(c.get(r, "id"), "id")?.to_owned();
            out.push(Fleet {
                id: id.clone(),
                name: required(c.get(r, "name"), "name")?.to_owned(),
            });
            ids.fleets.insert(id);
        }
        Import::Customers(out) => {
            let id = required(c.get(r, "id"), "id")?.to_owned();
            let birthday_month: Option<u8> =
                optional(c.get(r, "birthday_month"), "birthday_month")?;
            if birthday_month.is_some_and(|m| !(1..=12).contains(&m)) {
                return Err("birthday_month must be 1 to 12".into());
            }
            let mut opt_in = OptIns::default();
            for channel in c
                .get(r, "opt_in")
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                match channel {
                    "push" => opt_in.push = true,
                    "sms" => opt_in.sms = true,
                    "wechat" => opt_in.wechat = true,
                    "email" => opt_in.email = true,
                    "phone" => opt_in.phone = true,
                    "mail" => opt_in.mail = true,
                    other => {
                        return Err(format!(
                            "opt_in channel {other:?} is not push, sms, wechat, email, phone or mail"
                        ));
                    }
                }
            }
            out.push(Customer {
                id: id.clone(),
                name: required(c.get(r, "name"), "name")?.to_owned(),
                phone: c.get(r, "phone").to_owned(),
                email: c.get(r, "email").to_owned(),
                wechat: c.get(r, "wechat").to_owned(),
                opt_in,
                birthday_month,
                home_store_id: store_ref(c.get(r, "home_store_id"), ids)?,
                fleet_id: text_ref(c.get(r, "fleet_id"), &ids.fleets, "fleet")?,
                referrals: optional(c.get(r, "referrals"), "referrals")?.unwrap_or(0),
            });
            ids.customers.insert(id);
        }
        Import::Vehicles(out) => {
            let vin = required(c.get(r, "vin"), "vin")?.to_owned();
            let energy = required(c.get(r, "energy"), "energy")?.to_ascii_lowercase();
            if !["ice", "hev", "phev", "ev"].contains(&energy.as_str()) {
                return Err(format!("energy {energy:?} is not ice, hev, phev or ev"));
            }
            let price = required(c.get(r, "price_class"), "price_class")?;
            let price_class = PriceClass::from_name(price).ok_or_else(|| {
                format!("price_class {price:?} is not economy, mid, premium or luxury")
            })?;
            let device_id = c.get(r, "device_id");
            let device_id = if device_id.is_empty() {
                None
            } else {
                Some(
                    drivetag_shared::DeviceId::new(device_id)
                        .map_err(|e| format!("device_id: {e}"))?
                        .to_string(),
                )
            };
            let model_year: u16 = number(
                required(c.get(r, "model_year"), "model_year")?,
                "model_year",
            )?;
            if !(1950..=2100).contains(&model_year) {
                return Err(format!("model_year {model_year} is not plausible"));
            }
            out.push(Vehicle {
                vin: vin.clone(),
                device_id,
                make: required(c.get(r, "make"), "make")?.to_owned(),
                model: required(c.get(r, "model"), "model")?.to_owned(),
                model_year,
                energy,
                price_class,
                customer_id: text_ref(c.get(r, "customer_id"), &ids.customers, "customer")?,
                fleet_id: text_ref(c.get(r, "fleet_id"), &ids.fleets, "fleet")?,
                store_id: store_ref(c.get(r, "store_id"), ids)?,
                purchase_date: optional_date(c.get(r, "purchase_date"), "purchase_date")?,
                warranty_end: optional_date(c.get(r, "warranty_end"), "warranty_end")?,
                service_interval_km: optional(
                    c.get(r, "service_interval_km"),
                    "service_interval_km",
                )?,
                service_interval_months: optional(
                    c.get(r, "service_interval_months"),
                    "service_interval_months",
                )?,
            });
            ids.vins.insert(vin);
        }
        Import::ServiceVisits(out) => {
            let vin = required(c.get(r, "vin"), "vin")?;
            if !ids.vins.contains(vin) {
                return Err(format!("vehicle {vin:?} is not in the registry"));
            }
            let store_id = store_ref(required(c.get(r, "store_id"), "store_id")?, ids)?
                .ok_or_else(|| "store_id is empty".to_owned())?;
            let spend: f64 = number(required(c.get(r, "spend"), "spend")?, "spend")?;
            if !(0.0..1e9).contains(&spend) {
                return Err(format!("spend {spend} is not plausible"));
            }
            let kind = required(c.get(r, "kind"), "kind")?;
            out.push(ServiceVisit {
                vin: vin.to_owned(),
                store_id,
                date: date(required(c.get(r, "date"), "date")?, "date")?,
                spend_cents: (spend * 100.0).round() as i64,
                kind: VisitKind::from_name(kind)
                    .ok_or_else(|| format!("kind {kind:?} is not a visit kind"))?,
                odometer_km: optional(c.get(r, "odometer_km"), "odometer_km")?,
            });
        }
        Import::CampaignResponses(out) => {
            let customer = required(c.get(r, "customer_id"), "customer_id")?;
            if !ids.customers.contains(customer) {
                return Err(format!("customer {customer:?} is not in the registry"));
            }
            out.push(CampaignResponse {
                customer_id: customer.to_owned(),
                campaign: required(c.get(r, "campaign"), "campaign")?.to_owned(),
                channel: required(c.get(r, "channel"), "channel")?.to_owned(),
                sent_date: date(required(c.get(r, "sent_date"), "sent_date")?, "sent_date")?,
                responded: boolean(c.get(r, "responded"), "responded")?,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rows_are_reported_by_line_and_good_rows_kept() {
        let csv = "id,name,city,lat,lon\n\
                   1,Pudong 4S,Shanghai,31.2304,121.4737\n\
                   2,Broken,Shanghai,91.0,121.0\n\
                   x,NoId,Shanghai,31,121\n\
                   3,Minhang 4S,Shanghai,31.11,121.38\n";
        let parsed = parse("stores", csv.as_bytes(), &RegistryIds::default()).unwrap();
        let Import::Stores(rows) = &parsed.rows else {
            panic!()
        };
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(rows[0].radius_m, 150.0);
        assert_eq!(
            parsed.bad.iter().map(|b| b.line).collect::<Vec<_>>(),
            [3, 4]
        );
        assert!(
            parsed.bad[0].reason.contains("off the globe"),
            "{:?}",
            parsed.bad
        );
    }

    #[test]
    fn references_must_exist() {
        let mut ids = RegistryIds::default();
        ids.stores.insert(1);
        let csv = "vin,make,model,model_year,energy,price_class,store_id,customer_id\n\
                   V1,VW,Lavida,2022,ice,mid,1,\n\
                   V2,VW,ID.4,2023,ev,premium,9,\n\
                   V3,VW,ID.4,2023,ev,premium,1,c9\n\
                   V4,VW,ID.4,2023,diesel,premium,1,\n";
        let parsed = parse("vehicles", csv.as_bytes(), &ids).unwrap();
        let Import::Vehicles(rows) = &parsed.rows else {
            panic!()
        };
        assert_eq!(rows.len(), 1);
        let reasons: Vec<&str> = parsed.bad.iter().map(|b| b.reason.as_str()).collect();
        assert_eq!(reasons.len(), 3);
        assert!(reasons[0].contains("store 9"));
        assert!(reasons[1].contains("customer \"c9\""));
        assert!(reasons[2].contains("energy"));
    }

    #[test]
    fn a_missing_or_unknown_column_refuses_the_file() {
        assert!(matches!(
            parse("fleets", "id\nf1\n".as_bytes(), &RegistryIds::default()),
            Err(ImportError::Header { .. })
        ));
        assert!(matches!(
            parse(
                "fleets",
                "id,name,colour\n".as_bytes(),
                &RegistryIds::default()
            ),
            Err(ImportError::UnknownColumn(_))
        ));
        assert!(matches!(
            parse("cars", "".as_bytes(), &RegistryIds::default()),
            Err(ImportError::Kind(_))
        ));
    }

    #[test]
    fn customers_with_opt_ins_and_visits_with_spend() {
        let mut ids = RegistryIds::default();
        ids.stores.insert(1);
        ids.vins.insert("V1".into());
        let customers =
            "id,name,opt_in,birthday_month\nc1,Li,sms;wechat,5\nc2,Wang,fax,\nc3,Zhao,,13\n";
        let parsed = parse("customers", customers.as_bytes(), &ids).unwrap();
        let Import::Customers(rows) = &parsed.rows else {
            panic!()
        };
        assert_eq!(rows.len(), 1);
        assert!(rows[0].opt_in.sms && rows[0].opt_in.wechat && !rows[0].opt_in.email);
        assert_eq!(parsed.bad.len(), 2);
        let visits = "vin,store_id,date,spend,kind\nV1,1,2024-03-02,890.50,maintenance\nV1,1,2024-13-02,1,maintenance\n";
        let parsed = parse("service_visits", visits.as_bytes(), &ids).unwrap();
        let Import::ServiceVisits(rows) = &parsed.rows else {
            panic!()
        };
        assert_eq!(rows[0].spend_cents, 89_050);
        assert_eq!(parsed.bad[0].line, 3);
    }
}
