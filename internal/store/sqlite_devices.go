package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/google/uuid"
)

var _ DeviceStore = (*SQLite)(nil)

const sqliteDeviceColumns = `id, user_id, name, signing_key, encryption_key, self_signature, created_at, removed_at`

// CreateUserWithDevice implements DeviceStore.
func (s *SQLite) CreateUserWithDevice(ctx context.Context, u User, d Device) (User, Device, error) {
	u, d, err := prepareUserWithDevice(u, d)
	if err != nil {
		return User{}, Device{}, err
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return User{}, Device{}, sqliteErr("create user with device", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO users (id, name, password_hash, created_at) VALUES (?, ?, ?, ?)`,
		u.ID, u.Name, []byte(u.PasswordHash), u.CreatedAt.UnixMicro()); err != nil {
		return User{}, Device{}, sqliteErr("create user with device", err)
	}
	if err := sqliteInsertDevice(ctx, tx, d); err != nil {
		return User{}, Device{}, sqliteErr("create user with device", err)
	}
	if err := tx.Commit(); err != nil {
		return User{}, Device{}, sqliteErr("create user with device", err)
	}
	return u, d, nil
}

func sqliteInsertDevice(ctx context.Context, tx *sql.Tx, d Device) error {
	_, err := tx.ExecContext(ctx, `
		INSERT INTO devices (id, user_id, name, signing_key, encryption_key, self_signature, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		d.ID, d.UserID, d.Name, d.SigningKey, d.EncryptionKey, d.SelfSignature, d.CreatedAt.UnixMicro())
	return err
}

// AddDevice implements DeviceStore. The single writer serialises the
// count and the insert.
func (s *SQLite) AddDevice(ctx context.Context, d Device) (Device, error) {
	d, err := prepareDevice(d)
	if err != nil {
		return Device{}, fmt.Errorf("store: add device: %w", err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return Device{}, sqliteErr("add device", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var n int
	if err := tx.QueryRowContext(ctx,
		`SELECT count(*) FROM devices WHERE user_id = ? AND removed_at IS NULL`, d.UserID).Scan(&n); err != nil {
		return Device{}, sqliteErr("add device", err)
	}
	if n >= MaxDevicesPerUser {
		return Device{}, fmt.Errorf("store: add device: %d devices: %w", n, ErrLimit)
	}
	if err := sqliteInsertDevice(ctx, tx, d); err != nil {
		return Device{}, sqliteErr("add device", err)
	}
	if err := tx.Commit(); err != nil {
		return Device{}, sqliteErr("add device", err)
	}
	return d, nil
}

// RemoveDevice implements DeviceStore.
func (s *SQLite) RemoveDevice(ctx context.Context, userID, deviceID uuid.UUID) (int64, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, sqliteErr("remove device", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var n int
	var found bool
	if err := tx.QueryRowContext(ctx, `
		SELECT count(*), coalesce(max(id = ?), 0) FROM devices WHERE user_id = ? AND removed_at IS NULL`,
		deviceID, userID).Scan(&n, &found); err != nil {
		return 0, sqliteErr("remove device", err)
	}
	switch {
	case !found:
		return 0, fmt.Errorf("store: remove device: %w", ErrNotFound)
	case n <= 1:
		return 0, fmt.Errorf("store: remove device: %w", ErrLastDevice)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE devices SET removed_at = ? WHERE id = ?`,
		stamp(time.Time{}).UnixMicro(), deviceID); err != nil {
		return 0, sqliteErr("remove device", err)
	}
	var gen int64
	if err := tx.QueryRowContext(ctx,
		`SELECT generation FROM users WHERE id = ?`, userID).Scan(&gen); err != nil {
		return 0, sqliteErr("remove device", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, sqliteErr("remove device", err)
	}
	return gen, nil
}

// DevicesOf implements DeviceStore.
func (s *SQLite) DevicesOf(ctx context.Context, userID uuid.UUID) ([]Device, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+sqliteDeviceColumns+`
		FROM devices WHERE user_id = ? AND removed_at IS NULL ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, sqliteErr("devices of", err)
	}
	ds, err := collectSQLite(rows, scanSQLiteDevice)
	if err != nil {
		return nil, sqliteErr("devices of", err)
	}
	return ds, nil
}

// DeviceByID implements DeviceStore.
func (s *SQLite) DeviceByID(ctx context.Context, id uuid.UUID) (Device, error) {
	d, err := scanSQLiteDevice(s.r.QueryRowContext(ctx, `SELECT `+sqliteDeviceColumns+` FROM devices WHERE id = ?`, id))
	if err != nil {
		return Device{}, sqliteErr("device by id", err)
	}
	return d, nil
}

func scanSQLiteDevice(row sqliteRow) (Device, error) {
	var (
		d       Device
		created int64
		removed sql.NullInt64
	)
	if err := row.Scan(&d.ID, &d.UserID, &d.Name, &d.SigningKey, &d.EncryptionKey, &d.SelfSignature, &created, &removed); err != nil {
		return Device{}, err
	}
	d.CreatedAt = time.UnixMicro(created).UTC()
	if removed.Valid {
		d.RemovedAt = time.UnixMicro(removed.Int64).UTC()
	}
	return d, nil
}
