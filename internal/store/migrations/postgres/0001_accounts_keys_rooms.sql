-- Accounts, identity keys and rooms.
-- Opaque values are bytea so any bytes round-trip exactly (text cannot hold
-- NUL). Names are stored lower-case by the application (citext is not
-- assumed to be installed); the CHECK keeps uniqueness case-insensitive.

CREATE TABLE users (
    id            uuid        NOT NULL PRIMARY KEY,
    name          text        NOT NULL CONSTRAINT users_name_key UNIQUE
                              CONSTRAINT users_name_lower CHECK (name = lower(name)),
    password_hash bytea       NOT NULL,
    created_at    timestamptz NOT NULL
);

CREATE TABLE key_sets (
    user_id        uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    version        integer     NOT NULL CHECK (version >= 1),
    signing_key    bytea       NOT NULL,
    encryption_key bytea       NOT NULL,
    self_signature bytea       NOT NULL,
    created_at     timestamptz NOT NULL,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE rooms (
    id         uuid        NOT NULL PRIMARY KEY,
    name       text        NOT NULL CONSTRAINT rooms_name_key UNIQUE
                           CONSTRAINT rooms_name_lower CHECK (name = lower(name)),
    created_by uuid        NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL
);

CREATE TABLE room_members (
    room_id   uuid        NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id   uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);

CREATE INDEX room_members_by_user ON room_members (user_id, room_id);
CREATE INDEX rooms_by_creator ON rooms (created_by);
