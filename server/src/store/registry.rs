//! The dealer's registry: stores, points of interest, fleets, customers, vehicles, service
//! visits and campaign responses.

use std::collections::HashSet;

use super::{Statement, Store, StoreError};

/// A dealer store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreRow {
    /// The dealer's id for it.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// The city it serves.
    pub city: String,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// A visit needs a stay within this radius, metres.
    pub radius_m: f64,
}

/// A point of interest whose visits agents count.
#[derive(Debug, Clone, PartialEq)]
pub struct Poi {
    /// The dealer's id for it.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// `competitor_dealer`, `independent_repair`, `premium`, `charging` or `other`.
    pub kind: String,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// A visit needs a stay within this radius, metres.
    pub radius_m: f64,
}

/// A fleet owner.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    /// The dealer's id for it.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// A customer (a private owner, or a fleet's driver).
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    /// The dealer's id for them.
    pub id: String,
    /// Name.
    pub name: String,
    /// Phone number (SMS and calls).
    pub phone: String,
    /// E-mail address.
    pub email: String,
    /// WeChat id.
    pub wechat: String,
    /// Consents, per channel.
    pub opt_in: OptIns,
    /// Birthday month, 1–12.
    pub birthday_month: Option<u8>,
    /// The store that looks after them.
    pub home_store_id: Option<i64>,
    /// The fleet they drive for.
    pub fleet_id: Option<String>,
    /// Customers they referred (opinion leaders refer many).
    pub referrals: u32,
}

/// Which channels a customer agreed to be contacted on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptIns {
    /// Head-unit or app push.
    pub push: bool,
    /// SMS.
    pub sms: bool,
    /// WeChat.
    pub wechat: bool,
    /// E-mail.
    pub email: bool,
    /// Phone calls.
    pub phone: bool,
    /// Printed mail.
    pub mail: bool,
}

/// A vehicle's price class, as the dealer files it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PriceClass {
    /// Entry level.
    Economy,
    /// Mid range.
    Mid,
    /// Premium brands and trims.
    Premium,
    /// Luxury.
    Luxury,
}

impl PriceClass {
    /// Every class, cheapest first.
    pub const ALL: [PriceClass; 4] = [
        PriceClass::Economy,
        PriceClass::Mid,
        PriceClass::Premium,
        PriceClass::Luxury,
    ];

    /// The name used in CSV and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            PriceClass::Economy => "economy",
            PriceClass::Mid => "mid",
            PriceClass::Premium => "premium",
            PriceClass::Luxury => "luxury",
        }
    }

    /// The class named `name`.
    pub fn from_name(name: &str) -> Option<PriceClass> {
        Self::ALL.into_iter().find(|class| class.as_str() == name)
    }
}

/// A vehicle the dealer sold or services.
#[derive(Debug, Clone, PartialEq)]
pub struct Vehicle {
    /// Vehicle identification number.
    pub vin: String,
    /// The head unit's device id, when it has drivetag.
    pub device_id: Option<String>,
    /// Make.
    pub make: String,
    /// Model.
    pub model: String,
    /// Model year.
    pub model_year: u16,
    /// `ice`, `hev`, `phev` or `ev`.
    pub energy: String,
    /// Price class.
    pub price_class: PriceClass,
    /// Its owner or main driver.
    pub customer_id: Option<String>,
    /// Its fleet, for fleet vehicles.
    pub fleet_id: Option<String>,
    /// The store that sold it or services it.
    pub store_id: Option<i64>,
    /// Purchase date, `YYYY-MM-DD`.
    pub purchase_date: Option<String>,
    /// End of the factory warranty, `YYYY-MM-DD`.
    pub warranty_end: Option<String>,
    /// Service interval by distance, km (model-specific; default from the rules).
    pub service_interval_km: Option<u32>,
    /// Service interval by time, months.
    pub service_interval_months: Option<u32>,
}

