package k8s_test

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	egvalidation "github.com/envoyproxy/gateway/api/v1alpha1/validation"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

// decodeGatewayKinds decodes the Gateway API's and Envoy Gateway's kinds
// into their own Go types (sigs.k8s.io/gateway-api, and
// github.com/envoyproxy/gateway/api/v1alpha1, the types Envoy Gateway
// itself decodes into), strictly; ok is false for other kinds.
func decodeGatewayKinds(tm metav1.TypeMeta, js []byte) (obj any, ok bool, err error) {
	var v any
	gvk := tm.GroupVersionKind()
	gwapi := gvk.Group == gwapiv1.GroupName && gvk.Version == gwapiv1.GroupVersion.Version
	switch {
	case gwapi && gvk.Kind == "GatewayClass":
		v = &gwapiv1.GatewayClass{}
	case gwapi && gvk.Kind == "Gateway":
		v = &gwapiv1.Gateway{}
	case gwapi && gvk.Kind == "HTTPRoute":
		v = &gwapiv1.HTTPRoute{}
	case gvk == egv1a1.GroupVersion.WithKind(egv1a1.KindBackendTrafficPolicy):
		v = &egv1a1.BackendTrafficPolicy{}
	default:
		return nil, false, nil
	}
	return v, true, strictJSON(js, v)
}

// envoyGatewayConfig strictly decodes the EnvoyGateway resource that Envoy
// Gateway reads from its ConfigMap.
func envoyGatewayConfig(cm *corev1.ConfigMap) (*egv1a1.EnvoyGateway, error) {
	y, ok := cm.Data["envoy-gateway.yaml"]
	if !ok {
		return nil, fmt.Errorf("ConfigMap %s has no envoy-gateway.yaml key (Envoy Gateway reads that one)", cm.Name)
	}
	js, err := sigsyaml.YAMLToJSONStrict([]byte(y))
	if err != nil {
		return nil, err
	}
	var eg egv1a1.EnvoyGateway
	if err := strictJSON(js, &eg); err != nil {
		return nil, err
	}
	if eg.APIVersion != egv1a1.GroupVersion.String() || eg.Kind != egv1a1.KindEnvoyGateway {
		return nil, fmt.Errorf("apiVersion %q kind %q, want %s %s", eg.APIVersion, eg.Kind, egv1a1.GroupVersion, egv1a1.KindEnvoyGateway)
	}
	// Envoy Gateway's own start-up check of its config.
	return &eg, egvalidation.ValidateEnvoyGateway(&eg)
}

// findIn is find limited to one namespace.
func findIn[T metav1.Object](b build, kind, namespace, name string) T {
	var zero T
	for _, o := range b.objects {
		if v, ok := o.typed.(T); ok && o.kind == kind && v.GetName() == name && v.GetNamespace() == namespace {
			return v
		}
	}
	return zero
}

