-- migrate: foreign_keys off
-- Rooms that anonymous connections create: rooms.created_by may be NULL
-- (no account made the room), so that such rooms have a stream and their
-- messages are stored like any other room's.
--
-- SQLite cannot drop a NOT NULL constraint in place: the table is rebuilt
-- as https://sqlite.org/lang_altertable.html#otheralter says, with foreign
-- keys off (the first line asks the migration runner for that; it checks
-- every foreign key before committing), so that dropping the old table does
-- not cascade to room_members.

CREATE TABLE rooms_new (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE CHECK (name = lower(name)),
    created_by TEXT    REFERENCES users (id),
    created_at INTEGER NOT NULL
) STRICT;

INSERT INTO rooms_new (id, name, created_by, created_at)
    SELECT id, name, created_by, created_at FROM rooms;

DROP TABLE rooms;
ALTER TABLE rooms_new RENAME TO rooms;
CREATE INDEX rooms_by_creator ON rooms (created_by);
