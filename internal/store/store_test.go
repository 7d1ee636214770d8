package store

import (
	"errors"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func TestNormalizeName(t *testing.T) {
	cases := []struct {
		in, want string // want "" means rejected
	}{
		{"alice", "alice"},
		{"Alice", "alice"},
		{"A", "a"},
		{"0", "0"},
		{"a.b-c_d", "a.b-c_d"},
		{"x..", "x.."},
		{strings.Repeat("a", 32), strings.Repeat("a", 32)},
		{strings.Repeat("a", 33), ""},
		{"", ""},
		{".a", ""},
		{"-a", ""},
		{"_a", ""},
		{"a b", ""},
		{"a/b", ""},
		{"a'b", ""},
		{"a;b", ""},
		{"ä", ""},
		{"\u212A", ""},   // Kelvin sign: strings.ToLower would make it "k"
		{"\u0130", ""},   // dotted capital I
		{"a\x00", ""},    // NUL
		{"ａｂｃ", ""},      // full-width letters
		{"ab\u200b", ""}, // zero-width space
	}
	for _, c := range cases {
		got, err := normalizeName("user.name", c.in, MaxUserNameLen)
		if c.want == "" {
			var fe *FieldError
			if !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) || fe.Field != "user.name" {
				t.Errorf("normalizeName(%q) = %q, %v; want a user.name FieldError", c.in, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("normalizeName(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)

func FuzzNormalizeName(f *testing.F) {
	for _, s := range []string{"alice", "Bob.Smith-2", "_x", "a'; DROP TABLE users;--", "\u212Aelvin", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := normalizeName("room.name", in, MaxRoomNameLen)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			return
		}
		if !validName.MatchString(got) || len(got) > MaxRoomNameLen {
			t.Fatalf("normalizeName(%q) accepted %q", in, got)
		}
		if !strings.EqualFold(in, got) || len(in) != len(got) {
			t.Fatalf("normalizeName(%q) = %q, not the input lower-cased", in, got)
		}
		if again, err := normalizeName("room.name", got, MaxRoomNameLen); err != nil || again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, got, again, err)
		}
	})
}

func TestMigrationsMatchAcrossDialects(t *testing.T) {
	versions := map[string][]int{}
	for _, dialect := range []string{"sqlite", "postgres"} {
		ms, err := loadMigrations(migrationFiles, "migrations/"+dialect)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			versions[dialect] = append(versions[dialect], m.version)
		}
	}
	if !slices.Equal(versions["sqlite"], versions["postgres"]) {
		t.Errorf("sqlite has versions %v, postgres %v: every schema change needs both", versions["sqlite"], versions["postgres"])
	}
}

func TestLoadMigrations(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	cases := []struct {
		name    string
		files   fstest.MapFS
		want    []int // nil: error expected
		wantSQL string
	}{
		{"ordered by number", fstest.MapFS{
			"m/0002_b.sql": file("two"), "m/0001_a.sql": file("one"), "m/0010_c.sql": file("ten"),
			"m/0003_x.sql": file("3"), "m/0004_x.sql": file("4"), "m/0005_x.sql": file("5"),
			"m/0006_x.sql": file("6"), "m/0007_x.sql": file("7"), "m/0008_x.sql": file("8"), "m/0009_x.sql": file("9"),
		}, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, "one"},
		{"gap", fstest.MapFS{"m/0001_a.sql": file(""), "m/0003_c.sql": file("")}, nil, ""},
		{"duplicate version", fstest.MapFS{"m/0001_a.sql": file(""), "m/01_b.sql": file("")}, nil, ""},
		{"starts at 2", fstest.MapFS{"m/0002_a.sql": file("")}, nil, ""},
		{"bad name", fstest.MapFS{"m/0001_a.sql": file(""), "m/0002-b.sql": file("")}, nil, ""},
		{"empty dir", fstest.MapFS{"m": &fstest.MapFile{Mode: fs.ModeDir}}, nil, ""},
		{"missing dir", fstest.MapFS{}, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ms, err := loadMigrations(c.files, "m")
			if c.want == nil {
				if err == nil {
					t.Fatalf("loaded %v, want an error", ms)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, m := range ms {
				got = append(got, m.version)
			}
			if !slices.Equal(got, c.want) || ms[0].sql != c.wantSQL {
				t.Errorf("versions %v (first %q), want %v (first %q)", got, ms[0].sql, c.want, c.wantSQL)
			}
		})
	}
}
