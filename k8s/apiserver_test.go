//go:build k8sapi

// The test against a real API server: etcd and kube-apiserver on loopback,
// every kustomization applied with server-side dry run and strict field
// validation, then `sidecar webhook` registered with the injector's own
// MutatingWebhookConfiguration and an annotated Deployment's pod created
// through the API server and read back with Floodgate injected.
//
// Run it with `make test-k8s`, which installs etcd and builds
// kube-apiserver (hack/kube-apiserver/build.sh) first. It finds them
// through $ETCD (default: etcd on PATH), $KUBE_APISERVER (default: the
// build script's cache) and $FLOODGATE_SIDECAR (default: go build
// ./cmd/sidecar).

package k8s_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/floodgate/floodgate/pkg/inject"
)

const kubeVersion = "v1.37.2"

// pki is the test's certificate authority and what it signed.
type pki struct {
	dir            string
	caPEM          []byte
	ca             *x509.Certificate
	caKey          *ecdsa.PrivateKey
	serverCert     string // 127.0.0.1, for kube-apiserver and the webhook
	serverKey      string
	clientCertPEM  []byte // O=system:masters
	clientKeyPEM   []byte
	saPub, saKey   string
	caFile         string
	clientCAFile   string
	serverCertPEMs []byte
}

func writePEM(t *testing.T, path, typ string, der []byte) []byte {
	t.Helper()
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

func newPKI(t *testing.T, dir string) *pki {
	t.Helper()
	p := &pki{dir: dir}
	var err error
	p.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "floodgate-test-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caFile = filepath.Join(dir, "ca.crt")
	p.caPEM = writePEM(t, p.caFile, "CERTIFICATE", der)
	p.clientCAFile = p.caFile

	sign := func(name string, tmpl *x509.Certificate) (certPEM, keyPEM []byte, certFile, keyFile string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		return writePEM(t, certFile, "CERTIFICATE", der), writePEM(t, keyFile, "EC PRIVATE KEY", kder), certFile, keyFile
	}
	p.serverCertPEMs, _, p.serverCert, p.serverKey = sign("server", &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	p.clientCertPEM, p.clientKeyPEM, _, _ = sign("admin", &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "floodgate-test", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p.saKey, p.saPub = filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	writePEM(t, p.saKey, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey))
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, p.saPub, "PUBLIC KEY", pub)
	return p
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs a process for the test's lifetime, its output in a log file
// that is printed if the test fails.
func start(t *testing.T, dir, name, bin string, args ...string) {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("--- last of %s's log:\n%s", name, b)
			}
		}
	})
}

// waitFor polls check until it succeeds or the deadline passes. It waits
// for processes to come up, not for anything the test asserts on.
func waitFor(t *testing.T, what string, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not ready after %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func binary(t *testing.T, env, fallback string) string {
	t.Helper()
	if v := os.Getenv(env); v != "" {
		return v
	}
	return fallback
}

// cluster is a running API server and clients for it.
type cluster struct {
	pki       *pki
	config    *rest.Config
	clientset *kubernetes.Clientset
	dynamic   *dynamic.DynamicClient
	mapper    *restmapper.DeferredDiscoveryRESTMapper
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	etcd, err := exec.LookPath(binary(t, "ETCD", "etcd"))
	if err != nil {
		t.Fatalf("etcd: %v (make test-k8s installs etcd-server)", err)
	}
	home, _ := os.UserHomeDir()
	kas := binary(t, "KUBE_APISERVER", filepath.Join(home, ".cache", "floodgate", "kube-apiserver-"+kubeVersion))
	if _, err := os.Stat(kas); err != nil {
		t.Fatalf("kube-apiserver: %v (make test-k8s builds it with hack/kube-apiserver/build.sh)", err)
	}
	dir := t.TempDir()
	p := newPKI(t, dir)

	clientPort, peerPort := freePort(t), freePort(t)
	clientURL, peerURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort), fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	start(t, dir, "etcd", etcd,
		"--name=test", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+clientURL, "--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=test="+peerURL, "--logger=zap", "--log-outputs=stderr")
	waitFor(t, "etcd", 30*time.Second, func() error {
		resp, err := http.Get(clientURL + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})

	apiPort := freePort(t)
	start(t, dir, "kube-apiserver", kas,
		"--etcd-servers="+clientURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", apiPort),
		"--tls-cert-file="+p.serverCert, "--tls-private-key-file="+p.serverKey,
		"--client-ca-file="+p.clientCAFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+p.saPub, "--service-account-signing-key-file="+p.saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--cert-dir="+filepath.Join(dir, "apiserver-certs"),
		// No kube-controller-manager or nodes here: keep the API server
		// from maintaining endpoints for itself.
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
	)
	cfg := &rest.Config{
		Host:            fmt.Sprintf("https://127.0.0.1:%d", apiPort),
		TLSClientConfig: rest.TLSClientConfig{CAData: p.caPEM, CertData: p.clientCertPEM, KeyData: p.clientKeyPEM},
		QPS:             200, Burst: 400,
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "kube-apiserver", 90*time.Second, func() error {
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background())
		if err != nil {
			return fmt.Errorf("%w: %s", err, body)
		}
		return nil
	})
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{pki: p, config: cfg, clientset: cs, dynamic: dyn,
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))}
}

