package inject

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

func review(t *testing.T, kind metav1.GroupVersionKind, object string) []byte {
	t.Helper()
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("8d5e0f0a-1111-2222-3333-444455556666"),
			Kind:      kind,
			Namespace: "retail",
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: []byte(object)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWebhookServeHTTP(t *testing.T) {
	t.Parallel()
	podKind := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	sidecarPod, err := os.ReadFile("testdata/webhook/sidecar.pod.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		kind        metav1.GroupVersionKind
		object      string
		wantAllowed bool
		wantPatch   bool
		wantMessage string
	}{
		{name: "annotated pod", kind: podKind, object: string(sidecarPod), wantAllowed: true, wantPatch: true},
		{name: "plain pod", kind: podKind, object: `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"i:1"}]}}`, wantAllowed: true},
		{name: "bad annotation", kind: podKind,
			object:      `{"metadata":{"name":"p","annotations":{"floodgate.io/inject":"true"}},"spec":{"containers":[{"name":"a","image":"i:1"}]}}`,
			wantMessage: "floodgate injector: annotation floodgate.io/config: required"},
		{name: "not a pod", kind: metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, object: `{}`, wantAllowed: true},
		{name: "broken pod", kind: podKind, object: `{"spec":{"containers":"nope"}}`, wantMessage: "decoding the pod"},
	}
	h := &Webhook{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(review(t, tt.kind, tt.object))))
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			var got admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			r := got.Response
			if got.APIVersion != "admission.k8s.io/v1" || got.Kind != "AdmissionReview" || r == nil {
				t.Fatalf("not an AdmissionReview response: %s", rec.Body)
			}
			if r.UID != "8d5e0f0a-1111-2222-3333-444455556666" {
				t.Errorf("uid = %q, want the request's", r.UID)
			}
			if r.Allowed != tt.wantAllowed {
				t.Errorf("allowed = %v, want %v (%v)", r.Allowed, tt.wantAllowed, r.Result)
			}
			if (len(r.Patch) > 0) != tt.wantPatch {
				t.Errorf("patch = %s, want one: %v", r.Patch, tt.wantPatch)
			}
			if tt.wantPatch && (r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch) {
				t.Errorf("patchType = %v, want JSONPatch", r.PatchType)
			}
			if tt.wantMessage != "" && (r.Result == nil || !strings.Contains(r.Result.Message, tt.wantMessage)) {
				t.Errorf("result = %+v, want a message with %q", r.Result, tt.wantMessage)
			}
		})
	}
}

func TestWebhookRejectsNonReviews(t *testing.T) {
	t.Parallel()
	h := &Webhook{}
	for _, tt := range []struct {
		method, body string
		want         int
	}{
		{http.MethodGet, "", http.StatusMethodNotAllowed},
		{http.MethodPost, "{", http.StatusBadRequest},
		{http.MethodPost, `{"kind":"AdmissionReview"}`, http.StatusBadRequest},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tt.method, "/mutate", strings.NewReader(tt.body)))
		if rec.Code != tt.want {
			t.Errorf("%s %q: status %d, want %d", tt.method, tt.body, rec.Code, tt.want)
		}
	}
}

// writeCert writes a fresh self-signed certificate for 127.0.0.1 with the
// given serial number, and stamps the files with mod so that a reload is
// seen even when two writes fall in one tick of the file system's clock.
func writeCert(t *testing.T, dir string, serial int64, mod time.Time) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "floodgate-injector"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	for path, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "EC PRIVATE KEY", Bytes: kder}} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// servedSerial connects and returns the serial of the certificate served.
func servedSerial(t *testing.T, addr string) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // the test reads the certificate, it trusts nothing
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestServerReloadsCertificates runs the server on loopback, replaces its
// certificate files, and sees the next handshake use the new certificate;
// a broken pair in between keeps the previous one in service.
func TestServerReloadsCertificates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	t0 := time.Now().Add(-time.Minute)
	certFile, keyFile := writeCert(t, dir, 1, t0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &Server{Webhook: &Webhook{}, Certs: &CertFiles{CertFile: certFile, KeyFile: keyFile}}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	addr := ln.Addr().String()

	if got := servedSerial(t, addr); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}
	// A half-written rotation: the certificate file is not PEM.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(certFile, t0.Add(time.Second), t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, addr); got != 1 {
		t.Fatalf("during a broken rotation: serial %d, want the previous 1", got)
	}
	writeCert(t, dir, 2, t0.Add(2*time.Second))
	if got := servedSerial(t, addr); got != 2 {
		t.Fatalf("after rotation: serial %d, want 2", got)
	}

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // as above
	resp, err := client.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
	client.CloseIdleConnections()
}

func TestServerFailsOnMissingCertificate(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := &Server{Webhook: &Webhook{}, Certs: &CertFiles{CertFile: "/nonexistent/tls.crt", KeyFile: "/nonexistent/tls.key"}}
	if err := srv.Serve(context.Background(), ln); err == nil || !strings.Contains(err.Error(), "tls certificate") {
		t.Errorf("Serve = %v, want a certificate error", err)
	}
}
