-- Placeholder: version 4 belongs to the room-history branch, developed in
-- parallel. loadMigrations refuses gaps, so this no-op holds the number on
-- the devices branch. DELETE THIS FILE WHEN MERGING: the history branch's
-- own 0004 replaces it (two files of version 4 fail loudly at startup).

SELECT 1;
