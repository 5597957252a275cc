-- Decisions alike in every field and made in the same millisecond are one row with their number
-- (docs/request-log.md). They cannot be told apart, so nothing is lost; a client repeating one
-- request thousands of times a second (a busy service, or a flood of bad tokens) then costs
-- the store a row per millisecond instead of a row, three index entries and their WAL per request.
-- Rows written before this migration stand for one decision each.
ALTER TABLE request_log ADD COLUMN count integer NOT NULL DEFAULT 1 CHECK (count >= 1);
