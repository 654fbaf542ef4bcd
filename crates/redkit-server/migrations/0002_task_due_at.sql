-- An optional due time per task (RFC 3339, UTC, millisecond precision);
-- setting it schedules a reminder.
ALTER TABLE tasks ADD COLUMN due_at TEXT NULL;
