-- Devices: a user has one or more, each with its own signing and
-- encryption keys (docs/protocol.md §10.1). id is the device's UUID, chosen
-- by the client, unique across all users and never reused: a removed
-- device keeps its row (removed_at set) for history. name is an optional
-- label ('' when none).
--
-- Data migration: every user's current key set (its highest version)
-- becomes the user's first device, with the user's own id as device id, so
-- that a client that has no device id yet can be told its id (the
-- "authed" answer carries it) and old profiles keep working.

CREATE TABLE devices (
    id             uuid        NOT NULL PRIMARY KEY,
    user_id        uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           text        NOT NULL DEFAULT '',
    signing_key    bytea       NOT NULL,
    encryption_key bytea       NOT NULL,
    self_signature bytea       NOT NULL,
    created_at     timestamptz NOT NULL,
    removed_at     timestamptz
);

CREATE INDEX devices_by_user ON devices (user_id, created_at);

INSERT INTO devices (id, user_id, name, signing_key, encryption_key, self_signature, created_at)
SELECT k.user_id, k.user_id, '', k.signing_key, k.encryption_key, k.self_signature, k.created_at
FROM key_sets k
WHERE k.version = (SELECT max(version) FROM key_sets WHERE user_id = k.user_id);
