-- History: message streams, read positions, direct conversations and
-- their key envelopes.
--
-- streams: one row per room or conversation history. name is
--   'room:<room name>' or 'conv:<conversation id>'; epoch a random UUID
--   made with the row and never changed; head the last sequence number
--   given out (0 before the first message). Appends lock the row, which
--   orders them. Rows are never deleted, so sequence numbers are never
--   reused, even after pruning.
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
    name       text        NOT NULL PRIMARY KEY,
    epoch      uuid        NOT NULL,
    head       bigint      NOT NULL CHECK (head >= 0),
    created_at timestamptz NOT NULL
);

CREATE TABLE messages (
    stream      text        NOT NULL REFERENCES streams (name),
    seq         bigint      NOT NULL CHECK (seq >= 1),
    msg_id      uuid        NOT NULL,
    sender      uuid        NOT NULL,
    sender_name text        NOT NULL,
    created_at  timestamptz NOT NULL,
    kind        text        NOT NULL,
    key_id      bigint      NOT NULL,
    body        bytea       NOT NULL,
    PRIMARY KEY (stream, seq),
    CONSTRAINT messages_stream_msg_id_key UNIQUE (stream, msg_id)
);

CREATE INDEX messages_by_key_id ON messages (key_id);

CREATE TABLE read_positions (
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    stream     text        NOT NULL REFERENCES streams (name),
    seq        bigint      NOT NULL CHECK (seq >= 0),
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, stream)
);

CREATE TABLE conversations (
    id         uuid        NOT NULL PRIMARY KEY,
    user_a     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_b     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    CONSTRAINT conversations_ordered CHECK (user_a < user_b),
    CONSTRAINT conversations_pair_key UNIQUE (user_a, user_b)
);

CREATE INDEX conversations_by_user_b ON conversations (user_b);

CREATE TABLE conversation_keys (
    conversation_id uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    version         integer     NOT NULL CHECK (version >= 1),
    created_by      uuid        NOT NULL REFERENCES users (id),
    envelope        bytea       NOT NULL,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, version)
);
