-- drivetag schema, version 4: every vehicle's labels and first next-best action in one row.
-- `labels` keeps one row per label with its rule and evidence (what a vehicle's page explains),
-- `actions` one row per strategy; lists and exports show thousands of vehicles and read this
-- instead, one row a vehicle. `labels` holds `group=value` pairs sorted by group and value,
-- separated by single spaces (names in rules are identifiers: neither holds a space or an `=`).
CREATE TABLE vehicle_labels (
    vin TEXT PRIMARY KEY,
    labels TEXT NOT NULL,
    first_strategy TEXT,
    first_channel TEXT,
    first_status TEXT
);
CREATE TABLE preview_vehicle_labels (
    vin TEXT PRIMARY KEY,
    labels TEXT NOT NULL,
    first_strategy TEXT,
    first_channel TEXT,
    first_status TEXT
);
INSERT INTO vehicle_labels (vin, labels, first_strategy, first_channel, first_status)
SELECT l.vin, l.labels, a.strategy, a.channel, a.status
FROM (SELECT vin, {string_agg}(grp || '=' || value, ' ' ORDER BY grp, value) AS labels
      FROM labels GROUP BY vin) l
LEFT JOIN actions a ON a.vin = l.vin AND a.rank = 1;
