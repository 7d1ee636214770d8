-- History: message streams, read positions, direct conversations and
-- their key envelopes. Types as in 0001: UUIDs TEXT (canonical), times
-- INTEGER unix microseconds (UTC), opaque values BLOB.
--
-- streams: one row per room or conversation history. name is
--   "room:<room name>" or "conv:<conversation id>"; epoch a random UUID
--   made with the row and never changed; head the last sequence number
--   given out (0 before the first message). Rows are never deleted, so
--   sequence numbers are never reused, even after pruning.
-- messages: one row per message; seq is the stream's head after the
--   append, taken in the same transaction. msg_id is the client's message
--   id, unique per stream (a retry finds its message). sender is the nil
--   UUID for an anonymous sender and is not a foreign key (messages outlive
--   accounts). body is sealed: nonce || AES-256-GCM ciphertext and tag,
--   under the storage key key_id, with every other column as additional
--   data (see history.go); the other columns are in the clear.
-- read_positions: the last seq of a stream that a user acknowledged.
-- conversations: one direct conversation per unordered pair of users,
--   stored ordered (user_a < user_b).
-- conversation_keys: the clients' key envelopes, one row per version,
--   stored as they came (they are encrypted to the members' devices).

CREATE TABLE streams (
    name       TEXT    NOT NULL PRIMARY KEY,
    epoch      TEXT    NOT NULL,
    head       INTEGER NOT NULL CHECK (head >= 0),
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE messages (
    stream      TEXT    NOT NULL REFERENCES streams (name),
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    msg_id      TEXT    NOT NULL,
    sender      TEXT    NOT NULL,
    sender_name TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    key_id      INTEGER NOT NULL,
    body        BLOB    NOT NULL,
    PRIMARY KEY (stream, seq),
    UNIQUE (stream, msg_id)
) STRICT;

CREATE INDEX messages_by_key_id ON messages (key_id);

CREATE TABLE read_positions (
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    stream     TEXT    NOT NULL REFERENCES streams (name),
    seq        INTEGER NOT NULL CHECK (seq >= 0),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, stream)
) STRICT;

CREATE TABLE conversations (
    id         TEXT    NOT NULL PRIMARY KEY,
    user_a     TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_b     TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    CHECK (user_a < user_b),
    UNIQUE (user_a, user_b)
) STRICT;

CREATE INDEX conversations_by_user_b ON conversations (user_b);

CREATE TABLE conversation_keys (
    conversation_id TEXT    NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    version         INTEGER NOT NULL CHECK (version >= 1),
    created_by      TEXT    NOT NULL REFERENCES users (id),
    envelope        BLOB    NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, version)
) STRICT;
