package main

import (
	"net/http"
	"testing"
)

// TestRunPprof: Go's profiler is on the operators' listener only with
// -pprof, and never on the public one.
func TestRunPprof(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"off by default", []string{"-addr", "127.0.0.1:0", "-metrics-addr", "127.0.0.1:0"}, http.StatusNotFound},
		{"-pprof", []string{"-addr", "127.0.0.1:0", "-metrics-addr", "127.0.0.1:0", "-pprof"}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := start(t, map[string]string{"MESSENGER_DATA": t.TempDir(), "MESSENGER_IDENTITY_BITS": "2048"}, tc.args...)
			m := metricsRE.FindStringSubmatch(n.out.String())
			if m == nil {
				t.Fatalf("no metrics address printed:\n%s", n.out.String())
			}
			for _, u := range []struct {
				url  string
				want int
			}{
				{"http://" + m[1] + "/debug/pprof/goroutine?debug=1", tc.want},
				{"http://" + m[1] + "/metrics", http.StatusOK},
				{"http://" + n.addr + "/debug/pprof/goroutine?debug=1", http.StatusNotFound},
			} {
				resp, err := http.Get(u.url)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != u.want {
					t.Errorf("GET %s: %d, want %d", u.url, resp.StatusCode, u.want)
				}
			}
		})
	}
}
