-- Version 15 is taken by another branch of work (merged separately); this
-- file only keeps the versions consecutive on this branch and is dropped
-- when that migration lands.
SELECT 1;
