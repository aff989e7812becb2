//! The features labels are computed from: one row per vehicle in `profiles`, built in the
//! database from the registry and the agents' summaries, so a full relabel is a handful of
//! set-based statements whatever the population.

/// One feature rules may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    /// Its name in rules.
    pub name: &'static str,
    /// Whether it is text (else a number).
    pub text: bool,
    /// What it means, with its unit.
    pub description: &'static str,
}

const fn number(name: &'static str, description: &'static str) -> Feature {
    Feature {
        name,
        text: false,
        description,
    }
}

/// Every feature, in the order of the `profiles` columns.
pub const FEATURES: [Feature; 44] = [
    Feature {
        name: "energy",
        text: true,
        description: "power train: 'ice', 'hev', 'phev' or 'ev'",
    },
    number(
        "price_class_rank",
        "price class: 0 economy, 1 mid, 2 premium, 3 luxury",
    ),
    number("vehicle_age_years", "this year minus the model year"),
    number("is_ev", "1 for a battery-electric vehicle, else 0"),
    number(
        "is_electrified",
        "1 for a hybrid, plug-in hybrid or electric vehicle, else 0",
    ),
    number(
        "days_since_purchase",
        "days since the purchase date; NULL if unknown",
    ),
    number(
        "warranty_days_left",
        "days until the warranty ends (negative: ended); NULL if unknown",
    ),
    number(
        "service_visits_total",
        "workshop visits at our stores, ever",
    ),
    number(
        "service_visits_12m",
        "workshop visits in the last 12 months",
    ),
    number(
        "months_since_service",
        "months since the last workshop visit; NULL if never",
    ),
    number(
        "spend_12m",
        "after-sales spend in the last 12 months, currency units",
    ),
    number("spend_total", "after-sales spend, ever, currency units"),
    number(
        "care_spend_12m",
        "accessories and detailing spend in the last 12 months",
    ),
    number(
        "odometer_km",
        "latest odometer reading known (agent, day summaries, workshop)",
    ),
    number(
        "km_since_service",
        "km driven since the last service (or purchase)",
    ),
    number(
        "service_interval_km",
        "the vehicle's service interval by distance, km",
    ),
    number(
        "service_interval_months",
        "the vehicle's service interval by time, months",
    ),
    number(
        "days_to_service_due",
        "days until service is due, whichever of distance (projected from km_per_day) and time comes first; negative: overdue",
    ),
    number("birthday_month", "the customer's birthday month, 1-12"),
    number("referrals", "customers this customer referred"),
    number("campaigns_sent", "campaigns sent to the customer"),
    number("campaigns_responded", "campaigns the customer responded to"),
    number(
        "campaign_response_rate",
        "campaigns_responded / campaigns_sent; NULL if none sent",
    ),
    number(
        "telematics",
        "1 if the vehicle reported driving in the last 90 days, else 0",
    ),
    number(
        "days_since_seen",
        "days since the last day summary in the last 90 days",
    ),
    number("km_30d", "km driven in the last 30 days"),
    number(
        "km_per_day",
        "average km per day over the last 90 days of reporting",
    ),
    number("trips_30d", "trips in the last 30 days"),
    number(
        "days_driven_30d",
        "days with at least one trip in the last 30 days",
    ),
    number("long_trips_90d", "trips over 100 km in the last 90 days"),
    number(
        "night_share_30d",
        "share of driving time between 22 h and 6 h, last 30 days, 0-1",
    ),
    number(
        "weekend_share_30d",
        "share of km driven on Saturday and Sunday, last 30 days, 0-1",
    ),
    number(
        "commute_trips_30d",
        "trips between home and work, last 30 days",
    ),
    number("commute_share_30d", "commute_trips_30d / trips_30d"),
    number(
        "driving_hours_per_day",
        "hours in trips per day, last 30 days",
    ),
    number(
        "driving_score",
        "distance-weighted driving score of the last 90 days, 0-100, higher is smoother",
    ),
    number(
        "harsh_per_100km",
        "harsh accelerations, brakings and cornerings per 100 km, last 90 days",
    ),
    number(
        "overspeed_share",
        "share of moving time above the speed limit, last 90 days, 0-1",
    ),
    number(
        "home_store_distance_km",
        "distance from home (a coarse cell) to the vehicle's store, km",
    ),
    number(
        "competitor_visits_90d",
        "stays at competitor dealers, last 90 days",
    ),
    number(
        "repair_shop_visits_90d",
        "stays at independent repair shops, last 90 days",
    ),
    number("own_store_visits_90d", "stays at our stores, last 90 days"),
    number(
        "premium_visits_90d",
        "stays at premium places (malls, golf, airports), last 90 days",
    ),
    number(
        "charging_visits_90d",
        "stays at charging stations, last 90 days",
    ),
];

