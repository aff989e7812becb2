-- drivetag schema, version 5: rank points, and envelopes by arrival. A full relabel keeps, for each tier part's feature
-- and each tier's score, up to 4,096 points of the population's distribution: a value and how
-- many vehicles were below it; a row with value 1e308 holds the population's size. A partial
-- relabel ranks its vehicles against them with one index probe each, instead of counting the
-- whole population per vehicle and part.
CREATE TABLE rank_points (
    name TEXT NOT NULL,
    value {real} NOT NULL,
    below {int} NOT NULL,
    PRIMARY KEY (name, value)
);
CREATE TABLE preview_rank_points (
    name TEXT NOT NULL,
    value {real} NOT NULL,
    below {int} NOT NULL,
    PRIMARY KEY (name, value)
);
-- The labeller's partial passes pick the vehicles whose agents sent something since a time:
-- without this index each pass read every envelope ever stored, payloads and all.
CREATE INDEX envelopes_by_received ON envelopes (received_s, device_id);
