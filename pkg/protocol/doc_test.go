package protocol_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/secure-messenger/messenger/pkg/protocol"
)

// These tests keep docs/protocol.md honest where that is cheap: every
// message type, every field of an application message and every error
// code that the code knows must have its row in the document's tables,
// and every "§N.M" the document cites must exist.

const protocolDoc = "../../docs/protocol.md"

// docSection returns the text of the section whose heading starts with
// heading ("### 8.2 "), up to the next heading of the same or a higher
// level.
func docSection(t *testing.T, doc, heading string) string {
	t.Helper()
	i := strings.Index(doc, "\n"+heading)
	if i < 0 {
		t.Fatalf("docs/protocol.md has no heading %q", heading)
	}
	rest := doc[i+1:]
	level := strings.Index(heading, " ")
	next := regexp.MustCompile(`\n#{1,` + strconv.Itoa(level) + `} `).FindStringIndex(rest[1:])
	if next == nil {
		return rest
	}
	return rest[:next[0]+1]
}

// tableKeys returns, for every table row of text, the backquoted names in
// its first cell ("| `a`, `b` | …" gives a and b).
func tableKeys(text string) map[string]bool {
	keys := map[string]bool{}
	name := regexp.MustCompile("`([^`]+)`")
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		if !strings.HasPrefix(line, "| ") || i+1 < len(lines) && strings.HasPrefix(lines[i+1], "|---") {
			continue // not a row, or a table's header
		}
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
			keys[m[1]] = true
		}
	}
	return keys
}

func readDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(protocolDoc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// messageTypes returns the values of the Msg* constants of app.go, by name.
func messageTypes(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "app.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if !strings.HasPrefix(n.Name, "Msg") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				types[n.Name] = v
			}
		}
	}
	if len(types) < 40 {
		t.Fatalf("found only %d message types in app.go: the parsing is broken", len(types))
	}
	return types
}

// isRequest reports whether t is a request type: ValidateRequest knows it.
func isRequest(typ string) bool {
	err := protocol.ValidateRequest(&protocol.Message{Type: typ, ID: testUUID, TS: 1})
	return err == nil || !strings.Contains(err.Error(), "unknown request type")
}

// pushedRequests are request types the server also sends (§8.6).
var pushedRequests = map[string]bool{protocol.MsgStream: true, protocol.MsgConvStream: true}

func TestProtocolDocListsEveryMessageType(t *testing.T) {
	doc := readDoc(t)
	requests := tableKeys(docSection(t, doc, "### 8.2 "))
	server := tableKeys(docSection(t, doc, "### 8.3 "))
	for name, typ := range messageTypes(t) {
		if isRequest(typ) {
			if !requests[typ] {
				t.Errorf("%s (%q) is a request, but docs/protocol.md §8.2's table has no row for it", name, typ)
			}
			if pushedRequests[typ] && !server[typ] {
				t.Errorf("%s (%q) is also pushed by the server, but §8.3's table has no row for it", name, typ)
			}
			continue
		}
		if !server[typ] {
			t.Errorf("%s (%q) is a server message, but docs/protocol.md §8.3's table has no row for it", name, typ)
		}
		if requests[typ] {
			t.Errorf("%s (%q) is not a request, but §8.2's table lists it as one", name, typ)
		}
	}
	known := map[string]bool{}
	for _, typ := range messageTypes(t) {
		known[typ] = true
	}
	pinned := map[string]bool{}
	for _, m := range goldenAppMessages {
		pinned[m.Type] = true
	}
	for name, typ := range messageTypes(t) {
		if !pinned[typ] {
			t.Errorf("%s (%q) has no line in testdata/golden/app_messages.jsonl (goldenAppMessages), which docs/protocol.md §8.2 says pins every type", name, typ)
		}
	}
	for typ := range requests {
		if !known[typ] {
			t.Errorf("§8.2's table lists %q, which app.go does not define", typ)
		}
	}
}

// jsonNames returns the JSON names of the fields of a struct type.
func jsonNames(v any) []string {
	var names []string
	rt := reflect.TypeOf(v)
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}