/// Values known at labelling time that rules may use like features.
pub const CONTEXT: [(&str, &str); 3] = [
    ("today", "the labelling day, days since 1970-01-01"),
    ("current_month", "the labelling month, 1-12"),
    ("current_year", "the labelling year"),
];

/// The feature named `name`.
pub fn feature(name: &str) -> Option<&'static Feature> {
    FEATURES.iter().find(|f| f.name == name)
}

/// Builds `profiles` rows for the vehicles in scope. Parameters: `$1` today (day number),
/// `$2` the current year, `$3` the default service interval in km, `$4` in months.
/// `{scope}` is replaced by a condition on `v.vin`.
pub const PROFILES_SQL: &str = r#"
INSERT INTO {profiles} (vin, customer_id, store_id, fleet_id, device_id, labelled_day, energy,
    price_class_rank, vehicle_age_years, is_ev, is_electrified, days_since_purchase,
    warranty_days_left, service_visits_total, service_visits_12m, months_since_service, spend_12m,
    spend_total, care_spend_12m, odometer_km, km_since_service, service_interval_km,
    service_interval_months, days_to_service_due, birthday_month, referrals, campaigns_sent,
    campaigns_responded, campaign_response_rate, telematics, days_since_seen, km_30d, km_per_day,
    trips_30d, days_driven_30d, long_trips_90d, night_share_30d, weekend_share_30d,
    commute_trips_30d, commute_share_30d, driving_hours_per_day, driving_score, harsh_per_100km,
    overspeed_share, home_store_distance_km, competitor_visits_90d, repair_shop_visits_90d,
    own_store_visits_90d, premium_visits_90d, charging_visits_90d)
SELECT vin, customer_id, store_id, fleet_id, device_id, $1, energy,
    price_class_rank, vehicle_age_years, is_ev, is_electrified, days_since_purchase,
    warranty_days_left, service_visits_total, service_visits_12m, months_since_service, spend_12m,
    spend_total, care_spend_12m, odometer_km, km_since_service, service_interval_km,
    service_interval_months,
    CASE
        WHEN days_by_km IS NULL THEN days_by_time
        WHEN days_by_time IS NULL THEN days_by_km
        WHEN days_by_km < days_by_time THEN days_by_km
        ELSE days_by_time
    END,
    birthday_month, referrals, campaigns_sent, campaigns_responded, campaign_response_rate,
    telematics, days_since_seen, km_30d, km_per_day, trips_30d, days_driven_30d, long_trips_90d,
    night_share_30d, weekend_share_30d, commute_trips_30d, commute_share_30d,
    driving_hours_per_day, driving_score, harsh_per_100km, overspeed_share,
    home_store_distance_km, competitor_visits_90d, repair_shop_visits_90d, own_store_visits_90d,
    premium_visits_90d, charging_visits_90d
