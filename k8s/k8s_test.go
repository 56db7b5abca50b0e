// Package k8s_test checks the Kubernetes manifests under k8s/ without a
// cluster: every kustomization builds with kustomize's own library, every
// object decodes strictly into its Go type (client-go's scheme; Istio's
// types for EnvoyFilters, whose patch values decode into Envoy's protos and
// pass their validation), and policy tests hold over all of them. The test
// against a real API server is in apiserver_test.go (build tag k8sapi).
package k8s_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	istionet "istio.io/api/networking/v1alpha3"
	istioclient "istio.io/client-go/pkg/apis/networking/v1alpha3"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"

	// Envoy extension types named by "@type" in the EnvoyFilter patches
	// and the base's Envoy config, registered for Any resolution.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"

	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/inject"
	"github.com/floodgate/floodgate/pkg/sidecar"
)

// A build is one kustomization the project ships (or a combination a user
// is told to make), built.
type build struct {
	name    string
	objects []object
}

// An object is one built manifest: its YAML and its decoded, typed form.
type object struct {
	apiVersion, kind, name string
	yaml                   []byte
	typed                  any // a client-go type, *istioclient.EnvoyFilter or *serviceMonitor
}

// kustomizations lists what is built: each directory a user applies, and
// production with the ServiceMonitor component, as its kustomization
// suggests. combine is the kustomization.yaml of a combination, empty for
// directories built as they are.
var kustomizations = []struct{ name, dir, combine string }{
	{name: "base", dir: "base"},
	{name: "dev", dir: "overlays/dev"},
	{name: "production", dir: "overlays/production"},
	{name: "production+servicemonitor", combine: "resources: [../../overlays/production]\ncomponents: [../../components/servicemonitor]\n"},
	{name: "istio", dir: "istio"},
	{name: "authz", dir: "overlays/authz"},
	{name: "istio-authz", dir: "overlays/istio-authz"},
	{name: "cache", dir: "overlays/cache"},
	{name: "injector", dir: "injector"},
}

var (
	buildsOnce sync.Once
	builds     []build
	buildsErr  error
)

// allBuilds builds every kustomization once per test binary.
func allBuilds(t *testing.T) []build {
	t.Helper()
	buildsOnce.Do(func() { builds, buildsErr = buildAll() })
	if buildsErr != nil {
		t.Fatal(buildsErr)
	}
	return builds
}

func buildAll() ([]build, error) {
	// The tree is copied into an in-memory file system, where combinations
	// get their own directory beside the rest (kustomize refuses absolute
	// paths, and the test must not write into the repo).
	fs := filesys.MakeFsInMemory()
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".json")) || strings.HasPrefix(path, "testdata") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return fs.WriteFile(filepath.Join("/k8s", path), data)
	})
	if err != nil {
		return nil, err
	}
	var out []build
	var errs []error
	for _, k := range kustomizations {
		dir := filepath.Join("/k8s", k.dir)
		if k.combine != "" {
			dir = filepath.Join("/k8s/.combinations", strings.ReplaceAll(k.name, "+", "-"))
			if err := fs.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k.combine)); err != nil {
				return nil, err
			}
		}
		b, err := kustomize(fs, k.name, dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, b)
	}
	return out, errors.Join(errs...)
}

// kustomize builds dir as `kubectl apply -k` would (root-only file
// loading) and decodes each object strictly.
func kustomize(fs filesys.FileSystem, name, dir string) (build, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, dir)
	if err != nil {
		return build{}, fmt.Errorf("%s: kustomize build: %w", name, err)
	}
	b := build{name: name}
	var errs []error
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", name, r.CurId(), err))
			continue
		}
		o := object{apiVersion: r.GetApiVersion(), kind: r.GetKind(), name: r.GetName(), yaml: y}
		if o.typed, err = decodeStrict(y); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s %s: %w", name, o.kind, o.name, err))
			continue
		}
		b.objects = append(b.objects, o)
	}
	return b, errors.Join(errs...)
}

// strictSerializer decodes into client-go's types and fails on unknown or
// duplicate fields.
var strictSerializer = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, kjson.SerializerOptions{Strict: true})

// decodeStrict decodes one manifest into its Go type, strictly.
func decodeStrict(y []byte) (any, error) {
	js, err := sigsyaml.YAMLToJSONStrict(y)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return nil, err
	}
	switch tm.GroupVersionKind().GroupKind().String() {
	case "EnvoyFilter.networking.istio.io":
		return decodeEnvoyFilter(js)
	case "ServiceEntry.networking.istio.io":
		return decodeServiceEntry(js)
	case "AuthorizationPolicy.security.istio.io":
		return decodeAuthorizationPolicy(js)
	case "ServiceMonitor.monitoring.coreos.com":
		var sm serviceMonitor
		return &sm, strictJSON(js, &sm)
	}
	obj, _, err := strictSerializer.Decode(js, nil, nil)
	if err != nil {
		return nil, err
	}
	return obj, nil
}