// TestEnvoyGateway follows the Envoy Gateway example: its EnvoyGateway
// config passes Envoy Gateway's own validation, runs the image the other
// manifests run, and counts in the Redis the example deploys, which admits
// the rate-limit pods as Envoy Gateway labels them; the GatewayClass is
// Envoy Gateway's, the route hangs off the Gateway and reaches a Service
// that exists, and the BackendTrafficPolicy puts global limits on that
// route.
func TestEnvoyGateway(t *testing.T) {
	t.Parallel()
	var b, base build
	for _, bb := range allBuilds(t) {
		switch bb.name {
		case "envoy-gateway":
			b = bb
		case "base":
			base = bb
		}
	}
	if b.name == "" {
		t.Fatal("no envoy-gateway build")
	}
	const ns = "envoy-gateway-system"
	cm := findIn[*corev1.ConfigMap](b, "ConfigMap", ns, "envoy-gateway-config")
	if cm == nil {
		t.Fatalf("no ConfigMap %s/envoy-gateway-config", ns)
	}
	eg, err := envoyGatewayConfig(cm)
	if err != nil {
		t.Fatalf("envoy-gateway.yaml: %v", err)
	}

	// The image: the one the sidecar pattern runs, so that a release bumps both.
	var want string
	for _, tmpl := range podTemplates(base) {
		for _, c := range slices.Concat(tmpl.Spec.InitContainers, tmpl.Spec.Containers) {
			if isFloodgate(c) {
				want = c.Image
			}
		}
	}
	var k *egv1a1.EnvoyGatewayKubernetesProvider
	if eg.Provider != nil {
		k = eg.Provider.Kubernetes
	}
	if k == nil || k.RateLimitDeployment == nil || k.RateLimitDeployment.Container == nil || k.RateLimitDeployment.Container.Image == nil {
		t.Fatal("provider.kubernetes.rateLimitDeployment.container.image is not set: Envoy Gateway would run envoyproxy/ratelimit")
	}
	if got := *k.RateLimitDeployment.Container.Image; got != want || want == "" {
		t.Errorf("rate-limit image %q, want Floodgate's %q (as k8s/base runs it)", got, want)
	}
	if err := checkImage(*k.RateLimitDeployment.Container.Image); err != nil {
		t.Error(err)
	}

	// The backend: Redis at an address of the Redis Service here.
	rl := eg.RateLimit
	if rl == nil || rl.Backend.Type != egv1a1.RedisBackendType || rl.Backend.Redis == nil || rl.Backend.Redis.URL == nil {
		t.Fatal("rateLimit.backend is not Redis with a url: Envoy Gateway deploys no rate-limit service without it")
	}
	host, port, err := net.SplitHostPort(*rl.Backend.Redis.URL)
	if err != nil {
		t.Fatalf("redis url %q: %v", *rl.Backend.Redis.URL, err)
	}
	name, rest, _ := strings.Cut(host, ".")
	svc := findIn[*corev1.Service](b, "Service", strings.Split(rest, ".")[0], name)
	if svc == nil || !strings.HasSuffix(rest, ".svc.cluster.local") {
		t.Fatalf("redis url host %q names no Service of the build (want NAME.NAMESPACE.svc.cluster.local)", host)
	}
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return strconv.Itoa(int(p.Port)) == port }) {
		t.Errorf("Service %s/%s has no port %s", svc.Namespace, svc.Name, port)
	}
	sts := findIn[*appsv1.StatefulSet](b, "StatefulSet", svc.Namespace, "redis")
	if sts == nil || !matchLabels(svc.Spec.Selector, sts.Spec.Template.Labels) {
		t.Errorf("Service %s/%s selects no Redis pods", svc.Namespace, svc.Name)
	}
	// Envoy Gateway's labels on its rate-limit pods.
	rateLimitPods := map[string]string{
		"app.kubernetes.io/name":       "envoy-ratelimit",
		"app.kubernetes.io/component":  "ratelimit",
		"app.kubernetes.io/managed-by": "envoy-gateway",
	}
	np := findIn[*networkingv1.NetworkPolicy](b, "NetworkPolicy", svc.Namespace, "redis-ingress")
	if np == nil || !matchLabels(np.Spec.PodSelector.MatchLabels, sts.Spec.Template.Labels) || len(np.Spec.Ingress) != 1 ||
		len(np.Spec.Ingress[0].From) != 1 || np.Spec.Ingress[0].From[0].PodSelector == nil ||
		!matchLabels(np.Spec.Ingress[0].From[0].PodSelector.MatchLabels, rateLimitPods) || np.Spec.Ingress[0].From[0].NamespaceSelector != nil {
		t.Errorf("NetworkPolicy redis-ingress must admit exactly the rate-limit pods of its namespace: %+v", np)
	}

	// Gateway API: class → Gateway → HTTPRoute → Service.
	var class *gwapiv1.GatewayClass
	for _, o := range b.objects {
		if c, ok := o.typed.(*gwapiv1.GatewayClass); ok {
			class = c
		}
	}
	if class == nil || string(class.Spec.ControllerName) != eg.Gateway.ControllerName {
		t.Fatalf("GatewayClass %+v: want one with Envoy Gateway's controllerName %q", class, eg.Gateway.ControllerName)
	}
	const demo = "floodgate-demo"
	gw := findIn[*gwapiv1.Gateway](b, "Gateway", demo, "eg")
	if gw == nil || string(gw.Spec.GatewayClassName) != class.Name || len(gw.Spec.Listeners) == 0 {
		t.Fatalf("Gateway %s/eg must use GatewayClass %s and listen: %+v", demo, class.Name, gw)
	}
	route := findIn[*gwapiv1.HTTPRoute](b, "HTTPRoute", demo, "echo")
	if route == nil || len(route.Spec.ParentRefs) != 1 || string(route.Spec.ParentRefs[0].Name) != gw.Name {
		t.Fatalf("HTTPRoute %s/echo must hang off Gateway %s: %+v", demo, gw.Name, route)
	}
	if sec := route.Spec.ParentRefs[0].SectionName; sec == nil || !slices.ContainsFunc(gw.Spec.Listeners, func(l gwapiv1.Listener) bool { return l.Name == *sec }) {
		t.Errorf("HTTPRoute's sectionName names no listener of the Gateway")
	}
	for _, r := range route.Spec.Rules {
		for _, ref := range r.BackendRefs {
			s := findIn[*corev1.Service](b, "Service", demo, string(ref.Name))
			if s == nil || ref.Port == nil || !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == *ref.Port }) {
				t.Errorf("backendRef %s:%v names no Service port of the build", ref.Name, ref.Port)
				continue
			}
			dep := findIn[*appsv1.Deployment](b, "Deployment", demo, s.Name)
			if dep == nil || !matchLabels(s.Spec.Selector, dep.Spec.Template.Labels) {
				t.Errorf("Service %s selects no pods of the build", s.Name)
			}
		}
	}

	// The policy: global limits on that route.
	btp := findIn[*egv1a1.BackendTrafficPolicy](b, "BackendTrafficPolicy", demo, "echo-ratelimit")
	if btp == nil || len(btp.Spec.TargetRefs) != 1 {
		t.Fatalf("no BackendTrafficPolicy %s/echo-ratelimit with one targetRef", demo)
	}
	ref := btp.Spec.TargetRefs[0]
	if ref.Group != gwapiv1.GroupName || ref.Kind != "HTTPRoute" || string(ref.Name) != route.Name {
		t.Errorf("BackendTrafficPolicy targets %s/%s %s, want the HTTPRoute %s", ref.Group, ref.Kind, ref.Name, route.Name)
	}
	if btp.Spec.RateLimit == nil || btp.Spec.RateLimit.Global == nil || len(btp.Spec.RateLimit.Global.Rules) == 0 {
		t.Fatal("the BackendTrafficPolicy has no global rate-limit rules: Floodgate would not be asked")
	}
	units := []egv1a1.RateLimitUnit{"Second", "Minute", "Hour", "Day", "Month", "Year"}
	for i, r := range btp.Spec.RateLimit.Global.Rules {
		if r.Limit.Requests == 0 || !slices.Contains(units, r.Limit.Unit) {
			t.Errorf("rule %d: limit %+v, want requests > 0 per one of %v", i, r.Limit, units)
		}
		for _, sel := range r.ClientSelectors {
			for _, h := range sel.Headers {
				if h.Type != nil && *h.Type == egv1a1.HeaderMatchDistinct && h.Value != nil {
					t.Errorf("rule %d: a Distinct header match takes no value", i)
				}
			}
		}
	}
}

