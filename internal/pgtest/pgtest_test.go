package pgtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func adminURL() string {
	if v := os.Getenv(EnvVar); v != "" {
		return v
	}
	return DefaultURL
}

func TestURLCreatesAndDropsDatabase(t *testing.T) {
	ctx := context.Background()
	var first, second string
	var leftOpen *pgx.Conn
	t.Run("inner", func(t *testing.T) {
		first, second = URL(t), URL(t)
		if first == second {
			t.Fatalf("two calls returned the same database %s", first)
		}
		for _, u := range []string{first, second} {
			conn, err := pgx.Connect(ctx, u)
			if err != nil {
				t.Fatalf("connect to %s: %v", u, err)
			}
			var db string
			var tables int
			if err := conn.QueryRow(ctx, `SELECT current_database(), (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')`).Scan(&db, &tables); err != nil {
				t.Fatal(err)
			}
			if parsed, _ := url.Parse(u); !strings.HasPrefix(db, "msgrtest_") || parsed.Path != "/"+db {
				t.Errorf("URL %s connects to database %q, want msgrtest_<random> named in the URL", u, db)
			}
			if tables != 0 {
				t.Errorf("new database %s has %d tables, want 0", db, tables)
			}
			if u == first {
				leftOpen = conn // dropped WITH (FORCE) despite this open connection
			} else {
				conn.Close(ctx)
			}
		}
	})
	if first == "" {
		t.Skip("postgres not reachable; see the inner test's skip message")
	}
	if leftOpen != nil {
		defer leftOpen.Close(ctx)
	}

	admin, err := pgx.Connect(ctx, adminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	for _, u := range []string{first, second} {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(parsed.Path, "/")
		var exists bool
		if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists {
			t.Errorf("database %s still exists after its test finished", name)
		}
	}
}

// recorder is a testing.TB that records Skipf and Fatalf instead of acting
// on them; URL must be run in its own goroutine, which they end.
type recorder struct {
	testing.TB
	skipped, fatal string
}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func runURL(t *testing.T) (rec *recorder, got string) {
	rec = &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		got = URL(rec)
	}()
	<-done
	return rec, got
}

func deadPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func TestURLSkipsWhenUnreachable(t *testing.T) {
	port := deadPort(t)
	t.Setenv(EnvVar, fmt.Sprintf("postgres://postgres:s3cret@127.0.0.1:%d/postgres?sslmode=disable", port))

	for _, attempt := range []string{"first", "remembered"} {
		start := time.Now()
		rec, got := runURL(t)
		if got != "" || rec.fatal != "" {
			t.Fatalf("%s attempt: URL returned %q, fatal %q; want a skip", attempt, got, rec.fatal)
		}
		for _, want := range []string{
			fmt.Sprintf("postgres not reachable at postgres://postgres:xxxxx@127.0.0.1:%d/", port),
			"(set MESSENGER_TEST_POSTGRES)",
		} {
			if !strings.Contains(rec.skipped, want) {
				t.Errorf("%s attempt: skip message %q does not contain %q", attempt, rec.skipped, want)
			}
		}
		if strings.Contains(rec.skipped, "s3cret") {
			t.Errorf("skip message shows the password: %q", rec.skipped)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s attempt took %v, want under the ~2s connect timeout", attempt, d)
		}
	}
}

func TestURLFailsWhenServerRefuses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL())
	if err != nil {
		t.Skipf("postgres not reachable at %s: %v (set %s)", adminURL(), err, EnvVar)
	}
	conn.Close(ctx)

	u, err := url.Parse(adminURL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User("pgtest_no_such_role_" + randomHex(4))
	t.Setenv(EnvVar, u.String())
	rec, got := runURL(t)
	if got != "" || rec.skipped != "" || !strings.Contains(rec.fatal, "refused the connection") {
		t.Fatalf("URL with an unknown role: returned %q, skipped %q, fatal %q; want fatal", got, rec.skipped, rec.fatal)
	}
}

func TestURLRejectsNonURL(t *testing.T) {
	t.Setenv(EnvVar, "host=127.0.0.1 user=postgres")
	rec, got := runURL(t)
	if got != "" || !strings.Contains(rec.fatal, "must be a postgres:// URL") {
		t.Fatalf("returned %q, skipped %q, fatal %q; want fatal", got, rec.skipped, rec.fatal)
	}
}
