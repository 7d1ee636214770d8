-- Rooms that anonymous connections create: rooms.created_by may be NULL
-- (no account made the room), so that such rooms have a stream and their
-- messages are stored like any other room's.

ALTER TABLE rooms ALTER COLUMN created_by DROP NOT NULL;