// apply applies one manifest with server-side apply; with dryRun nothing
// is stored. Field validation is Strict: a field the server's schema does
// not know fails the request.
func (c *cluster) apply(ctx context.Context, y []byte, namespace string, dryRun bool) error {
	js, err := sigsyaml.YAMLToJSON(y)
	if err != nil {
		return err
	}
	var u unstructured.Unstructured
	if err := u.UnmarshalJSON(js); err != nil {
		return err
	}
	gvk := u.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		c.mapper.Reset()
		if m, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			return fmt.Errorf("%s: %w", gvk, err)
		}
	}
	var ri dynamic.ResourceInterface = c.dynamic.Resource(m.Resource)
	if m.Scope.Name() == "namespace" {
		if u.GetNamespace() == "" {
			u.SetNamespace(namespace)
		}
		ri = c.dynamic.Resource(m.Resource).Namespace(u.GetNamespace())
	}
	body, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	opts := metav1.PatchOptions{FieldManager: "floodgate-test", Force: new(true), FieldValidation: "Strict"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, body, opts)
	return err
}

func (c *cluster) createNamespace(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := c.clientset.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// No controller-manager creates the default ServiceAccount, which the
	// ServiceAccount admission plugin wants for pods that name none.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	if _, err := c.clientset.CoreV1().ServiceAccounts(name).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) installCRDs(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	data, err := os.ReadFile("testdata/crds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, doc := range bytes.Split(data, []byte("\n---\n")) {
		var crd struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := sigsyaml.Unmarshal(doc, &crd); err != nil {
			t.Fatal(err)
		}
		if err := c.apply(ctx, doc, "", false); err != nil {
			t.Fatalf("CRD %s: %v", crd.Metadata.Name, err)
		}
		names = append(names, crd.Metadata.Name)
	}
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, name := range names {
		waitFor(t, "CRD "+name, 30*time.Second, func() error {
			u, err := c.dynamic.Resource(gvr).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, cond := range conds {
				m, _ := cond.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return nil
				}
			}
			return errors.New("not established")
		})
	}
	c.mapper.Reset()
}