func strictJSON(js []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// serviceMonitor is the part of Prometheus Operator's monitoring.coreos.com/v1
// ServiceMonitor that the component uses; decoding into it strictly catches a
// misspelled or misplaced field without importing the operator's module
// (which brings controller-runtime). The API-server test applies the object
// against a CRD with the same schema, with field validation on.
type serviceMonitor struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// decodeEnvoyFilter decodes an EnvoyFilter into Istio's client-go type. The
// spec is an Istio protobuf message, read with protojson without discarding
// unknown fields: Istio's own JSON decoding of it would accept them.
func decodeEnvoyFilter(js []byte) (*istioclient.EnvoyFilter, error) {
	var shell struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        metav1.ObjectMeta `json:"metadata"`
		Spec            json.RawMessage   `json:"spec"`
	}
	if err := strictJSON(js, &shell); err != nil {
		return nil, err
	}
	ef := &istioclient.EnvoyFilter{TypeMeta: shell.TypeMeta, ObjectMeta: shell.Metadata}
	if err := protojson.Unmarshal(shell.Spec, &ef.Spec); err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	return ef, nil
}

func TestKustomizationsBuildAndDecodeStrictly(t *testing.T) {
	t.Parallel()
	for _, b := range allBuilds(t) {
		if len(b.objects) == 0 {
			t.Errorf("%s: built nothing", b.name)
		}
		var kinds []string
		for _, o := range b.objects {
			kinds = append(kinds, o.kind+"/"+o.name)
		}
		t.Logf("%s: %d objects: %s", b.name, len(b.objects), strings.Join(kinds, " "))
	}
}

