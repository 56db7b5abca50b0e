package k8s_test

// Authorization (issue 11): components/authz mounts the auth config, its
// keys (a Secret) and JWKS (a ConfigMap) into Floodgate; overlays/authz
// gives the pod's Envoy the ext_authz config; overlays/istio-authz makes
// Istio's proxy call Check through an extension provider (meshconfig.yaml,
// decoded strictly into Istio's MeshConfig), a ServiceEntry to the pod's
// loopback and an AuthorizationPolicy with action CUSTOM.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	istionetv1alpha3 "istio.io/api/networking/v1alpha3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	istiosecv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/floodgate/floodgate/pkg/descriptors"
)

// istioShell is an Istio object with its spec left for protojson, which,
// unlike Istio's own JSON decoding, rejects unknown fields.
type istioShell struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            json.RawMessage   `json:"spec"`
}

func decodeServiceEntry(js []byte) (*istionetv1.ServiceEntry, error) {
	var shell istioShell
	if err := strictJSON(js, &shell); err != nil {
		return nil, err
	}
	if shell.APIVersion != "networking.istio.io/v1" {
		return nil, fmt.Errorf("apiVersion %s: want networking.istio.io/v1", shell.APIVersion)
	}
	se := &istionetv1.ServiceEntry{TypeMeta: shell.TypeMeta, ObjectMeta: shell.Metadata}
	if err := protojson.Unmarshal(shell.Spec, &se.Spec); err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	return se, nil
}

func decodeAuthorizationPolicy(js []byte) (*istiosecv1.AuthorizationPolicy, error) {
	var shell istioShell
	if err := strictJSON(js, &shell); err != nil {
		return nil, err
	}
	if shell.APIVersion != "security.istio.io/v1" {
		return nil, fmt.Errorf("apiVersion %s: want security.istio.io/v1", shell.APIVersion)
	}
	ap := &istiosecv1.AuthorizationPolicy{TypeMeta: shell.TypeMeta, ObjectMeta: shell.Metadata}
	if err := protojson.Unmarshal(shell.Spec, &ap.Spec); err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	return ap, nil
}

// decodeMeshConfig reads a mesh config snippet strictly into MeshConfig.
func decodeMeshConfig(y []byte) (*meshv1alpha1.MeshConfig, error) {
	js, err := sigsyaml.YAMLToJSONStrict(y)
	if err != nil {
		return nil, err
	}
	var mc meshv1alpha1.MeshConfig
	if err := protojson.Unmarshal(js, &mc); err != nil {
		return nil, err
	}
	return &mc, nil
}

func buildNamed(t *testing.T, name string) build {
	t.Helper()
	for _, b := range allBuilds(t) {
		if b.name == name {
			return b
		}
	}
	t.Fatalf("no build %s", name)
	return build{}
}

// authFiles returns what Floodgate finds under --auth-config's directory:
// every key of the projected volume's sources, and which kind of object
// each came from.
func authFiles(t *testing.T, b build, tmpl *corev1.PodTemplateSpec, fg *corev1.Container, authPath string) (files map[string]string, from map[string]string) {
	t.Helper()
	dir := path.Dir(authPath)
	var mount *corev1.VolumeMount
	for i, m := range fg.VolumeMounts {
		if m.MountPath == dir {
			mount = &fg.VolumeMounts[i]
		}
	}
	if mount == nil {
		t.Fatalf("--auth-config %s: nothing is mounted at %s", authPath, dir)
	}
	if mount.SubPath != "" || mount.SubPathExpr != "" || !mount.ReadOnly {
		t.Errorf("%s: mounted with a subPath or writable: updates never arrive, or Floodgate could change them", dir)
	}
	i := slices.IndexFunc(tmpl.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == mount.Name })
	if i < 0 || tmpl.Spec.Volumes[i].Projected == nil {
		t.Fatalf("%s: volume %q is not a projected volume", dir, mount.Name)
	}
	if dm := tmpl.Spec.Volumes[i].Projected.DefaultMode; dm != nil && *dm != 0o444 {
		t.Errorf("%s: defaultMode %#o, want 0444 (an octal 0444 in YAML 1.2 is the decimal 444)", dir, *dm)
	}
	files, from = map[string]string{}, map[string]string{}
	add := func(kind, name string, data map[string]string) {
		for k, v := range data {
			if _, dup := files[k]; dup {
				t.Errorf("%s: two sources project %s", dir, k)
			}
			files[k], from[k] = v, kind+"/"+name
		}
	}
	for _, src := range tmpl.Spec.Volumes[i].Projected.Sources {
		switch {
		case src.ConfigMap != nil:
			cm := find[*corev1.ConfigMap](b, "ConfigMap", src.ConfigMap.Name)
			if cm == nil {
				t.Fatalf("ConfigMap %s is not in the build", src.ConfigMap.Name)
			}
			if len(src.ConfigMap.Items) > 0 || isTrue(src.ConfigMap.Optional) {
				t.Errorf("ConfigMap %s: projected with items or optional", cm.Name)
			}
			add("ConfigMap", cm.Name, cm.Data)
		case src.Secret != nil:
			s := find[*corev1.Secret](b, "Secret", src.Secret.Name)
			if s == nil {
				t.Fatalf("Secret %s is not in the build", src.Secret.Name)
			}
			data := map[string]string{}
			for k, v := range s.Data {
				data[k] = string(v)
			}
			for k, v := range s.StringData {
				data[k] = v
			}
			add("Secret", s.Name, data)
		default:
			t.Errorf("%s: a projected source that is neither a ConfigMap nor a Secret", dir)
		}
	}
	return files, from
}

