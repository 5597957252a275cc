-- Placeholder on the changelog branch only: migration 7 belongs to another branch of issues 12/13,
-- and migrations must be numbered without gaps. The coordinator drops this file when merging.
SELECT 1;