// TestStrictDecodingCatches proves the decoder above fails on the mistakes
// it exists for.
func TestStrictDecodingCatches(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, yaml, want string }{
		{"unknown field", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {selectr: {a: b}}\n", `unknown field "spec.selectr"`},
		{"wrong type", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {replicas: two}\n", "replicas"},
		{"duplicate field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: x}\ndata: {b: y}\n", "already set"},
		{"unknown kind", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n", "no kind"},
		{"EnvoyFilter spec field", "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: e}\nspec: {configPatchez: []}\n", "configPatchez"},
		{"ServiceMonitor field", "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: m}\nspec: {endpoints: [{prot: metrics}]}\n", "prot"},
	}
	for _, tt := range tests {
		if _, err := decodeStrict([]byte(tt.yaml)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

// TestCopiesInSync keeps the copies that kustomize needs inside its roots
// equal to their sources.
func TestCopiesInSync(t *testing.T) {
	t.Parallel()
	for copyPath, source := range map[string]string{
		"base/envoy.yaml":            "../envoy/sidecar.yaml",
		"base/limits/edge.yaml":      "../examples/config.yaml",
		"istio/limits/edge.yaml":     "../examples/config.yaml",
		"overlays/authz/envoy.yaml":  "../envoy/authz-proxy.yaml",
		"overlays/cache/envoy.yaml":  "../envoy/cache.yaml",
		"components/authz/auth.yaml": "../examples/auth.yaml",
		"components/authz/keys.yaml": "../examples/keys.yaml",
		"components/authz/jwks.json": "../examples/jwks.json",
		"components/authz/api.yaml":  "../examples/limits/api.yaml",
	} {
		a, err := os.ReadFile(copyPath)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(source)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("k8s/%s differs from %s; run: cp %s k8s/%s", copyPath, strings.TrimPrefix(source, "../"), strings.TrimPrefix(source, "../"), copyPath)
		}
	}
}

// podTemplates returns every pod template of a build, named.
func podTemplates(b build) map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for _, o := range b.objects {
		id := o.kind + "/" + o.name
		switch v := o.typed.(type) {
		case *appsv1.Deployment:
			out[id] = &v.Spec.Template
		case *appsv1.StatefulSet:
			out[id] = &v.Spec.Template
		case *appsv1.DaemonSet:
			out[id] = &v.Spec.Template
		case *batchv1.Job:
			out[id] = &v.Spec.Template
		case *batchv1.CronJob:
			out[id] = &v.Spec.JobTemplate.Spec.Template
		case *corev1.Pod:
			out[id] = &corev1.PodTemplateSpec{ObjectMeta: v.ObjectMeta, Spec: v.Spec}
		}
	}
	return out
}

// checkPod applies the policy every pod must meet, and returns problems.
func checkPod(tmpl *corev1.PodTemplateSpec) []string {
	var probs []string
	psc := tmpl.Spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	all := slices.Concat(tmpl.Spec.InitContainers, tmpl.Spec.Containers)
	for _, c := range all {
		bad := func(format string, args ...any) {
			probs = append(probs, fmt.Sprintf("container %s: %s", c.Name, fmt.Sprintf(format, args...)))
		}
		if err := checkImage(c.Image); err != nil {
			bad("%v", err)
		}
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[res]; !ok {
				bad("no %s request", res)
			}
			if _, ok := c.Resources.Limits[res]; !ok {
				bad("no %s limit", res)
			}
		}
		sc := c.SecurityContext
		if sc == nil {
			bad("no securityContext")
			continue
		}
		if !isTrue(sc.RunAsNonRoot) && !isTrue(psc.RunAsNonRoot) {
			bad("runAsNonRoot is not true")
		}
		if uid := sc.RunAsUser; uid != nil && *uid == 0 {
			bad("runs as uid 0")
		}
		if !isTrue(sc.ReadOnlyRootFilesystem) {
			bad("readOnlyRootFilesystem is not true")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			bad("allowPrivilegeEscalation is not false")
		}
		if isTrue(sc.Privileged) {
			bad("privileged")
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			bad("capabilities: must drop ALL and add none")
		}
		seccomp := sc.SeccompProfile
		if seccomp == nil {
			seccomp = psc.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			bad("seccompProfile is not RuntimeDefault")
		}
		// Long-running containers: the app's and native sidecars.
		longRunning := !slices.ContainsFunc(tmpl.Spec.InitContainers, func(i corev1.Container) bool { return i.Name == c.Name }) ||
			(c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways)
		if longRunning && (c.LivenessProbe == nil || c.ReadinessProbe == nil) {
			bad("no liveness or readiness probe")
		}
	}
	return probs
}

func isTrue(b *bool) bool { return b != nil && *b }

// checkImage refuses moving images: no tag, or :latest (a digest is fine).
func checkImage(image string) error {
	if strings.Contains(image, "@sha256:") {
		return nil
	}
	name := image[strings.LastIndex(image, "/")+1:]
	_, tag, ok := strings.Cut(name, ":")
	switch {
	case !ok || tag == "":
		return fmt.Errorf("image %q has no tag (it means :latest)", image)
	case tag == "latest":
		return fmt.Errorf("image %q is :latest", image)
	}
	return nil
}

func TestPolicy(t *testing.T) {
	t.Parallel()
	for _, b := range allBuilds(t) {
		tmpls := podTemplates(b)
		if len(tmpls) == 0 && b.name != "production+servicemonitor" {
			t.Errorf("%s: no pod templates", b.name)
		}
		for id, tmpl := range tmpls {
			for _, p := range checkPod(tmpl) {
				t.Errorf("%s: %s: %s", b.name, id, p)
			}
		}
	}
}

// TestPolicyCatches proves the policy fails a pod that breaks each rule.
func TestPolicyCatches(t *testing.T) {
	t.Parallel()
	var base *corev1.PodTemplateSpec
	for _, b := range allBuilds(t) {
		if b.name == "base" {
			base = podTemplates(b)["Deployment/app"]
		}
	}
	if base == nil {
		t.Fatal("no Deployment/app in base")
	}
	f := false
	tests := []struct {
		name   string
		change func(*corev1.PodTemplateSpec)
		want   string
	}{
		{"latest", func(p *corev1.PodTemplateSpec) { p.Spec.Containers[0].Image = "hashicorp/http-echo:latest" }, ":latest"},
		{"no tag", func(p *corev1.PodTemplateSpec) { p.Spec.Containers[0].Image = "registry:5000/http-echo" }, "no tag"},
		{"no limits", func(p *corev1.PodTemplateSpec) { p.Spec.Containers[0].Resources.Limits = nil }, "no cpu limit"},
		{"writable root", func(p *corev1.PodTemplateSpec) { p.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = &f }, "readOnlyRootFilesystem"},
		{"escalation", func(p *corev1.PodTemplateSpec) { p.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil }, "allowPrivilegeEscalation"},
		{"capabilities", func(p *corev1.PodTemplateSpec) { p.Spec.Containers[0].SecurityContext.Capabilities.Drop = nil }, "capabilities"},
		{"seccomp", func(p *corev1.PodTemplateSpec) {
			p.Spec.SecurityContext.SeccompProfile = nil
			p.Spec.Containers[0].SecurityContext.SeccompProfile = nil
		}, "seccompProfile"},
		{"no probe", func(p *corev1.PodTemplateSpec) { p.Spec.InitContainers[0].ReadinessProbe = nil }, "container floodgate: no liveness or readiness probe"},
	}
	for _, tt := range tests {
		p := base.DeepCopy()
		tt.change(p)
		probs := checkPod(p)
		if !slices.ContainsFunc(probs, func(s string) bool { return strings.Contains(s, tt.want) }) {
			t.Errorf("%s: problems %q, want one with %q", tt.name, probs, tt.want)
		}
	}
}

// port returns the port of a host:port listener address.
func port(addr string) (int32, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(p, 10, 32)
	return int32(n), err
}

// probePort resolves a probe's port (a number or a port name) in c.
func probePort(c corev1.Container, p *corev1.Probe) int32 {
	var v intstr.IntOrString
	switch {
	case p == nil:
		return 0
	case p.HTTPGet != nil:
		v = p.HTTPGet.Port
	case p.TCPSocket != nil:
		v = p.TCPSocket.Port
	case p.GRPC != nil:
		return p.GRPC.Port
	}
	if v.Type == intstr.Int {
		return v.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == v.StrVal {
			return cp.ContainerPort
		}
	}
	return 0
}

// checkSidecar checks one Floodgate container: its flags, parsed by the
// sidecar's own parser with the container's literal environment, must give
// the ports it declares and is probed on, and a config directory that a
// ConfigMap is mounted on whole (no subPath, or updates never arrive).
func checkSidecar(tmpl *corev1.PodTemplateSpec, c corev1.Container) []string {
	var probs []string
	bad := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		return []string{fmt.Sprintf("args %q: want serve first", c.Args)}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	s, err := sidecar.ParseSettings(c.Args[1:], func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil {
		return []string{fmt.Sprintf("the sidecar rejects its settings: %v", err)}
	}
	grpcPort, err1 := port(s.GRPCAddr)
	httpPort, err2 := port(s.HTTPAddr)
	if err := errors.Join(err1, err2); err != nil {
		return []string{err.Error()}
	}
	declared := map[int32]bool{}
	for _, p := range c.Ports {
		declared[p.ContainerPort] = true
	}
	if !declared[grpcPort] || !declared[httpPort] {
		bad("listens on gRPC %d and HTTP %d but declares ports %v", grpcPort, httpPort, c.Ports)
	}
	if got := probePort(c, c.StartupProbe); c.StartupProbe == nil || c.StartupProbe.GRPC == nil || got != grpcPort {
		bad("startup probe: want gRPC health on %d", grpcPort)
	}
	if got := probePort(c, c.LivenessProbe); c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || got != httpPort {
		bad("liveness probe: want GET /healthz on %d, got port %d", httpPort, got)
	}
	if got := probePort(c, c.ReadinessProbe); c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || got != httpPort {
		bad("readiness probe: want GET /readyz on %d, got port %d", httpPort, got)
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		if m.MountPath != s.Config {
			continue
		}
		mounted = true
		if m.SubPath != "" || m.SubPathExpr != "" {
			bad("--config %s is mounted with a subPath: ConfigMap updates never reach it", s.Config)
		}
		i := slices.IndexFunc(tmpl.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if i < 0 || tmpl.Spec.Volumes[i].ConfigMap == nil {
			bad("--config %s: volume %q is not a ConfigMap", s.Config, m.Name)
		}
	}
	if !mounted {
		bad("--config %s: nothing is mounted there", s.Config)
	}
	return probs
}

// isFloodgate tells the rate-limit sidecar from other containers.
func isFloodgate(c corev1.Container) bool {
	return strings.HasPrefix(c.Image, "ghcr.io/floodgate/sidecar:") && len(c.Args) > 0 && c.Args[0] == "serve"
}

func TestSidecarPortsMatchFlags(t *testing.T) {
	t.Parallel()
	for _, b := range allBuilds(t) {
		for id, tmpl := range podTemplates(b) {
			for _, c := range slices.Concat(tmpl.Spec.InitContainers, tmpl.Spec.Containers) {
				if !isFloodgate(c) {
					continue
				}
				for _, p := range checkSidecar(tmpl, c) {
					t.Errorf("%s: %s: container %s: %s", b.name, id, c.Name, p)
				}
			}
		}
	}
}

// find returns a build's object of a kind and name.
func find[T any](b build, kind, name string) T {
	var zero T
	for _, o := range b.objects {
		if o.kind == kind && (name == "" || o.name == name) {
			if v, ok := o.typed.(T); ok {
				return v
			}
		}
	}
	return zero
}

func container(tmpl *corev1.PodTemplateSpec, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{tmpl.Spec.InitContainers, tmpl.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// TestSidecarPatternWiring follows a request through the sidecar-pattern
// builds: the Service targets Envoy's port; Envoy's config (from the
// ConfigMap, decoded and validated as Envoy would) listens there, sends
// rate-limit calls to Floodgate's gRPC port and uses the domain of the
// limits ConfigMap, whose content loads; no NetworkPolicy admits traffic
// to Floodgate from outside the pod; and in dev, Redis takes connections
// from Floodgate's pods only, at the address Floodgate is given.
func TestSidecarPatternWiring(t *testing.T) {
	t.Parallel()
	for _, b := range allBuilds(t) {
		if !slices.Contains([]string{"base", "dev", "production", "production+servicemonitor", "authz", "cache"}, b.name) {
			continue
		}
		t.Run(b.name, func(t *testing.T) {
			dep := find[*appsv1.Deployment](b, "Deployment", "app")
			svc := find[*corev1.Service](b, "Service", "app")
			if dep == nil || svc == nil {
				t.Fatal("no Deployment/app or Service/app")
			}
			tmpl := &dep.Spec.Template
			envoyC, fg := container(tmpl, "envoy"), container(tmpl, "floodgate")
			if envoyC == nil || fg == nil {
				t.Fatal("the pod has no envoy or floodgate container")
			}
			target := svc.Spec.Ports[0].TargetPort
			envoyPort := envoyC.Ports[0].ContainerPort
			if !(target.Type == intstr.String && target.StrVal == envoyC.Ports[0].Name) && target.IntVal != envoyPort {
				t.Errorf("Service targets %s, not Envoy's port %d", target.String(), envoyPort)
			}

			// Envoy's config, from the ConfigMap mounted where --config-path points.
			cmName := volumeConfigMap(tmpl, envoyC, "/etc/envoy")
			cm := find[*corev1.ConfigMap](b, "ConfigMap", cmName)
			if cm == nil {
				t.Fatalf("Envoy's ConfigMap %q is not in the build", cmName)
			}
			boot, err := decodeEnvoyBootstrap([]byte(cm.Data["envoy.yaml"]))
			if err != nil {
				t.Fatalf("Envoy config: %v", err)
			}
			listener := boot.GetStaticResources().GetListeners()[0].GetAddress().GetSocketAddress().GetPortValue()
			if int32(listener) != envoyPort {
				t.Errorf("Envoy listens on %d, the container declares %d", listener, envoyPort)
			}
			domain, cluster := rateLimitFilter(t, boot)
			rls := clusterPort(boot, cluster)
			s, err := sidecar.ParseSettings(fg.Args[1:], envLookup(fg), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if grpcPort, _ := port(s.GRPCAddr); int32(rls) != grpcPort {
				t.Errorf("Envoy calls the rate-limit service on %d, Floodgate listens on %d", rls, grpcPort)
			}

			// The limits, as Floodgate will load them.
			limitsCM := find[*corev1.ConfigMap](b, "ConfigMap", volumeConfigMap(tmpl, fg, s.Config))
			if limitsCM == nil {
				t.Fatal("the limits ConfigMap is not in the build")
			}
			var domains []string
			for key, content := range limitsCM.Data {
				cfg, err := descriptors.Parse(key, []byte(content), descriptors.Options{})
				if err != nil {
					t.Errorf("limits %s: %v", key, err)
					continue
				}
				for _, d := range cfg.Domains() {
					domains = append(domains, d.Name)
				}
			}
			if !slices.Contains(domains, domain) {
				t.Errorf("Envoy asks for domain %q; the limits define %q", domain, domains)
			}

			// NetworkPolicies: nothing from outside the pod reaches 8081.
			grpcPort, _ := port(s.GRPCAddr)
			for _, o := range b.objects {
				np, ok := o.typed.(*networkingv1.NetworkPolicy)
				if !ok || !selects(np.Spec.PodSelector, tmpl.Labels) {
					continue
				}
				for _, rule := range np.Spec.Ingress {
					if len(rule.Ports) == 0 {
						t.Errorf("NetworkPolicy %s admits every port of the app's pods, Floodgate's %d too", np.Name, grpcPort)
					}
					for _, p := range rule.Ports {
						if p.Port != nil && (p.Port.IntVal == grpcPort || p.Port.StrVal == "floodgate-grpc") {
							t.Errorf("NetworkPolicy %s admits Floodgate's gRPC port from outside the pod", np.Name)
						}
					}
				}
			}
			if !slices.ContainsFunc(b.objects, func(o object) bool {
				np, ok := o.typed.(*networkingv1.NetworkPolicy)
				return ok && selects(np.Spec.PodSelector, tmpl.Labels) && slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
			}) {
				t.Error("no ingress NetworkPolicy selects the app's pods")
			}

			if b.name == "dev" {
				checkDevRedis(t, b, tmpl, s)
			}
			if strings.HasPrefix(b.name, "production") {
				if len(fg.EnvFrom) != 1 || fg.EnvFrom[0].SecretRef == nil || fg.EnvFrom[0].SecretRef.Name != "floodgate-redis" || isTrue(fg.EnvFrom[0].SecretRef.Optional) {
					t.Errorf("production: Floodgate must take its Redis settings from the required Secret floodgate-redis, got %+v", fg.EnvFrom)
				}
			}
		})
	}
}

func envLookup(c *corev1.Container) func(string) string {
	return func(k string) string {
		for _, e := range c.Env {
			if e.Name == k {
				return e.Value
			}
		}
		return ""
	}
}

// volumeConfigMap names the ConfigMap mounted at path in c.
func volumeConfigMap(tmpl *corev1.PodTemplateSpec, c *corev1.Container, path string) string {
	for _, m := range c.VolumeMounts {
		if m.MountPath != path {
			continue
		}
		for _, v := range tmpl.Spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				return v.ConfigMap.Name
			}
		}
	}
	return ""
}

func selects(sel metav1.LabelSelector, labels map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(&sel)
	if err != nil {
		return false
	}
	return s.Matches(labelSet(labels))
}

type labelSet map[string]string

func (l labelSet) Has(k string) bool   { _, ok := l[k]; return ok }
func (l labelSet) Get(k string) string { return l[k] }
func (l labelSet) Lookup(k string) (string, bool) {
	v, ok := l[k]
	return v, ok
}

func checkDevRedis(t *testing.T, b build, app *corev1.PodTemplateSpec, s sidecar.Settings) {
	t.Helper()
	sts := find[*appsv1.StatefulSet](b, "StatefulSet", "redis")
	svc := find[*corev1.Service](b, "Service", "redis")
	np := find[*networkingv1.NetworkPolicy](b, "NetworkPolicy", "redis-ingress")
	if sts == nil || svc == nil || np == nil {
		t.Fatal("dev: no StatefulSet, Service or NetworkPolicy redis")
	}
	if s.Backend != "redis" || !strings.HasPrefix(s.Redis.URL, "redis://"+svc.Name+":") {
		t.Errorf("dev: Floodgate backend %q at %q, want Redis at Service %s", s.Backend, s.Redis.URL, svc.Name)
	}
	if !selects(np.Spec.PodSelector, sts.Spec.Template.Labels) {
		t.Error("dev: the Redis NetworkPolicy does not select the Redis pods")
	}
	for _, rule := range np.Spec.Ingress {
		for _, peer := range rule.From {
			if peer.PodSelector == nil || peer.NamespaceSelector != nil || peer.IPBlock != nil {
				t.Errorf("dev: Redis admits a peer that is not a pod of its namespace: %+v", peer)
				continue
			}
			if !selects(*peer.PodSelector, app.Labels) || selects(*peer.PodSelector, map[string]string{"app.kubernetes.io/name": "other"}) {
				t.Errorf("dev: Redis admits %v, want Floodgate's pods only", peer.PodSelector)
			}
		}
		if len(rule.From) == 0 {
			t.Error("dev: Redis admits any source")
		}
	}
}

// decodeEnvoyBootstrap reads an Envoy YAML config strictly and validates
// it, including inside every typed_config.
func decodeEnvoyBootstrap(y []byte) (*bootstrapMsg, error) {
	js, err := sigsyaml.YAMLToJSONStrict(y)
	if err != nil {
		return nil, err
	}
	var b bootstrapMsg
	if err := protojson.Unmarshal(js, &b); err != nil {
		return nil, err
	}
	if err := validateDeep(&b); err != nil {
		return nil, err
	}
	return &b, nil
}

func rateLimitFilter(t *testing.T, b *bootstrapMsg) (domain, cluster string) {
	t.Helper()
	var found *ratelimitv3.RateLimit
	walkMessages(b.ProtoReflect(), func(m protoreflect.Message) {
		if rl, ok := m.Interface().(*ratelimitv3.RateLimit); ok {
			found = rl
		}
	})
	if found == nil {
		t.Fatal("no rate-limit filter in the Envoy config")
	}
	return found.GetDomain(), found.GetRateLimitService().GetGrpcService().GetEnvoyGrpc().GetClusterName()
}

func clusterPort(b *bootstrapMsg, name string) uint32 {
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()
		}
	}
	return 0
}

type validator interface{ ValidateAll() error }

type bootstrapMsg = bootstrapv3.Bootstrap

// validateDeep runs m's generated validation and that of the content of
// every Any below it, which the generated code does not look into.
func validateDeep(m proto.Message) error {
	var errs []error
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			errs = append(errs, err)
		}
	}
	walkMessages(m.ProtoReflect(), func(inner protoreflect.Message) {
		a, ok := inner.Interface().(*anypb.Any)
		if !ok {
			return
		}
		msg, err := a.UnmarshalNew()
		if err != nil {
			errs = append(errs, fmt.Errorf("typed_config %s: %w", a.GetTypeUrl(), err))
			return
		}
		if v, ok := msg.(validator); ok {
			if err := v.ValidateAll(); err != nil {
				errs = append(errs, err)
			}
		} else {
			errs = append(errs, fmt.Errorf("%s has no validation", a.GetTypeUrl()))
		}
	})
	return errors.Join(errs...)
}

// walkMessages calls visit for m and every message below it, unpacking
// Any values.
func walkMessages(m protoreflect.Message, visit func(protoreflect.Message)) {
	visit(m)
	if a, ok := m.Interface().(*anypb.Any); ok {
		if inner, err := a.UnmarshalNew(); err == nil {
			walkMessages(inner.ProtoReflect(), visit)
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					walkMessages(mv.Message(), visit)
					return true
				})
			}
		case fd.IsList():
			if fd.Message() != nil {
				for i := range v.List().Len() {
					walkMessages(v.List().Get(i).Message(), visit)
				}
			}
		case fd.Message() != nil:
			walkMessages(v.Message(), visit)
		}
		return true
	})
}

