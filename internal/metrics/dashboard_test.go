package metrics

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// TestDashboardNamesExist: every messenger_… series the Grafana dashboard
// in deploy/ queries is one this package exports, so a renamed metric
// cannot leave an empty panel behind.
func TestDashboardNamesExist(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "messenger-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	m := New()
	// Give every vector a child, so that Gather lists it.
	m.ConnOpened()
	m.Closed(protocol.CodeGoingAway)
	m.Closed(protocol.CodeSlowConsumer)
	m.HandshakeDone(false, time.Millisecond)
	m.RecordIn(1)
	m.QueueDrop(DropQueueFull)
	m.Rejected(protocol.CodeReplayedID)
	m.RateLimited(KindSend)
	redisHook{m}.observe("get", time.Millisecond, nil)
	m.redisErrors.WithLabelValues("get")
	m.dbTime.Observe(0.001)
	m.GapFilled(1)
	m.BotGeneration(time.Second, nil)
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range families {
		exported[f.GetName()] = true
	}
	used := regexp.MustCompile(`messenger_[a-z_]+`).FindAllString(string(data), -1)
	if len(used) == 0 {
		t.Fatal("the dashboard queries no messenger_ series")
	}
	for _, name := range used {
		base := name
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if !exported[base] {
			t.Errorf("the dashboard queries %s, which is not exported", name)
		}
	}
}