/// Kinds of service visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitKind {
    /// Scheduled maintenance.
    Maintenance,
    /// Repair.
    Repair,
    /// Tyres.
    Tyres,
    /// Brakes.
    Brakes,
    /// Insurance business.
    Insurance,
    /// Warranty work.
    Warranty,
    /// Accessories and decoration.
    Accessories,
    /// Detailing and care.
    Detailing,
    /// Anything else.
    Other,
}

impl VisitKind {
    /// Every kind.
    pub const ALL: [VisitKind; 9] = [
        VisitKind::Maintenance,
        VisitKind::Repair,
        VisitKind::Tyres,
        VisitKind::Brakes,
        VisitKind::Insurance,
        VisitKind::Warranty,
        VisitKind::Accessories,
        VisitKind::Detailing,
        VisitKind::Other,
    ];

    /// The name used in CSV and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            VisitKind::Maintenance => "maintenance",
            VisitKind::Repair => "repair",
            VisitKind::Tyres => "tyres",
            VisitKind::Brakes => "brakes",
            VisitKind::Insurance => "insurance",
            VisitKind::Warranty => "warranty",
            VisitKind::Accessories => "accessories",
            VisitKind::Detailing => "detailing",
            VisitKind::Other => "other",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<VisitKind> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// One visit to a store's workshop, from the dealer management system.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceVisit {
    /// The vehicle.
    pub vin: String,
    /// The store.
    pub store_id: i64,
    /// The date, `YYYY-MM-DD`.
    pub date: String,
    /// What the customer paid, in cents.
    pub spend_cents: i64,
    /// What was done.
    pub kind: VisitKind,
    /// Odometer at the visit, km.
    pub odometer_km: Option<u32>,
}

/// A customer's answer to a campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignResponse {
    /// The customer.
    pub customer_id: String,
    /// The campaign's name.
    pub campaign: String,
    /// The channel it went out on.
    pub channel: String,
    /// When it was sent, `YYYY-MM-DD`.
    pub sent_date: String,
    /// Whether the customer responded.
    pub responded: bool,
}

/// Rows of one kind to import.
#[derive(Debug, Clone, PartialEq)]
pub enum Import {
    /// Stores.
    Stores(Vec<StoreRow>),
    /// Points of interest.
    Pois(Vec<Poi>),
    /// Fleets.
    Fleets(Vec<Fleet>),
    /// Customers.
    Customers(Vec<Customer>),
    /// Vehicles.
    Vehicles(Vec<Vehicle>),
    /// Service visits.
    ServiceVisits(Vec<ServiceVisit>),
    /// Campaign responses.
    CampaignResponses(Vec<CampaignResponse>),
}

/// The ids the registry knows, to check references before an import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryIds {
    /// Store ids.
    pub stores: HashSet<i64>,
    /// Fleet ids.
    pub fleets: HashSet<String>,
    /// Customer ids.
    pub customers: HashSet<String>,
    /// VINs.
    pub vins: HashSet<String>,
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
pub fn day_number(date: &str) -> Option<i64> {
    let date: jiff::civil::Date = date.parse().ok()?;
    let epoch = jiff::civil::date(1970, 1, 1);
    Some(i64::from(epoch.until(date).ok()?.get_days()))
}