// TestEnvoyFilters decodes every patch value of the Istio EnvoyFilters
// into the Envoy type its applyTo names and validates it: whole objects
// (a cluster, an HTTP filter) with their generated validation, inside
// typed_config too; MERGE fragments (a route) strictly, with each rate
// limit validated. It then checks that they fit together: the filter sits
// before the router in the inbound HTTP chain, calls a cluster that a patch
// adds, over HTTP/2, on Floodgate's port, for a domain the limits define.
func TestEnvoyFilters(t *testing.T) {
	t.Parallel()
	var b build
	for _, bb := range allBuilds(t) {
		if bb.name == "istio" {
			b = bb
		}
	}
	ef := find[*istioclient.EnvoyFilter](b, "EnvoyFilter", "")
	if ef == nil {
		t.Fatal("no EnvoyFilter in k8s/istio")
	}
	if len(ef.Spec.GetWorkloadSelector().GetLabels()) == 0 {
		t.Error("the EnvoyFilter has no workloadSelector: it would patch every proxy in the namespace")
	}
	dep := find[*appsv1.Deployment](b, "Deployment", "app")
	if !selects(metav1.LabelSelector{MatchLabels: ef.Spec.GetWorkloadSelector().GetLabels()}, dep.Spec.Template.Labels) {
		t.Error("the EnvoyFilter's workloadSelector does not select the app's pods")
	}
	clusters := map[string]*clusterv3.Cluster{}
	var filter *ratelimitv3.RateLimit
	var rateLimits int
	for i, cp := range ef.Spec.GetConfigPatches() {
		js, err := protojson.Marshal(cp.GetPatch().GetValue())
		if err != nil {
			t.Fatal(err)
		}
		where := fmt.Sprintf("configPatches[%d] (%s)", i, cp.GetApplyTo())
		if cp.GetMatch().GetContext() != istionet.EnvoyFilter_SIDECAR_INBOUND {
			t.Errorf("%s: context %s, want SIDECAR_INBOUND", where, cp.GetMatch().GetContext())
		}
		switch cp.GetApplyTo() {
		case istionet.EnvoyFilter_CLUSTER:
			var c clusterv3.Cluster
			if err := protojson.Unmarshal(js, &c); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if err := validateDeep(&c); err != nil {
				t.Errorf("%s: %v", where, err)
			}
			if cp.GetPatch().GetOperation() != istionet.EnvoyFilter_Patch_ADD {
				t.Errorf("%s: operation %s, want ADD", where, cp.GetPatch().GetOperation())
			}
			clusters[c.GetName()] = &c
		case istionet.EnvoyFilter_HTTP_FILTER:
			var f hcmv3.HttpFilter
			if err := protojson.Unmarshal(js, &f); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if err := validateDeep(&f); err != nil {
				t.Errorf("%s: %v", where, err)
			}
			rl := &ratelimitv3.RateLimit{}
			if err := f.GetTypedConfig().UnmarshalTo(rl); err != nil {
				t.Fatalf("%s: the filter is not the rate-limit filter: %v", where, err)
			}
			filter = rl
			m := cp.GetMatch().GetListener()
			if cp.GetPatch().GetOperation() != istionet.EnvoyFilter_Patch_INSERT_BEFORE ||
				m.GetFilterChain().GetFilter().GetName() != "envoy.filters.network.http_connection_manager" ||
				m.GetFilterChain().GetFilter().GetSubFilter().GetName() != "envoy.filters.http.router" {
				t.Errorf("%s: want INSERT_BEFORE the router in the HTTP connection manager", where)
			}
			if m.GetPortNumber() != uint32(appPort(t, dep)) {
				t.Errorf("%s: listener port %d, the app's is %d", where, m.GetPortNumber(), appPort(t, dep))
			}
		case istionet.EnvoyFilter_HTTP_ROUTE:
			var r routev3.Route
			if err := protojson.Unmarshal(js, &r); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			// A MERGE fragment lacks the fields a whole route must have;
			// validate what it brings.
			for j, rl := range r.GetRoute().GetRateLimits() {
				if err := validateDeep(rl); err != nil {
					t.Errorf("%s: rate_limits[%d]: %v", where, j, err)
				}
				rateLimits++
			}
			rc := cp.GetMatch().GetRouteConfiguration()
			if want := fmt.Sprintf("inbound|http|%d", appPort(t, dep)); rc.GetVhost().GetName() != want || rc.GetPortNumber() != uint32(appPort(t, dep)) {
				t.Errorf("%s: matches vhost %q port %d, want %q port %d", where, rc.GetVhost().GetName(), rc.GetPortNumber(), want, appPort(t, dep))
			}
		default:
			t.Errorf("%s: no check for this applyTo; add one", where)
		}
	}
	if filter == nil || rateLimits == 0 || len(clusters) == 0 {
		t.Fatalf("want a rate-limit filter, rate_limits actions and a cluster; got filter %v, %d rate limits, %d clusters", filter != nil, rateLimits, len(clusters))
	}
	name := filter.GetRateLimitService().GetGrpcService().GetEnvoyGrpc().GetClusterName()
	c, ok := clusters[name]
	if !ok {
		t.Fatalf("the filter calls cluster %q, which no patch adds", name)
	}
	var opts upstreamhttpv3.HttpProtocolOptions
	if a := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; a == nil || a.UnmarshalTo(&opts) != nil ||
		opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Errorf("cluster %q carries gRPC but is not HTTP/2", name)
	}
	sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	fg := container(&dep.Spec.Template, "floodgate")
	s, err := sidecar.ParseSettings(fg.Args[1:], envLookup(fg), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if grpcPort, _ := port(s.GRPCAddr); sa.GetAddress() != "127.0.0.1" || int32(sa.GetPortValue()) != grpcPort {
		t.Errorf("cluster %q points at %s:%d, Floodgate listens on 127.0.0.1:%d", name, sa.GetAddress(), sa.GetPortValue(), grpcPort)
	}
	limits := find[*corev1.ConfigMap](b, "ConfigMap", "floodgate-limits")
	cfg, err := descriptors.Parse("edge.yaml", []byte(limits.Data["edge.yaml"]), descriptors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(cfg.Domains(), func(d *descriptors.Domain) bool { return d.Name == filter.GetDomain() }) {
		t.Errorf("the filter's domain %q is not in the limits", filter.GetDomain())
	}
}

func appPort(t *testing.T, dep *appsv1.Deployment) int32 {
	t.Helper()
	c := container(&dep.Spec.Template, "app")
	if c == nil || len(c.Ports) == 0 {
		t.Fatal("no app container with a port")
	}
	return c.Ports[0].ContainerPort
}

// TestInjectorWiring checks the webhook configuration and its Deployment:
// the chosen failurePolicy, sideEffects None, a timeout, v1 reviews, pods
// only, opt-in selectors that leave the injector's own pods out, and a
// Service that leads to the port the webhook's --addr flag opens.
func TestInjectorWiring(t *testing.T) {
	t.Parallel()
	var b build
	for _, bb := range allBuilds(t) {
		if bb.name == "injector" {
			b = bb
		}
	}
	cfg := find[*admissionregv1.MutatingWebhookConfiguration](b, "MutatingWebhookConfiguration", "")
	dep := find[*appsv1.Deployment](b, "Deployment", "floodgate-injector")
	if cfg == nil || dep == nil || len(cfg.Webhooks) != 1 {
		t.Fatal("want one MutatingWebhookConfiguration with one webhook and Deployment/floodgate-injector")
	}
	w := cfg.Webhooks[0]
	if w.FailurePolicy == nil || *w.FailurePolicy != admissionregv1.Fail {
		t.Errorf("failurePolicy %v, want Fail (see the comment in the manifest)", w.FailurePolicy)
	}
	if w.SideEffects == nil || *w.SideEffects != admissionregv1.SideEffectClassNone {
		t.Errorf("sideEffects %v, want None", w.SideEffects)
	}
	if w.TimeoutSeconds == nil || *w.TimeoutSeconds > 10 {
		t.Errorf("timeoutSeconds %v, want set and at most 10", w.TimeoutSeconds)
	}
	if !slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) {
		t.Errorf("admissionReviewVersions %q, want [v1]", w.AdmissionReviewVersions)
	}
	if len(w.Rules) != 1 || !slices.Equal(w.Rules[0].Resources, []string{"pods"}) || !slices.Equal(w.Rules[0].Operations, []admissionregv1.OperationType{admissionregv1.Create}) {
		t.Errorf("rules %+v, want CREATE of pods", w.Rules)
	}
	if w.NamespaceSelector == nil || len(w.NamespaceSelector.MatchLabels)+len(w.NamespaceSelector.MatchExpressions) == 0 {
		t.Error("no namespaceSelector: every namespace, kube-system too, would be sent")
	}
	if w.ObjectSelector == nil || selects(*w.ObjectSelector, dep.Spec.Template.Labels) {
		t.Error("the objectSelector must leave out the injector's own pods")
	}
	if len(w.MatchConditions) == 0 {
		t.Error("no matchConditions: pods without the annotation would depend on the injector too")
	}
	ref := w.ClientConfig.Service
	if ref == nil || ref.Namespace != "floodgate-system" {
		t.Fatalf("clientConfig.service %+v, want a Service in floodgate-system", ref)
	}
	svc := find[*corev1.Service](b, "Service", ref.Name)
	if svc == nil || svc.Namespace != ref.Namespace {
		t.Fatalf("Service %s/%s is not in the build", ref.Namespace, ref.Name)
	}
	var target intstr.IntOrString
	for _, p := range svc.Spec.Ports {
		if ref.Port != nil && p.Port == *ref.Port {
			target = p.TargetPort
		}
	}
	c := dep.Spec.Template.Spec.Containers[0]
	var addr string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--addr="); ok {
			addr = v
		}
		if v, ok := strings.CutPrefix(a, "--image="); ok {
			if err := checkImage(v); err != nil {
				t.Errorf("--image: %v", err)
			}
		}
		if v, ok := strings.CutPrefix(a, "--envoy-image="); ok {
			if err := checkImage(v); err != nil {
				t.Errorf("--envoy-image: %v", err)
			}
		}
	}
	listen, err := port(addr)
	if err != nil {
		t.Fatalf("--addr %q: %v", addr, err)
	}
	resolved := target.IntVal
	for _, p := range c.Ports {
		if target.Type == intstr.String && p.Name == target.StrVal {
			resolved = p.ContainerPort
		}
	}
	if resolved != listen {
		t.Errorf("the Service leads to port %d; the webhook listens on %d", resolved, listen)
	}
	if got := probePort(c, c.ReadinessProbe); got != listen || c.ReadinessProbe.HTTPGet.Scheme != corev1.URISchemeHTTPS {
		t.Errorf("readiness probe on port %d over %s, want HTTPS on %d", got, c.ReadinessProbe.HTTPGet.Scheme, listen)
	}
}