func TestProtocolDocListsEveryField(t *testing.T) {
	doc := readDoc(t)
	envelope := tableKeys(docSection(t, doc, "### 8.1 "))
	for _, name := range jsonNames(protocol.Message{}) {
		if !envelope[name] {
			t.Errorf("field %q of protocol.Message has no row in docs/protocol.md §8.1's field table", name)
		}
	}
	session := tableKeys(docSection(t, doc, "### 8.3 "))
	for _, name := range jsonNames(protocol.SessionInfo{}) {
		if !session[name] {
			t.Errorf("field %q of protocol.SessionInfo has no row in §8.3's session table", name)
		}
	}
	history := tableKeys(docSection(t, doc, "### 8.4 "))
	conv := tableKeys(docSection(t, doc, "### 8.5 "))
	stream := tableKeys(docSection(t, doc, "### 8.6 "))
	for _, c := range []struct {
		names   []string
		section map[string]bool
		where   string
	}{
		{[]string{"mid", "seq", "epoch", "head", "after", "before", "limit", "more", "msgs", "rooms"}, history, "§8.4"},
		{[]string{"conv", "version", "envelope", "envelopes", "record", "convs"}, conv, "§8.5"},
		{[]string{"stream", "event", "reason"}, stream, "§8.6"},
	} {
		for _, name := range c.names {
			if !c.section[name] {
				t.Errorf("field %q has no row in %s's field table", name, c.where)
			}
		}
	}
}

func TestProtocolDocListsEveryErrorCode(t *testing.T) {
	codes := docSection(t, readDoc(t), "### 13.2 ")
	row := regexp.MustCompile("(?m)^\\| (\\d+) \\| `([a-z_]+)` \\| ([^|]+) \\|")
	documented := map[int]string{}
	fatal := map[int]string{}
	for _, m := range row.FindAllStringSubmatch(codes, -1) {
		n, _ := strconv.Atoi(m[1])
		documented[n], fatal[n] = m[2], strings.TrimSpace(m[3])
	}
	n := 1
	for ; !strings.HasPrefix(protocol.Code(n).String(), "code_"); n++ {
		c := protocol.Code(n)
		switch {
		case documented[n] == "":
			t.Errorf("code %d (%s) has no row in docs/protocol.md §13.2", n, c.String())
		case documented[n] != c.String():
			t.Errorf("§13.2 names code %d %q, the code %q", n, documented[n], c.String())
		case fatal[n] == "yes" && !c.Fatal(), fatal[n] == "no" && c.Fatal():
			t.Errorf("§13.2 says code %d (%s) is fatal: %q, the code says %v", n, c.String(), fatal[n], c.Fatal())
		}
	}
	if n < 28 {
		t.Fatalf("found only %d codes", n-1)
	}
	for d, name := range documented {
		if d >= n {
			t.Errorf("§13.2 documents code %d (%s), which codes.go does not define", d, name)
		}
	}
}

// TestProtocolDocReferences checks that every section the document cites
// ("§8.4", "§10.3") exists, and that its contents list names every
// top-level section.
func TestProtocolDocReferences(t *testing.T) {
	doc := readDoc(t)
	headings := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#{2,4} (\d+[a-z]?(?:\.\d+)*)\.? `).FindAllStringSubmatch(doc, -1) {
		headings[m[1]] = true
	}
	if !headings["8.6"] || !headings["16"] {
		t.Fatalf("headings not found: %v", headings)
	}
	// References into other documents ("e2e.md §4", "`docs/security.md`
	// §3") name their own sections.
	other := regexp.MustCompile("(?:e2e\\.md|security\\.md|README)[`\\])]*[^§\\n.;]{0,40}$")
	for _, m := range regexp.MustCompile(`§(\d+(?:\.\d+)*)`).FindAllStringSubmatchIndex(doc, -1) {
		ref := doc[m[2]:m[3]]
		before := doc[max(0, m[0]-60):m[0]]
		if other.MatchString(before) {
			continue
		}
		if !headings[ref] {
			t.Errorf("docs/protocol.md cites §%s, which has no heading (…%s§%s)", ref, before, ref)
		}
	}
}

// TestProtocolDocCitedSectionsExist checks the other documents' citations
// of docs/protocol.md ("protocol §10.5", "protocol.md` §3.1"): each names
// a section that exists.
func TestProtocolDocCitedSectionsExist(t *testing.T) {
	doc := readDoc(t)
	headings := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#{2,4} (\d+(?:\.\d+)*)\.? `).FindAllStringSubmatch(doc, -1) {
		headings[m[1]] = true
	}
	cite := regexp.MustCompile("protocol(?:\\.md)?`?\\)?,? §(\\d+(?:\\.\\d+)*)")
	for _, file := range []string{"../../docs/security.md", "../../docs/e2e.md", "../../docs/benchmarks.md", "../../README.md", "../../deploy/README.md"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range cite.FindAllStringSubmatch(string(b), -1) {
			if !headings[m[1]] {
				t.Errorf("%s cites protocol §%s, which docs/protocol.md does not have", file, m[1])
			}
		}
	}
}
