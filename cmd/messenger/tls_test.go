package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/secure-messenger/messenger/internal/syncbuf"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a pool that trusts it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestRunTLS: with -tls-cert/-tls-key (here from the environment twins)
// the server speaks HTTPS and WSS itself, sends HSTS, and its default
// public origin is https://, so a page on http:// may not connect.
func TestRunTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	env := map[string]string{"MESSENGER_TLS_CERT": certFile, "MESSENGER_TLS_KEY": keyFile}
	ctx, cancel := context.WithCancel(context.Background())
	out, logs := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-data", t.TempDir(), "-identity-bits", "2048"}, func(k string) string { return env[k] }, out, logs)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	var addr string
	for deadline := time.Now().Add(60 * time.Second); addr == ""; {
		if m := listenRE.FindStringSubmatch(out.String()); m != nil && strings.Contains(out.String(), "(TLS)") && fpRE.MatchString(out.String()) {
			addr = m[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not start: %s\n%s", out.String(), logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	tlsConf := &tls.Config{RootCAs: pool}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf}, Timeout: 30 * time.Second}
	resp, err := hc.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") == "" || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("GET https /healthz: %d, headers %v", resp.StatusCode, resp.Header)
	}
	// Plain HTTP on the TLS port gets no page.
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP served on the TLS listener")
		}
	}
	d := websocket.Dialer{TLSClientConfig: tlsConf, HandshakeTimeout: 30 * time.Second}
	ws, _, err := d.Dial("wss://"+addr+"/ws", http.Header{"Origin": {"https://" + addr}})
	if err != nil {
		t.Fatalf("wss upgrade from the https origin: %v", err)
	}
	ws.Close()
	_, resp, err = d.Dial("wss://"+addr+"/ws", http.Header{"Origin": {"http://" + addr}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("wss upgrade from the http origin: %v %v, want 403", resp, err)
	}
}

// TestTLSOptions: what each bad combination gets, and the ACME cache.
func TestTLSOptions(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-tls-cert", "c.pem"}, "go together"},
		{[]string{"-tls-key", "k.pem"}, "go together"},
		{[]string{"-tls-cert", "c.pem", "-tls-key", "k.pem", "-acme-domain", "chat.example.org"}, "exclude each other"},
		{[]string{"-acme-email", "a@example.org"}, "needs -acme-domain"},
		{[]string{"-acme-domain", "https://chat.example.org"}, "want a host name"},
		{[]string{"-acme-domain", "*.example.org"}, "want a host name"},
	} {
		_, err := parseOptions(c.args, func(string) string { return "" }, &strings.Builder{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	o, err := parseOptions(nil, func(k string) string {
		return map[string]string{"MESSENGER_ACME_DOMAIN": "chat.example.org, chat2.example.org", "MESSENGER_ACME_EMAIL": "ops@example.org"}[k]
	}, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg, err := o.tls.config(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, "acme")); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("acme cache: %v %v", st, err)
	}
	if cfg.GetCertificate == nil || !strings.Contains(strings.Join(cfg.NextProtos, ","), "acme-tls/1") {
		t.Fatalf("ACME TLS config: %+v", cfg)
	}
	// A name outside the list gets no certificate (and no request to the CA).
	if _, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "other.example.org"}); err == nil {
		t.Fatal("certificate for a name not in -acme-domain")
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	got := strings.Join(o.tls.origins(ln.Addr()), " ")
	if !strings.HasPrefix(got, "https://chat.example.org:") || !strings.Contains(got, "https://chat2.example.org:") {
		t.Fatalf("ACME origins %q", got)
	}
	if _, err := (tlsOptions{certFile: "missing.pem", keyFile: "missing.pem"}).config(dir); err == nil {
		t.Fatal("missing certificate files accepted")
	}
}
