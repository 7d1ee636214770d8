package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProtocolDocVectors: the golden values docs/protocol.md §8.5 prints
// for rec-1 and rec-4 are those of the golden file, so that the document
// cannot drift from the vectors it points to.
func TestProtocolDocVectors(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "protocol.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "#### Golden vectors of a conversation")
	if !ok {
		t.Fatal("docs/protocol.md has no golden vector section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	raw, err := os.ReadFile(filepath.Join("testdata", "golden", goldenFile))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Conversation string `json:"conversation"`
		Envelopes    []struct {
			Name            string            `json:"name"`
			ConversationKey string            `json:"conversation_key"`
			RecordKeys      map[string]string `json:"record_keys"`
		} `json:"envelopes"`
		Records []struct {
			Name       string `json:"name"`
			Envelope   string `json:"envelope"`
			MessageID  string `json:"message_id"`
			IV         string `json:"iv"`
			Text       string `json:"text"`
			Header     string `json:"header"`
			Ciphertext string `json:"ciphertext"`
		} `json:"records"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	want := []string{v.Conversation}
	for _, r := range v.Records {
		if r.Name != "rec-1" && r.Name != "rec-4" {
			continue
		}
		want = append(want, "(`"+r.Name+"`", r.MessageID, "iv                "+r.IV, "header            "+r.Header, "ciphertext        "+r.Ciphertext, r.Text)
		for _, e := range v.Envelopes {
			if e.Name == r.Envelope {
				want = append(want, "conversation_key  "+e.ConversationKey)
				for _, k := range e.RecordKeys {
					want = append(want, k)
				}
			}
		}
	}
	if len(want) < 15 {
		t.Fatalf("golden file lacks rec-1 or rec-4 (%d values)", len(want))
	}
	for _, w := range want {
		if !strings.Contains(section, w) {
			t.Errorf("docs/protocol.md's golden section lacks %q", w)
		}
	}
}
