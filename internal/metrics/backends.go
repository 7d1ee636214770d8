package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// RedisHook returns a go-redis hook that times every command and counts
// the failed ones: add it with client.AddHook. redis.Nil (a missing key)
// is an answer, not a failure. On a nil *Metrics it returns nil.
func (m *Metrics) RedisHook() redis.Hook {
	if m == nil {
		return nil
	}
	return redisHook{m}
}

type redisHook struct{ m *Metrics }

var _ redis.Hook = redisHook{}

func (h redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		h.observe(cmd.Name(), time.Since(start), err)
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		h.observe("pipeline", time.Since(start), err)
		return err
	}
}

func (h redisHook) observe(name string, d time.Duration, err error) {
	h.m.redisTime.WithLabelValues(name).Observe(d.Seconds())
	if err != nil && !errors.Is(err, redis.Nil) {
		h.m.redisErrors.WithLabelValues(name).Inc()
	}
}

// DBTracer returns a pgx query tracer that times every PostgreSQL query
// and counts the failed ones (pgx.ErrNoRows is an answer, not a failure).
// On a nil *Metrics it returns nil.
func (m *Metrics) DBTracer() pgx.QueryTracer {
	if m == nil {
		return nil
	}
	return dbTracer{m}
}

type dbTracer struct{ m *Metrics }

type dbStartKey struct{}

func (t dbTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, dbStartKey{}, time.Now())
}

func (t dbTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	if start, ok := ctx.Value(dbStartKey{}).(time.Time); ok {
		t.m.dbTime.Observe(time.Since(start).Seconds())
	}
	if data.Err != nil && !errors.Is(data.Err, pgx.ErrNoRows) {
		t.m.dbErrors.Inc()
	}
}