// matchLabels says whether a non-empty matchLabels selects labels.
func matchLabels(sel, labels map[string]string) bool {
	return len(sel) > 0 && selects(metav1.LabelSelector{MatchLabels: sel}, labels)
}

// TestEnvoyGatewayConfigCatches: the EnvoyGateway decoding refuses a
// misspelled field, and Envoy Gateway's validation a backend it would not deploy.
func TestEnvoyGatewayConfigCatches(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, yaml, want string }{
		{"misspelled field", "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyGateway\nprovider: {type: Kubernetes, kubernetes: {rateLimitDeployment: {container: {imag: x:1}}}}\n", "imag"},
		{"another backend", "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyGateway\ngateway: {controllerName: c}\nprovider: {type: Kubernetes}\nrateLimit: {backend: {type: Memcache}}\n", "unsupported ratelimit backend"},
		{"redis without url", "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyGateway\ngateway: {controllerName: c}\nprovider: {type: Kubernetes}\nrateLimit: {backend: {type: Redis, redis: {}}}\n", "url"},
		{"wrong kind", "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyProxy\n", "kind"},
	} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Data: map[string]string{"envoy-gateway.yaml": tc.yaml}}
		if _, err := envoyGatewayConfig(cm); err == nil || !strings.Contains(strings.ToLower(err.Error()), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}
