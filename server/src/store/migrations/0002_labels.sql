-- drivetag schema, version 2: day numbers for registry dates (days since 1970-01-01, so both
-- databases compute with plain integers), and the tables of labelling.

ALTER TABLE vehicles ADD COLUMN purchase_day {int};
ALTER TABLE vehicles ADD COLUMN warranty_end_day {int};
ALTER TABLE service_visits ADD COLUMN visit_day {int};
ALTER TABLE campaign_responses ADD COLUMN sent_day {int};
CREATE INDEX service_visits_by_day ON service_visits (vin, visit_day);
CREATE INDEX campaign_responses_by_customer ON campaign_responses (customer_id, sent_day);
CREATE INDEX poi_visits_by_day ON poi_visits (device_id, last_local_day);

-- One row per vehicle: the features its labels were computed from, at `labelled_day`.
CREATE TABLE profiles (
    vin TEXT PRIMARY KEY,
    customer_id TEXT,
    store_id {int},
    fleet_id TEXT,
    device_id TEXT,
    labelled_day {int} NOT NULL,
    energy TEXT NOT NULL,
    price_class_rank {real},
    vehicle_age_years {real},
    is_ev {real},
    is_electrified {real},
    days_since_purchase {real},
    warranty_days_left {real},
    service_visits_total {real},
    service_visits_12m {real},
    months_since_service {real},
    spend_12m {real},
    spend_total {real},
    care_spend_12m {real},
    odometer_km {real},
    km_since_service {real},
    service_interval_km {real},
    service_interval_months {real},
    days_to_service_due {real},
    birthday_month {real},
    referrals {real},
    campaigns_sent {real},
    campaigns_responded {real},
    campaign_response_rate {real},
    telematics {real},
    days_since_seen {real},
    km_30d {real},
    km_per_day {real},
    trips_30d {real},
    days_driven_30d {real},
    long_trips_90d {real},
    night_share_30d {real},
    weekend_share_30d {real},
    commute_trips_30d {real},
    commute_share_30d {real},
    driving_hours_per_day {real},
    driving_score {real},
    harsh_per_100km {real},
    overspeed_share {real},
    home_store_distance_km {real},
    competitor_visits_90d {real},
    repair_shop_visits_90d {real},
    own_store_visits_90d {real},
    premium_visits_90d {real},
    charging_visits_90d {real}
);
CREATE INDEX profiles_by_customer ON profiles (customer_id);
CREATE INDEX profiles_by_store ON profiles (store_id);
CREATE INDEX profiles_by_fleet ON profiles (fleet_id);

-- Tier scores (a weighted sum of part-features), for percentile tiers.
CREATE TABLE tier_scores (
    vin TEXT NOT NULL,
    grp TEXT NOT NULL,
    score {real} NOT NULL,
    PRIMARY KEY (vin, grp)
);
CREATE INDEX tier_scores_by_score ON tier_scores (grp, score);

-- Labels with what produced them: the rule, the features it read with their values, and for
-- tiers the score, rank and population.
CREATE TABLE labels (
    vin TEXT NOT NULL,
    grp TEXT NOT NULL,
    value TEXT NOT NULL,
    rule TEXT NOT NULL,
    evidence TEXT NOT NULL,
    labelled_day {int} NOT NULL,
    PRIMARY KEY (vin, grp, value)
);
CREATE INDEX labels_by_value ON labels (grp, value);

-- Next-best actions: strategies that apply, ranked, with the channel and whether the contact
-- cap leaves room for them.
CREATE TABLE actions (
    vin TEXT NOT NULL,
    customer_id TEXT,
    strategy TEXT NOT NULL,
    priority {int} NOT NULL,
    rank {int} NOT NULL,
    channel TEXT,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    labelled_day {int} NOT NULL,
    PRIMARY KEY (vin, strategy)
);
CREATE INDEX actions_by_customer ON actions (customer_id, rank);

-- Shadow tables for `rules check`: a changed rules file is run here and compared with the
-- labels in force, without touching them.
CREATE TABLE preview_profiles (
    vin TEXT PRIMARY KEY,
    customer_id TEXT,
    store_id {int},
    fleet_id TEXT,
    device_id TEXT,
    labelled_day {int} NOT NULL,
    energy TEXT NOT NULL,
    price_class_rank {real},
    vehicle_age_years {real},
    is_ev {real},
    is_electrified {real},
    days_since_purchase {real},
    warranty_days_left {real},
    service_visits_total {real},
    service_visits_12m {real},
    months_since_service {real},
    spend_12m {real},
    spend_total {real},
    care_spend_12m {real},
    odometer_km {real},
    km_since_service {real},
    service_interval_km {real},
    service_interval_months {real},
    days_to_service_due {real},
    birthday_month {real},
    referrals {real},
    campaigns_sent {real},
    campaigns_responded {real},
    campaign_response_rate {real},
    telematics {real},
    days_since_seen {real},
    km_30d {real},
    km_per_day {real},
    trips_30d {real},
    days_driven_30d {real},
    long_trips_90d {real},
    night_share_30d {real},
    weekend_share_30d {real},
    commute_trips_30d {real},
    commute_share_30d {real},
    driving_hours_per_day {real},
    driving_score {real},
    harsh_per_100km {real},
    overspeed_share {real},
    home_store_distance_km {real},
    competitor_visits_90d {real},
    repair_shop_visits_90d {real},
    own_store_visits_90d {real},
    premium_visits_90d {real},
    charging_visits_90d {real}
);
CREATE TABLE preview_tier_scores (
    vin TEXT NOT NULL,
    grp TEXT NOT NULL,
    score {real} NOT NULL,
    PRIMARY KEY (vin, grp)
);
CREATE TABLE preview_labels (
    vin TEXT NOT NULL,
    grp TEXT NOT NULL,
    value TEXT NOT NULL,
    rule TEXT NOT NULL,
    evidence TEXT NOT NULL,
    labelled_day {int} NOT NULL,
    PRIMARY KEY (vin, grp, value)
);
CREATE TABLE preview_actions (
    vin TEXT NOT NULL,
    customer_id TEXT,
    strategy TEXT NOT NULL,
    priority {int} NOT NULL,
    rank {int} NOT NULL,
    channel TEXT,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    labelled_day {int} NOT NULL,
    PRIMARY KEY (vin, strategy)
);
