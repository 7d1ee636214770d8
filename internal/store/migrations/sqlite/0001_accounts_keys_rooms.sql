-- Accounts, identity keys and rooms.
-- UUIDs are TEXT (canonical form), times INTEGER unix microseconds (UTC),
-- opaque values BLOB so any bytes round-trip exactly. Names are stored
-- lower-case by the application; the CHECK keeps uniqueness case-insensitive.

CREATE TABLE users (
    id            TEXT    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE CHECK (name = lower(name)),
    password_hash BLOB    NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE key_sets (
    user_id        TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    version        INTEGER NOT NULL CHECK (version >= 1),
    signing_key    BLOB    NOT NULL,
    encryption_key BLOB    NOT NULL,
    self_signature BLOB    NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (user_id, version)
) STRICT;

CREATE TABLE rooms (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE CHECK (name = lower(name)),
    created_by TEXT    NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE room_members (
    room_id   TEXT    NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id   TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
) STRICT;

CREATE INDEX room_members_by_user ON room_members (user_id, room_id);
CREATE INDEX rooms_by_creator ON rooms (created_by);