func TestAPIServer(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	c.installCRDs(t)

	t.Run("dry-run apply", func(t *testing.T) {
		for _, b := range allBuilds(t) {
			ns := "dryrun-" + strings.ReplaceAll(b.name, "+", "-")
			c.createNamespace(t, ns, nil)
			// Namespaces the build itself creates must exist for real for
			// a dry run of the objects in them.
			for _, o := range b.objects {
				if o.kind == "Namespace" {
					if err := c.apply(ctx, o.yaml, "", false); err != nil {
						t.Fatalf("%s: Namespace %s: %v", b.name, o.name, err)
					}
				}
			}
			// So must those that another installation creates (Envoy
			// Gateway's envoy-gateway-system, which its chart makes).
			for _, o := range b.objects {
				var meta struct {
					Metadata metav1.ObjectMeta `json:"metadata"`
				}
				if err := sigsyaml.Unmarshal(o.yaml, &meta); err != nil {
					t.Fatal(err)
				}
				if n := meta.Metadata.Namespace; n != "" {
					doc := fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", n)
					if err := c.apply(ctx, []byte(doc), "", false); err != nil {
						t.Fatalf("%s: Namespace %s: %v", b.name, n, err)
					}
				}
			}
			for _, o := range b.objects {
				if err := c.apply(ctx, o.yaml, ns, true); err != nil {
					t.Errorf("%s: %s %s: %v", b.name, o.kind, o.name, err)
				}
			}
			t.Logf("%s: %d objects accepted (server-side apply, dry run, strict field validation)", b.name, len(b.objects))
		}
	})

	// The dry runs above would prove little if the server let mistakes
	// through: it must refuse an unknown field, in a built-in kind and in
	// a custom one, and a value its validation rejects.
	t.Run("dry-run refuses mistakes", func(t *testing.T) {
		c.createNamespace(t, "mistakes", nil)
		tests := []struct{ name, yaml, want string }{
			{"unknown field", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}], selectr: {a: b}}\n", ".spec.selectr: field not declared in schema"},
			{"invalid value", "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: p}\nspec: {maxUnavailable: -1, selector: {matchLabels: {a: b}}}\n", "maxUnavailable"},
			{"unknown field in a custom kind", "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: m}\nspec: {selector: {}, endpoints: [{prot: metrics}]}\n", ".spec.endpoints[0].prot: field not declared in schema"},
		}
		for _, tt := range tests {
			if err := c.apply(ctx, []byte(tt.yaml), "mistakes", true); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s: err = %v, want one containing %q", tt.name, err, tt.want)
			}
		}
	})

	t.Run("webhook", func(t *testing.T) { testWebhook(t, c) })
}

// sidecarBinary returns the sidecar program: $FLOODGATE_SIDECAR, or a fresh
// build of ./cmd/sidecar.
func sidecarBinary(t *testing.T) string {
	t.Helper()
	if v := os.Getenv("FLOODGATE_SIDECAR"); v != "" {
		return v
	}
	out := filepath.Join(t.TempDir(), "sidecar")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/sidecar")
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/sidecar: %v\n%s", err, b)
	}
	return out
}

