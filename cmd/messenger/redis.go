package main

import (
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Redis deployment kinds, the values of -redis-mode.
const (
	redisStandalone = "standalone"
	redisSentinel   = "sentinel"
	redisCluster    = "cluster"
)

// newRedisClient makes the client for -redis and -redis-mode:
//
//   - standalone: one server, redis://[user:password@]host:port[/db]
//     (rediss:// for TLS);
//   - sentinel: a master found through Sentinel,
//     redis://[user:password@]sentinel1:26379?master_name=NAME&addr=sentinel2:26379...
//     (the user and password are the sentinels');
//   - cluster: a Redis Cluster, redis://[user:password@]node1:6379?addr=node2:6379...
//     (any reachable nodes; the rest are discovered).
//
// Query parameters set further go-redis options (dial_timeout=3s, ...).
// It returns the client and the addresses it starts from, for the log.
func newRedisClient(url, mode string) (redis.UniversalClient, string, error) {
	switch mode {
	case redisStandalone, "":
		o, err := redis.ParseURL(url)
		if err != nil {
			return nil, "", err
		}
		return redis.NewClient(o), o.Addr, nil
	case redisSentinel:
		o, err := redis.ParseFailoverURL(url)
		if err != nil {
			return nil, "", err
		}
		if o.MasterName == "" {
			return nil, "", fmt.Errorf("sentinel mode needs ?master_name=NAME in the URL")
		}
		return redis.NewFailoverClient(o), "sentinels " + strings.Join(o.SentinelAddrs, ",") + " master " + o.MasterName, nil
	case redisCluster:
		o, err := redis.ParseClusterURL(url)
		if err != nil {
			return nil, "", err
		}
		return redis.NewClusterClient(o), "cluster " + strings.Join(o.Addrs, ","), nil
	}
	return nil, "", fmt.Errorf("unknown mode %q: standalone, sentinel or cluster", mode)
}
