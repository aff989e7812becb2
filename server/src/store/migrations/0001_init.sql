-- drivetag schema, version 1. Placeholders: {id} an auto-increment key, {int} a 64-bit
-- integer, {real} a double, {bool} a boolean, {bytes} a byte string. The store fills them in
-- for SQLite or PostgreSQL, so both databases share one schema.

-- Every envelope stored, once per (device, seq): the idempotent log.
CREATE TABLE envelopes (
    device_id TEXT NOT NULL,
    seq {int} NOT NULL,
    kind TEXT NOT NULL,
    created_s {int} NOT NULL,
    received_s {int} NOT NULL,
    payload {bytes} NOT NULL,
    PRIMARY KEY (device_id, seq)
);

CREATE TABLE trips (
    device_id TEXT NOT NULL,
    seq {int} NOT NULL,
    start_s {int} NOT NULL,
    start_hour_of_week {int} NOT NULL,
    duration_s {int} NOT NULL,
    distance_m {int} NOT NULL,
    moving_s {int} NOT NULL,
    max_speed_cms {int} NOT NULL,
    band_0_30 {int} NOT NULL,
    band_30_60 {int} NOT NULL,
    band_60_90 {int} NOT NULL,
    band_90_120 {int} NOT NULL,
    band_120 {int} NOT NULL,
    night_pct {int} NOT NULL,
    harsh_accel {int} NOT NULL,
    harsh_brake {int} NOT NULL,
    harsh_corner {int} NOT NULL,
    accel_p01_cms2 {int} NOT NULL,
    accel_p99_cms2 {int} NOT NULL,
    lateral_p99_cms2 {int} NOT NULL,
    speed_cv_pct {int} NOT NULL,
    overspeed_s {int} NOT NULL,
    score {int} NOT NULL,
    start_cell TEXT NOT NULL,
    end_cell TEXT NOT NULL,
    PRIMARY KEY (device_id, seq)
);
CREATE INDEX trips_by_start ON trips (device_id, start_s);

-- One row per device and local day; a later summary of the same day replaces an earlier one.
CREATE TABLE days (
    device_id TEXT NOT NULL,
    local_day {int} NOT NULL,
    seq {int} NOT NULL,
    utc_offset_min {int} NOT NULL,
    distance_m {int} NOT NULL,
    trips {int} NOT NULL,
    long_trips {int} NOT NULL,
    driving_s {int} NOT NULL,
    moving_s {int} NOT NULL,
    night_pct {int} NOT NULL,
    driving_min_by_hour TEXT NOT NULL,
    commute_trips {int} NOT NULL,
    max_speed_cms {int} NOT NULL,
    harsh_accel {int} NOT NULL,
    harsh_brake {int} NOT NULL,
    harsh_corner {int} NOT NULL,
    overspeed_s {int} NOT NULL,
    score {int} NOT NULL,
    odometer_m {int},
    fuel_ml {int},
    soc_used_permille {int},
    PRIMARY KEY (device_id, local_day)
);

CREATE TABLE styles (
    device_id TEXT NOT NULL,
    from_local_day {int} NOT NULL,
    seq {int} NOT NULL,
    days {int} NOT NULL,
    source TEXT NOT NULL,
    trips {int} NOT NULL,
    distance_m {int} NOT NULL,
    moving_s {int} NOT NULL,
    harsh_accel {int} NOT NULL,
    harsh_brake {int} NOT NULL,
    harsh_corner {int} NOT NULL,
    overspeed_s {int} NOT NULL,
    accel_p01_cms2 {int} NOT NULL,
    accel_p99_cms2 {int} NOT NULL,
    lateral_p99_cms2 {int} NOT NULL,
    speed_cv_pct {int} NOT NULL,
    accel_score {int} NOT NULL,
    brake_score {int} NOT NULL,
    corner_score {int} NOT NULL,
    speed_score {int} NOT NULL,
    score {int} NOT NULL,
    PRIMARY KEY (device_id, from_local_day)
);

CREATE TABLE places (
    device_id TEXT NOT NULL,
    from_local_day {int} NOT NULL,
    rank {int} NOT NULL,
    seq {int} NOT NULL,
    days {int} NOT NULL,
    cell TEXT NOT NULL,
    role TEXT NOT NULL,
    visits {int} NOT NULL,
    dwell_s {int} NOT NULL,
    dwell_pct_by_hour TEXT NOT NULL,
    PRIMARY KEY (device_id, from_local_day, rank)
);