// authConfigRefs is the part of the auth config that names other files
// and limits.
type authConfigRefs struct {
	APIKeys struct {
		Files []string `json:"files"`
	} `json:"api_keys"`
	JWT []struct {
		JWKSFile string `json:"jwks_file"`
	} `json:"jwt"`
	Policies []struct {
		Name      string `json:"name"`
		RateLimit *struct {
			Domain string `json:"domain"`
		} `json:"rate_limit"`
	} `json:"policies"`
}

// checkAuthzPod checks Floodgate's side of a build with authorization: the
// auth config, keys and JWKS where --auth-config's file names them (keys
// from a Secret only), the policies' domains in the limits, and, since the
// gRPC listener is not loopback, that the pod's NetworkPolicies fence it.
func checkAuthzPod(t *testing.T, b build) (*appsv1.Deployment, int32) {
	t.Helper()
	dep := find[*appsv1.Deployment](b, "Deployment", "app")
	if dep == nil {
		t.Fatal("no Deployment/app")
	}
	tmpl := &dep.Spec.Template
	fg := container(tmpl, "floodgate")
	authPath := envLookup(fg)("SIDECAR_AUTH_CONFIG")
	if !path.IsAbs(authPath) || !strings.HasSuffix(authPath, ".yaml") {
		t.Fatalf("SIDECAR_AUTH_CONFIG %q: want an absolute path to the auth config file", authPath)
	}
	files, from := authFiles(t, b, tmpl, fg, authPath)
	auth, ok := files[path.Base(authPath)]
	if !ok {
		t.Fatalf("%s: no such file in the mounted sources (%v)", authPath, from)
	}
	if !strings.HasPrefix(from[path.Base(authPath)], "ConfigMap/") {
		t.Errorf("the auth config comes from %s, want a ConfigMap", from[path.Base(authPath)])
	}
	var refs authConfigRefs
	if err := sigsyaml.Unmarshal([]byte(auth), &refs); err != nil {
		t.Fatalf("auth config: %v", err)
	}
	if len(refs.APIKeys.Files) == 0 || len(refs.JWT) == 0 {
		t.Fatal("the auth config names no keys file or no JWT issuer")
	}
	for _, f := range refs.APIKeys.Files {
		if from[f] == "" || !strings.HasPrefix(from[f], "Secret/") {
			t.Errorf("api_keys.files %s: comes from %q, want a Secret mounted beside the auth config", f, from[f])
		}
		if !strings.Contains(files[f], "sha256:") {
			t.Errorf("%s: no digests in it", f)
		}
	}
	for _, j := range refs.JWT {
		if from[j.JWKSFile] == "" || !strings.HasPrefix(from[j.JWKSFile], "ConfigMap/") {
			t.Errorf("jwks_file %s: comes from %q, want a ConfigMap mounted beside the auth config", j.JWKSFile, from[j.JWKSFile])
		}
		var jwks struct {
			Keys []map[string]any `json:"keys"`
		}
		if err := json.Unmarshal([]byte(files[j.JWKSFile]), &jwks); err != nil || len(jwks.Keys) == 0 {
			t.Errorf("jwks_file %s: not a key set: %v", j.JWKSFile, err)
		}
		for _, k := range jwks.Keys {
			if _, ok := k["d"]; ok {
				t.Errorf("jwks_file %s: holds a private key", j.JWKSFile)
			}
		}
	}

	// The policies' rate_limit domains are in the limits Floodgate loads.
	limitsCM := find[*corev1.ConfigMap](b, "ConfigMap", volumeConfigMap(tmpl, fg, "/etc/floodgate"))
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
	for _, p := range refs.Policies {
		if p.RateLimit != nil && !slices.Contains(domains, p.RateLimit.Domain) {
			t.Errorf("policy %s: rate_limit.domain %q is not in the limits (%q)", p.Name, p.RateLimit.Domain, domains)
		}
	}

	// Not loopback, so fenced: an ingress NetworkPolicy selects the pods
	// and none admits the gRPC port (or every port).
	const grpcPort = 8081
	if v := envLookup(fg)("SIDECAR_GRPC_ALLOW_REMOTE"); v != "true" {
		t.Errorf("SIDECAR_GRPC_ALLOW_REMOTE %q: Floodgate's gRPC listener is the pod address (for the kubelet's gRPC probe), which --auth-config refuses without it", v)
	}
	fenced := false
	for _, o := range b.objects {
		np, ok := o.typed.(*networkingv1.NetworkPolicy)
		if !ok || !selects(np.Spec.PodSelector, tmpl.Labels) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			continue
		}
		fenced = true
		for _, rule := range np.Spec.Ingress {
			if len(rule.Ports) == 0 {
				t.Errorf("NetworkPolicy %s admits every port, Check's %d too", np.Name, grpcPort)
			}
			for _, p := range rule.Ports {
				if p.Port != nil && (p.Port.IntVal == grpcPort || p.Port.StrVal == "floodgate-grpc") {
					t.Errorf("NetworkPolicy %s admits Check's port from other pods", np.Name)
				}
			}
		}
	}
	if !fenced {
		t.Error("no ingress NetworkPolicy fences the pods, yet Check listens on the pod address")
	}
	return dep, grpcPort
}

