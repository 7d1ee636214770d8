package envflag

import (
	"strings"
	"testing"
	"time"
)

func TestEnv(t *testing.T) {
	vars := map[string]string{"S": "text", "B": "true", "I": "42", "D": "90s", "BADI": "x", "BADD": "soon"}
	e := New(func(k string) string { return vars[k] })
	if e.String("S", "def") != "text" || e.String("NONE", "def") != "def" {
		t.Fatal("String")
	}
	if !e.Bool("B", false) || e.Bool("NONE", false) {
		t.Fatal("Bool")
	}
	if e.Int("I", 1) != 42 || e.Int("NONE", 7) != 7 {
		t.Fatal("Int")
	}
	if e.Duration("D", 0) != 90*time.Second || e.Duration("NONE", time.Minute) != time.Minute {
		t.Fatal("Duration")
	}
	if !e.Set("S") || e.Set("NONE") {
		t.Fatal("Set")
	}
	if err := e.Err(); err != nil {
		t.Fatalf("no bad values yet: %v", err)
	}
	if e.Int("BADI", 3) != 3 || e.Duration("BADD", time.Second) != time.Second {
		t.Fatal("a bad value must fall back to the default")
	}
	err := e.Err()
	if err == nil || !strings.Contains(err.Error(), "BADI") || !strings.Contains(err.Error(), "BADD") {
		t.Fatalf("Err = %v, want both bad variables named", err)
	}
}
