package inject

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxReviewBytes bounds an AdmissionReview request body. The API server
// limits objects to about 3 MiB; a pod is far smaller.
const maxReviewBytes = 4 << 20

// Webhook answers the API server's AdmissionReview (admission.k8s.io/v1)
// for Pods with the JSON patch that Patch computes. Pods that do not ask
// for injection, or already have it, are allowed unchanged; a pod that asks
// with wrong annotations is denied with the reason, which the API server
// passes on to whoever created it (for a Deployment's pods, the ReplicaSet's
// FailedCreate events).
type Webhook struct {
	// Options configure the mutation.
	Options Options
	// Log receives one line per mutated or denied pod.
	Log *slog.Logger
}

// ServeHTTP handles POST /mutate.
func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(rw, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, maxReviewBytes))
	if err != nil {
		http.Error(rw, fmt.Sprintf("reading the request: %v", err), http.StatusRequestEntityTooLarge)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(rw, fmt.Sprintf("not an AdmissionReview with a request: %v", err), http.StatusBadRequest)
		return
	}
	resp := w.Review(review.Request)
	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp}
	if out.APIVersion == "" {
		out.APIVersion, out.Kind = "admission.k8s.io/v1", "AdmissionReview"
	}
	js, err := json.Marshal(out)
	if err != nil {
		http.Error(rw, fmt.Sprintf("encoding the response: %v", err), http.StatusInternalServerError)
		return
	}
	rw.Header().Set("Content-Type", "application/json")
	_, _ = rw.Write(js)
}

// Review decides one admission request.
func (w *Webhook) Review(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	deny := func(code int32, err error) *admissionv1.AdmissionResponse {
		resp.Allowed = false
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: code, Message: "floodgate injector: " + err.Error()}
		return resp
	}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" {
		// The configuration sends only pods; anything else is let through
		// untouched rather than blocked by a misconfigured rule.
		return resp
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return deny(http.StatusBadRequest, fmt.Errorf("decoding the pod: %w", err))
	}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec}
	ops, err := Patch(&tmpl, w.Options)
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	if err != nil {
		w.log().Warn("injection refused", "namespace", req.Namespace, "pod", name, "err", err.Error())
		return deny(http.StatusUnprocessableEntity, err)
	}
	if len(ops) == 0 {
		return resp
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return deny(http.StatusInternalServerError, fmt.Errorf("encoding the patch: %w", err))
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	w.log().Info("injected", "namespace", req.Namespace, "pod", name, "operations", len(ops), "dry_run", req.DryRun != nil && *req.DryRun)
	return resp
}

func (w *Webhook) log() *slog.Logger {
	if w.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Log
}

// CertFiles serves a TLS certificate and key from files and picks up new
// ones when the files change, as they do when cert-manager renews a Secret
// that the kubelet then updates in the pod: no restart, no dropped
// connection. A failed reload (say, a new certificate beside the old key
// while the files are being swapped) keeps serving the previous pair and
// is retried on the next handshake.
type CertFiles struct {
	CertFile, KeyFile string
	// Log receives reload events; nil discards them.
	Log *slog.Logger

	mu       sync.Mutex
	cert     *tls.Certificate
	certStat fileStamp
	keyStat  fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}, nil
}

// Load reads the files now; call it once at start so that bad files fail
// start-up instead of the first handshake.
func (c *CertFiles) Load() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reload()
}

func (c *CertFiles) reload() error {
	cs, err := stamp(c.CertFile)
	if err != nil {
		return fmt.Errorf("tls certificate: %w", err)
	}
	ks, err := stamp(c.KeyFile)
	if err != nil {
		return fmt.Errorf("tls key: %w", err)
	}
	if c.cert != nil && cs == c.certStat && ks == c.keyStat {
		return nil
	}
	pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return fmt.Errorf("tls key pair %s, %s: %w", c.CertFile, c.KeyFile, err)
	}
	reloaded := c.cert != nil
	c.cert, c.certStat, c.keyStat = &pair, cs, ks
	if reloaded && c.Log != nil {
		c.Log.Info("tls certificate reloaded", "cert", c.CertFile)
	}
	return nil
}

// GetCertificate is for tls.Config: it checks the files' modification time
// and size (two stat calls, cheap beside a handshake) and reloads them when
// either changed.
func (c *CertFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.reload(); err != nil {
		if c.cert == nil {
			return nil, err
		}
		if c.Log != nil {
			c.Log.Warn("tls certificate reload failed; serving the previous one", "err", err.Error())
		}
	}
	return c.cert, nil
}

// Server is the injector's HTTPS server: /mutate for the API server,
// /healthz and /readyz for the kubelet.
type Server struct {
	Webhook *Webhook
	Certs   *CertFiles
	Log     *slog.Logger
	// ShutdownTimeout bounds the wait for in-flight reviews on shutdown.
	ShutdownTimeout time.Duration
}

// Serve answers on ln until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := s.Certs.Load(); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/mutate", s.Webhook)
	ok := func(rw http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(rw, "ok\n") }
	mux.HandleFunc("/healthz", ok)
	mux.HandleFunc("/readyz", ok)
	srv := &http.Server{
		Handler: mux,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: s.Certs.GetCertificate,
		},
		ReadHeaderTimeout: 10 * time.Second,
		// The API server gives a webhook at most 30 s.
		ReadTimeout:  30 * time.Second,
		WriteTimeout: 30 * time.Second,
		ErrorLog:     slog.NewLogLogger(s.log().Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	s.log().Info("listening", "https", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	wait := s.ShutdownTimeout
	if wait <= 0 {
		wait = 10 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", err)
	}
	return nil
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}
