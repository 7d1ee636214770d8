package web

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"
)

// TestNoInlineCode: the pages load script and style only from files, so
// the server's Content-Security-Policy (no 'unsafe-inline') holds them.
// An inline <script>, a style attribute or an on… handler would be blocked
// by the browser and is refused here first.
func TestNoInlineCode(t *testing.T) {
	inlineScript := regexp.MustCompile(`(?is)<script\b[^>]*>\s*[^<\s]`)
	scriptTag := regexp.MustCompile(`(?is)<script\b([^>]*)>`)
	handler := regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	styleAttr := regexp.MustCompile(`(?i)\sstyle\s*=`)
	n := 0
	err := fs.WalkDir(Files(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".html") {
			return err
		}
		n++
		b, err := fs.ReadFile(Files(), path)
		if err != nil {
			return err
		}
		s := string(b)
		if inlineScript.MatchString(s) {
			t.Errorf("%s: inline script", path)
		}
		for _, m := range scriptTag.FindAllStringSubmatch(s, -1) {
			if !strings.Contains(m[1], "src=") {
				t.Errorf("%s: <script%s> without src", path, m[1])
			}
		}
		if handler.MatchString(s) || styleAttr.MatchString(s) || strings.Contains(s, "<style") {
			t.Errorf("%s: inline handler or style", path)
		}
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("walked %d pages: %v", n, err)
	}
	for _, f := range []string{"index.html", "app.css", "js/app.js", "js/client.js", "js/session.js", "js/protocol.js", "js/e2e.js"} {
		if _, err := fs.Stat(Files(), f); err != nil {
			t.Errorf("the UI lacks %s: %v", f, err)
		}
	}
}
