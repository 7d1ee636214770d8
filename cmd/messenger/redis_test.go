package main

import (
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestNewRedisClient: each mode parses its URL form into its client
// kind; bad input gets an error.
func TestNewRedisClient(t *testing.T) {
	cases := []struct {
		url, mode string
		ok        bool
		check     func(redis.UniversalClient) bool
	}{
		{"redis://127.0.0.1:6379/2", "standalone", true, func(c redis.UniversalClient) bool { _, ok := c.(*redis.Client); return ok }},
		{"redis://127.0.0.1:6379", "", true, func(c redis.UniversalClient) bool { _, ok := c.(*redis.Client); return ok }},
		{"redis://s1:26379?master_name=mymaster&addr=s2:26379", "sentinel", true, func(c redis.UniversalClient) bool { _, ok := c.(*redis.Client); return ok }},
		{"redis://n1:7000?addr=n2:7001&addr=n3:7002", "cluster", true, func(c redis.UniversalClient) bool { _, ok := c.(*redis.ClusterClient); return ok }},
		{"redis://s1:26379", "sentinel", false, nil},        // no master_name
		{"http://127.0.0.1:6379", "standalone", false, nil}, // not a redis URL
		{"redis://127.0.0.1:6379", "ring", false, nil},      // unknown mode
		{"redis://n1:7000?bogus=1", "cluster", false, nil},  // unknown option
	}
	for _, c := range cases {
		rc, _, err := newRedisClient(c.url, c.mode)
		if (err == nil) != c.ok {
			t.Errorf("%s (%s): err %v, want ok %v", c.url, c.mode, err, c.ok)
			continue
		}
		if err == nil {
			if !c.check(rc) {
				t.Errorf("%s (%s): client %T", c.url, c.mode, rc)
			}
			rc.Close()
		}
	}
}
