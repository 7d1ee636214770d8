package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// rssKiB reads a process's resident set size (VmRSS) from /proc, in KiB.
// pid 0 means not measured.
func rssKiB(pid int) (int64, error) {
	if pid == 0 {
		return 0, nil
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("load: server memory: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				break
			}
			return strconv.ParseInt(fields[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("load: no VmRSS in /proc/%d/status", pid)
}