fn statements(import: &Import) -> Vec<Statement> {
    match import {
        Import::Stores(rows) => rows
            .iter()
            .map(|r| {
                Statement::new(
                    "INSERT INTO stores (id, name, city, lat, lon, radius_m) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, city = excluded.city,
                         lat = excluded.lat, lon = excluded.lon, radius_m = excluded.radius_m",
                    vec![r.id.into(), r.name.clone().into(), r.city.clone().into(), r.lat.into(), r.lon.into(), r.radius_m.into()],
                )
            })
            .collect(),
        Import::Pois(rows) => rows
            .iter()
            .map(|r| {
                Statement::new(
                    "INSERT INTO pois (id, name, kind, lat, lon, radius_m) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind,
                         lat = excluded.lat, lon = excluded.lon, radius_m = excluded.radius_m",
                    vec![r.id.into(), r.name.clone().into(), r.kind.clone().into(), r.lat.into(), r.lon.into(), r.radius_m.into()],
                )
            })
            .collect(),
        Import::Fleets(rows) => rows
            .iter()
            .map(|r| {
                Statement::new(
                    "INSERT INTO fleets (id, name) VALUES ($1, $2)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name",
                    vec![r.id.clone().into(), r.name.clone().into()],
                )
            })
            .collect(),
        Import::Customers(rows) => rows
            .iter()
            .map(|r| {
                Statement::new(
                    "INSERT INTO customers (id, name, phone, email, wechat, push_opt_in, sms_opt_in,
                         wechat_opt_in, email_opt_in, phone_opt_in, mail_opt_in, birthday_month,
                         home_store_id, fleet_id, referrals)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, phone = excluded.phone,
                         email = excluded.email, wechat = excluded.wechat,
                         push_opt_in = excluded.push_opt_in, sms_opt_in = excluded.sms_opt_in,
                         wechat_opt_in = excluded.wechat_opt_in, email_opt_in = excluded.email_opt_in,
                         phone_opt_in = excluded.phone_opt_in, mail_opt_in = excluded.mail_opt_in,
                         birthday_month = excluded.birthday_month,
                         home_store_id = excluded.home_store_id, fleet_id = excluded.fleet_id,
                         referrals = excluded.referrals",
                    vec![
                        r.id.clone().into(),
                        r.name.clone().into(),
                        r.phone.clone().into(),
                        r.email.clone().into(),
                        r.wechat.clone().into(),
                        r.opt_in.push.into(),
                        r.opt_in.sms.into(),
                        r.opt_in.wechat.into(),
                        r.opt_in.email.into(),
                        r.opt_in.phone.into(),
                        r.opt_in.mail.into(),
                        r.birthday_month.into(),
                        r.home_store_id.into(),
                        r.fleet_id.clone().into(),
                        r.referrals.into(),
                    ],
                )
            })
            .collect(),
        Import::Vehicles(rows) => rows
            .iter()
            .map(|r| {
                Statement::new(
                    "INSERT INTO vehicles (vin, device_id, make, model, model_year, energy, price_class,
                         customer_id, fleet_id, store_id, purchase_date, warranty_end,
                         service_interval_km, service_interval_months, purchase_day, warranty_end_day)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                     ON CONFLICT (vin) DO UPDATE SET device_id = excluded.device_id,
                         make = excluded.make, model = excluded.model,
                         model_year = excluded.model_year, energy = excluded.energy,
                         price_class = excluded.price_class, customer_id = excluded.customer_id,
                         fleet_id = excluded.fleet_id, store_id = excluded.store_id,
                         purchase_date = excluded.purchase_date, warranty_end = excluded.warranty_end,
                         service_interval_km = excluded.service_interval_km,
                         service_interval_months = excluded.service_interval_months,
                         purchase_day = excluded.purchase_day,
                         warranty_end_day = excluded.warranty_end_day",
                    vec![
                        r.vin.clone().into(),
                        r.device_id.clone().into(),
                        r.make.clone().into(),
                        r.model.clone().into(),
                        r.model_year.into(),
                        r.energy.clone().into(),
                        r.price_class.as_str().into(),
                        r.customer_id.clone().into(),
                        r.fleet_id.clone().into(),
                        r.store_id.into(),
                        r.purchase_date.clone().into(),
                        r.warranty_end.clone().into(),
                        r.service_interval_km.into(),
                        r.service_interval_months.into(),
                        r.purchase_date.as_deref().and_then(day_number).into(),
                        r.warranty_end.as_deref().and_then(day_number).into(),
                    ],
                )
            })
            .collect(),
        Import::ServiceVisits(rows) => rows
            .iter()
            .map(|r| {
                Statement::new(
                    "INSERT INTO service_visits (vin, store_id, visit_date, spend_cents, kind, odometer_km, visit_day)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (vin, visit_date, kind, store_id) DO UPDATE SET
                         spend_cents = excluded.spend_cents, odometer_km = excluded.odometer_km",
                    vec![
                        r.vin.clone().into(),
                        r.store_id.into(),
                        r.date.clone().into(),
                        r.spend_cents.into(),
                        r.kind.as_str().into(),
                        r.odometer_km.into(),
                        day_number(&r.date).into(),
                    ],
                )
            })
            .collect(),
        Import::CampaignResponses(rows) => rows
            .iter()
            .map(|r| {
                Statement::new(
                    "INSERT INTO campaign_responses (customer_id, campaign, channel, sent_date, responded, sent_day)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (customer_id, campaign) DO UPDATE SET channel = excluded.channel,
                         sent_date = excluded.sent_date, responded = excluded.responded,
                         sent_day = excluded.sent_day",
                    vec![
                        r.customer_id.clone().into(),
                        r.campaign.clone().into(),
                        r.channel.clone().into(),
                        r.sent_date.clone().into(),
                        r.responded.into(),
                        day_number(&r.sent_date).into(),
                    ],
                )
            })
            .collect(),
    }
}