FROM (
    SELECT b.*,
        CASE WHEN base_day IS NULL THEN NULL
             ELSE base_day + service_interval_months * 30.44 - $1 END AS days_by_time,
        CASE WHEN km_since_service IS NULL OR km_per_day IS NULL OR km_per_day <= 0 THEN NULL
             ELSE (service_interval_km - km_since_service) / km_per_day END AS days_by_km
    FROM (
        SELECT v.vin, v.customer_id, v.store_id, v.fleet_id, v.device_id, v.energy,
            CAST(CASE v.price_class WHEN 'economy' THEN 0 WHEN 'mid' THEN 1
                 WHEN 'premium' THEN 2 WHEN 'luxury' THEN 3 END AS {real}) AS price_class_rank,
            CAST($2 - v.model_year AS {real}) AS vehicle_age_years,
            CAST(CASE WHEN v.energy = 'ev' THEN 1 ELSE 0 END AS {real}) AS is_ev,
            CAST(CASE WHEN v.energy IN ('hev', 'phev', 'ev') THEN 1 ELSE 0 END AS {real}) AS is_electrified,
            CAST($1 - v.purchase_day AS {real}) AS days_since_purchase,
            CAST(v.warranty_end_day - $1 AS {real}) AS warranty_days_left,
            CAST(COALESCE(sv.visits_total, 0) AS {real}) AS service_visits_total,
            CAST(COALESCE(sv.visits_12m, 0) AS {real}) AS service_visits_12m,
            CAST($1 - sv.last_day AS {real}) / 30.44 AS months_since_service,
            CAST(COALESCE(sv.spend_12m, 0) AS {real}) / 100.0 AS spend_12m,
            CAST(COALESCE(sv.spend_total, 0) AS {real}) / 100.0 AS spend_total,
            CAST(COALESCE(sv.care_12m, 0) AS {real}) / 100.0 AS care_spend_12m,
            CAST(CASE
                WHEN d.odometer_m IS NOT NULL AND (rv.odometer_m IS NULL OR d.odometer_m >= rv.odometer_m) THEN d.odometer_m / 1000.0
                WHEN rv.odometer_m IS NOT NULL AND rv.odometer_m > 0 THEN rv.odometer_m / 1000.0
                ELSE sv.last_odometer END AS {real}) AS odometer_km,
            CAST(CASE
                WHEN sv.last_odometer IS NOT NULL AND d.odometer_m IS NOT NULL THEN d.odometer_m / 1000.0 - sv.last_odometer
                ELSE (SELECT SUM(dd.distance_m) FROM days dd
                      WHERE dd.device_id = v.device_id
                        AND dd.local_day > COALESCE(sv.last_day, v.purchase_day, $1 - 90)
                        AND dd.local_day <= $1) / 1000.0 END AS {real}) AS km_since_service,
            COALESCE(sv.last_day, v.purchase_day) AS base_day,
            CAST(COALESCE(v.service_interval_km, $3) AS {real}) AS service_interval_km,
            CAST(COALESCE(v.service_interval_months, $4) AS {real}) AS service_interval_months,
            CAST(c.birthday_month AS {real}) AS birthday_month,
            CAST(COALESCE(c.referrals, 0) AS {real}) AS referrals,
            CAST(COALESCE(cr.sent, 0) AS {real}) AS campaigns_sent,
            CAST(COALESCE(cr.responded, 0) AS {real}) AS campaigns_responded,
            CASE WHEN COALESCE(cr.sent, 0) = 0 THEN NULL
                 ELSE CAST(cr.responded AS {real}) / cr.sent END AS campaign_response_rate,
            CAST(CASE WHEN d.m90 > 0 THEN 1 ELSE 0 END AS {real}) AS telematics,
            CAST($1 - d.last_day AS {real}) AS days_since_seen,
            CAST(COALESCE(d.m30, 0) AS {real}) / 1000.0 AS km_30d,
            CASE WHEN d.first_day IS NULL THEN NULL
                 ELSE CAST(d.m90 AS {real}) / 1000.0 / ($1 - d.first_day + 1) END AS km_per_day,
            CAST(COALESCE(d.trips30, 0) AS {real}) AS trips_30d,
            CAST(COALESCE(d.days_driven30, 0) AS {real}) AS days_driven_30d,
            CAST(COALESCE(d.long90, 0) AS {real}) AS long_trips_90d,
            CASE WHEN COALESCE(d.driving30, 0) = 0 THEN NULL
                 ELSE CAST(d.night30 AS {real}) / 100.0 / d.driving30 END AS night_share_30d,
            CASE WHEN COALESCE(d.m30, 0) = 0 THEN NULL
                 ELSE CAST(d.weekend_m30 AS {real}) / d.m30 END AS weekend_share_30d,
            CAST(COALESCE(d.commute30, 0) AS {real}) AS commute_trips_30d,
            CASE WHEN COALESCE(d.trips30, 0) = 0 THEN NULL
                 ELSE CAST(d.commute30 AS {real}) / d.trips30 END AS commute_share_30d,
            CAST(COALESCE(d.driving30, 0) AS {real}) / 30.0 / 3600.0 AS driving_hours_per_day,
            CASE WHEN COALESCE(d.m90, 0) = 0 THEN NULL
                 ELSE CAST(d.score_weighted AS {real}) / d.m90 END AS driving_score,
            CASE WHEN COALESCE(d.m90, 0) = 0 THEN NULL
                 ELSE CAST(d.harsh90 AS {real}) * 100000.0 / d.m90 END AS harsh_per_100km,
            CASE WHEN COALESCE(d.moving90, 0) = 0 THEN NULL
                 ELSE CAST(d.overspeed90 AS {real}) / d.moving90 END AS overspeed_share,
            CAST(sd.home_distance_m AS {real}) / 1000.0 AS home_store_distance_km,
            CAST(COALESCE(pv.competitor, 0) AS {real}) AS competitor_visits_90d,
            CAST(COALESCE(pv.repair, 0) AS {real}) AS repair_shop_visits_90d,
            CAST(COALESCE(pv.own, 0) AS {real}) AS own_store_visits_90d,
            CAST(COALESCE(pv.premium, 0) AS {real}) AS premium_visits_90d,
            CAST(COALESCE(pv.charging, 0) AS {real}) AS charging_visits_90d
        FROM vehicles v
        LEFT JOIN customers c ON c.id = v.customer_id
        LEFT JOIN (
            SELECT vin, COUNT(*) AS visits_total,
                SUM(CASE WHEN visit_day > $1 - 365 THEN 1 ELSE 0 END) AS visits_12m,
                MAX(visit_day) AS last_day,
                SUM(CASE WHEN visit_day > $1 - 365 THEN spend_cents ELSE 0 END) AS spend_12m,
                SUM(spend_cents) AS spend_total,
                SUM(CASE WHEN visit_day > $1 - 365 AND kind IN ('accessories', 'detailing')
                         THEN spend_cents ELSE 0 END) AS care_12m,
                MAX(odometer_km) AS last_odometer
            FROM service_visits WHERE visit_day <= $1 AND {scope_vin} GROUP BY vin
        ) sv ON sv.vin = v.vin
        LEFT JOIN (
            SELECT customer_id, COUNT(*) AS sent,
                SUM(CASE WHEN responded THEN 1 ELSE 0 END) AS responded
            FROM campaign_responses WHERE sent_day <= $1 AND {scope_customer} GROUP BY customer_id
        ) cr ON cr.customer_id = v.customer_id
        LEFT JOIN reported_vehicles rv ON rv.device_id = v.device_id
        LEFT JOIN (
            SELECT device_id,
                SUM(CASE WHEN local_day > $1 - 30 THEN distance_m ELSE 0 END) AS m30,
                SUM(CASE WHEN local_day > $1 - 30 THEN trips ELSE 0 END) AS trips30,
                SUM(CASE WHEN local_day > $1 - 30 AND trips > 0 THEN 1 ELSE 0 END) AS days_driven30,
                SUM(distance_m) AS m90,
                SUM(long_trips) AS long90,
                SUM(CASE WHEN local_day > $1 - 30 THEN night_pct * driving_s ELSE 0 END) AS night30,
                SUM(CASE WHEN local_day > $1 - 30 THEN driving_s ELSE 0 END) AS driving30,
                SUM(CASE WHEN local_day > $1 - 30 AND (local_day + 3) % 7 >= 5
                         THEN distance_m ELSE 0 END) AS weekend_m30,
                SUM(CASE WHEN local_day > $1 - 30 THEN commute_trips ELSE 0 END) AS commute30,
                SUM(score * distance_m) AS score_weighted,
                SUM(harsh_accel + harsh_brake + harsh_corner) AS harsh90,
                SUM(overspeed_s) AS overspeed90,
                SUM(moving_s) AS moving90,
                MIN(local_day) AS first_day,
                MAX(local_day) AS last_day,
                MAX(odometer_m) AS odometer_m
            FROM days WHERE local_day > $1 - 90 AND local_day <= $1 AND {scope_device} GROUP BY device_id
        ) d ON d.device_id = v.device_id
        LEFT JOIN (
            SELECT s.device_id, s.store_id, s.home_distance_m FROM store_distances s
            WHERE {scope_s_device} AND s.from_local_day = (SELECT MAX(s2.from_local_day) FROM store_distances s2
                                      WHERE s2.device_id = s.device_id)
        ) sd ON sd.device_id = v.device_id AND sd.store_id = v.store_id
        LEFT JOIN (
            SELECT device_id,
                SUM(CASE WHEN kind = 'competitor_dealer' THEN visits ELSE 0 END) AS competitor,
                SUM(CASE WHEN kind = 'independent_repair' THEN visits ELSE 0 END) AS repair,
                SUM(CASE WHEN kind = 'own_store' THEN visits ELSE 0 END) AS own,
                SUM(CASE WHEN kind = 'premium' THEN visits ELSE 0 END) AS premium,
                SUM(CASE WHEN kind = 'charging' THEN visits ELSE 0 END) AS charging
            FROM poi_visits WHERE last_local_day > $1 - 90 AND {scope_device} GROUP BY device_id
        ) pv ON pv.device_id = v.device_id
        WHERE {scope}
    ) b
) f
"#;