CREATE TABLE store_distances (
    device_id TEXT NOT NULL,
    from_local_day {int} NOT NULL,
    store_id {int} NOT NULL,
    seq {int} NOT NULL,
    home_distance_m {int} NOT NULL,
    PRIMARY KEY (device_id, from_local_day, store_id)
);

CREATE TABLE poi_visits (
    device_id TEXT NOT NULL,
    from_local_day {int} NOT NULL,
    poi_id {int} NOT NULL,
    seq {int} NOT NULL,
    kind TEXT NOT NULL,
    visits {int} NOT NULL,
    dwell_s {int} NOT NULL,
    last_local_day {int} NOT NULL,
    PRIMARY KEY (device_id, from_local_day, poi_id, kind)
);

-- What each head unit says its car is (the latest report).
CREATE TABLE reported_vehicles (
    device_id TEXT PRIMARY KEY,
    seq {int} NOT NULL,
    vin TEXT NOT NULL,
    make TEXT NOT NULL,
    model TEXT NOT NULL,
    model_year {int} NOT NULL,
    energy TEXT NOT NULL,
    odometer_m {int} NOT NULL,
    agent_version TEXT NOT NULL
);

CREATE TABLE device_status (
    device_id TEXT PRIMARY KEY,
    online {bool} NOT NULL,
    created_s {int} NOT NULL,
    received_s {int} NOT NULL,
    health TEXT NOT NULL
);

-- Payloads the server could not store, with why: nothing is dropped silently.
CREATE TABLE dead_letters (
    id {id},
    received_s {int} NOT NULL,
    topic TEXT NOT NULL,
    device_id TEXT,
    seq {int},
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload {bytes} NOT NULL
);

-- The registry: the dealer's own data.
CREATE TABLE stores (
    id {int} PRIMARY KEY,
    name TEXT NOT NULL,
    city TEXT NOT NULL,
    lat {real} NOT NULL,
    lon {real} NOT NULL,
    radius_m {real} NOT NULL
);

CREATE TABLE pois (
    id {int} PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    lat {real} NOT NULL,
    lon {real} NOT NULL,
    radius_m {real} NOT NULL
);

CREATE TABLE fleets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL
);

CREATE TABLE customers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    phone TEXT NOT NULL,
    email TEXT NOT NULL,
    wechat TEXT NOT NULL,
    push_opt_in {bool} NOT NULL,
    sms_opt_in {bool} NOT NULL,
    wechat_opt_in {bool} NOT NULL,
    email_opt_in {bool} NOT NULL,
    phone_opt_in {bool} NOT NULL,
    mail_opt_in {bool} NOT NULL,
    birthday_month {int},
    home_store_id {int},
    fleet_id TEXT,
    referrals {int} NOT NULL
);

CREATE TABLE vehicles (
    vin TEXT PRIMARY KEY,
    device_id TEXT UNIQUE,
    make TEXT NOT NULL,
    model TEXT NOT NULL,
    model_year {int} NOT NULL,
    energy TEXT NOT NULL,
    price_class TEXT NOT NULL,
    customer_id TEXT,
    fleet_id TEXT,
    store_id {int},
    purchase_date TEXT,
    warranty_end TEXT,
    service_interval_km {int},
    service_interval_months {int}
);
CREATE INDEX vehicles_by_customer ON vehicles (customer_id);
CREATE INDEX vehicles_by_fleet ON vehicles (fleet_id);

CREATE TABLE service_visits (
    id {id},
    vin TEXT NOT NULL,
    store_id {int} NOT NULL,
    visit_date TEXT NOT NULL,
    spend_cents {int} NOT NULL,
    kind TEXT NOT NULL,
    odometer_km {int},
    UNIQUE (vin, visit_date, kind, store_id)
);
CREATE INDEX service_visits_by_vin ON service_visits (vin, visit_date);

CREATE TABLE campaign_responses (
    id {id},
    customer_id TEXT NOT NULL,
    campaign TEXT NOT NULL,
    channel TEXT NOT NULL,
    sent_date TEXT NOT NULL,
    responded {bool} NOT NULL,
    UNIQUE (customer_id, campaign)
);

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
