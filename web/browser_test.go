package web_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestBrowser runs the browser scenarios of web/test (Playwright driving
// headless Chromium against a real server built from this tree, and the
// chat binary for the browser ↔ CLI scenarios). It needs node, the npm
// packages of package.json (npm ci) and Chromium; without them it skips
// and says which is missing. BROWSER_TESTS=only-this-name narrows the run.
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser tests: skipped in -short mode")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("browser tests SKIPPED: no Chromium at %s (apt-get install chromium, or set CHROMIUM)", chromium)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("browser tests SKIPPED: node is not installed")
	}
	if _, err := os.Stat(filepath.Join(root, "node_modules", "playwright-core")); err != nil {
		t.Skip("browser tests SKIPPED: node_modules/playwright-core missing (run npm ci at the repository root)")
	}
	bin := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin+string(filepath.Separator), "./cmd/messenger", "./cmd/chat")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	artifacts := filepath.Join(root, "web", "test", "artifacts")
	cmd := exec.CommandContext(ctx, node, filepath.Join(root, "web", "test", "run.mjs"), os.Getenv("BROWSER_TESTS"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"MESSENGER_BIN="+filepath.Join(bin, "messenger"),
		"CHAT_BIN="+filepath.Join(bin, "chat"),
		"CHROMIUM="+chromium,
		"ARTIFACTS="+artifacts,
		"HOME="+t.TempDir(), // the chat binary's profiles and known_hosts
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("browser scenarios:\n%s", out.String())
	if err != nil {
		t.Fatalf("browser scenarios failed: %v (screenshots and server log in %s)", err, artifacts)
	}
}
