-- Placeholder on the act-as branch only: migration 5 belongs to another branch of issue 13, and
-- migrations must be numbered without gaps. The coordinator drops this file when merging.
SELECT 1;
