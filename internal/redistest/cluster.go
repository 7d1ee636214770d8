package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// clusterStartTimeout bounds how long StartCluster waits for the servers
// to answer and the cluster to agree that it is ready; past it the test is
// skipped.
const clusterStartTimeout = 60 * time.Second

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// StartCluster starts a Redis Cluster of shards masters (no replicas) from
// the installed redis-server, each on free ports of 127.0.0.1 with its
// files in a temporary directory, assigns the hash slots evenly, and
// returns the masters' addresses once every one of them reports
// cluster_state:ok. When the test ends the servers are killed and their
// directories removed.
//
// It skips the test, saying why, when redis-server is not installed, is
// older than 7.0 (which sharded Pub/Sub needs), or the cluster is not
// ready within a minute.
func StartCluster(t testing.TB, shards int) []string {
	t.Helper()
	if shards < 1 {
		t.Fatalf("redistest: StartCluster with %d shards", shards)
	}
	server, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redistest: redis-server is not installed, so no Redis Cluster can be started")
	}
	if v, err := exec.Command(server, "--version").Output(); err != nil {
		t.Skipf("redistest: redis-server --version: %v", err)
	} else if major := serverMajor(string(v)); major < 7 {
		t.Skipf("redistest: redis-server is older than 7.0 (%s): no sharded Pub/Sub", strings.TrimSpace(string(v)))
	}

	addrs := make([]string, shards)
	busPorts := make([]int, shards)
	dirs := make([]string, shards)
	for i := range shards {
		port, busPort := freePort(t), freePort(t)
		dir := t.TempDir()
		dirs[i] = dir
		log, err := os.Create(filepath.Join(dir, "redis.log"))
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		cmd := exec.Command(server,
			"--port", strconv.Itoa(port),
			"--cluster-port", strconv.Itoa(busPort),
			"--bind", "127.0.0.1",
			"--cluster-announce-ip", "127.0.0.1",
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "5000",
			"--dir", dir,
			"--save", "",
			"--appendonly", "no",
			"--protected-mode", "no",
			"--daemonize", "no",
		)
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = killWithParent()
		if err := cmd.Start(); err != nil {
			_ = log.Close()
			t.Skipf("redistest: start redis-server: %v", err)
		}
		// Registered after t.TempDir, so it runs before the directory is
		// removed.
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			_ = log.Close()
		})
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		busPorts[i] = busPort
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterStartTimeout)
	defer cancel()
	if err := formCluster(ctx, addrs, busPorts); err != nil {
		var logs strings.Builder
		for i, dir := range dirs {
			b, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			fmt.Fprintf(&logs, "\n--- %s:\n%s", addrs[i], tail(string(b), 1500))
		}
		t.Skipf("redistest: Redis Cluster not ready within %v: %v%s", clusterStartTimeout, err, logs.String())
	}
	return addrs
}

// formCluster waits for every server to answer, gives each an even range
// of slots, introduces them to each other and waits until each reports
// the cluster ready and knows every slot's owner.
func formCluster(ctx context.Context, addrs []string, busPorts []int) error {
	clients := make([]*redis.Client, len(addrs))
	for i, a := range addrs {
		clients[i] = redis.NewClient(&redis.Options{Addr: a, MaxRetries: -1})
		defer clients[i].Close()
	}
	for i, c := range clients {
		if err := poll(ctx, func() error { return c.Ping(ctx).Err() }); err != nil {
			return fmt.Errorf("%s does not answer: %w", addrs[i], err)
		}
	}
	n := len(addrs)
	for i, c := range clients {
		first, last := i*clusterSlots/n, (i+1)*clusterSlots/n-1
		if err := c.ClusterAddSlotsRange(ctx, first, last).Err(); err != nil {
			return fmt.Errorf("CLUSTER ADDSLOTSRANGE on %s: %w", addrs[i], err)
		}
	}
	for i, a := range addrs[1:] {
		host, port, _ := net.SplitHostPort(a)
		// The bus port is not the default port+10000, so MEET names it.
		if err := clients[0].Do(ctx, "cluster", "meet", host, port, busPorts[i+1]).Err(); err != nil {
			return fmt.Errorf("CLUSTER MEET %s: %w", a, err)
		}
	}
	for i, c := range clients {
		err := poll(ctx, func() error {
			info, err := c.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			for _, want := range []string{
				"cluster_state:ok",
				"cluster_slots_ok:" + strconv.Itoa(clusterSlots),
				"cluster_known_nodes:" + strconv.Itoa(n),
			} {
				if !strings.Contains(info, want+"\r\n") {
					return fmt.Errorf("CLUSTER INFO lacks %s: %q", want, info)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s: %w", addrs[i], err)
		}
	}
	return nil
}

// poll calls f every 100ms until it succeeds or ctx ends, and returns the
// last error.
func poll(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ClusterClient returns a client of the Redis Cluster whose masters are
// addrs (from StartCluster) and a key prefix unique to this call, as
// Client does; the prefix's keys are deleted and the client closed when
// the test ends.
func ClusterClient(t testing.TB, addrs []string) (*redis.ClusterClient, string) {
	t.Helper()
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	prefix := "msgrtest:" + uuid.NewString() + ":"
	t.Cleanup(func() {
		defer client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := DeletePrefix(ctx, client, prefix); err != nil {
			t.Errorf("redistest: delete keys %s*: %v", prefix, err)
		}
	})
	return client, prefix
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("redistest: no free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// serverMajor reads the major version from redis-server --version
// ("Redis server v=7.0.15 ..."); 0 when it cannot.
func serverMajor(version string) int {
	_, v, ok := strings.Cut(version, "v=")
	if !ok {
		return 0
	}
	major, _, _ := strings.Cut(v, ".")
	n, _ := strconv.Atoi(major)
	return n
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
