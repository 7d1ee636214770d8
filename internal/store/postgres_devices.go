package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

var _ DeviceStore = (*Postgres)(nil)

const pgDeviceColumns = `id, user_id, name, signing_key, encryption_key, self_signature, created_at, removed_at`

// CreateUserWithDevice implements DeviceStore.
func (p *Postgres) CreateUserWithDevice(ctx context.Context, u User, d Device) (User, Device, error) {
	u, d, err := prepareUserWithDevice(u, d)
	if err != nil {
		return User{}, Device{}, err
	}
	err = p.inTx(ctx, "create user with device", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx,
			`INSERT INTO users (id, name, password_hash, created_at) VALUES ($1, $2, $3, $4)`,
			u.ID, u.Name, []byte(u.PasswordHash), u.CreatedAt); err != nil {
			return err
		}
		return pgInsertDevice(ctx, tx, d)
	})
	if err != nil {
		return User{}, Device{}, err
	}
	return u, d, nil
}

func pgInsertDevice(ctx context.Context, tx pgx.Tx, d Device) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO devices (id, user_id, name, signing_key, encryption_key, self_signature, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		d.ID, d.UserID, d.Name, d.SigningKey, d.EncryptionKey, d.SelfSignature, d.CreatedAt)
	return err
}

// lockUser takes the user's row lock for the rest of tx, so that device
// counts of one user are read and changed one transaction at a time.
func pgLockUser(ctx context.Context, tx pgx.Tx, userID uuid.UUID) error {
	var one int
	return tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 FOR UPDATE`, userID).Scan(&one)
}

// AddDevice implements DeviceStore.
func (p *Postgres) AddDevice(ctx context.Context, d Device) (Device, error) {
	d, err := prepareDevice(d)
	if err != nil {
		return Device{}, fmt.Errorf("store: add device: %w", err)
	}
	err = p.inTx(ctx, "add device", func(tx pgx.Tx) error {
		if err := pgLockUser(ctx, tx, d.UserID); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx,
			`SELECT count(*) FROM devices WHERE user_id = $1 AND removed_at IS NULL`, d.UserID).Scan(&n); err != nil {
			return err
		}
		if n >= MaxDevicesPerUser {
			return fmt.Errorf("%d devices: %w", n, ErrLimit)
		}
		return pgInsertDevice(ctx, tx, d)
	})
	if err != nil {
		return Device{}, err
	}
	return d, nil
}

// RemoveDevice implements DeviceStore.
func (p *Postgres) RemoveDevice(ctx context.Context, userID, deviceID uuid.UUID) (int64, error) {
	var gen int64
	err := p.inTx(ctx, "remove device", func(tx pgx.Tx) error {
		if err := pgLockUser(ctx, tx, userID); err != nil {
			return err
		}
		var n int
		var found bool
		if err := tx.QueryRow(ctx, `
			SELECT count(*), coalesce(bool_or(id = $1), false) FROM devices WHERE user_id = $2 AND removed_at IS NULL`,
			deviceID, userID).Scan(&n, &found); err != nil {
			return err
		}
		switch {
		case !found:
			return ErrNotFound
		case n <= 1:
			return ErrLastDevice
		}
		if _, err := tx.Exec(ctx, `UPDATE devices SET removed_at = $1 WHERE id = $2`, stamp(time.Time{}), deviceID); err != nil {
			return err
		}
		return tx.QueryRow(ctx,
			`SELECT generation FROM users WHERE id = $1`, userID).Scan(&gen)
	})
	if err != nil {
		return 0, err
	}
	return gen, nil
}

// DevicesOf implements DeviceStore.
func (p *Postgres) DevicesOf(ctx context.Context, userID uuid.UUID) ([]Device, error) {
	var ds []Device
	err := p.with(ctx, "devices of", func(c pgQuerier) error {
		rows, err := c.Query(ctx, `SELECT `+pgDeviceColumns+`
			FROM devices WHERE user_id = $1 AND removed_at IS NULL ORDER BY created_at, id`, userID)
		if err != nil {
			return err
		}
		ds, err = collectPg(rows, scanPgDevice)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ds, nil
}

// DeviceByID implements DeviceStore.
func (p *Postgres) DeviceByID(ctx context.Context, id uuid.UUID) (Device, error) {
	var d Device
	err := p.with(ctx, "device by id", func(c pgQuerier) (err error) {
		d, err = scanPgDevice(c.QueryRow(ctx, `SELECT `+pgDeviceColumns+` FROM devices WHERE id = $1`, id))
		return err
	})
	return d, err
}

func scanPgDevice(row pgx.Row) (Device, error) {
	var (
		d       Device
		removed *time.Time
	)
	if err := row.Scan(&d.ID, &d.UserID, &d.Name, &d.SigningKey, &d.EncryptionKey, &d.SelfSignature, &d.CreatedAt, &removed); err != nil {
		return Device{}, err
	}
	d.CreatedAt = d.CreatedAt.UTC()
	if removed != nil {
		d.RemovedAt = removed.UTC()
	}
	return d, nil
}