impl Store {
    /// Imports rows in one transaction; a row whose key exists replaces the old one. Returns
    /// how many rows were written.
    pub async fn import(&self, import: &Import) -> Result<usize, StoreError> {
        let statements = statements(import);
        let count = statements.len();
        self.execute(statements).await?;
        Ok(count)
    }

    /// The ids the registry knows.
    pub async fn registry_ids(&self) -> Result<RegistryIds, StoreError> {
        let mut ids = RegistryIds::default();
        for row in self.query("SELECT id FROM stores", vec![]).await? {
            ids.stores.extend(row[0].int());
        }
        for row in self.query("SELECT id FROM fleets", vec![]).await? {
            ids.fleets.extend(row[0].text().map(str::to_owned));
        }
        for row in self.query("SELECT id FROM customers", vec![]).await? {
            ids.customers.extend(row[0].text().map(str::to_owned));
        }
        for row in self.query("SELECT vin FROM vehicles", vec![]).await? {
            ids.vins.extend(row[0].text().map(str::to_owned));
        }
        Ok(ids)
    }

    /// Every store, by id.
    pub async fn stores(&self) -> Result<Vec<StoreRow>, StoreError> {
        Ok(self
            .query(
                "SELECT id, name, city, lat, lon, radius_m FROM stores ORDER BY id",
                vec![],
            )
            .await?
            .into_iter()
            .map(|row| StoreRow {
                id: row[0].int().unwrap_or(0),
                name: row[1].text().unwrap_or_default().to_owned(),
                city: row[2].text().unwrap_or_default().to_owned(),
                lat: row[3].real().unwrap_or(0.0),
                lon: row[4].real().unwrap_or(0.0),
                radius_m: row[5].real().unwrap_or(0.0),
            })
            .collect())
    }

    /// Every point of interest, by id.
    pub async fn pois(&self) -> Result<Vec<Poi>, StoreError> {
        Ok(self
            .query(
                "SELECT id, name, kind, lat, lon, radius_m FROM pois ORDER BY id",
                vec![],
            )
            .await?
            .into_iter()
            .map(|row| Poi {
                id: row[0].int().unwrap_or(0),
                name: row[1].text().unwrap_or_default().to_owned(),
                kind: row[2].text().unwrap_or_default().to_owned(),
                lat: row[3].real().unwrap_or(0.0),
                lon: row[4].real().unwrap_or(0.0),
                radius_m: row[5].real().unwrap_or(0.0),
            })
            .collect())
    }

    /// Devices the server should configure: those in the registry and those that reported.
    pub async fn known_devices(&self) -> Result<Vec<String>, StoreError> {
        let rows = self
            .query(
                "SELECT device_id FROM vehicles WHERE device_id IS NOT NULL
                 UNION SELECT device_id FROM reported_vehicles
                 UNION SELECT device_id FROM device_status",
                vec![],
            )
            .await?;
        let mut devices: Vec<String> = rows
            .into_iter()
            .filter_map(|row| row.first().and_then(|v| v.text().map(str::to_owned)))
            .collect();
        devices.sort();
        Ok(devices)
    }
}
