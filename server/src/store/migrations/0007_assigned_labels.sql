-- drivetag schema, version 7: labels assigned in the server, one row per vehicle.
-- A relabel used to write a row per label (with its rule and evidence as text), a row per
-- action and a row per tier score: some 17 rows per vehicle, minutes for a million customers.
-- Now `vehicle_labels` holds everything a vehicle was given: its labels, where each came from
-- (`sources`: a rule's position in its group, or a tier's score, rank and population, in the
-- order of `labels`), its ranked actions, the day, and the fingerprint of the rules. The words
-- that explain them (each rule as written, why, each strategy's title and priority) are kept
-- once per rules file in `rule_catalogs`, and a vehicle's page renders the evidence from them
-- and the vehicle's features as of the labelling, kept in the row too (`features`, about 150
-- bytes: see `labels::features::encode`). `profiles`, a row of 50 columns per vehicle, goes:
-- writing it cost a relabel as much as everything else.
ALTER TABLE vehicle_labels ADD COLUMN sources TEXT NOT NULL DEFAULT '';
ALTER TABLE vehicle_labels ADD COLUMN actions TEXT NOT NULL DEFAULT '';
ALTER TABLE vehicle_labels ADD COLUMN labelled_day {int} NOT NULL DEFAULT 0;
ALTER TABLE vehicle_labels ADD COLUMN rules TEXT NOT NULL DEFAULT '';
ALTER TABLE vehicle_labels ADD COLUMN features {bytes};
ALTER TABLE preview_vehicle_labels ADD COLUMN sources TEXT NOT NULL DEFAULT '';
ALTER TABLE preview_vehicle_labels ADD COLUMN actions TEXT NOT NULL DEFAULT '';
ALTER TABLE preview_vehicle_labels ADD COLUMN labelled_day {int} NOT NULL DEFAULT 0;
ALTER TABLE preview_vehicle_labels ADD COLUMN rules TEXT NOT NULL DEFAULT '';
ALTER TABLE preview_vehicle_labels ADD COLUMN features {bytes};
CREATE TABLE rule_catalogs (
    fingerprint TEXT PRIMARY KEY,
    catalog TEXT NOT NULL
);
DROP TABLE labels;
DROP TABLE actions;
DROP TABLE tier_scores;
DROP TABLE preview_labels;
DROP TABLE preview_actions;
DROP TABLE preview_tier_scores;
DROP TABLE profiles;
DROP TABLE preview_profiles;
-- The rows written before lack their sources and actions: the server relabels everyone at
-- its next start (no full relabel is on record any more).
DELETE FROM vehicle_labels;
DELETE FROM preview_vehicle_labels;
DELETE FROM meta WHERE key = 'labels.last_full';
