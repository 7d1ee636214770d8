-- A user's credential generation: 1 at creation, one more on every
-- password change and every key version after the first. The server seals
-- it into session records; a session sealed with an older generation was
-- logged in before the change and is revoked.

ALTER TABLE users ADD COLUMN generation bigint NOT NULL DEFAULT 1
    CONSTRAINT users_generation_positive CHECK (generation >= 1);