// TestAuthzOverlay: overlays/authz's Envoy calls Check first, closed on
// failure, on Floodgate's gRPC port, and Floodgate has its auth config.
func TestAuthzOverlay(t *testing.T) {
	t.Parallel()
	b := buildNamed(t, "authz")
	dep, grpcPort := checkAuthzPod(t, b)
	tmpl := &dep.Spec.Template
	cm := find[*corev1.ConfigMap](b, "ConfigMap", volumeConfigMap(tmpl, container(tmpl, "envoy"), "/etc/envoy"))
	if cm == nil {
		t.Fatal("Envoy's ConfigMap is not in the build")
	}
	boot, err := decodeEnvoyBootstrap([]byte(cm.Data["envoy.yaml"]))
	if err != nil {
		t.Fatalf("Envoy config: %v", err)
	}
	var authz []*extauthzv3.ExtAuthz
	walkMessages(boot.ProtoReflect(), func(m protoreflect.Message) {
		if a, ok := m.Interface().(*extauthzv3.ExtAuthz); ok {
			authz = append(authz, a)
		}
	})
	if len(authz) != 1 {
		t.Fatalf("want one ext_authz filter in Envoy's config, got %d", len(authz))
	}
	if authz[0].GetFailureModeAllow() {
		t.Error("ext_authz fails open")
	}
	if p := clusterPort(boot, authz[0].GetGrpcService().GetEnvoyGrpc().GetClusterName()); int32(p) != grpcPort {
		t.Errorf("ext_authz calls port %d, Floodgate's gRPC port is %d", p, grpcPort)
	}
	// The base's limits stay, the api domain joins them, same names.
	for _, name := range []string{"floodgate-limits", "floodgate-auth", "floodgate-jwks"} {
		if find[*corev1.ConfigMap](b, "ConfigMap", name) == nil {
			t.Errorf("ConfigMap %s (no hash suffix: updates reload in place) is not in the build", name)
		}
	}
	if s := find[*corev1.Secret](b, "Secret", "floodgate-keys"); s == nil || s.Type != corev1.SecretTypeOpaque {
		t.Error("Secret floodgate-keys (Opaque, no hash suffix) is not in the build")
	}
	limits := find[*corev1.ConfigMap](b, "ConfigMap", "floodgate-limits")
	if _, ok := limits.Data["edge.yaml"]; !ok || limits.Data["api.yaml"] == "" {
		t.Errorf("floodgate-limits has %v, want edge.yaml and api.yaml", keysOf(limits.Data))
	}
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestIstioAuthz: the mesh config's extension provider, the
// AuthorizationPolicy (CUSTOM, that provider, the app's pods) and the
// ServiceEntry (the provider's host on the pod's loopback, Floodgate's gRPC
// port) fit together, and Floodgate has its auth config.
func TestIstioAuthz(t *testing.T) {
	t.Parallel()
	b := buildNamed(t, "istio-authz")
	dep, grpcPort := checkAuthzPod(t, b)
	data, err := os.ReadFile("overlays/istio-authz/meshconfig.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mc, err := decodeMeshConfig(data)
	if err != nil {
		t.Fatalf("meshconfig.yaml is not a MeshConfig: %v", err)
	}
	ap := find[*istiosecv1.AuthorizationPolicy](b, "AuthorizationPolicy", "")
	se := find[*istionetv1.ServiceEntry](b, "ServiceEntry", "")
	if ap == nil || se == nil {
		t.Fatal("want an AuthorizationPolicy and a ServiceEntry")
	}
	if ap.Spec.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM {
		t.Errorf("AuthorizationPolicy action %s, want CUSTOM", ap.Spec.GetAction())
	}
	if len(ap.Spec.GetSelector().GetMatchLabels()) == 0 || !selects(metav1.LabelSelector{MatchLabels: ap.Spec.GetSelector().GetMatchLabels()}, dep.Spec.Template.Labels) {
		t.Error("the AuthorizationPolicy does not select (only) the app's pods")
	}
	if len(ap.Spec.GetRules()) == 0 {
		t.Error("a CUSTOM AuthorizationPolicy without rules sends nothing to the provider")
	}
	name := ap.Spec.GetProvider().GetName()
	i := slices.IndexFunc(mc.GetExtensionProviders(), func(p *meshv1alpha1.MeshConfig_ExtensionProvider) bool { return p.GetName() == name })
	if i < 0 {
		t.Fatalf("provider %q is not in meshconfig.yaml's extensionProviders", name)
	}
	g := mc.GetExtensionProviders()[i].GetEnvoyExtAuthzGrpc()
	if g == nil {
		t.Fatalf("provider %q is not envoyExtAuthzGrpc", name)
	}
	if g.GetFailOpen() {
		t.Error("the provider fails open")
	}
	if int32(g.GetPort()) != grpcPort || !slices.Contains(se.Spec.GetHosts(), g.GetService()) {
		t.Errorf("the provider calls %s:%d; want a ServiceEntry host (%q) and Floodgate's gRPC port %d", g.GetService(), g.GetPort(), se.Spec.GetHosts(), grpcPort)
	}
	if len(se.Spec.GetEndpoints()) != 1 || se.Spec.GetEndpoints()[0].GetAddress() != "127.0.0.1" || se.Spec.GetResolution().String() != "STATIC" {
		t.Errorf("the ServiceEntry must lead to the pod's own loopback (one STATIC endpoint 127.0.0.1)")
	}
	if !slices.ContainsFunc(se.Spec.GetPorts(), func(p *istionetv1alpha3.ServicePort) bool {
		return int32(p.GetNumber()) == grpcPort && p.GetProtocol() == "GRPC"
	}) {
		t.Errorf("the ServiceEntry has no GRPC port %d", grpcPort)
	}
	if !slices.Equal(se.Spec.GetExportTo(), []string{"."}) {
		t.Errorf("the ServiceEntry is exported to %q, want this namespace only", se.Spec.GetExportTo())
	}
}

// TestIstioDecodingCatches proves the strict decoding of the Istio objects
// and the mesh config fails on unknown fields and wrong values.
func TestIstioDecodingCatches(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, yaml, want string }{
		{"AuthorizationPolicy field", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {action: CUSTOM, providers: {name: x}}\n", "providers"},
		{"AuthorizationPolicy action", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {action: EXTERNAL}\n", "EXTERNAL"},
		{"ServiceEntry field", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\nspec: {host: [a.local]}\n", "host"},
		{"ServiceEntry version", "apiVersion: networking.istio.io/v1alpha9\nkind: ServiceEntry\nmetadata: {name: s}\nspec: {}\n", "v1alpha9"},
	}
	for _, tt := range tests {
		if _, err := decodeStrict([]byte(tt.yaml)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want one containing %q", tt.name, err, tt.want)
		}
	}
	for _, bad := range []struct{ yaml, want string }{
		{"extensionProviders: [{name: f, envoyExtAuthzGrpc: {service: s, prot: 8081}}]\n", "prot"},
		{"extensionProvider: []\n", "extensionProvider"},
		{"extensionProviders: [{name: f, envoyExtAuthzGrpc: {service: s, port: 8081}}]\nextensionProviders: []\n", "already set"},
	} {
		if _, err := decodeMeshConfig([]byte(bad.yaml)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("mesh config %q: err = %v, want one containing %q", bad.yaml, err, bad.want)
		}
	}
	if _, err := decodeMeshConfig(bytes.TrimSpace([]byte("extensionProviders: [{name: f, envoyExtAuthzGrpc: {service: s, port: 8081}}]"))); err != nil {
		t.Errorf("a good mesh config: %v", err)
	}
}
