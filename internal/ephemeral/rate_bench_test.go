package ephemeral

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/secure-messenger/messenger/internal/redistest"
)

// The cost of one rate-limit decision: a send makes two (the user's and the
// room's), every request of a logged-in user one, every handshake one.
func benchmarkRateLimiter(b *testing.B, l RateLimiter, keys int) {
	ctx := context.Background()
	r := Rate{Limit: 1 << 30, Per: time.Second, Burst: 1 << 30} // never refuses
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprint("send:user:", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if ok, _, err := l.Allow(ctx, names[i%keys], r); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkMemoryRateLimiter_1Key(b *testing.B) {
	l := NewMemoryRateLimiter(MemoryConfig{})
	b.Cleanup(func() { l.Close() })
	benchmarkRateLimiter(b, l, 1)
}

func BenchmarkMemoryRateLimiter_10000Keys(b *testing.B) {
	l := NewMemoryRateLimiter(MemoryConfig{})
	b.Cleanup(func() { l.Close() })
	benchmarkRateLimiter(b, l, 10000)
}

func BenchmarkRedisRateLimiter(b *testing.B) {
	client, prefix := redistest.Client(b)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = redistest.DeletePrefix(ctx, client, "rate:"+prefix)
	})
	benchmarkRateLimiter(b, NewRedisRateLimiter(client, RedisConfig{Prefix: prefix}), 100)
}