func testWebhook(t *testing.T, c *cluster) {
	ctx := context.Background()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	start(t, c.pki.dir, "sidecar-webhook", sidecarBinary(t), "webhook",
		"--addr="+addr, "--tls-cert="+c.pki.serverCert, "--tls-key="+c.pki.serverKey, "--log-level=debug")
	pool := x509.NewCertPool()
	pool.AddCert(c.pki.ca)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	waitFor(t, "sidecar webhook", 30*time.Second, func() error {
		resp, err := hc.Get("https://" + addr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})

	// The injector's own configuration, pointed at the webhook on loopback
	// instead of its in-cluster Service.
	var injector build
	for _, b := range allBuilds(t) {
		if b.name == "injector" {
			injector = b
		}
	}
	cfg := find[*admissionregv1.MutatingWebhookConfiguration](injector, "MutatingWebhookConfiguration", "").DeepCopy()
	cfg.ResourceVersion = ""
	url := "https://" + addr + "/mutate"
	cfg.Webhooks[0].ClientConfig = admissionregv1.WebhookClientConfig{URL: &url, CABundle: c.pki.caPEM}
	if _, err := c.clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
		t.Fatalf("registering the webhook: %v", err)
	}

	c.createNamespace(t, "shop", map[string]string{"floodgate.io/injection": "enabled"})
	c.createNamespace(t, "elsewhere", nil)

	src, err := os.ReadFile("testdata/annotated-deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var dep appsv1.Deployment
	if err := sigsyaml.UnmarshalStrict(src, &dep); err != nil {
		t.Fatal(err)
	}
	// What the ReplicaSet controller would create from the Deployment.
	podOf := func(tmpl corev1.PodTemplateSpec, name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: tmpl.Labels, Annotations: tmpl.Annotations}, Spec: tmpl.Spec}
	}
	pods := c.clientset.CoreV1().Pods("shop")

	// The API server picks up a new webhook configuration asynchronously:
	// dry-run creates (no side effects, nothing stored) until it is used.
	waitFor(t, "webhook registration", 30*time.Second, func() error {
		p, err := pods.Create(ctx, podOf(dep.Spec.Template, "probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		if p.Annotations[inject.AnnotationStatus] != "injected" {
			return errors.New("not injected yet")
		}
		return nil
	})

	created, err := pods.Create(ctx, podOf(dep.Spec.Template, "shop-0"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating the annotated pod: %v", err)
	}
	stored, err := pods.Get(ctx, created.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := dep.Spec.Template.DeepCopy()
	if _, err := inject.Mutate(want, inject.Options{}); err != nil {
		t.Fatal(err)
	}
	if got := stored.Annotations[inject.AnnotationStatus]; got != "injected" {
		t.Errorf("stored pod: %s = %q, want injected", inject.AnnotationStatus, got)
	}
	if got, w := names(stored.Spec.InitContainers), names(want.Spec.InitContainers); !slices.Equal(got, w) {
		t.Errorf("stored pod: init containers %q, want %q", got, w)
	}
	if got, w := names(stored.Spec.Containers), names(want.Spec.Containers); !slices.Equal(got, w) {
		t.Errorf("stored pod: containers %q, want %q", got, w)
	}
	if fg := containerIn(stored.Spec.InitContainers, inject.SidecarName); fg == nil {
		t.Fatalf("stored pod has no %s container", inject.SidecarName)
	} else {
		wfg := containerIn(want.Spec.InitContainers, inject.SidecarName)
		if fg.Image != inject.DefaultImage || !slices.Equal(fg.Args, wfg.Args) || fg.RestartPolicy == nil || *fg.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Errorf("stored sidecar: image %q args %q restartPolicy %v", fg.Image, fg.Args, fg.RestartPolicy)
		}
		if !isTrue(fg.SecurityContext.ReadOnlyRootFilesystem) || fg.StartupProbe == nil || fg.StartupProbe.GRPC == nil {
			t.Errorf("stored sidecar lost its securityContext or probes: %+v", fg)
		}
	}
	if i := slices.IndexFunc(stored.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == inject.LimitsVolume }); i < 0 ||
		stored.Spec.Volumes[i].ConfigMap == nil || stored.Spec.Volumes[i].ConfigMap.Name != "shop-limits" {
		t.Errorf("stored pod: no %s volume from ConfigMap shop-limits: %+v", inject.LimitsVolume, stored.Spec.Volumes)
	}
	t.Logf("stored pod %s/%s: init containers %q, containers %q", stored.Namespace, stored.Name, names(stored.Spec.InitContainers), names(stored.Spec.Containers))

	// Envoy mode by annotation.
	envoyTmpl := dep.Spec.Template.DeepCopy()
	envoyTmpl.Annotations[inject.AnnotationMode] = "envoy"
	p, err := pods.Create(ctx, podOf(*envoyTmpl, "shop-envoy"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("envoy mode: %v", err)
	}
	if got, w := names(p.Spec.InitContainers), []string{inject.SidecarName, inject.EnvoyName}; !slices.Equal(got, w) {
		t.Errorf("envoy mode: init containers %q, want %q", got, w)
	}

	// Not annotated: untouched (the matchCondition keeps it from the webhook).
	plain := dep.Spec.Template.DeepCopy()
	plain.Annotations = nil
	p, err = pods.Create(ctx, podOf(*plain, "plain"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Spec.InitContainers) != 0 || p.Annotations[inject.AnnotationStatus] != "" {
		t.Errorf("a pod without the annotation was changed: %q", names(p.Spec.InitContainers))
	}

	// Annotated, in a namespace that did not opt in: untouched.
	p, err = c.clientset.CoreV1().Pods("elsewhere").Create(ctx, podOf(dep.Spec.Template, "other"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Spec.InitContainers) != 0 {
		t.Errorf("a pod in a namespace without floodgate.io/injection=enabled was injected")
	}

	// A wrong annotation: refused, with the reason.
	typo := dep.Spec.Template.DeepCopy()
	typo.Annotations[inject.AnnotationInject] = "yes"
	_, err = pods.Create(ctx, podOf(*typo, "typo"), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), `floodgate.io/inject: "yes": must be "true" or "false"`) {
		t.Errorf("a pod with floodgate.io/inject: yes: err = %v, want a refusal that says why", err)
	}

	// What `sidecar inject` writes is accepted as it is (and the webhook,
	// seeing it already injected, leaves it alone).
	for _, mode := range []inject.Mode{inject.ModeSidecar, inject.ModeEnvoy} {
		out, _, err := inject.Manifests(src, inject.Options{Mode: mode})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.apply(ctx, out, "shop", true); err != nil {
			t.Errorf("sidecar inject --mode=%s output: %v", mode, err)
		}
	}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func containerIn(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}