// TestInjectedPodsMeetPolicy runs `sidecar inject`'s transformation on an
// annotated Deployment, in both modes, and holds the result to the same
// policy as the shipped manifests.
func TestInjectedPodsMeetPolicy(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("testdata/annotated-deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []inject.Mode{inject.ModeSidecar, inject.ModeEnvoy} {
		out, res, err := inject.Manifests(src, inject.Options{Mode: mode})
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if len(res.Injected) != 1 {
			t.Fatalf("%s: injected %q, want the Deployment", mode, res.Injected)
		}
		obj, err := decodeStrict(out)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		dep := obj.(*appsv1.Deployment)
		for _, p := range checkPod(&dep.Spec.Template) {
			t.Errorf("%s: %s", mode, p)
		}
		fg := container(&dep.Spec.Template, inject.SidecarName)
		if fg == nil {
			t.Fatalf("%s: no %s container", mode, inject.SidecarName)
		}
		for _, p := range checkSidecar(&dep.Spec.Template, *fg) {
			t.Errorf("%s: %s", mode, p)
		}
		if got := container(&dep.Spec.Template, inject.EnvoyName) != nil; got != (mode == inject.ModeEnvoy) {
			t.Errorf("%s: Envoy injected: %v", mode, got)
		}
	}
}
