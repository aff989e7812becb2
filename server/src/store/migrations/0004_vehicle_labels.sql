-- drivetag schema, version 4: every vehicle's labels in one row.
-- `labels` keeps one row per label with its rule and evidence (what a vehicle's page explains);
-- lists and exports show the labels of thousands of vehicles and read them here instead, one
-- row a vehicle: `group=value` pairs sorted by group and value, separated by single spaces
-- (names in rules are identifiers, so neither holds a space or an `=`).
CREATE TABLE vehicle_labels (
    vin TEXT PRIMARY KEY,
    labels TEXT NOT NULL
);
CREATE TABLE preview_vehicle_labels (
    vin TEXT PRIMARY KEY,
    labels TEXT NOT NULL
);
INSERT INTO vehicle_labels (vin, labels)
SELECT vin, {string_agg}(grp || '=' || value, ' ' ORDER BY grp, value) FROM labels GROUP BY vin;
